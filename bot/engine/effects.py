"""Acting on a durable transaction: spawn steps, post gates, compensate, announce."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from bot.engine import gates, recovery
from bot.engine.advance import finish_in
from bot.engine.followup import FollowUp
from bot.engine.state import RunState
from bot.errors import ChatError, RunbookBotError

if TYPE_CHECKING:
    from bot.engine.engine import Engine

log = logging.getLogger("runbook.engine")


async def follow(engine: Engine, run: RunState, follow: FollowUp) -> None:
    """Act on a durable transaction: spawn steps, post gates, compensate, announce."""
    current = asyncio.current_task()
    if current is not None:  # compensations may run here: Engine.close waits for them
        engine.following.add(current)
    try:
        await _follow(engine, run, follow)
    finally:
        if current is not None:
            engine.following.discard(current)


async def _follow(engine: Engine, run: RunState, follow: FollowUp) -> None:
    live = engine.live_of(run.id)
    if run.cancelled_by is None:  # after a cancel, started steps are wound down instead
        for sid in follow.spawn:
            engine.spawn_step(run, sid, recorded=True)
    live.busy += 1
    try:
        for sid in follow.changed_gates:
            engine.timers.disarm(f"{run.id}:{sid}:deadline")
            engine.timers.disarm(f"{run.id}:{sid}:escalate")
            with contextlib.suppress(ChatError):
                await engine.chat.gate_changed(run, sid, engine.view(run))
        for sid in follow.gates:
            gates.arm_timers(engine, run, sid)
            await gates.post(engine, run, sid)
        if follow.compensate:
            if not await recovery.compensate(engine, run):
                return  # stopping: the remaining compensations run after the next start
            txn = engine.begin()
            finish_in(engine, run, txn)
            await engine.commit(txn)
            follow.finished = True
        if follow.finished:
            for sid in run.step_ids:
                engine.timers.disarm(f"{run.id}:{sid}:deadline")
                engine.timers.disarm(f"{run.id}:{sid}:escalate")
            with contextlib.suppress(ChatError, RunbookBotError):
                await engine.chat.run_finished(run, engine.view(run))
        elif run.waiting_count and not run.running_count and not live.tasks:
            await chat_progress(engine, run)
    finally:
        live.busy -= 1
        engine.update_settled(run)


async def chat_started(engine: Engine, run: RunState) -> None:
    try:
        ref = await engine.chat.run_started(run, engine.view(run))
    except ChatError as exc:
        log.warning("run %s: could not post the run's thread: %s", run.id, exc)
        return
    if ref:
        await engine.record(run, "chat.posted", data={"purpose": "thread", **ref})
        # The status message comes first in the thread, before any approval or notice;
        # from here on it is only edited.
        await chat_progress(engine, run)


async def chat_progress(engine: Engine, run: RunState) -> None:
    try:
        ref = await engine.chat.run_progress(run, engine.view(run))
    except ChatError as exc:
        log.warning("run %s: could not update its status message: %s", run.id, exc)
        return
    if ref and run.status_message is None:
        await engine.record(run, "chat.posted", data={"purpose": "status", **ref})
