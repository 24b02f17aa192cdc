"""A cancel that arrives while a step's end (which starts the next step) is being made
durable: the next step is cancelled, never left started without an end, and its call
never starts after the cancel."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.engine.harness import make_engine

RB = """
name: two
steps:
  - id: a
    uses: core.sleep
    with: {seconds: 1}
  - id: b
    uses: core.sleep
    with: {seconds: 100}
"""


@pytest.mark.parametrize("on_disk", [False, True])
async def test_cancel_while_a_step_end_commits(tmp_path: Path, on_disk: bool) -> None:
    h = make_engine(RB, data_dir=tmp_path if on_disk else None)
    engine = h.engine
    started = await engine.start_run("two", {}, requester="cli:carol")
    run_id = started.run.id
    await h.clock.advance(0)
    original = engine.step_ended
    cancelling: dict[str, asyncio.Task[Any]] = {}

    async def step_ended(run: Any, sid: str, event: dict[str, Any]) -> Any:
        if sid == "a":  # the cancel request arrives while a's end is being committed
            cancelling["task"] = asyncio.create_task(engine.cancel(run_id, "cli:carol"))
        return await original(run, sid, event)

    engine.step_ended = step_ended  # type: ignore[method-assign]
    await h.advance(1)
    await cancelling["task"]
    run = await h.settle(run_id)
    assert run.status == "cancelled"
    assert run.steps["a"].outcome == "succeeded"
    assert run.steps["b"].outcome == "cancelled"  # not started-but-never-ended
    assert h.clock.sleepers == 0  # b's call (a 100 s sleep) never started
    await h.close()
