"""Stopping between two calls (in process, on the fake clock).

Once stopping begins no call starts: not a step's first attempt, not a
compensation's retry. What was between two calls is recorded paused (nothing
in flight), and the next start carries it on without a recovery gate and
without calling it interrupted.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from bot.audit.report import build_report
from bot.chat.console import Timeline
from bot.engine.state import RunStatus
from bot.errors import RetryableError
from connectors.base import ActionContext, ActionInput, Connector, action
from connectors.core import Core
from connectors.registry import ConnectorRegistry
from tests.engine.harness import Harness, make_engine


class Target(ActionInput):
    key: str = "x"


class Vend(Connector):
    """Mutating, not idempotent: never repeated unless the first try surely had no effect."""

    name = "vend"
    calls: ClassVar[list[str]] = []

    @action(input=Target, mutating=True, idempotent=False)
    async def do(self, ctx: ActionContext, args: Target) -> dict[str, Any]:
        Vend.calls.append(f"do:{args.key}")
        return {}

    @action(input=Target, mutating=True, idempotent=False)
    async def undo(self, ctx: ActionContext, args: Target) -> dict[str, Any]:
        Vend.calls.append(f"undo:{args.key}")
        if Vend.calls.count(f"undo:{args.key}") == 1:  # refused unprocessed: surely no effect
            raise RetryableError("HTTP 429", status=429, no_effect=True)
        return {}


REGISTRY = ConnectorRegistry({"core": Core, "vend": Vend})
COMPENSATED = """
name: comp
steps:
  - id: a
    uses: vend.do
    compensate:
      uses: vend.undo
      retry: {attempts: 3, delay: 60s}
  - id: boom
    uses: core.fail
    with: {message: no}
"""
COMPENSATED_ITEMS = """
name: comp
steps:
  - id: a
    uses: vend.do
    for_each: "['h1', 'h2']"
    with: {key: "{{ item }}"}
    compensate:
      uses: vend.undo
      with: {key: "{{ item }}"}
      retry: {attempts: 3, delay: 60s}
  - id: boom
    uses: core.fail
    with: {message: no}
"""
TWO = """
name: two
steps:
  - id: first
    uses: core.noop
  - id: second
    uses: vend.do
"""


async def until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until ``condition`` holds (no time passes)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


def compensations(h: Harness) -> list[tuple[str, Any]]:
    return [
        (r["event"], (r["data"] or {}).get("item"))
        for r in h.records
        if r["event"].startswith("compensation.")
    ]


async def _stop_during_the_retry_wait(source: str, data: Path, undos: int) -> tuple[str, Harness]:
    Vend.calls = []
    h = make_engine(source, data_dir=data, registry=REGISTRY)
    await h.engine.start(resume=False)
    result = await h.engine.start_run("comp", {}, requester="cli:c")
    # the first undo was refused (429, no effect); its retry waits 60s on the clock
    await until(lambda: len([c for c in Vend.calls if c.startswith("undo")]) == undos)
    await until(lambda: h.clock.sleepers == 1)
    following = set(h.engine.following)
    assert following
    await h.engine.close(grace=1)
    await h.store.close()
    for task in following:  # no task died with an exception (CallStopped escaped once)
        assert task.done() and not task.cancelled() and task.exception() is None
    return result.run.id, h


async def test_stopping_in_a_compensation_retry_wait_pauses_it(tmp_path: Path) -> None:
    run_id, h = await _stop_during_the_retry_wait(COMPENSATED, tmp_path, undos=1)
    assert compensations(h) == [("compensation.started", None), ("compensation.paused", None)]
    assert h.of("compensation.paused")[0]["data"]["reason"] == "the engine is stopping"
    assert "run.finished" not in h.events()
    # shown in the terminal timeline and in the audit report
    stream = io.StringIO()
    timeline = Timeline(stream, colour=False)
    paused = h.of("compensation.paused")[0]
    run = h.engine.store.world.runs[run_id]
    assert timeline.render(run, paused) == "  ⏸ compensation of a paused: the engine is stopping"
    report = build_report(run_id, h.records)
    assert "`a` paused (`vend.undo`)" in report

    again = make_engine(COMPENSATED, data_dir=tmp_path, registry=REGISTRY)
    try:
        await again.engine.start(resume=True)
        run = await again.settle(run_id)
    finally:
        await again.close()
    # regression: it was recorded failed ("interrupted by a restart; not repeated")
    assert compensations(again) == [
        ("compensation.started", None),
        ("compensation.succeeded", None),
    ]
    assert Vend.calls == ["do:x", "undo:x", "undo:x"]
    assert run.status is RunStatus.FAILED
    assert run.steps["a"].compensation == "succeeded"


async def test_stopping_in_a_for_each_compensation_retry_wait_pauses_that_item(
    tmp_path: Path,
) -> None:
    # items are undone last first: h2's undo is refused once, and its retry waits
    run_id, h = await _stop_during_the_retry_wait(COMPENSATED_ITEMS, tmp_path, undos=1)
    assert compensations(h) == [("compensation.started", 1), ("compensation.paused", 1)]

    again = make_engine(COMPENSATED_ITEMS, data_dir=tmp_path, registry=REGISTRY)
    try:
        # a restart runs compensations before it returns: h1's undo is refused once
        # too, and its retry waits 60s on the clock
        starting = asyncio.create_task(again.engine.start(resume=True))
        await until(lambda: again.clock.sleepers == 1)
        await again.advance(60)
        await starting
        run = await again.settle(run_id)
    finally:
        await again.close()
    assert compensations(again) == [
        ("compensation.started", 1),
        ("compensation.succeeded", 1),
        ("compensation.started", 0),
        ("compensation.succeeded", 0),
    ]
    assert run.status is RunStatus.FAILED
    assert run.steps["a"].compensated_items == {0, 1}


async def test_a_step_started_just_before_stopping_makes_no_call(tmp_path: Path) -> None:
    Vend.calls = []
    h = make_engine(TWO, data_dir=tmp_path, registry=REGISTRY)

    def stop_after_start(_run: Any, record: dict[str, Any]) -> None:
        # step.started of `second` is committed; stopping begins before its task runs
        if record["event"] == "step.started" and record["step"] == "second":
            h.engine.stop_starting()

    h.engine.listeners.append(stop_after_start)
    await h.engine.start(resume=False)
    result = await h.engine.start_run("two", {}, requester="cli:c")
    await until(lambda: "step.paused" in h.events() or bool(Vend.calls))
    await h.engine.close(grace=1)
    await h.store.close()
    # regression: its first vendor call was still made after stopping began
    assert Vend.calls == []
    assert h.events(step="second") == ["step.started", "step.paused"]
    assert h.of("step.paused")[0]["data"] == {"reason": "the engine is stopping", "attempts": 0}

    again = make_engine(TWO, data_dir=tmp_path, registry=REGISTRY)
    try:
        await again.engine.start(resume=True)
        run = await again.settle(result.run.id)
    finally:
        await again.close()
    assert again.events(step="second") == ["step.started", "step.succeeded"]  # no recovery gate
    assert again.of("step.started")[0]["data"]["attempt"] == 1
    assert Vend.calls == ["do:x"]
    assert run.status is RunStatus.SUCCEEDED
    assert run.steps["second"].attempts == 1
