"""What /slack/events refuses: bad signatures, stale timestamps, other workspaces, stray buttons."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from slack_harness import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    actions_of,
    approval_posts,
    audit_records,
    click_body,
    command_body,
    ephemerals,
)

GATED = """
name: gated
channel: "#soc-incidents"
steps:
  - id: ask
    approval:
      prompt: "Go?"
      approvers: {users: [U0BOB, U0CAROL]}
  - id: after
    uses: core.noop
"""


def started_runs(app: Any) -> int:
    return len(audit_records(app.settings.data_dir, "run.started"))


async def test_forged_missing_and_stale_signatures_get_401_and_do_nothing(start_app: Any) -> None:
    app = await start_app({"gated.yaml": GATED})
    body, _ = command_body(app.sandbox, "run gated", user=ALICE)

    forged = dict(app.fake.sign(body))
    forged["X-Slack-Signature"] = "v0=" + "0" * 64
    assert (await app.post(body, signed=False, headers=forged)).status_code == 401
    assert (await app.post(body, signed=False)).status_code == 401
    stale = int(time.time()) - 6 * 60
    assert (await app.post(body, timestamp=stale)).status_code == 401
    future = int(time.time()) + 6 * 60
    assert (await app.post(body, timestamp=future)).status_code == 401
    # signed for another body (the text was changed after signing)
    headers = app.fake.sign(body)
    tampered = body.replace(b"run+gated", b"run+other")
    assert (await app.post(tampered, signed=False, headers=headers)).status_code == 401
    # signed with another secret
    stamp = str(int(time.time()))
    base = b"v0:" + stamp.encode() + b":" + body
    digest = hmac.new(b"not-the-signing-secret", base, hashlib.sha256).hexdigest()
    wrong = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}
    assert (await app.post(body, signed=False, headers=wrong)).status_code == 401

    await app.settle()
    assert started_runs(app) == 0
    assert app.fake.api_calls() == [c for c in app.fake.api_calls() if c.method == "auth.test"]

    # the same request, properly signed and four minutes old, is fine
    recent = int(time.time()) - 4 * 60
    ok = await app.post(body, timestamp=recent)
    assert ok.status_code == 200
    await app.until(lambda: len(approval_posts(app.fake)) == 1)
    assert started_runs(app) == 1


async def test_a_forged_click_decides_nothing(start_app: Any) -> None:
    app = await start_app({"gated.yaml": GATED})
    await app.command("run gated", user=ALICE)
    await app.until(lambda: len(approval_posts(app.fake)) == 1)
    value = actions_of(approval_posts(app.fake)[0].args["blocks"])[0]["value"]
    body = click_body(app.sandbox, "approval_approve", value, user=BOB)
    headers = dict(app.fake.sign(body))
    headers["X-Slack-Signature"] = headers["X-Slack-Signature"][:-4] + "abcd"
    assert (await app.post(body, signed=False, headers=headers)).status_code == 401
    await app.settle()
    run_id = value.split(":")[1]
    assert app.engine.store.get_run(run_id).status == "waiting"
    assert audit_records(app.settings.data_dir, "approval.decided") == []


async def test_another_workspace_is_refused(start_app: Any) -> None:
    app = await start_app({"gated.yaml": GATED})
    response, _ = await app.command("run gated", user=ALICE, team="T0OTHER")
    assert response.status_code == 200
    assert "another Slack workspace" in response.text
    await app.settle()
    assert started_runs(app) == 0

    await app.command("run gated", user=ALICE)
    await app.until(lambda: len(approval_posts(app.fake)) == 1)
    value = actions_of(approval_posts(app.fake)[0].args["blocks"])[0]["value"]
    run_id = value.split(":")[1]
    # BOB is an approver, but this click comes from another workspace
    await app.click("approval_approve", value, user=BOB, team="T0OTHER")
    await app.settle()
    refused = audit_records(app.settings.data_dir, "approval.refused")
    assert len(refused) == 1
    assert refused[0]["actor"] == "slack:U0BOB"
    assert "another Slack workspace" in refused[0]["data"]["reason"]
    assert app.engine.store.get_run(run_id).status == "waiting"
    assert any("another Slack workspace" in t for t in ephemerals(app.fake, BOB))


async def test_buttons_that_match_no_live_gate(start_app: Any) -> None:
    app = await start_app({"gated.yaml": GATED})
    await app.click("approval_approve", "v1:r-doesnotexist:ask", user=BOB)
    await app.click("approval_approve", "delete everything", user=CAROL)
    await app.until(lambda: bool(ephemerals(app.fake, BOB)) and bool(ephemerals(app.fake, CAROL)))
    assert "does not belong to an approval" in ephemerals(app.fake, BOB)[0]
    assert "does not belong to an approval" in ephemerals(app.fake, CAROL)[0]

    # a gate that already ended: a clear private answer
    await app.command("run gated", user=ALICE)
    await app.until(lambda: len(approval_posts(app.fake)) == 1)
    value = actions_of(approval_posts(app.fake)[0].args["blocks"])[0]["value"]
    run_id = value.split(":")[1]
    await app.click("approval_approve", value, user=BOB)
    await app.run_until(run_id, lambda r: r.ended)
    await app.click("approval_reject", value, user=CAROL)
    await app.until(lambda: len(ephemerals(app.fake, CAROL)) == 2)
    assert "no longer waiting (it ended approved)" in ephemerals(app.fake, CAROL)[1]
    # the button value names the gate, never the person: DAVE sending BOB's value is DAVE
    await app.command("run gated", user=ALICE)
    await app.until(lambda: len(approval_posts(app.fake)) == 2)
    value = actions_of(approval_posts(app.fake)[1].args["blocks"])[0]["value"]
    await app.click("approval_approve", value, user=DAVE)
    await app.until(lambda: bool(ephemerals(app.fake, DAVE)))
    assert "not an approver" in ephemerals(app.fake, DAVE)[0]
    assert app.engine.store.get_run(value.split(":")[1]).status == "waiting"


def test_recent_requests_expire_and_stay_bounded() -> None:
    from bot.chat.slack.app import RecentRequests, payload_team

    now = [0.0]
    recent = RecentRequests(ttl=10, size=3, now=lambda: now[0])
    assert recent.first_time("a") and not recent.first_time("a")
    now[0] = 11
    assert recent.first_time("a")
    for body in "bcd":
        assert recent.first_time(body)
    assert recent.first_time("a")  # pushed out by newer ones
    assert payload_team({"team_id": "T1"}) == {"T1"}
    assert payload_team({"team": {"id": "T1"}, "user": {"id": "U", "team_id": "T2"}}) == {
        "T1",
        "T2",
    }


async def test_slack_is_on_only_with_both_credentials_and_a_good_token(
    sandbox: Any, tmp_path: Any
) -> None:
    from types import SimpleNamespace

    import pytest

    from bot.chat.slack import extension
    from bot.chat.slack.feature import SlackExtension
    from bot.config import load_settings
    from bot.errors import ConfigError

    env = sandbox.slack.app_env(sandbox.base_url("slack"))
    assert extension(load_settings({})) is None
    assert extension(load_settings({"SLACK_BOT_TOKEN": "xoxb-1"})) is None
    assert isinstance(extension(load_settings(env)), SlackExtension)

    bad = SlackExtension(load_settings({**env, "SLACK_BOT_TOKEN": "xoxb-revoked"}))
    service = SimpleNamespace(chat=None, groups=SimpleNamespace(realms={}))
    with pytest.raises(ConfigError, match="invalid_auth"):
        await bad.prepare(service)  # type: ignore[arg-type]
    await bad.api.aclose()

    other = SlackExtension(load_settings({**env, "RUNBOOK_SLACK_TEAM_ID": "T0ELSEWHERE"}))
    with pytest.raises(ConfigError, match="T0ELSEWHERE"):
        await other.prepare(service)  # type: ignore[arg-type]
    await other.api.aclose()


async def test_garbage_is_refused_before_anything_reads_it(start_app: Any) -> None:
    app = await start_app({"gated.yaml": GATED})
    for body in (b"payload=notjson", b"\xff\xfe\x00", b"payload=%7B"):
        assert (await app.post(body, signed=False)).status_code == 401
        bad_stamp = {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"}
        assert (await app.post(body, signed=False, headers=bad_stamp)).status_code == 401
    # signed by Slack but unreadable: 400, nothing happens
    assert (await app.post(b"payload=notjson")).status_code == 400
    await app.settle()
    assert started_runs(app) == 0


async def test_oversized_chunked_body_is_refused_while_reading(start_app: Any) -> None:
    app = await start_app({"gated.yaml": GATED})

    async def chunks() -> Any:
        for _ in range(64):  # 64 MiB offered, chunked (no Content-Length), unsigned
            yield b"x" * (1024 * 1024)

    # the server stops reading at the limit (bot.web.bodies.read_body) and answers 413,
    # before any signature check; it never buffers the whole body
    answer = await app.http.post(app.url + "/slack/events", content=chunks())
    assert answer.status_code == 413
    await app.settle()
    assert started_runs(app) == 0
