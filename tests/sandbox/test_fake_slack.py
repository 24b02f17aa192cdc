"""The fake Slack Web API, driven by Slack's own SDK (as the chat adapter will)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from bot.sandbox import Sandbox


@pytest.fixture
def client(sandbox: Sandbox) -> WebClient:
    return WebClient(token=sandbox.slack.bot_token, base_url=sandbox.url + "/slack/api/")


def test_auth_test(client: WebClient) -> None:
    answer = client.auth_test()
    assert answer["team_id"] == "T0SANDBOX"
    assert answer["user_id"] == "U0RUNBOOK"


def test_post_update_and_record(client: WebClient, sandbox: Sandbox) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Approve?"}}]
    posted = client.chat_postMessage(channel="#soc-incidents", text="Approve?", blocks=blocks)
    assert posted["channel"] == "C0SOCINC"
    (call,) = sandbox.slack.api_calls("chat.postMessage")
    assert call.args["blocks"] == blocks
    assert call.authorized and call.ok
    updated = client.chat_update(
        channel=posted["channel"], ts=posted["ts"], text="Approved by alice"
    )
    assert updated["ts"] == posted["ts"]
    (message,) = sandbox.slack.messages("soc-incidents")
    assert message["text"] == "Approved by alice"
    assert "blocks" not in message
    with pytest.raises(SlackApiError) as caught:
        client.chat_update(channel=posted["channel"], ts="1.000", text="x")
    assert caught.value.response["error"] == "message_not_found"


def test_threads_replies_and_history(client: WebClient) -> None:
    root = client.chat_postMessage(channel="C0OPS", text="Run r-1 started")
    client.chat_postMessage(channel="C0OPS", text="step 1 done", thread_ts=root["ts"])
    replies = client.conversations_replies(channel="C0OPS", ts=root["ts"])
    assert [m["text"] for m in replies["messages"]] == ["Run r-1 started", "step 1 done"]
    history = client.conversations_history(channel="C0OPS")
    assert [m["text"] for m in history["messages"]] == ["Run r-1 started"]
    link = client.chat_getPermalink(channel="C0OPS", message_ts=root["ts"])
    assert link["permalink"].startswith("https://runbook-sandbox.slack.com/archives/C0OPS/p")


def test_ephemeral_and_modal(client: WebClient, sandbox: Sandbox) -> None:
    eph = client.chat_postEphemeral(channel="C0SOCINC", user="U0BOB", text="not an approver")
    assert eph["message_ts"]
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Reason"}, "blocks": []}
    opened = client.views_open(trigger_id="123.456", view=view)
    assert opened["view"]["id"].startswith("V")
    with pytest.raises(SlackApiError) as caught:
        client.views_open(trigger_id="expired", view=view)
    assert caught.value.response["error"] == "expired_trigger_id"
    assert sandbox.slack.api_calls("views.open")[0].args["view"] == view


def test_user_groups_users_and_channels(client: WebClient) -> None:
    groups = client.usergroups_list(include_users=True)["usergroups"]
    leads = next(g for g in groups if g["handle"] == "soc-leads")
    assert leads["users"] == ["U024BE7LH", "U0CAROL"]
    assert client.usergroups_users_list(usergroup=leads["id"])["users"] == leads["users"]
    assert "users" not in client.usergroups_list()["usergroups"][0]
    with pytest.raises(SlackApiError):
        client.usergroups_users_list(usergroup="S0NOPE")
    assert client.users_info(user="U0CAROL")["user"]["name"] == "carol"
    assert client.conversations_info(channel="C0GENERAL")["channel"]["is_member"] is False
    client.conversations_join(channel="C0GENERAL")
    assert client.chat_postMessage(channel="C0GENERAL", text="hi")["ok"]
    assert "U0DAVE" in client.conversations_members(channel="C0OPS")["members"]
    dm = client.conversations_open(users="U0BOB")["channel"]["id"]
    assert client.chat_postMessage(channel=dm, text="psst")["channel"] == dm


def test_errors_on_demand_and_rate_limits(client: WebClient, sandbox: Sandbox) -> None:
    sandbox.slack.fail("chat.postMessage", "channel_not_found", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as caught:
            client.chat_postMessage(channel="#ops", text="x")
        assert caught.value.response["error"] == "channel_not_found"
    sandbox.slack.rate_limit(retry_after=4, match="chat.update")
    posted = client.chat_postMessage(channel="#ops", text="x")
    with pytest.raises(SlackApiError) as limited:
        client.chat_update(channel=posted["channel"], ts=posted["ts"], text="y")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] in ("4", ["4"])
    assert limited.value.response["error"] == "ratelimited"


def test_tokens_are_checked(sandbox: Sandbox) -> None:
    base = sandbox.url + "/slack/api/"
    wrong = WebClient(token="xoxb-nope", base_url=base)
    with pytest.raises(SlackApiError) as caught:
        wrong.auth_test()
    assert caught.value.response["error"] == "invalid_auth"
    missing = httpx.post(base + "auth.test")
    assert missing.json() == {"ok": False, "error": "not_authed"}
    as_form = httpx.post(base + "auth.test", data={"token": sandbox.slack.bot_token})
    assert as_form.json()["ok"] is True
    assert not sandbox.slack.api_calls("auth.test")[0].authorized


def test_wait_for_calls_made_elsewhere(client: WebClient, sandbox: Sandbox) -> None:
    thread = threading.Thread(
        target=lambda: client.chat_postMessage(channel="#ops", text="from a thread")
    )
    thread.start()
    (call,) = sandbox.slack.wait_for("chat.postMessage", timeout=10)
    thread.join()
    assert call.args["text"] == "from a thread"
    with pytest.raises(TimeoutError):
        sandbox.slack.wait_for("chat.delete", timeout=0.05)


def test_sign_matches_slacks_algorithm(sandbox: Sandbox) -> None:
    body = "payload=%7B%22type%22%3A%22block_actions%22%7D"
    headers = sandbox.slack.sign(body)
    verifier = SignatureVerifier(sandbox.slack.signing_secret)
    assert verifier.is_valid(
        body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )
    old = sandbox.slack.sign(body, timestamp=int(time.time()) - 3600)
    assert not verifier.is_valid(body, old["X-Slack-Request-Timestamp"], old["X-Slack-Signature"])
    assert sandbox.slack.app_env(sandbox.base_url("slack"))["SLACK_SIGNING_SECRET"]
