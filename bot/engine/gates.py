"""Approval gates: requesting, deciding, expiring and escalating them durably.

Eligibility is decided here, on the server, from the identity of the person
answering (never from message text or button values). Deadlines and
escalations are stored with the gate and re-armed after a restart.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bot.engine.approvals import Verdict, check_decision, gate_groups, needs_groups
from bot.engine.clock import iso, parse_iso
from bot.engine.context import build_context, gate_output
from bot.engine.ports import Transaction
from bot.engine.state import GateState, RunState
from bot.errors import ChatError, InputError, NotFoundError
from bot.runbook.inputs import coerce_value
from bot.runbook.model import ApprovalStep, CallStep, InputSpec
from bot.runbook.templates import TemplateError, escape_markup, render_string

if TYPE_CHECKING:
    from bot.engine.engine import Engine
    from bot.engine.followup import FollowUp
    from bot.engine.plan import RunbookPlan

log = logging.getLogger("runbook.gates")


@dataclass(frozen=True, slots=True)
class DecisionResult:
    """What became of a decision.

    Attributes:
        verdict: accepted, refused (audited) or not waiting.
        reason: why (for a private answer).
        gate_open: the gate still waits (quorum not reached).
        approvals: distinct approvals so far; required: the quorum.
        outcome: the gate's outcome once it ended.
        run: the run.
    """

    verdict: Verdict
    reason: str
    gate_open: bool
    approvals: int
    required: int
    outcome: str | None
    run: RunState


def request(engine: Engine, run: RunState, plan: RunbookPlan, sid: str, txn: Transaction) -> bool:
    """Add ``approval.requested`` to the transaction; True when it must be posted."""
    step = plan.steps[sid].step
    assert isinstance(step, ApprovalStep)
    spec = step.approval
    try:
        context = build_context(run)
        prompt = str(render_string(spec.prompt, context))
        # For chat markup: the author's formatting is kept, links and mentions in data are not.
        markup_prompt = str(render_string(spec.prompt, context, escape=escape_markup))
    except TemplateError as exc:
        txn.add(engine.failed_event(run, plan, sid, f"prompt: {exc.message}", 0))
        return False
    if engine.dry_run:
        txn.add(
            engine.event(
                run, "approval.requested", step=sid, data={"prompt": prompt, "dry_run": True}
            )
        )
        output = gate_output([], "approve", iso(engine.clock.now()))
        output["decided_by"] = ["dry-run"]
        txn.add(engine.event(run, "step.approved", step=sid, data={"output": output}))
        return False
    now = engine.clock.now()
    view = engine.view(run)
    data: dict[str, Any] = {
        "prompt": prompt,
        "markup_prompt": markup_prompt,
        "title": view.step_title(sid),
        "channel": spec.channel or view.channel,
        "users": list(spec.approvers.users) if spec.approvers else [],
        "groups": list(spec.approvers.groups) if spec.approvers else [],
        "open_to_all": spec.approvers is None,
        "min_approvals": spec.min_approvals,
        "allow_requester": spec.allow_requester,
        "deadline": iso(now + timedelta(seconds=spec.timeout)) if spec.timeout else None,
        "on_timeout": spec.on_timeout,
        "escalate_at": iso(now + timedelta(seconds=spec.escalate.after)) if spec.escalate else None,
        "escalate_users": list(spec.escalate.to.users) if spec.escalate else [],
        "escalate_groups": list(spec.escalate.to.groups) if spec.escalate else [],
        "fields": {
            name: field.model_dump(mode="json", exclude_unset=True)
            for name, field in spec.fields.items()
        },
    }
    txn.add(engine.event(run, "approval.requested", step=sid, data=data))
    return True


def request_recovery(
    engine: Engine, run: RunState, plan: RunbookPlan, sid: str, txn: Transaction
) -> None:
    """Ask a person what to do with a mutating step that a crash interrupted."""
    step = plan.steps[sid].step
    uses = step.uses if isinstance(step, CallStep) else "step"
    who = plan.runbook.run_by
    view = engine.view(run)
    data: dict[str, Any] = {
        "prompt": (
            f"Step *{sid}* (`{uses}`) was interrupted by a restart while it ran. It changes "
            "the outside world and may or may not have taken effect. Approve to run it again, "
            "Skip to mark it skipped and go on, Reject to fail it."
        ),
        "title": f"Recovery: {view.step_title(sid)}",
        "channel": view.channel,
        "users": list(who.users) if who else [],
        "groups": list(who.groups) if who else [],
        "open_to_all": who is None,
        "min_approvals": 1,
        "allow_requester": True,
        "deadline": None,
        "on_timeout": "reject",
        "recovery": True,
        "fields": {},
    }
    txn.add(engine.event(run, "approval.requested", step=sid, data=data))


async def post(engine: Engine, run: RunState, sid: str) -> None:
    """Post a requested gate to chat; a chat error fails the step (clearly, in the audit log)."""
    try:
        ref = await engine.chat.gate_opened(run, sid, engine.view(run))
    except ChatError as exc:
        if run.steps[sid].waiting:
            follow = await close_and_advance(
                engine,
                run,
                sid,
                "step.failed",
                {
                    "error": f"could not post the approval request: {exc}",
                    "continue_on_error": False,
                },
            )
            await engine.follow(run, follow)
        return
    if ref and run.steps[sid].waiting:
        await engine.record(run, "chat.posted", step=sid, data={"purpose": "gate", **ref})


def arm_timers(engine: Engine, run: RunState, sid: str) -> None:
    gate = run.steps[sid].gate
    if gate is None or not gate.open:
        return
    if gate.deadline:
        engine.timers.arm(
            f"{run.id}:{sid}:deadline", parse_iso(gate.deadline), lambda: _due(engine, run.id)
        )
    if gate.escalate_at and not gate.escalated:
        engine.timers.arm(
            f"{run.id}:{sid}:escalate", parse_iso(gate.escalate_at), lambda: _due(engine, run.id)
        )


async def _due(engine: Engine, run_id: str) -> None:
    run = engine.store.world.runs.get(run_id)
    if run is not None and not run.ended:
        await fire_due(engine, run)


async def fire_due(engine: Engine, run: RunState) -> None:
    """Escalate and expire gates whose time has come."""
    now = iso(engine.clock.now())
    for sid in list(run.waiting_gates):
        gate = run.steps[sid].gate
        if gate is None or not run.steps[sid].waiting:
            continue  # an earlier gate's end in this pass closed it
        if gate.escalate_at and not gate.escalated and gate.escalate_at <= now:
            await engine.record(
                run,
                "approval.escalated",
                step=sid,
                data={"users": gate.escalate_users, "groups": gate.escalate_groups},
            )
            engine.timers.disarm(f"{run.id}:{sid}:escalate")
            with contextlib.suppress(ChatError):
                await engine.chat.gate_escalated(run, sid, engine.view(run))
        if gate.deadline and gate.deadline <= now and run.steps[sid].waiting:
            txn = engine.begin()
            txn.add(
                engine.event(
                    run,
                    "approval.expired",
                    step=sid,
                    data={"on_timeout": gate.on_timeout, "deadline": gate.deadline},
                )
            )
            if gate.on_timeout == "approve":
                output = gate_output([], "approve", now)
                close_in(engine, run, sid, txn, "step.approved", {"output": output})
            else:
                output = gate_output([], "expired", now)
                close_in(engine, run, sid, txn, "step.expired", {"output": output})
            follow = engine.advance(run, txn, changed=[sid])
            follow.changed_gates.append(sid)
            await engine.commit(txn)
            await engine.follow(run, follow)


def close_in(
    engine: Engine, run: RunState, sid: str, txn: Transaction, event: str, data: dict[str, Any]
) -> None:
    """Add a gate's outcome record to a transaction."""
    txn.add(engine.event(run, event, step=sid, data=data))


async def close_and_advance(
    engine: Engine,
    run: RunState,
    sid: str,
    event: str,
    data: dict[str, Any],
    txn: Transaction | None = None,
) -> FollowUp:
    """End a gate and advance the run in one transaction (commits it)."""
    txn = txn or engine.begin()
    close_in(engine, run, sid, txn, event, data)
    follow = engine.advance(run, txn, changed=[sid])
    follow.changed_gates.append(sid)
    await engine.commit(txn)
    return follow


def _check_fields(gate_fields: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in given:
        if name not in gate_fields:
            raise InputError(f"field {name!r} is not asked by this gate", input_name=name)
    for name, raw_spec in gate_fields.items():
        spec = InputSpec.model_validate(raw_spec)
        if name in given and given[name] not in (None, ""):
            try:
                values[name] = coerce_value(
                    name, spec, given[name], from_text=isinstance(given[name], str)
                )
            except InputError as exc:  # the same rules as inputs, said of a field
                message = str(exc).replace(f"input {name!r}", f"field {name!r}", 1)
                raise InputError(message, input_name=name) from None
        elif spec.has_default:
            values[name] = spec.default
        elif spec.required is True:
            raise InputError(f"field {name!r} is required", input_name=name)
    return values


async def membership(engine: Engine, gate: GateState, identity: str) -> tuple[set[str], str | None]:
    """The gate's groups the person is in, asked only when ``users`` do not already
    settle it; and why membership could not be determined (None when it could).

    A group look-up that fails is not an error of the decision: the person is
    judged on what is known (and refused, audited, if that is not enough).
    """
    if not gate.open or not needs_groups(gate, identity):
        return set(), None
    try:
        return await engine.groups.groups_of(identity, gate_groups(gate)), None
    except ChatError as exc:
        log.warning("cannot check the groups of %s: %s", identity, exc)
        return set(), exc.code or str(exc)


async def decide(
    engine: Engine,
    run_id: str,
    sid: str,
    identity: str,
    decision: str,
    comment: str | None,
    fields: Mapping[str, Any] | None,
) -> DecisionResult:
    """One person's decision. Refusals are audited; accepted ones may end the gate.

    Raises:
        NotFoundError: unknown run, or a step the run does not have.
        InputError: approval fields that do not fit.
    """
    await engine.sync()  # answer only from durable state
    run = engine.store.get_run(run_id)
    if run is None:
        raise NotFoundError(f"unknown run {run_id}", kind="run", key=run_id)
    if sid not in run.steps:
        raise NotFoundError(f"run {run_id} has no step {sid!r}", kind="step", key=sid)
    state = run.steps[sid]
    if not run.ended and state.waiting:
        await fire_due(engine, run)
    gate = state.gate
    if gate is None:
        ended = f" (it {state.outcome})" if state.outcome else ""
        return DecisionResult(
            Verdict.NOT_WAITING,
            f"step {sid!r} is not waiting for a decision{ended}",
            False,
            0,
            0,
            _outcome(state),
            run,
        )
    member_of, unknown = await membership(engine, gate, identity)
    check = check_decision(
        gate,
        identity=identity,
        requester=run.requester,
        decision=decision,
        member_of=member_of,
        groups_unknown=unknown,
    )
    if check.verdict is Verdict.NOT_WAITING:
        reason = f"step {sid!r} is no longer waiting (it ended {state.outcome})"
        if not run.ended:
            await engine.record(
                run,
                "approval.refused",
                step=sid,
                actor=identity,
                data={"decision": decision, "reason": reason},
            )
        return DecisionResult(
            Verdict.NOT_WAITING,
            reason,
            False,
            len(gate.approvals),
            gate.min_approvals,
            _outcome(state),
            run,
        )
    if check.verdict is Verdict.REFUSED:
        await engine.record(
            run,
            "approval.refused",
            step=sid,
            actor=identity,
            data={"decision": decision, "reason": check.reason},
        )
        return DecisionResult(
            Verdict.REFUSED, check.reason, True, len(gate.approvals), gate.min_approvals, None, run
        )
    values = (
        _check_fields(gate.fields, fields or {}) if decision == "approve" else dict(fields or {})
    )
    txn = engine.begin()
    txn.add(
        engine.event(
            run,
            "approval.decided",
            step=sid,
            actor=identity,
            data={
                "decision": decision,
                "comment": comment,
                "fields": values,
                "approvals": check.approvals,
                "required": gate.min_approvals,
            },
        )
    )
    if not check.ends_gate:
        await engine.commit(txn)
        with contextlib.suppress(ChatError):
            await engine.chat.gate_changed(run, sid, engine.view(run))
        return DecisionResult(
            Verdict.ACCEPTED, "", True, check.approvals, gate.min_approvals, None, run
        )
    now = iso(engine.clock.now())
    data: dict[str, Any]
    if gate.recovery:
        if decision == "approve":
            event, data = "step.resumed", {"decision": "retry", "by": identity}
        elif decision == "skip":
            event, data = (
                "step.skipped",
                {"reason": f"skipped by {identity} after a restart", "passed_over": True},
            )
        else:
            event, data = (
                "step.failed",
                {
                    "error": f"failed by {identity} after a restart interrupted it",
                    "continue_on_error": False,
                },
            )
    elif decision == "approve":
        event, data = "step.approved", {"output": gate_output(gate.approvals, "approve", now)}
    else:
        rejecting = [d for d in gate.decisions if d.by == identity]
        event, data = "step.rejected", {"output": gate_output(rejecting, "reject", now)}
    follow = await close_and_advance(engine, run, sid, event, data, txn)
    await engine.follow(run, follow)
    return DecisionResult(
        Verdict.ACCEPTED,
        "",
        False,
        check.approvals,
        gate.min_approvals,
        _outcome(run.steps[sid]),
        run,
    )


def _outcome(state: Any) -> str | None:
    return str(state.outcome) if state.outcome else None
