"""poll.timeout bounds a polling step: calls and retries count, retries stay in the window."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bot.errors import RetryableError
from connectors.base import ActionContext, ActionInput, Connector, action
from connectors.core import Core
from connectors.registry import ConnectorRegistry
from tests.engine.harness import make_engine


class Probe(ActionInput):
    takes: float = 0.0  # seconds each call takes (on the engine's clock)
    fail_on: tuple[int, ...] = ()  # 1-based call numbers that answer a retryable 503


class Watch(Connector):
    name = "watch"
    calls: ClassVar[list[float]] = []  # when each call started (clock seconds)
    answer: ClassVar[str] = "Pending"  # the status every call reports

    @action(input=Probe)
    async def status(self, ctx: ActionContext, args: Probe) -> dict[str, Any]:
        """A read-only status check that is never done."""
        Watch.calls.append(0.0)
        number = len(Watch.calls)
        if ctx.sleep is not None and args.takes:
            await ctx.sleep(args.takes)
        if number in args.fail_on:
            raise RetryableError("HTTP 503", status=503, no_effect=True)
        return {"status": Watch.answer}


REGISTRY = ConnectorRegistry({"core": Core, "watch": Watch})


def runbook(with_: str, poll: str, retry: str = "") -> str:
    return f"""
name: watch
steps:
  - id: wait
    uses: watch.status
    with: {with_}
    until: output.status == 'Done'
    poll: {poll}
{retry}
"""


async def drive(h: Any, run_id: str, seconds: int) -> Any:
    for _ in range(seconds):
        await h.clock.advance(1)
    return await h.settle(run_id)


async def test_time_inside_calls_counts_against_the_window() -> None:
    Watch.calls = []
    h = make_engine(runbook("{takes: 2}", "{every: 1s, timeout: 4s}"), registry=REGISTRY)
    result = await h.engine.start_run("watch", {}, requester="cli:x")
    run = await drive(h, result.run.id, 20)
    # polls start at 0s and 3s; a third would start at 6s, past the 4s window
    assert len(Watch.calls) == 2
    assert run.steps["wait"].error == (
        "until was still false after 5s (2 polls; poll.timeout: 4s); "
        'last output: {"status": "Pending"}'
    )
    await h.close()


async def test_a_retried_poll_does_not_restart_the_window() -> None:
    Watch.calls = []
    h = make_engine(
        runbook(
            "{fail_on: [2]}",
            "{every: 1s, timeout: 4s}",
            "    retry: {attempts: 3, delay: 1s, jitter: false}",
        ),
        registry=REGISTRY,
    )
    result = await h.engine.start_run("watch", {}, requester="cli:x")
    run = await drive(h, result.run.id, 20)
    # calls at 0s, 1s (503, retried after 1s), 2s, 3s, 4s: one window of 4s
    assert len(Watch.calls) == 5
    assert len(h.of("step.retrying")) == 1
    assert run.steps["wait"].attempts == 2
    assert run.steps["wait"].error is not None
    assert run.steps["wait"].error.startswith(
        "until was still false after 4s (4 polls; poll.timeout: 4s)"
    )
    await h.close()


async def test_a_retry_wait_past_the_window_is_not_taken() -> None:
    Watch.calls = []
    h = make_engine(
        runbook(
            "{fail_on: [2]}",
            "{every: 1s, timeout: 4s}",
            "    retry: {attempts: 3, delay: 10s, jitter: false}",
        ),
        registry=REGISTRY,
    )
    result = await h.engine.start_run("watch", {}, requester="cli:x")
    run = await drive(h, result.run.id, 20)
    assert len(Watch.calls) == 2
    assert h.of("step.retrying") == []
    assert run.steps["wait"].error == (
        "watch.status: HTTP 503; not retried: poll.timeout (4s) would run out first"
    )
    await h.close()


async def _down_past_the_window(tmp_path: Path, *, answer: str, graceful: bool) -> Any:
    """Poll twice, stop, stay down 25s (35s since the start of a 30s window), restart."""
    Watch.calls = []
    Watch.answer = "Pending"
    source = runbook("{}", "{every: 10s, timeout: 30s}")
    h = make_engine(source, data_dir=tmp_path, registry=REGISTRY)
    result = await h.engine.start_run("watch", {}, requester="cli:x")
    await h.clock.advance(10)
    assert len(Watch.calls) == 2  # at 0s and 10s
    await h.engine.close(grace=10 if graceful else 0)
    await h.store.close()
    paused = h.events(step="wait")[-1] == "step.paused"
    assert paused is graceful

    Watch.calls = []
    Watch.answer = answer  # what the vendor says now
    again = make_engine(source, data_dir=tmp_path, registry=REGISTRY)
    again.clock._now = h.clock.now() + timedelta(seconds=25)
    await again.engine.start(resume=True)
    run = await again.settle(result.run.id)
    await again.close()
    Watch.answer = "Pending"
    return run


@pytest.mark.parametrize("graceful", [True, False])
async def test_a_restart_does_not_grant_a_new_window(tmp_path: Path, graceful: bool) -> None:
    # regression: the step used to fail at once, claiming until was false, without a poll
    run = await _down_past_the_window(tmp_path, answer="Pending", graceful=graceful)
    assert len(Watch.calls) == 1  # one last poll after the restart, and no more
    assert run.steps["wait"].outcome == "failed"
    assert run.steps["wait"].error == (
        "poll.timeout ran out while the bot was down (35s since the step started; "
        "poll.timeout: 30s); the last poll, made after the restart, still found until "
        'false; last output: {"status": "Pending"}'
    )


@pytest.mark.parametrize("graceful", [True, False])
async def test_a_job_done_while_the_bot_was_down_succeeds(tmp_path: Path, graceful: bool) -> None:
    run = await _down_past_the_window(tmp_path, answer="Done", graceful=graceful)
    assert len(Watch.calls) == 1
    assert run.steps["wait"].outcome == "succeeded"
    assert run.steps["wait"].output == {"status": "Done"}


async def test_after_a_restart_polling_goes_on_in_what_is_left_of_the_window(
    tmp_path: Path,
) -> None:
    Watch.calls = []
    source = runbook("{}", "{every: 10s, timeout: 30s}")
    h = make_engine(source, data_dir=tmp_path, registry=REGISTRY)
    result = await h.engine.start_run("watch", {}, requester="cli:x")
    await h.clock.advance(0)
    await h.engine.close(grace=0)
    await h.store.close()

    Watch.calls = []
    again = make_engine(source, data_dir=tmp_path, registry=REGISTRY)
    again.clock._now = h.clock.now() + timedelta(seconds=15)
    await again.engine.start(resume=True)
    run = await drive(again, result.run.id, 30)
    assert len(Watch.calls) == 2  # at 15s and 25s; 35s would be past the 30s window
    assert (run.steps["wait"].error or "").startswith(
        "until was still false after 25s (2 polls; poll.timeout: 30s)"
    )
    await again.close()
