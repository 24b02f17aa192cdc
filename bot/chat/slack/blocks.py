"""Block Kit for runs and approval gates (pure: state in, message dicts out).

Every function here takes the run's state and returns what to send; nothing
here talks to Slack. Text that comes from data (inputs, outputs, names) is
escaped; the approval prompt is the runbook's own mrkdwn and is kept, with
the data substituted into it escaped and broadcast mentions defused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.chat.slack import mrkdwn as md
from bot.chat.slack.ids import ActionId, gate_value
from bot.engine.clock import parse_iso
from bot.engine.ports import RunView
from bot.engine.state import GateState, Outcome, RunState, StepState
from bot.redact import REDACTOR
from bot.runbook.durations import format_duration

Block = dict[str, Any]
MAX_INPUTS_SHOWN = 8
MAX_EARLIER_STEPS = 12

OUTCOME_EMOJI = {
    Outcome.SUCCEEDED: ":white_check_mark:",
    Outcome.APPROVED: ":white_check_mark:",
    Outcome.FAILED: ":x:",
    Outcome.REJECTED: ":no_entry:",
    Outcome.EXPIRED: ":hourglass:",
    Outcome.CANCELLED: ":no_entry_sign:",
    Outcome.SKIPPED: ":fast_forward:",
}
STATUS_EMOJI = {
    "pending": ":white_circle:",
    "running": ":arrows_counterclockwise:",
    "waiting": ":raised_hand:",
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "rejected": ":no_entry:",
    "cancelled": ":no_entry_sign:",
}


@dataclass(frozen=True, slots=True)
class Message:
    """A message to post or update: the notification text and the blocks."""

    text: str
    blocks: list[Block]


def _text(text: str) -> str:
    return REDACTOR.text(text)


def prompt_mrkdwn(gate: GateState) -> str:
    """A gate's prompt as mrkdwn: the author's formatting, the data in it escaped."""
    if gate.markup_prompt is not None:
        return md.no_broadcasts(gate.markup_prompt)
    return md.escape(gate.prompt)  # recorded before the escaped form was: escape it all


def notice_mrkdwn(text: str, markup: str | None) -> str:
    """A notify step's text as mrkdwn: the author's formatting, the data in it escaped."""
    if markup is not None:
        return md.no_broadcasts(markup)
    return md.escape(text)  # no escaped form given: escape it all


def section(text: str) -> Block:
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": md.truncate(_text(text), md.SECTION_LIMIT)},
    }


def context(*parts: str) -> Block:
    elements = [{"type": "mrkdwn", "text": md.truncate(_text(p), 2000)} for p in parts if p][:10]
    return {"type": "context", "elements": elements}


def header(text: str) -> Block:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": md.truncate(text, md.HEADER_LIMIT), "emoji": True},
    }


def plain(text: str, limit: int = 75) -> dict[str, Any]:
    return {"type": "plain_text", "text": md.truncate(text, limit), "emoji": True}


# -- the run's thread -------------------------------------------------------------------


def trigger_text(run: RunState) -> str:
    """How the run was started, for people."""
    trigger = run.trigger or {}
    kind = trigger.get("kind", "manual")
    if kind == "slack":
        channel = trigger.get("channel")
        return "slash command" + (f" in <#{channel}>" if channel else "")
    if kind == "alert":
        return f"alert from {md.escape(str(trigger.get('source', 'unknown')))}"
    if kind == "schedule":
        return "schedule"
    if kind == "api":
        return "API"
    if kind in ("cli", "manual"):
        return "terminal"
    return md.escape(str(kind))


def started_by(run: RunState) -> str:
    if run.requester:
        return md.identity(run.requester)
    return trigger_text(run)


def inputs_text(run: RunState, limit: int = MAX_INPUTS_SHOWN) -> str:
    if not run.inputs:
        return "—"
    shown = [f"{md.escape(k)}={md.code(v, 60)}" for k, v in list(run.inputs.items())[:limit]]
    more = len(run.inputs) - limit
    return " ".join(shown) + (f" (+{more} more)" if more > 0 else "")


def duration_of(start: str | None, end: str | None) -> str | None:
    if not start or not end:
        return None
    return format_duration(max((parse_iso(end) - parse_iso(start)).total_seconds(), 0.0))


def run_root(run: RunState, view: RunView) -> Message:
    """The root message of a run's thread: runbook, who or what started it, inputs."""
    status = str(run.status)
    title = md.escape(view.title or run.runbook)
    lines = [f":arrow_forward: *{title}* — started by {started_by(run)}"]
    if run.ended:
        took = duration_of(run.started_at, run.ended_at)
        lines.append(f"{STATUS_EMOJI.get(status, '')} *{status}*" + (f" in {took}" if took else ""))
    blocks = [
        section("\n".join(lines)),
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Runbook*\n`{md.escape(run.runbook)}`"},
                {"type": "mrkdwn", "text": f"*Run*\n`{run.id}`"},
                {"type": "mrkdwn", "text": f"*Trigger*\n{trigger_text(run)}"},
                {
                    "type": "mrkdwn",
                    "text": md.truncate(_text(f"*Inputs*\n{inputs_text(run)}"), 2000),
                },
            ],
        },
    ]
    notes = []
    description = getattr(view, "description", None)
    if description:
        notes.append(md.escape(md.truncate(" ".join(str(description).split()), 280)))
    if run.sandbox:
        notes.append(":test_tube: sandbox run: vendors are simulated")
    if notes:
        blocks.append(context(*notes))
    text = f"{view.title or run.runbook}: run {run.id} started by {_plain_who(run)}"
    return Message(_text(text), blocks)


def _plain_who(run: RunState) -> str:
    if run.requester:
        return run.requester
    return str(run.trigger.get("kind", "manual"))


def step_line(run: RunState, view: RunView, sid: str) -> str:
    """One line of the status message."""
    state = run.steps[sid]
    title = md.escape(view.step_title(sid))
    kind = view.step_kind(sid)
    label = f"*{title}*" + (f" `{md.escape(kind)}`" if kind not in ("approval", "notify") else "")
    if state.outcome is not None:
        emoji = OUTCOME_EMOJI.get(state.outcome, "")
        took = duration_of(state.started_at, state.ended_at)
        detail = str(state.outcome) + (f" in {took}" if took and state.started_at else "")
        if state.outcome is Outcome.FAILED and state.error:
            detail += f": {md.escape(md.truncate(state.error, 200))}"
        elif state.outcome is Outcome.SKIPPED and state.reason:
            detail += f" ({md.escape(md.truncate(state.reason, 120))})"
        return f"{emoji} {label} — {detail}"
    if state.waiting and state.gate is not None:
        gate = state.gate
        return (
            f":raised_hand: {label} — waiting for approval "
            f"({len(gate.approvals)}/{gate.min_approvals})"
        )
    if state.running:
        attempt = f" (attempt {state.attempts})" if state.attempts > 1 else ""
        return f":arrows_counterclockwise: {label} — running{attempt}"
    return f":white_circle: {label}"


def run_status(run: RunState, view: RunView) -> Message:
    """The status message in the thread, edited in place as steps move."""
    done = sum(1 for sid in run.step_ids if run.steps[sid].ended)
    status = str(run.status)
    head = (
        f"{STATUS_EMOJI.get(status, '')} *Status: {status}* — {done}/{len(run.step_ids)} steps done"
    )
    lines = [step_line(run, view, sid) for sid in run.step_ids]
    blocks = [section(head)]
    chunk: list[str] = []
    for line in lines:
        if chunk and len("\n".join([*chunk, line])) > md.SECTION_LIMIT - 50:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(section("\n".join(chunk)))
    return Message(
        _text(f"Run {run.id}: {status}, {done}/{len(run.step_ids)} steps done"), blocks[:49]
    )


def run_summary(run: RunState, view: RunView) -> Message:
    """The final message in the thread: outcome, duration, what happened."""
    status = str(run.status)
    took = duration_of(run.started_at, run.ended_at) or "—"
    title = md.escape(view.title or run.runbook)
    lines = [f"{STATUS_EMOJI.get(status, '')} *{title}* — run `{run.id}` *{status}* in {took}"]
    if run.error:
        lines.append(f"Error: {md.escape(md.truncate(run.error, 500))}")
    for sid in run.step_ids:
        state = run.steps[sid]
        name = md.escape(view.step_title(sid))
        if state.outcome is Outcome.FAILED:
            lines.append(f":x: *{name}* failed: {md.escape(md.truncate(state.error or '', 400))}")
        elif state.outcome in (Outcome.APPROVED, Outcome.REJECTED) and state.gate:
            by = [
                d.by
                for d in state.gate.decisions
                if d.decision == ("approve" if state.outcome is Outcome.APPROVED else "reject")
            ]
            who = ", ".join(md.identity(b) for b in by) or "its deadline"
            lines.append(f"{OUTCOME_EMOJI[state.outcome]} *{name}* {state.outcome} by {who}")
        elif state.outcome is Outcome.EXPIRED:
            lines.append(f":hourglass: *{name}*: nobody decided in time")
    if run.cancelled_by:
        lines.append(f":no_entry_sign: cancelled by {md.identity(run.cancelled_by)}")
    counts: dict[str, int] = {}
    for sid in run.step_ids:
        outcome = run.steps[sid].outcome
        key = str(outcome) if outcome else "not run"
        counts[key] = counts.get(key, 0) + 1
    tally = " · ".join(f"{n} {k}" for k, n in counts.items())
    blocks = [section("\n".join(lines)), context(f"Steps: {tally}", f"Runbook `{run.runbook}`")]
    return Message(_text(f"Run {run.id} ({run.runbook}) {status} in {took}"), blocks)


# -- approval gates --------------------------------------------------------------------


def earlier_steps(run: RunState, view: RunView, sid: str) -> list[str]:
    """A short line for each step that ended before this gate was asked."""
    lines = []
    for other in run.step_ids:
        if other == sid:
            break
        state = run.steps[other]
        if state.outcome is None:
            continue
        line = f"{OUTCOME_EMOJI.get(state.outcome, '')} *{md.escape(view.step_title(other))}*"
        if state.outcome is Outcome.SUCCEEDED and state.output not in (None, {}, []):
            line += f" → {md.code(state.output, 140)}"
        elif state.outcome is Outcome.FAILED and state.error:
            line += f" failed: {md.escape(md.truncate(state.error, 140))}"
        elif state.outcome is not Outcome.SUCCEEDED:
            line += f" {state.outcome}"
        lines.append(line)
    if len(lines) > MAX_EARLIER_STEPS:
        lines = ["…", *lines[-MAX_EARLIER_STEPS:]]
    return lines


def _gate_outcome(state: StepState, gate: GateState) -> str:
    """How an ended gate ended, for its message."""
    outcome = state.outcome
    if outcome is Outcome.APPROVED:
        by = [d.by for d in gate.approvals]
        if not by:
            return ":hourglass: *Approved automatically* at the deadline (on_timeout: approve)"
        who = ", ".join(md.identity(b) for b in by)
        return f":white_check_mark: *Approved* by {who}"
    if outcome is Outcome.REJECTED:
        by = [d.by for d in gate.decisions if d.decision == "reject"]
        who = ", ".join(md.identity(b) for b in by) or "someone"
        return f":no_entry: *Rejected* by {who}"
    if outcome is Outcome.EXPIRED:
        return f":hourglass: *Expired* at {md.date(gate.deadline)}: nobody decided in time"
    if outcome is Outcome.CANCELLED:
        why = f" ({md.escape(state.reason)})" if state.reason else ""
        return f":no_entry_sign: *Cancelled*{why}"
    if outcome is Outcome.SKIPPED:
        return ":fast_forward: *Skipped*: the step was marked skipped and the run went on"
    if outcome is Outcome.FAILED:
        return f":x: *Failed*: {md.escape(md.truncate(state.error or '', 300))}"
    if gate.recovery and not gate.open:
        return ":repeat: *Run again*: the step was started again"
    return f"*{outcome or 'ended'}*"


def _approvers_line(gate: GateState, group_ids: Mapping[str, str]) -> str:
    if gate.open_to_all:
        who = "anyone in the channel"
    else:
        who = md.people(gate.users, gate.groups, group_ids) or "nobody listed"
    if gate.escalated and (gate.escalate_users or gate.escalate_groups):
        who += " — escalated to " + md.people(gate.escalate_users, gate.escalate_groups, group_ids)
    need = gate.min_approvals
    line = f"*Approvers:* {who} · *quorum:* {need} approval{'s' if need != 1 else ''}"
    if not gate.allow_requester and not gate.recovery:
        line += " · the requester may not approve"
    return line


def _deadline_line(gate: GateState, group_ids: Mapping[str, str]) -> str | None:
    parts = []
    if gate.deadline:
        then = "approved" if gate.on_timeout == "approve" else "rejected"
        parts.append(f"*Deadline:* {md.date(gate.deadline)} (then {then})")
    if gate.escalate_at and not gate.escalated:
        to = md.people(gate.escalate_users, gate.escalate_groups, group_ids)
        parts.append(f"*Escalates* at {md.date(gate.escalate_at)} to {to}")
    return " · ".join(parts) or None


def decision_lines(gate: GateState) -> list[str]:
    lines = []
    for d in gate.decisions:
        verb = {"approve": "approved", "reject": "rejected", "skip": "chose skip"}.get(
            d.decision, d.decision
        )
        emoji = ":white_check_mark:" if d.decision == "approve" else ":no_entry:"
        line = f"{emoji} {md.identity(d.by)} {verb} {md.date(d.at)}"
        if d.comment:
            line += f": _{md.escape(md.truncate(d.comment, 200))}_"
        if d.fields:
            shown = ", ".join(f"{md.escape(k)}={md.code(v, 60)}" for k, v in d.fields.items())
            line += f" ({shown})"
        lines.append(line)
    return lines


def approval(
    run: RunState,
    view: RunView,
    sid: str,
    gate: GateState,
    group_ids: Mapping[str, str] | None = None,
) -> Message:
    """The approval request; buttons while it waits, the outcome once it ended."""
    ids = dict(group_ids or {})
    state = run.steps[sid]
    waiting = gate.open and state.outcome is None and state.gate is gate
    step_title = view.step_title(sid)
    if gate.recovery:
        head = (
            ":warning: Decision needed after a restart" if waiting else "Decision after a restart"
        )
    else:
        head = ":raised_hand: Approval needed" if waiting else "Approval request"
    blocks: list[Block] = [header(f"{head}: {step_title}")]
    about = f"*{md.escape(step_title)}*"
    description = view.step_description(sid)
    if description:
        about += "\n" + md.truncate(md.markdown_to_mrkdwn(description), 1500)
    blocks.append(section(about))
    blocks.append(section(prompt_mrkdwn(gate) or "(no prompt)"))
    blocks.append(
        {
            "type": "section",
            "fields": [
                {
                    "type": "mrkdwn",
                    "text": f"*Runbook*\n{md.escape(view.title or run.runbook)} (`{run.runbook}`)",
                },
                {"type": "mrkdwn", "text": f"*Run*\n`{run.id}`"},
                {"type": "mrkdwn", "text": f"*Requested by*\n{started_by(run)}"},
                {"type": "mrkdwn", "text": f"*Trigger*\n{trigger_text(run)}"},
                {
                    "type": "mrkdwn",
                    "text": md.truncate(_text(f"*Key inputs*\n{inputs_text(run, 6)}"), 2000),
                },
            ],
        }
    )
    earlier = earlier_steps(run, view, sid)
    if earlier:
        blocks.append(section("*Earlier steps*\n" + "\n".join(earlier)))
    blocks.append(section(_approvers_line(gate, ids)))
    deadline = _deadline_line(gate, ids) if waiting else None
    if deadline:
        blocks.append(context(deadline))
    decided = decision_lines(gate)
    if decided:
        blocks.append(context(*decided[:10]))
    if waiting:
        remaining = max(gate.min_approvals - len(gate.approvals), 0)
        if gate.decisions and remaining:
            blocks.append(context(_still_needed(remaining)))
        blocks.append(_buttons(run.id, sid, step_title, gate))
    else:
        outcome = _gate_outcome(state, gate)
        blocks.append(section(outcome))
    return Message(approval_text(run, sid, gate, ids, step_title, waiting), blocks[:50])


def _still_needed(remaining: int) -> str:
    return f"{remaining} more approval{'s' if remaining != 1 else ''} needed"


def when_text(ts: str | None) -> str:
    """An ISO timestamp for plain text (the ``text`` fallback): ``2026-11-22 10:00:05 UTC``."""
    if not ts:
        return "—"
    try:
        return parse_iso(ts).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return ts


def approval_text(
    run: RunState,
    sid: str,
    gate: GateState,
    group_ids: Mapping[str, str],
    step_title: str,
    waiting: bool,
) -> str:
    """The ``text`` of an approval message: what its blocks show, for notifications, screen
    readers and clients (or programs) that read only ``text``.

    The prompt, who may decide, each decision (who, what, when), the approvals
    still needed while it waits, and the outcome once it ended.
    """
    state = run.steps[sid]
    prompt = md.truncate(prompt_mrkdwn(gate) or "(no prompt)", 1500)
    what = f"{step_title} (run {run.id}, {run.runbook})"
    if waiting:
        head = (
            "Decision needed after a restart: " if gate.recovery else "Approval needed: "
        ) + what
    else:
        head = f"{what}: {_outcome_text(state, gate)}"
    lines = [head, prompt]
    if waiting:
        who = (
            "anyone in the channel"
            if gate.open_to_all
            else md.people(gate.users, gate.groups, group_ids) or "nobody listed"
        )
        if gate.escalated and (gate.escalate_users or gate.escalate_groups):
            who += ", and (escalated) " + md.people(
                gate.escalate_users, gate.escalate_groups, group_ids
            )
        need = gate.min_approvals
        lines.append(f"Approvers: {who}; {need} approval{'s' if need != 1 else ''} needed in all")
    for d in gate.decisions[:10]:
        line = f"{md.identity(d.by)} {_VERBS.get(d.decision, d.decision)} at {when_text(d.at)}"
        if d.comment:
            line += f": {md.escape(md.truncate(d.comment, 200))}"
        lines.append(line)
    if waiting:
        remaining = max(gate.min_approvals - len(gate.approvals), 0)
        if remaining:
            lines.append(_still_needed(remaining))
        if gate.deadline:
            then = "approved" if gate.on_timeout == "approve" else "rejected"
            lines.append(f"Deadline: {when_text(gate.deadline)} (then {then})")
    return _text(md.truncate("\n".join(lines), 3900))


_VERBS = {"approve": "approved", "reject": "rejected", "skip": "chose skip"}


def _outcome_text(state: StepState, gate: GateState) -> str:
    """How an ended gate ended, in plain words (for ``text``)."""
    outcome = state.outcome
    if outcome is Outcome.APPROVED:
        by = [md.identity(d.by) for d in gate.approvals]
        if not by:
            return f"approved automatically at the deadline ({when_text(gate.deadline)})"
        return f"approved by {', '.join(by)}"
    if outcome is Outcome.REJECTED:
        by = [md.identity(d.by) for d in gate.decisions if d.decision == "reject"]
        return f"rejected by {', '.join(by) or 'someone'}"
    if outcome is Outcome.EXPIRED:
        return f"expired at {when_text(gate.deadline)}: nobody decided in time"
    if outcome is Outcome.CANCELLED:
        return "cancelled" + (f" ({md.escape(state.reason)})" if state.reason else "")
    if outcome is Outcome.SKIPPED:
        return "skipped: the step was marked skipped and the run went on"
    if outcome is Outcome.FAILED:
        return f"failed: {md.escape(md.truncate(state.error or '', 300))}"
    if gate.recovery and not gate.open:
        return "run again: the step was started again"
    return str(outcome or "decided")


def _confirm(title: str, text: str, yes: str, style: str | None = None) -> dict[str, Any]:
    confirm: dict[str, Any] = {
        "title": plain(title, 100),
        "text": {"type": "mrkdwn", "text": md.truncate(text, 300)},
        "confirm": plain(yes, 30),
        "deny": plain("Cancel", 30),
    }
    if style:
        confirm["style"] = style
    return confirm


def _buttons(run_id: str, sid: str, step_title: str, gate: GateState) -> Block:
    value = gate_value(run_id, sid)
    what = f"*{md.escape(md.truncate(step_title, 120))}* in run `{run_id}`"
    approve_label = "Approve: run again" if gate.recovery else "Approve"
    elements: list[dict[str, Any]] = [
        {
            "type": "button",
            "action_id": ActionId.APPROVE.value,
            "text": plain(approve_label),
            "style": "primary",
            "value": value,
            "confirm": _confirm(
                f"{approve_label}?", f"{approve_label} {what}?", approve_label, "primary"
            ),
        },
        {
            "type": "button",
            "action_id": ActionId.REJECT.value,
            "text": plain("Reject: fail it" if gate.recovery else "Reject"),
            "style": "danger",
            "value": value,
            "confirm": _confirm(
                "Reject?", f"Reject {what}? This ends the step.", "Reject", "danger"
            ),
        },
    ]
    if gate.recovery:
        elements.append(
            {
                "type": "button",
                "action_id": ActionId.SKIP.value,
                "text": plain("Skip"),
                "value": value,
                "confirm": _confirm("Skip?", f"Mark {what} skipped and go on?", "Skip"),
            }
        )
    return {"type": "actions", "block_id": f"gate:{sid}", "elements": elements}


def escalation_notice(
    run: RunState, view: RunView, sid: str, gate: GateState, group_ids: Mapping[str, str]
) -> Message:
    """The thread message that brings the escalation people in."""
    who = md.people(gate.escalate_users, gate.escalate_groups, group_ids) or "the escalation group"
    title = md.escape(view.step_title(sid))
    text = (
        f":rotating_light: {who}: *{title}* (run `{run.id}`) has waited since "
        f"{md.date(gate.requested_at)} with no decision. You may decide it now."
    )
    plain = (
        f"Escalated: {who}: {view.step_title(sid)} (run {run.id}) has waited since "
        f"{when_text(gate.requested_at)} with no decision; you may decide it now"
    )
    return Message(_text(plain), [section(text)])
