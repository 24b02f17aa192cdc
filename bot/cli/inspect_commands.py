"""Read-only run commands: runs, status, report, audit verify/export.

They work while another process owns the data directory: they read the
snapshot and replay the journal's tail, and never write.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from typing import Any

from bot.audit.log import iter_records
from bot.audit.report import build_report
from bot.audit.verify import verify
from bot.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliExit
from bot.cli.context import CliContext
from bot.cli.session import open_readonly
from bot.engine.clock import iso, parse_iso, utcnow
from bot.engine.state import RunState
from bot.errors import CorruptStateError
from bot.redact import REDACTOR
from bot.runbook.durations import format_duration, parse_duration
from bot.store.snapshot import snapshot_watermark
from bot.store.store import DataStore


def _run_or_exit(ctx: CliContext, run_id: str) -> RunState:
    store = open_readonly(ctx)
    run = store.get_run(run_id)
    _print_warnings(store)
    if run is None:
        raise CliExit(EXIT_USAGE, f"unknown run {run_id}")
    return run


def _print_warnings(store: DataStore) -> None:
    for warning in store.warnings:
        print(f"runbook: warning: {warning}", file=sys.stderr)
    store.warnings.clear()


def cmd_runs(ctx: CliContext) -> int:
    store = open_readonly(ctx)
    rows = store.summaries()
    _print_warnings(store)
    if ctx.args.status:
        rows = [row for row in rows if row["status"] == ctx.args.status]
    rows = rows[: max(ctx.args.limit, 0)]
    if ctx.args.json:
        print(json.dumps(REDACTOR.value(rows), indent=2))
        return EXIT_OK
    if not rows:
        print("no runs yet")
        return EXIT_OK
    print(f"{'RUN':<20} {'RUNBOOK':<24} {'STATUS':<10} {'STARTED':<20} REQUESTER")
    for row in rows:
        started = row["started_at"].replace("T", " ")[:19]
        print(
            f"{row['id']:<20} {row['runbook'][:24]:<24} {row['status']:<10} {started:<20} "
            f"{row.get('requester') or '-'}"
        )
    return EXIT_OK


def cmd_status(ctx: CliContext) -> int:
    run = _run_or_exit(ctx, ctx.args.run_id)
    if ctx.args.json:
        print(json.dumps(REDACTOR.value(run.document()), indent=2, default=str))
        return EXIT_OK
    print(f"run {run.id}  {run.runbook}  {run.status}")
    print(f"  requester: {run.requester or '-'}   trigger: {run.trigger.get('kind')}")
    print(f"  started:   {run.started_at}" + (f"   ended: {run.ended_at}" if run.ended_at else ""))
    if run.inputs:
        print("  inputs:    " + ", ".join(f"{k}={json.dumps(v)}" for k, v in run.inputs.items()))
    print()
    width = max(len(sid) for sid in run.step_ids)
    for sid in run.step_ids:
        step = run.steps[sid]
        outcome = (
            str(step.outcome)
            if step.outcome
            else ("waiting" if step.waiting else "running" if step.running else "-")
        )
        took = ""
        if step.started_at and step.ended_at:
            seconds = (parse_iso(step.ended_at) - parse_iso(step.started_at)).total_seconds()
            took = format_duration(seconds)
        detail = step.error or ""
        if step.waiting and step.gate is not None:
            detail = f"{len(step.gate.approvals)}/{step.gate.min_approvals} approvals"
        attempts = f"x{step.attempts}" if step.attempts > 1 else ""
        print(REDACTOR.text(f"  {sid:<{width}}  {outcome:<10} {attempts:<4} {took:<8} {detail}"))
    return EXIT_OK


def cmd_report(ctx: CliContext) -> int:
    run_id = ctx.args.run_id
    path = str(ctx.settings.data_dir / "audit.jsonl")
    store = open_readonly(ctx)
    try:
        run = store.get_run(run_id)
    except CorruptStateError as exc:  # the report needs the audit log alone
        print(f"runbook: warning: {exc}; reading the audit log", file=sys.stderr)
        run = None
    _print_warnings(store)
    # without the run's offset (not archived, or archived badly) the whole log is read
    records = _records_of(path, run_id, (run.audit_offset or 0) if run is not None else 0)
    if not records:
        raise CliExit(EXIT_USAGE, f"unknown run {run_id}")
    report = REDACTOR.text(build_report(run_id, records))
    if ctx.args.json:
        finished = next((r for r in records if r.get("event") == "run.finished"), None)
        status = (
            str(run.status)
            if run is not None
            else str((finished or {}).get("data", {}).get("status", "unfinished"))
        )
        print(
            json.dumps(
                {
                    "id": run_id,
                    "runbook": records[0].get("runbook"),
                    "status": status,
                    "records": len(records),
                    "markdown": report,
                }
            )
        )
    else:
        print(report)
    return EXIT_OK


def _records_of(path: str, run_id: str, start: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for _offset, record in iter_records(path, start):
        if record.get("run_id") != run_id:
            continue
        found.append(record)
        if record.get("event") == "run.finished":
            break
    return found


def cmd_audit(ctx: CliContext) -> int:
    path = str(ctx.settings.data_dir / "audit.jsonl")
    if ctx.args.audit_command == "accept-gap":
        from bot.cli.audit_gap import cmd_accept_gap
        from bot.cli.run_commands import cli_user

        return cmd_accept_gap(ctx, cli_user(ctx.args))
    if ctx.args.audit_command == "verify":
        result = verify(path, snapshot_watermark(ctx.settings.data_dir / "state.json"))
        if ctx.args.json:
            print(json.dumps(result.as_dict()))
        elif result.ok:
            print(f"audit log intact: {result.records:,} records, hash chain verified")
            for gap in result.gaps:
                print(
                    f"recorded gap at seq {gap['seq']}: records after seq {gap['found_seq']} "
                    f"up to seq {gap['expected_seq']} were lost; accepted by {gap['actor']} at "
                    f"{gap['ts']} (the snapshot that saw them is kept as {gap['snapshot_kept']})"
                )
        else:
            print(
                f"audit log BROKEN at line {result.line} (seq {result.seq}): {result.problem}; "
                f"{result.records:,} records before it verified",
                file=sys.stderr,
            )
        return EXIT_OK if result.ok else EXIT_FAILED
    since = _since(ctx.args.since) if ctx.args.since else None
    start = 0
    if ctx.args.run:
        run = open_readonly(ctx).get_run(ctx.args.run)
        if run is None:
            raise CliExit(EXIT_USAGE, f"unknown run {ctx.args.run}")
        start = run.audit_offset or 0
    out = sys.stdout
    for _offset, record in iter_records(path, start):
        if ctx.args.run and record.get("run_id") != ctx.args.run:
            continue
        if since is not None and record.get("ts", "") < since:
            continue
        out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    return EXIT_OK


def _since(text: str) -> str:
    try:
        seconds = parse_duration(text)
    except ValueError:
        try:
            return iso(parse_iso(text if "T" in text else f"{text}T00:00:00Z"))
        except ValueError:
            raise CliExit(
                EXIT_USAGE,
                f"--since: expected an ISO time (2026-11-22T10:00:00Z) or a "
                f"duration ago (24h), got {text!r}",
            ) from None
    return iso(utcnow() - timedelta(seconds=seconds))
