"""Retries of real connector calls through the engine: nothing is done twice.

A mutating action that is not idempotent is retried only after a failure that
surely had no effect (connection never made, 429, 503). After an ambiguous
one (the step timeout, 500/502/504) the step fails at once, saying why.
Read-only and idempotent actions are retried as before.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from bot.sandbox import Sandbox
from tests.engine.harness import Harness, make_engine

ISSUE = "/rest/api/3/issue"


def engine(sandbox: Sandbox, step: str, **env: str) -> Harness:
    return make_engine(f"name: rb\nsteps:\n{step}", env={**sandbox.env, **env})


async def close(h: Harness) -> None:
    await h.close()
    await h.engine.actions.aclose()  # the connectors' HTTP clients


CREATE = """\
  - id: ticket
    uses: jira.create_issue
    with: {project: SEC, summary: retry probe}
    timeout: 1s
    retry: {attempts: 3, delay: 1s, jitter: false}
"""


async def recorded(h: Harness, event: str, count: int = 1) -> None:
    """Wait (on the engine's own records, not on time) until ``count`` ``event`` records exist."""
    seen = asyncio.Event()

    def listener(_run: Any, _record: dict[str, Any]) -> None:
        if len(h.of(event)) >= count:
            seen.set()

    h.engine.listeners.append(listener)
    listener(None, {})
    await asyncio.wait_for(seen.wait(), timeout=10)


async def arrived(sandbox: Sandbox, fake: str, path: str, count: int = 1) -> None:
    await asyncio.to_thread(sandbox.fakes[fake].wait_for_calls, path, count)


async def test_a_timed_out_create_is_not_sent_again(sandbox: Sandbox) -> None:
    sandbox.jira.slow(3600)
    h = engine(sandbox, CREATE)
    result = await h.engine.start_run("rb", {}, requester="cli:x")
    await arrived(sandbox, "jira", ISSUE)
    await h.clock.advance(1)  # the step timeout fires while Jira holds the request
    run = await h.settle(result.run.id)
    sandbox.jira.clear_faults()  # let the held request finish: Jira creates the issue
    assert run.steps["ticket"].outcome == "failed"
    assert run.steps["ticket"].error == (
        "jira.create_issue: jira.create_issue timed out after 1s; not retried: "
        "jira.create_issue is not idempotent and jira may have acted on it "
        "— check before running it again"
    )
    assert len(sandbox.jira.calls_to(ISSUE, "POST")) == 1
    assert h.of("step.retrying") == []
    # the decision is in the audit log, where `runbook report` reads it
    assert "not retried" in h.of("step.failed")[0]["data"]["error"]
    await close(h)


async def test_a_500_on_a_create_is_not_retried(sandbox: Sandbox) -> None:
    sandbox.jira.server_error(status=500)
    h = engine(sandbox, CREATE)
    run = await h.start("rb")
    assert run.steps["ticket"].outcome == "failed"
    assert "HTTP 500" in (run.steps["ticket"].error or "")
    assert "not retried: jira.create_issue is not idempotent" in (run.steps["ticket"].error or "")
    assert len(sandbox.jira.calls_to(ISSUE, "POST")) == 1
    await close(h)


async def test_a_503_on_a_create_is_retried_and_makes_one_issue(sandbox: Sandbox) -> None:
    sandbox.jira.server_error(status=503)
    h = engine(sandbox, CREATE)
    result = await h.engine.start_run("rb", {}, requester="cli:x")
    await recorded(h, "step.retrying")
    await h.clock.advance(1)
    run = await h.settle(result.run.id)
    assert run.steps["ticket"].outcome == "succeeded"
    assert run.steps["ticket"].attempts == 2
    assert [c.status for c in sandbox.jira.calls_to(ISSUE, "POST")] == [503, 201]
    assert len(sandbox.jira.issues) == 1
    await close(h)


async def test_a_429_on_a_create_is_retried(sandbox: Sandbox) -> None:
    sandbox.jira.rate_limit(retry_after=2)
    h = engine(sandbox, CREATE)
    result = await h.engine.start_run("rb", {}, requester="cli:x")
    await recorded(h, "step.retrying")
    await h.clock.advance(2)
    run = await h.settle(result.run.id)
    assert run.steps["ticket"].outcome == "succeeded"
    assert len(sandbox.jira.issues) == 1
    await close(h)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_is_retried_for_a_create(sandbox: Sandbox) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/"
    h = engine(sandbox, CREATE, RUNBOOK_JIRA_BASE_URL=dead)
    result = await h.engine.start_run("rb", {}, requester="cli:x")
    await recorded(h, "step.retrying")
    await h.clock.advance(1)
    await recorded(h, "step.retrying", 2)
    await h.clock.advance(2)
    run = await h.settle(result.run.id)
    error = run.steps["ticket"].error or ""
    assert run.steps["ticket"].outcome == "failed"
    assert "connection failed" in error and error.endswith("(after 3 attempts)")
    assert "not retried" not in error
    await close(h)


async def test_an_idempotent_action_is_retried_after_a_timeout(sandbox: Sandbox) -> None:
    sandbox.pagerduty.slow(3600)
    h = engine(
        sandbox,
        """\
  - id: page
    uses: pagerduty.trigger
    with: {summary: probe, source: web-1, severity: warning}
    timeout: 1s
    retry: {attempts: 3, delay: 1s, jitter: false}
""",
    )
    result = await h.engine.start_run("rb", {}, requester="cli:x")
    await arrived(sandbox, "pagerduty", "/v2/enqueue")
    await h.clock.advance(1)  # attempt 1 times out
    await recorded(h, "step.retrying")
    await h.clock.advance(1)  # attempt 2 goes through
    run = await h.settle(result.run.id)
    sandbox.pagerduty.clear_faults()
    assert run.steps["page"].outcome == "succeeded"
    assert run.steps["page"].attempts == 2
    assert "timed out after 1s" in h.of("step.retrying")[0]["data"]["error"]
    await close(h)


async def test_a_compensation_that_is_not_idempotent_follows_the_same_rule(
    sandbox: Sandbox,
) -> None:
    sandbox.echo.server_error(status=502)
    h = engine(
        sandbox,
        f"""\
  - id: act
    uses: core.noop
    compensate:
      uses: http.request
      with: {{method: POST, url: "{sandbox.url}/echo/undo"}}
      retry: {{attempts: 3, delay: 1s}}
  - id: boom
    uses: core.fail
    with: {{message: boom}}
""",
    )
    run = await h.start("rb")
    assert run.status == "failed"
    [failed] = h.of("compensation.failed")
    assert "HTTP 502" in failed["data"]["error"]
    assert (
        "not retried: http.request is not idempotent and the server may have acted on it"
        in failed["data"]["error"]
    )
    assert len(sandbox.echo.calls_to("/undo", "POST")) == 1
    await close(h)
