"""Cancelling runs, and who may: the requester, the people in ``run_by``, the approvers."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from bot.engine import recovery
from bot.engine.state import RunState
from bot.errors import ConflictError, NotFoundError, PermissionDenied
from bot.runbook.model import ApprovalStep, Who

if TYPE_CHECKING:
    from bot.engine.engine import Engine


async def cancel(engine: Engine, run_id: str, identity: str) -> RunState:
    """Cancel a run (``Engine.cancel``): running steps are cancelled, then compensations run.

    Raises:
        NotFoundError: unknown run.
        ConflictError: the run already ended, or is a sandbox run in a process
            without the sandbox (or the other way round).
        PermissionDenied: not the requester, someone in run_by, or an approver.
    """
    await engine.sync()  # answer only from durable state
    run = engine.store.get_run(run_id)
    if run is None:
        raise NotFoundError(f"unknown run {run_id}", kind="run", key=run_id)
    if run.ended:
        raise ConflictError(f"run {run_id} already ended ({run.status})")
    engine.check_not_foreign(run)  # its compensations would call the wrong vendors
    if not await may_cancel(engine, run, identity):
        raise PermissionDenied(
            f"{identity} may not cancel run {run_id} (only its requester, the people in "
            "run_by and its approvers may)"
        )
    if run.cancelled_by is None:
        await engine.record(run, "run.cancelled", actor=identity, data={"reason": "cancelled"})
    if run_id in engine.queue:
        engine.queue.remove(run_id)
    live = engine.live_of(run_id)
    live.admitted = True
    live.busy += 1
    try:
        tasks = list(live.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await recovery.wind_down(engine, run)
    finally:
        live.busy -= 1
        engine.update_settled(run)
    return run


async def may_cancel(engine: Engine, run: RunState, identity: str) -> bool:
    """Requester, people in run_by (anyone if unset), and the approvers of its gates."""
    if identity == run.requester:
        return True
    runbook = engine.catalog.definition(run.digest, run.runbook)
    if runbook.run_by is None or await matches(engine, identity, runbook.run_by):
        return True
    for step in runbook.steps:
        if isinstance(step, ApprovalStep):
            who = step.approval.approvers
            if who is None or await matches(engine, identity, who):
                return True
    return False


async def matches(engine: Engine, identity: str, who: Who) -> bool:
    """Whether ``identity`` is one of ``who`` (users, or a member of its groups)."""
    from bot.engine.approvals import listed

    if listed(identity, who.users):
        return True
    if who.groups:
        return bool(await engine.groups.groups_of(identity, who.groups))
    return False
