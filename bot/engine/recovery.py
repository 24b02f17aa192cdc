"""Cancellation wind-down, compensation, and recovery of steps a crash interrupted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.engine import execute, gates
from bot.engine.context import build_context
from bot.engine.execute import NO_RETRY
from bot.engine.followup import FollowUp
from bot.engine.plan import RunbookPlan, compensation_order
from bot.engine.state import RunState
from bot.engine.steps import CallPlan, CallStopped, StepFailure, for_each_items, render_args
from bot.runbook.model import CallStep, NotifyStep

if TYPE_CHECKING:
    from bot.engine.engine import Engine, _Live


async def wind_down(engine: Engine, run: RunState) -> None:
    """After a cancel: close what is open, compensate, finish."""
    live = engine.live_of(run.id)
    if run.ended or live.finishing:
        return
    live.finishing = True
    txn = engine.begin()
    changed = []
    for sid in [s for s, task in live.tasks.items() if task.done()]:
        del live.tasks[sid]  # cancelled before it ever ran: its own handler never did
    for sid in run.step_ids:
        state = run.steps[sid]
        if state.running and sid not in live.tasks:
            txn.add(engine.event(run, "step.cancelled", step=sid, data={"reason": "run cancelled"}))
        elif state.waiting:
            gates.close_in(engine, run, sid, txn, "step.cancelled", {"reason": "run cancelled"})
            changed.append(sid)
    await engine.commit(txn)
    await engine.follow(run, FollowUp(changed_gates=changed, compensate=True))


async def compensate(engine: Engine, run: RunState) -> bool:
    """Run the compensations due, last step first; False when stopping cut them short.

    Once the engine is stopping no further compensation starts; the rest run
    after the next start (a restart finds them in ``compensation_order``).
    """
    plan = engine.plan_of(run)
    for sid in compensation_order(run, plan):
        step = plan.steps[sid].step
        assert isinstance(step, CallStep) and step.compensate is not None
        state = run.steps[sid]
        targets: list[tuple[int | None, Any]] = [(None, None)]
        if step.for_each is not None and isinstance(state.output, list):
            try:
                source = for_each_items(step.for_each, build_context(run))
            except StepFailure:
                source = []
            targets = [
                (i, source[i] if i < len(source) else None)
                for i in reversed(range(len(state.output)))
            ]
        for index, item in targets:
            if index is not None and index in state.compensated_items:
                continue
            if engine.stopping:
                return False
            if not await compensate_one(engine, run, sid, step, index, item):
                return False
    return True


async def compensate_one(
    engine: Engine, run: RunState, sid: str, step: CallStep, index: int | None, item: Any
) -> bool:
    """Run one compensation to its end; False when stopping paused it between two attempts.

    A pause is recorded ``compensation.paused``: nothing was in flight, so the
    next start runs the compensation again (no "interrupted by a restart").
    """
    comp = step.compensate
    assert comp is not None
    extra = {"item": item, "index": index} if index is not None else {}
    data: dict[str, Any] = {"uses": comp.uses}
    if index is not None:
        data["item"] = index
    await engine.record(run, "compensation.started", step=sid, data=data)
    context = build_context(run, **extra)
    try:
        spec = engine.actions.lookup(comp.uses)
        args = render_args(comp.with_, context)
        if engine.dry_run and spec.mutating:
            await execute.dry_call(engine, run, sid, spec, args)
            output: Any = None
        else:
            suffix = f":{index}" if index is not None else ""
            call = CallPlan(
                ref=comp.uses,
                spec=spec,
                args=args,
                timeout=comp.timeout,
                retry=comp.retry or NO_RETRY,
                until=None,
                poll=None,
                run_id=run.id,
                step_id=sid,
                idempotency_key=f"{run.id}:{sid}:compensate{suffix}",
            )

            async def quiet(attempt: int, error: str, delay: float) -> None:
                return None

            output, _ = await engine.calls.attempts(
                call, first_attempt=1, context=context, on_retry=quiet
            )
    except CallStopped:
        # between two attempts (a retry wait), with nothing in flight
        reason = "the engine is stopping"
        await engine.record(run, "compensation.paused", step=sid, data={**data, "reason": reason})
        return False
    except (StepFailure, LookupError) as exc:
        message = exc.message if isinstance(exc, StepFailure) else str(exc)
        await engine.record(run, "compensation.failed", step=sid, data={**data, "error": message})
        return True
    await engine.record(run, "compensation.succeeded", step=sid, data={**data, "output": output})
    return True


# -- crash recovery ----------------------------------------------------------------------


async def recover_interrupted(
    engine: Engine, run: RunState, plan: RunbookPlan, live: _Live
) -> None:
    """Steps running when the process died: run again if safe, else ask a person."""
    for sid in plan.order:
        state = run.steps[sid]
        if not state.running or sid in live.tasks:
            continue
        step = plan.steps[sid].step
        safe = True
        if isinstance(step, CallStep):
            try:
                safe = engine.actions.lookup(step.uses).safe_to_repeat
            except LookupError:
                safe = False
        if state.between_attempts or safe or isinstance(step, NotifyStep):
            engine.spawn_step(run, sid, recorded=False)
        else:
            txn = engine.begin()
            gates.request_recovery(engine, run, plan, sid, txn)
            await engine.commit(txn)
            await gates.post(engine, run, sid)


async def recover_compensations(engine: Engine, run: RunState, plan: RunbookPlan) -> None:
    """Compensations a crash interrupted: a safe one simply runs again with the rest;
    an unsafe one is recorded failed (a person must check it), never repeated."""
    for sid in plan.order:
        if run.steps[sid].compensation == "started":
            await recover_compensation(engine, run, plan, sid)


async def recover_compensation(engine: Engine, run: RunState, plan: RunbookPlan, sid: str) -> None:
    step = plan.steps[sid].step
    assert isinstance(step, CallStep) and step.compensate is not None
    try:
        safe = engine.actions.lookup(step.compensate.uses).safe_to_repeat
    except LookupError:
        safe = False
    if not safe:
        data: dict[str, Any] = {
            "uses": step.compensate.uses,
            "error": f"interrupted by a restart; not repeated because "
            f"{step.compensate.uses} is not idempotent — check it by hand",
        }
        item = run.steps[sid].compensating_item
        if item is not None:
            data["item"] = item
        await engine.record(run, "compensation.failed", step=sid, data=data)
