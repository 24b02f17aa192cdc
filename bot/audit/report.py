"""The incident report: a run as a Markdown timeline, built from the audit log alone."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from bot.engine.clock import parse_iso
from bot.runbook.durations import format_duration


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _time(ts: str) -> str:
    return ts.replace("T", " ")[:19] + "Z"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def build_report(run_id: str, records: Iterable[dict[str, Any]]) -> str:
    """Markdown for the post-incident review of one run."""
    rows = [r for r in records if r.get("run_id") == run_id]
    if not rows:
        return f"# Run {run_id}\n\nNo audit records found for this run.\n"
    start = rows[0]
    data = start.get("data") or {}
    finished = next((r for r in rows if r["event"] == "run.finished"), None)
    status = (finished or {}).get("data", {}).get("status", "unfinished")
    title = data.get("title") or start.get("runbook")
    trigger = data.get("trigger") or {}
    kind = trigger.get("kind", "manual")
    lines = [
        f"# {title} — run {run_id}",
        "",
        f"- **Runbook:** `{start.get('runbook')}`",
        f"- **Outcome:** {status}",
        f"- **Started:** {_time(start['ts'])} by {data.get('requester') or start.get('actor')}"
        f" ({kind}{' from ' + trigger['source'] if trigger.get('source') else ''})",
    ]
    if finished:
        took = (parse_iso(finished["ts"]) - parse_iso(start["ts"])).total_seconds()
        lines.append(f"- **Ended:** {_time(finished['ts'])} (after {format_duration(took)})")
    if data.get("sandbox"):
        lines.append("- **Sandbox:** yes — vendors were simulated")
    if data.get("inputs"):
        inputs = ", ".join(f"`{k}` = {_short(v, 80)}" for k, v in data["inputs"].items())
        lines.append(f"- **Inputs:** {inputs}")
    if data.get("alert") is not None:
        lines.append(f"- **Alert:** {_short(data['alert'], 300)}")
    lines += [
        "",
        "## Timeline",
        "",
        "| time | step | event | by | details |",
        "|---|---|---|---|---|",
    ]
    started_at: dict[str, str] = {}
    for record in rows[1:]:
        event = record["event"]
        detail = _detail(record, started_at)
        if detail is None:
            continue
        lines.append(
            f"| {_time(record['ts'])[11:]} | {record.get('step') or ''} | {event} | "
            f"{record.get('actor') or ''} | {_md(detail)} |"
        )
    decisions = [r for r in rows if r["event"] in ("approval.decided", "approval.refused")]
    if decisions:
        lines += ["", "## Approval decisions", ""]
        for r in decisions:
            d = r.get("data") or {}
            verb = d.get("decision", "")
            past = {"approve": "approved", "reject": "rejected", "skip": "skipped"}
            comment = f" — “{d['comment']}”" if d.get("comment") else ""
            reason = f" ({d['reason']})" if d.get("reason") else ""
            if r["event"] == "approval.refused":
                what = f"tried to {verb or 'decide'} `{r.get('step')}`: refused"
            else:
                what = f"{past.get(verb, verb)} `{r.get('step')}`"
            lines.append(f"- {_time(r['ts'])}: **{r.get('actor')}** {what}{comment}{reason}")
    comps = [r for r in rows if r["event"].startswith("compensation.")]
    if comps:
        lines += ["", "## Compensations", ""]
        for r in comps:
            d = r.get("data") or {}
            extra = f": {d['error']}" if d.get("error") else ""
            lines.append(
                f"- {_time(r['ts'])}: `{r.get('step')}` {r['event'].split('.')[1]} "
                f"(`{d.get('uses')}`){extra}"
            )
    lines += [
        "",
        f"_{len(rows)} audit records, seq {rows[0]['seq']}–{rows[-1]['seq']}. "
        "Verify the chain with `runbook audit verify`._",
        "",
    ]
    return "\n".join(lines)


def _detail(record: dict[str, Any], started_at: dict[str, str]) -> str | None:
    event = record["event"]
    data = record.get("data") or {}
    step = record.get("step") or ""
    if event == "step.started":
        started_at.setdefault(step, record["ts"])
        attempt = data.get("attempt", 1)
        return f"{data.get('uses', '')} attempt {attempt}"
    if event in ("step.succeeded", "step.failed"):
        took = ""
        if step in started_at:
            seconds = (parse_iso(record["ts"]) - parse_iso(started_at[step])).total_seconds()
            took = f" in {format_duration(seconds)}"
        attempts = data.get("attempts")
        tries = f", {attempts} attempts" if attempts and attempts > 1 else ""
        if event == "step.failed":
            return f"failed{took}{tries}: {data.get('error')}"
        return f"ok{took}{tries}: {_short(data.get('output'))}"
    if event == "step.retrying":
        error = _short(data.get("error"), 100)
        return f"attempt {data.get('attempt')} failed ({error}); retry in {data.get('delay')}s"
    if event == "step.skipped":
        return data.get("reason") or "skipped"
    if event == "step.paused":
        return f"paused between calls: {data.get('reason') or 'the engine stopped'}"
    if event == "step.item_succeeded":
        return f"item {data.get('index')}: {_short(data.get('output'), 100)}"
    if event == "approval.requested":
        who = ", ".join([*data.get("users", []), *["@" + g for g in data.get("groups", [])]])
        need = data.get("min_approvals", 1)
        return f"asked: {data.get('prompt')} (approvers: {who or 'anyone'}; {need} needed)"
    if event in ("approval.decided", "approval.refused"):
        return data.get("comment") or data.get("reason") or data.get("decision") or ""
    if event in ("step.approved", "step.rejected", "step.expired"):
        output = data.get("output") or {}
        return f"decided by {', '.join(output.get('decided_by') or []) or 'timeout'}"
    if event in (
        "approval.escalated",
        "approval.expired",
        "step.cancelled",
        "step.resumed",
        "run.cancelled",
        "step.dry_run",
    ):
        return _short(data)
    if event.startswith("compensation."):
        return _short({k: v for k, v in data.items() if k != "output"})
    if event == "run.finished":
        return f"{data.get('status')}" + (f": {data['error']}" if data.get("error") else "")
    return None
