"""A for_each step of a non-idempotent action interrupted while item calls were in flight
stops at a recovery gate after a restart, even if one item was between retries."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from bot.errors import RetryableError
from connectors.base import ActionContext, ActionInput, Connector, action
from connectors.core import Core
from connectors.registry import ConnectorRegistry
from tests.engine.harness import make_engine


class Arg(ActionInput):
    key: str


class Tk(Connector):
    name = "tk"
    calls: ClassVar[list[str]] = []
    go: ClassVar[asyncio.Event | None] = None
    failed: ClassVar[set] = set()

    @action(input=Arg, mutating=True, idempotent=False)
    async def ticket(self, ctx: ActionContext, args: Arg) -> dict[str, Any]:
        """Opens a ticket (not idempotent)."""
        Tk.calls.append(args.key)
        if args.key == "h1" and "h1" not in Tk.failed:
            Tk.failed.add("h1")
            raise RetryableError("503", status=503, no_effect=True)  # refused unprocessed
        await Tk.go.wait()
        return {"k": args.key}


REG = ConnectorRegistry({"core": Core, "tk": Tk})
RB = """
name: sweep
steps:
  - id: tickets
    uses: tk.ticket
    for_each: "['h1', 'h2']"
    retry: {attempts: 3, delay: 1s}
    with: {key: "{{ item }}"}
"""


async def test_foreach_item_retry_then_crash(tmp_path):
    Tk.go = asyncio.Event()
    h = make_engine(RB, data_dir=tmp_path, registry=REG)
    res = await h.engine.start_run("sweep", {}, requester="cli:carol")
    await h.clock.advance(0)
    await h.clock.advance(1)  # h1 retried; h2 in flight
    assert Tk.calls == ["h1", "h2", "h1"]  # h1 attempt 2 and h2 both mid-call
    await h.engine.close(grace=0)
    await h.store.close()
    Tk.calls = []
    Tk.go = asyncio.Event()
    Tk.go.set()
    h2 = make_engine(RB, data_dir=tmp_path, registry=REG)
    h2.clock._now = h.clock.now()
    await h2.engine.start(resume=True)
    run = await h2.settle(res.run.id)
    assert Tk.calls == [], "non-idempotent calls re-run without a person deciding"
    assert run.status == "waiting"
    requested = h2.of("approval.requested")
    assert requested and requested[0]["step"] == "tickets" and requested[0]["data"]["recovery"]
    await h2.close()
