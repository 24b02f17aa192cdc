"""wait_settled waits (it yields) while a decision's follow-up is still in progress."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.engine.harness import make_engine

RB = """
name: g
steps:
  - id: gate
    approval: {prompt: "ok?", approvers: {users: [alice]}}
  - id: after
    uses: core.sleep
    with: {seconds: 5}
"""


async def test_wait_settled_waits_instead_of_spinning(tmp_path: Path) -> None:
    h = make_engine(RB, data_dir=tmp_path)
    run = await h.start("g")
    assert run.status == "waiting"
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_gate_changed(run: Any, sid: str, view: Any) -> None:
        entered.set()  # a real chat adapter awaits an HTTP call here
        await release.wait()

    h.chat.gate_changed = slow_gate_changed  # type: ignore[method-assign]
    calls = {"n": 0}
    original = h.engine.is_settled

    def counting(r: Any) -> bool:
        calls["n"] += 1
        return original(r)

    h.engine.is_settled = counting  # type: ignore[method-assign]
    decision = asyncio.create_task(h.engine.decide(run.id, "gate", "cli:alice", "approve"))
    await entered.wait()  # the decision is inside its follow-up: 'after' runs
    waiter = asyncio.create_task(h.engine.wait_settled(run.id))
    for _ in range(50):
        await asyncio.sleep(0)
    assert not waiter.done()
    assert calls["n"] < 20  # it waits on the event instead of spinning
    release.set()
    await decision
    await h.clock.advance(5)
    run = await asyncio.wait_for(waiter, timeout=10)
    assert run.status == "succeeded"
    await h.close()
