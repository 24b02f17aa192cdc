"""Storm control: which queued runs may start now (pure decision plus the engine's bookkeeping).

Runs start in arrival order within a global limit (``RUNBOOK_MAX_CONCURRENT_RUNS``)
and a per-runbook ``max_concurrent``; runs waiting at a gate hold no slot. A
``concurrency_key`` is held by every admitted unfinished run, so two runs
never act on the same host at once; later runs with a held key keep their order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.engine.state import RunState
from bot.errors import RunbookBotError

if TYPE_CHECKING:
    from bot.engine.engine import Engine


def admit(
    engine: Engine,
) -> None:
    """Start queued runs in arrival order, within the global and per-runbook limits.

    Runs waiting at a gate hold no slot; a concurrency key is held by every
    admitted unfinished run, and later runs with a held key keep their order.
    """
    if not engine.accepting or not engine.queue:
        return
    world = engine.store.world
    executing = 0
    by_runbook: dict[str, int] = {}
    keys: set[str] = set()
    for rid, live in engine.live.items():
        run = world.runs.get(rid)
        if run is None or run.ended or not live.admitted:
            continue
        if run.concurrency_key is not None:
            keys.add(run.concurrency_key)
        if not live.settled.is_set():
            executing += 1
            by_runbook[run.runbook] = by_runbook.get(run.runbook, 0) + 1
    remaining: list[str] = []
    queue = engine.queue
    for position, rid in enumerate(queue):
        if executing >= engine.max_concurrent_runs:
            # Nothing more can start now: the rest keep their places, unscanned, so a
            # storm of queued runs costs O(admitted) per admission, not O(queue).
            remaining.extend(queue[position:])
            break
        run = world.runs.get(rid)
        if run is None or run.ended:
            continue
        limit = runbook_limit(engine, run)
        blocked = (
            executing >= engine.max_concurrent_runs
            or (limit is not None and by_runbook.get(run.runbook, 0) >= limit)
            or (run.concurrency_key is not None and run.concurrency_key in keys)
        )
        if run.concurrency_key is not None:
            keys.add(run.concurrency_key)
        if blocked:
            remaining.append(rid)
            continue
        executing += 1
        by_runbook[run.runbook] = by_runbook.get(run.runbook, 0) + 1
        live = engine.live_of(rid)
        live.admitted = True
        engine.spawn(engine.kick(run, recover=False), f"kick:{rid}")
    engine.queue = remaining


def runbook_limit(engine: Engine, run: RunState) -> int | None:
    try:
        return engine.catalog.definition(run.digest, run.runbook).max_concurrent
    except RunbookBotError:
        return None
