"""Engine.close waits for compensations in progress (within the grace), then stops them
without a record; after a restart an interrupted non-idempotent compensation is recorded
as failed, never repeated."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

from connectors.base import ActionContext, ActionInput, Connector, action
from connectors.core import Core
from connectors.registry import ConnectorRegistry
from tests.engine.harness import make_engine


class Arg(ActionInput):
    key: str


class Tk(Connector):
    name = "tk"
    calls: ClassVar[list[str]] = []
    block: ClassVar[asyncio.Event | None] = None

    @action(input=Arg, mutating=True, idempotent=True)
    async def contain(self, ctx: ActionContext, args: Arg) -> dict[str, Any]:
        """Contain (idempotent)."""
        return {}

    @action(input=Arg, mutating=True, idempotent=False)
    async def unticket(self, ctx: ActionContext, args: Arg) -> dict[str, Any]:
        """Undo a ticket (not idempotent); blocks until released."""
        Tk.calls.append("unticket")
        assert Tk.block is not None
        await Tk.block.wait()
        return {}


REG = ConnectorRegistry({"core": Core, "tk": Tk})
RB = """
name: cx
steps:
  - id: t
    uses: tk.contain
    with: {key: x}
    compensate: {uses: tk.unticket, with: {key: x}}
  - id: boom
    uses: core.fail
    with: {message: boom}
"""


async def test_close_stops_a_compensation_in_progress_and_restart_does_not_repeat_it(
    tmp_path: Path,
) -> None:
    Tk.block = asyncio.Event()
    Tk.calls = []
    h = make_engine(RB, data_dir=tmp_path, registry=REG)
    started = await h.engine.start_run("cx", {}, requester="cli:carol")
    await h.clock.advance(0)
    assert Tk.calls == ["unticket"]  # compensating, blocked mid-call
    await h.engine.close(grace=0)
    assert all(task.done() for task in h.engine.following)  # nothing left running
    await h.store.close()

    Tk.calls = []
    Tk.block.set()
    h2 = make_engine(RB, data_dir=tmp_path, registry=REG)
    h2.clock._now = h.clock.now()
    await h2.engine.start(resume=True)
    run = await h2.settle(started.run.id)
    assert run.status == "failed"
    assert Tk.calls == []  # not repeated by itself
    failed = h2.of("compensation.failed")
    assert failed and "not idempotent" in failed[0]["data"]["error"]
    await h2.close()
