"""Slack misbehaving: rate limits, missing channels, errors — never a silent hang."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from slack_harness import ALICE, SOC, actions_of, approval_posts, audit_records

from bot.chat.slack.api import SlackAPI
from bot.chat.slack.groups import SlackGroups
from bot.errors import ChatError
from bot.sandbox import Sandbox

GATED = """
name: gated
channel: "#soc-incidents"
steps:
  - id: ask
    approval:
      prompt: "Go?"
      approvers: {groups: [soc-leads]}
  - id: after
    uses: core.noop
"""


async def test_rate_limits_are_waited_out_without_delaying_acknowledgements(
    start_app: Any,
) -> None:
    app = await start_app({"gated.yaml": GATED})
    fake = app.fake
    fake.rate_limit(retry_after=1, times=2, match="chat.postMessage")
    began = time.perf_counter()
    first, _ = await app.command("run gated", user=ALICE)
    second, _ = await app.command("run gated", user=ALICE)
    acks = time.perf_counter() - began
    assert first.status_code == second.status_code == 200
    assert acks < 0.9, "acknowledgements never wait for Slack's Retry-After"
    await app.until(lambda: len(approval_posts(fake)) == 2, timeout=20)
    statuses = [c.status for c in fake.calls_to("/api/chat.postMessage")]
    assert statuses[:2] == [429, 429] and set(statuses[2:]) == {200}
    assert app.extension.api.rate_limited == 2
    # the wait was honoured (Retry-After: 1)
    assert time.perf_counter() - began >= 1.0

    # group look-ups rate-limited while someone clicks: the decision still lands
    value = actions_of(approval_posts(fake)[0].args["blocks"])[0]["value"]
    app.extension.groups.forget()
    fake.rate_limit(retry_after=1, times=1, match="usergroups")
    await app.click("approval_approve", value, user="U0CAROL")
    run = await app.run_until(value.split(":")[1], lambda r: r.ended, timeout=20)
    assert run.status == "succeeded"


MISSING = """
name: nowhere
channel: "#no-such-channel"
steps:
  - id: ask
    approval:
      prompt: "Go?"
  - id: after
    uses: core.noop
"""

NOT_MEMBER = """
name: outsider
channel: "#soc-incidents"
steps:
  - id: first
    uses: core.noop
  - id: tell
    notify: {text: "hello general", channel: "#general"}
"""


async def test_a_missing_channel_fails_the_gate_clearly(
    start_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="runbook")
    app = await start_app({"nowhere.yaml": MISSING})
    await app.command("run nowhere", user=ALICE)
    (started,) = await wait_records(app, "run.finished")
    run = app.engine.store.get_run(started["run_id"])
    assert run.status == "failed"
    assert run.steps["ask"].outcome == "failed"
    error = run.steps["ask"].error
    assert "could not post the approval request" in error
    assert "channel_not_found" in error and "#no-such-channel" in error
    (failed,) = audit_records(app.settings.data_dir, "step.failed")
    assert "channel_not_found" in failed["data"]["error"]
    assert any(
        "channel_not_found" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records
    )


async def test_not_in_channel_fails_the_notice_clearly(
    start_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="runbook")
    app = await start_app({"outsider.yaml": NOT_MEMBER})
    await app.command("run outsider", user=ALICE)
    (finished,) = await wait_records(app, "run.finished")
    run = app.engine.store.get_run(finished["run_id"])
    assert run.status == "failed"
    assert "not_in_channel" in run.steps["tell"].error
    assert "invite" in run.steps["tell"].error
    assert any("not_in_channel" in r.getMessage() for r in caplog.records)
    # the run's own thread (in #soc-incidents) says so
    await app.until(
        lambda: any(
            "failed" in m.get("text", "") and "thread_ts" in m for m in app.fake.messages(SOC)
        )
    )


async def wait_records(app: Any, event: str, count: int = 1) -> list[dict[str, Any]]:
    """Wait for audit records of an event (through the engine's listeners)."""
    engine = app.engine
    seen = audit_records(app.settings.data_dir, event)  # already there (no await in between)
    done = asyncio.Event()
    if len(seen) >= count:
        done.set()

    def listen(run: Any, record: dict[str, Any]) -> None:
        if record["event"] == event:
            seen.append(record)
            if len(seen) >= count:
                done.set()

    engine.listeners.append(listen)
    try:
        async with asyncio.timeout(15):
            await done.wait()
    finally:
        engine.listeners.remove(listen)
    return seen


# -- the Web API client and the group resolver, directly against the fake ----------------


@pytest.fixture
async def api(sandbox: Sandbox) -> Any:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    client = SlackAPI(sandbox.slack.bot_token, sandbox.base_url("slack") + "/api/", sleep=sleep)
    client.waits = waits  # type: ignore[attr-defined]
    yield client
    await client.aclose()


async def test_api_honours_retry_after_and_translates_errors(api: Any, sandbox: Sandbox) -> None:
    sandbox.slack.rate_limit(retry_after=7, times=2, match="chat.postMessage")
    answer = await api.call("chat.postMessage", {"channel": "#ops", "text": "hi"})
    assert answer["channel"] == "C0OPS"
    assert [round(w) for w in api.waits if w > 0] == [7, 7]

    with pytest.raises(ChatError) as caught:
        await api.call("chat.postMessage", {"channel": "#nope", "text": "hi"})
    assert caught.value.code == "channel_not_found" and not caught.value.retryable
    sandbox.slack.server_error(status=503, times=1, match="auth.test")
    assert (await api.call("auth.test"))["team_id"] == "T0SANDBOX"

    sandbox.slack.rate_limit(retry_after=1, times=None, match="chat.update")
    with pytest.raises(ChatError) as caught:
        await api.call("chat.update", {"channel": "C0OPS", "ts": "1.1", "text": "x"})
    assert caught.value.code == "ratelimited" and caught.value.retryable
    sandbox.slack.clear_faults()

    bad = SlackAPI("xoxb-wrong", sandbox.base_url("slack") + "/api/")
    with pytest.raises(ChatError) as caught:
        await bad.call("auth.test")
    assert caught.value.code == "invalid_auth"
    await bad.aclose()
    with pytest.raises(ChatError) as caught:
        await bad.call("auth.test")
    assert caught.value.code == "closed"


async def test_group_membership_is_cached_with_expiry(api: Any, sandbox: Sandbox) -> None:
    now = [1000.0]
    groups = SlackGroups(api, ttl=60, now=lambda: now[0])
    fake = sandbox.slack

    def lookups() -> int:
        return len(fake.api_calls("usergroups.users.list"))

    results = await asyncio.gather(
        *[groups.groups_of("slack:U0CAROL", ["soc-leads", "soc-managers"]) for _ in range(5)]
    )
    assert all(r == {"soc-leads", "soc-managers"} for r in results)
    assert lookups() == 2  # one per group, shared by the five concurrent questions
    assert await groups.groups_of("slack:U0BOB", ["soc-leads"]) == set()
    assert await groups.groups_of("cli:U0CAROL", ["soc-leads"]) == set()
    assert await groups.groups_of("slack:U0BOB", ["no-such-group"]) == set()
    assert lookups() == 3  # an unknown handle is asked about once, as written
    assert await groups.groups_of("slack:U0BOB", ["no-such-group"]) == set()
    assert lookups() == 3

    fake.add_usergroup("soc-leads", ["U024BE7LH", "U0CAROL", "U0BOB"], group_id="S0SOCLEADS")
    assert await groups.groups_of("slack:U0BOB", ["soc-leads"]) == set()  # still cached
    now[0] += 61
    assert await groups.groups_of("slack:U0BOB", ["soc-leads"]) == {"soc-leads"}
    assert lookups() == 4

    # Slack failing: a stale list is used; with nothing cached, the question fails loudly
    now[0] += 61
    fake.fail("usergroups.users.list", "internal_error")
    assert await groups.groups_of("slack:U0BOB", ["soc-leads"]) == {"soc-leads"}
    groups.forget()
    fake.fail("usergroups.list", "missing_scope")
    with pytest.raises(ChatError):
        await groups.groups_of("slack:U0BOB", ["soc-leads"])
