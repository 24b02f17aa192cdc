"""slack.post_message against the fake Slack Web API."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import AuthenticationError, ConnectorError, RetryableError
from bot.sandbox import Sandbox
from connectors.slack import Slack


def test_slack_uses_slacks_own_setting_names() -> None:
    assert Slack.env_name("bot_token") == "SLACK_BOT_TOKEN"
    assert Slack.env_name("api_url") == "RUNBOOK_SLACK_API_URL"
    assert Slack.env_name("read_timeout") == "RUNBOOK_SLACK_READ_TIMEOUT"
    assert not Slack.is_configured({"RUNBOOK_SLACK_API_URL": "http://x/"})
    assert Slack.is_configured({"SLACK_BOT_TOKEN": "xoxb-1"})


async def test_post_message(vendor: Any, sandbox: Sandbox) -> None:
    out = await vendor.call("slack.post_message", channel="#soc-incidents", text="*web-1* isolated")
    assert out["channel"] == "C0SOCINC"
    (message,) = sandbox.slack.messages("soc-incidents")
    assert message["text"] == "*web-1* isolated" and message["ts"] == out["ts"]
    (call,) = sandbox.slack.api_calls("chat.postMessage")
    assert call.authorized and call.args == {"channel": "soc-incidents", "text": "*web-1* isolated"}


async def test_post_in_a_thread(vendor: Any, sandbox: Sandbox) -> None:
    first = await vendor.call("slack.post_message", channel="C0OPS", text="start")
    await vendor.call("slack.post_message", channel="C0OPS", text="reply", thread_ts=first["ts"])
    assert sandbox.slack.messages("ops")[1]["thread_ts"] == first["ts"]


@pytest.mark.parametrize(
    ("channel", "error"), [("#nowhere", "channel_not_found"), ("#general", "not_in_channel")]
)
async def test_slack_errors_are_permanent_and_named(vendor: Any, channel: str, error: str) -> None:
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("slack.post_message", channel=channel, text="x")
    assert not caught.value.retryable
    assert str(caught.value) == f"slack: chat.postMessage failed: {error}"


async def test_an_error_on_demand(vendor: Any, sandbox: Sandbox) -> None:
    sandbox.slack.fail("chat.postMessage", "is_archived")
    with pytest.raises(ConnectorError, match="is_archived"):
        await vendor.call("slack.post_message", channel="#ops", text="x")
    assert await vendor.call("slack.post_message", channel="#ops", text="x")


async def test_a_revoked_token(vendor: Any, sandbox: Sandbox) -> None:
    sandbox.slack.fail("chat.postMessage", "token_revoked")
    with pytest.raises(AuthenticationError, match="authentication failed for slack: token_revoked"):
        await vendor.call("slack.post_message", channel="#ops", text="x")


async def test_ratelimited_with_retry_after(vendor: Any, sandbox: Sandbox) -> None:
    sandbox.slack.rate_limit(retry_after=3, match="chat.postMessage")
    with pytest.raises(RetryableError) as caught:
        await vendor.call("slack.post_message", channel="#ops", text="x")
    assert caught.value.retry_after == 3
    assert "ratelimited" in str(caught.value)
