"""auth.test is informational: Slack stays on when it fails or says little; a refused token
stops ``runbook serve`` with one line and exit status 1."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from slack_harness import (
    ALICE,
    BOB,
    actions_of,
    approval_posts,
    minimal_auth_test,
    restore,
    slack_env,
    without_method,
    write_runbooks,
)

from bot.chat.slack import feature
from bot.sandbox import Sandbox
from bot.sandbox.slack import TEAM_ID, FakeSlack

GATED = """
name: gated
channel: "#soc-incidents"
steps:
  - id: ask
    approval:
      prompt: "Go?"
      approvers: {users: [U0BOB]}
  - id: after
    uses: core.noop
"""


async def _health(app: Any) -> dict[str, Any]:
    answer = await app.http.get(app.url + "/healthz")
    assert answer.status_code == 200
    slack: dict[str, Any] = answer.json()["slack"]
    return slack


async def _decide_from(app: Any, team: str) -> str:
    """Start a run, click Approve as BOB from ``team``; the run's status afterwards."""
    response, _ = await app.command("run gated", user=ALICE, team=team)
    assert response.status_code == 200 and "Starting" in response.text
    await app.until(lambda: len(approval_posts(app.fake)) >= 1)
    value = actions_of(approval_posts(app.fake)[-1].args["blocks"])[0]["value"]
    await app.click("approval_approve", value, user=BOB, team=team)
    run = await app.run_until(value.split(":")[1], lambda r: r.ended)
    return str(run.status)


@pytest.mark.parametrize(
    "answer",
    [{"url": "https://x.slack.com/"}, {"user_id": "U0BOT"}],
    ids=["url-only", "user-only"],
)
async def test_auth_test_without_a_team_serves_requests_without_the_workspace_check(
    start_app: Any, fake: FakeSlack, answer: dict[str, Any]
) -> None:
    minimal_auth_test(fake, answer)
    app = await start_app({"gated.yaml": GATED})
    help_answer, _ = await app.command("help", user=ALICE)
    assert help_answer.status_code == 200 and "/runbook" in help_answer.text
    assert "not connected" not in help_answer.text
    assert await _decide_from(app, "T0ANYTHING") == "succeeded"
    health = await _health(app)
    assert health["state"] == "no_workspace"
    assert health["connected"] is True and health["workspace_check"] is False
    assert health["team_id"] is None


async def test_auth_test_failing_keeps_slack_on_and_is_asked_again(
    start_app: Any, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feature, "RECONNECT_FIRST", 0.2)
    without_method(fake, "auth.test")
    app = await start_app({"gated.yaml": GATED})
    health = await _health(app)
    assert health["state"] == "unreachable" and health["last_error"] == "unknown_method"
    assert await _decide_from(app, TEAM_ID) == "succeeded"

    restore(fake)  # Slack answers auth.test again: the workspace check is back
    async with asyncio.timeout(10):  # the background retry (every 0.2 s, doubling)
        while app.extension.team_id is None:
            await asyncio.sleep(0.05)
    assert app.extension.team_id == TEAM_ID
    assert (await _health(app))["state"] == "connected"
    response, _ = await app.command("run gated", user=ALICE, team="T0OTHER")
    assert "another Slack workspace" in response.text


@pytest.mark.parametrize("fault", ["http500", "http404", "ratelimited"])
async def test_auth_test_transient_errors_do_not_turn_slack_off(
    start_app: Any, fake: FakeSlack, fault: str
) -> None:
    if fault == "http500":
        fake.server_error(status=500, times=None, match="/api/auth.test")
    elif fault == "http404":
        without_method(fake, "auth.test", http404=True)
    else:
        fake.rate_limit(retry_after=30, times=None, match="/api/auth.test")
    app = await start_app({"gated.yaml": GATED})
    assert not app.extension.connected
    assert await _decide_from(app, TEAM_ID) == "succeeded"
    # a 429 or a 5xx at start is not waited out: the start does not hang on it
    assert len(fake.calls_to("/api/auth.test")) == 1


# -- runbook serve with a token Slack refuses --------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("code", ["invalid_auth", "token_revoked"])
def test_serve_with_a_refused_token_exits_1_with_one_line(
    sandbox: Sandbox, tmp_path: Path, code: str
) -> None:
    env = {
        **slack_env(sandbox, write_runbooks(tmp_path / "rb", {"g.yaml": GATED}), tmp_path / "d"),
        "PATH": "/usr/bin:/bin",
    }
    if code == "invalid_auth":
        env["SLACK_BOT_TOKEN"] = "xoxb-not-the-right-token-at-all"
    else:
        sandbox.slack.fail("auth.test", code)
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("runbook:")]
    assert len(errors) == 1, done.stderr
    assert f"Slack refused SLACK_BOT_TOKEN ({code})" in errors[0]
    assert env["SLACK_BOT_TOKEN"] not in done.stderr
    assert "listening on" not in done.stderr
    assert not (tmp_path / "d" / "audit.jsonl").exists()  # the data directory was not taken
