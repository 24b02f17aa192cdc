"""Compensations a crash interrupted: for_each items still to undo are undone after a
restart; an unsafe compensation of a cancelled run is recorded failed, never repeated."""

from __future__ import annotations

import asyncio
import shutil
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
        """contain (idempotent)"""
        Tk.calls.append("contain:" + args.key)
        return {}

    @action(input=Arg, mutating=True, idempotent=True)
    async def lift(self, ctx: ActionContext, args: Arg) -> dict[str, Any]:
        """lift (idempotent)"""
        Tk.calls.append("lift:" + args.key)
        return {}

    @action(input=Arg, mutating=True, idempotent=False)
    async def unticket(self, ctx: ActionContext, args: Arg) -> dict[str, Any]:
        """not idempotent"""
        Tk.calls.append("unticket:" + args.key)
        if Tk.block is not None:
            await Tk.block.wait()
        return {}


REG = ConnectorRegistry({"core": Core, "tk": Tk})

FOREACH = """
name: fe
steps:
  - id: contain
    uses: tk.contain
    for_each: "['h0', 'h1', 'h2']"
    with: {key: "{{ item }}"}
    compensate: {uses: tk.lift, with: {key: "{{ item }}"}}
  - id: boom
    uses: core.fail
    with: {message: boom}
"""


def crash_copy(src, dst):
    dst.mkdir()
    shutil.copy(src / "audit.jsonl", dst / "audit.jsonl")
    shutil.copytree(src / "definitions", dst / "definitions")


async def test_foreach_compensation_crash_between_items(tmp_path):
    src, dst = tmp_path / "a", tmp_path / "b"
    h = make_engine(FOREACH, data_dir=src, registry=REG)
    orig = h.engine.record

    async def record(run, event, **kw):
        if event == "compensation.started" and kw.get("data", {}).get("item") == 1:
            crash_copy(src, dst)  # kill -9 here: journal as fsynced so far
        return await orig(run, event, **kw)

    h.engine.record = record
    run = await h.start("fe")
    await h.close()
    Tk.calls = []
    h2 = make_engine(FOREACH, data_dir=dst, registry=REG)
    await h2.engine.start(resume=True)
    run = await h2.settle(run.id)
    assert Tk.calls == ["lift:h1", "lift:h0"], "items 1 and 0 never compensated"


CANCEL = """
name: cx
steps:
  - id: t
    uses: tk.contain
    with: {key: x}
    compensate: {uses: tk.unticket, with: {key: x}}
  - id: gate
    approval: {prompt: "ok?"}
"""


async def test_cancelled_run_repeats_non_idempotent_compensation(tmp_path):
    src, dst = tmp_path / "a", tmp_path / "b"
    Tk.calls = []
    Tk.block = asyncio.Event()
    h = make_engine(CANCEL, data_dir=src, registry=REG)
    run = await h.start("cx")
    assert run.status == "waiting"
    c = asyncio.create_task(h.engine.cancel(run.id, "cli:carol"))
    for _ in range(50):
        await asyncio.sleep(0)
    assert Tk.calls == ["contain:x", "unticket:x"]  # compensation call in flight
    crash_copy(src, dst)  # kill -9 now
    Tk.block.set()
    await c
    await h.close()
    Tk.calls = []
    Tk.block = None
    h2 = make_engine(CANCEL, data_dir=dst, registry=REG)
    await h2.engine.start(resume=True)
    run = await h2.settle(run.id)
    assert Tk.calls == [], "non-idempotent compensation re-run after a crash"
