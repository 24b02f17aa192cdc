"""Advancing a run: decide every step that can be decided now, in one transaction.

Synchronous on purpose: the records it adds are applied at once and made
durable by the caller's commit before anything acts on them, and nothing
else in the process runs in between (see :mod:`bot.engine.engine`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bot.engine import gates
from bot.engine.clock import parse_iso
from bot.engine.context import build_context
from bot.engine.followup import FollowUp
from bot.engine.plan import Action, RunbookPlan, compensation_order, final_status
from bot.engine.ports import Transaction
from bot.engine.state import RunState, RunStatus
from bot.runbook.model import ApprovalStep, CallStep
from bot.runbook.templates import evaluate

if TYPE_CHECKING:
    from bot.engine.engine import Engine, _Live


def advance(
    engine: Engine, run: RunState, txn: Transaction, changed: Iterable[str] | None = None
) -> FollowUp:
    """Decide every step that can be decided now; add their records to ``txn``.

    Synchronous on purpose: see the module docstring.
    """
    follow = FollowUp()
    live = engine.live_of(run.id)
    if run.ended or run.cancelled_by is not None or live.finishing:
        return follow
    plan = engine.plan_of(run)
    if engine.stopping:
        return _while_stopping(engine, run, txn, follow, plan, live)
    if live.recheck or changed is None:
        live.recheck = False
        candidates = [sid for sid in plan.order if undecided(engine, run, live, sid)]
    else:
        changed = list(changed)
        # a step handed back by a recovery gate is itself to be decided again
        again = [sid for sid in changed if undecided(engine, run, live, sid)]
        candidates = sorted(
            {*dependents(plan, run, live, changed, engine), *again},
            key=lambda sid: plan.steps[sid].index,
        )
    while True:
        while candidates:
            newly: list[str] = []
            for sid in candidates:
                if not undecided(engine, run, live, sid):
                    continue
                decision = plan.decide(run, sid, lambda expr: evaluate(expr, build_context(run)))
                if decision is None:
                    continue
                if decision.action is Action.SKIP:
                    txn.add(
                        engine.event(
                            run, "step.skipped", step=sid, data={"reason": decision.reason}
                        )
                    )
                    newly.append(sid)
                elif decision.action is Action.FAIL:
                    txn.add(engine.failed_event(run, plan, sid, decision.reason or "failed", 0))
                    newly.append(sid)
                elif isinstance(plan.steps[sid].step, ApprovalStep):
                    if gates.request(engine, run, plan, sid, txn):
                        follow.gates.append(sid)
                    if run.steps[sid].ended:
                        newly.append(sid)
                else:
                    step = plan.steps[sid].step
                    uses = step.uses if isinstance(step, CallStep) else "notify"
                    txn.add(
                        engine.event(
                            run,
                            "step.started",
                            step=sid,
                            data={
                                "attempt": run.steps[sid].attempts + 1,
                                "uses": uses,
                                "idempotency_key": f"{run.id}:{sid}",
                            },
                        )
                    )
                    follow.spawn.append(sid)
            if _failure_seen(engine, run, plan, live, txn, follow):
                candidates = [sid for sid in plan.order if undecided(engine, run, live, sid)]
                continue
            candidates = dependents(plan, run, live, newly, engine) if newly else []
        # a failure recorded by a step that nothing depends on still ends the waiting
        # gates, and what depended on them is decided again
        if not _failure_seen(engine, run, plan, live, txn, follow):
            break
        candidates = [sid for sid in plan.order if undecided(engine, run, live, sid)]
    return _settle(engine, run, txn, follow, plan, live)


def _while_stopping(
    engine: Engine,
    run: RunState,
    txn: Transaction,
    follow: FollowUp,
    plan: RunbookPlan,
    live: _Live,
) -> FollowUp:
    """While the engine stops, nothing starts; a run with nothing left to do still finishes.

    Steps not yet decided stay so: the next start decides them (``recheck``).
    """
    live.recheck = True
    if run.running_count or run.waiting_count:
        return follow
    if any(undecided(engine, run, live, sid) for sid in plan.order):
        return follow
    if (run.failure or run.cancelled_by is not None) and compensation_order(run, plan):
        return follow  # compensations are calls: they run after the restart
    finish_in(engine, run, txn)
    follow.finished = True
    return follow


def _failure_seen(
    engine: Engine,
    run: RunState,
    plan: RunbookPlan,
    live: _Live,
    txn: Transaction,
    follow: FollowUp,
) -> bool:
    """On the run's first failure, end the gates that wait and are not failure handlers.

    Nobody should have to answer a question whose run has already failed before
    its compensations can run. True when the failure was new.
    """
    if not run.failure or live.failure_seen:
        return False
    live.failure_seen = True
    for sid in run.waiting_gates:
        if not plan.steps[sid].failure_handler:
            gates.close_in(
                engine, run, sid, txn, "step.cancelled", {"reason": "an earlier step failed"}
            )
            follow.changed_gates.append(sid)
    return True


def _settle(
    engine: Engine,
    run: RunState,
    txn: Transaction,
    follow: FollowUp,
    plan: RunbookPlan,
    live: _Live,
) -> FollowUp:
    """Compensate or finish when nothing runs, waits or is about to start."""
    if run.running_count == 0 and run.waiting_count == 0 and not follow.spawn:
        if (run.failure or run.cancelled_by is not None) and compensation_order(run, plan):
            follow.compensate = True
            live.finishing = True
        else:
            finish_in(engine, run, txn)
            follow.finished = True
    return follow


def undecided(engine: Engine, run: RunState, live: _Live, sid: str) -> bool:
    state = run.steps[sid]
    if state.outcome is not None or state.running or state.waiting:
        return False
    return sid not in live.tasks


def finish_in(engine: Engine, run: RunState, txn: Transaction, error: str | None = None) -> None:
    status = RunStatus.FAILED if error else final_status(run)
    data: dict[str, Any] = {"status": str(status)}
    if error:
        data["error"] = error
    data["duration"] = round((engine.clock.now() - parse_iso(run.started_at)).total_seconds(), 3)
    txn.add(engine.event(run, "run.finished", data=data))


def dependents(
    plan: RunbookPlan, run: RunState, live: _Live, changed: Iterable[str], engine: Engine
) -> list[str]:
    ids = {dep for sid in changed for dep in plan.steps[sid].dependents}
    return sorted(
        (sid for sid in ids if undecided(engine, run, live, sid)),
        key=lambda sid: plan.steps[sid].index,
    )
