"""A request carrying X-Slack-Retry-Num is acknowledged and ignored entirely, whatever its body."""

from __future__ import annotations

import json
from typing import Any

from slack_harness import (
    ALICE,
    BOB,
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
      min_approvals: 2
  - id: after
    uses: core.noop
"""

RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}


async def _gate(app: Any) -> tuple[str, str]:
    await app.command("run gated", user=ALICE)
    await app.until(lambda: len(approval_posts(app.fake)) == 1)
    value = actions_of(approval_posts(app.fake)[0].args["blocks"])[0]["value"]
    return value, value.split(":")[1]


async def test_a_retried_refusal_is_not_audited_twice_even_with_another_body(
    start_app: Any,
) -> None:
    app = await start_app({"gated.yaml": GATED})
    value, run_id = await _gate(app)
    await app.click("approval_approve", value, user=DAVE)
    await app.until(lambda: len(ephemerals(app.fake, DAVE)) == 1)
    # Slack's retry of the same click; its body differs (a new trigger id and action_ts)
    again = await app.post(
        click_body(app.sandbox, "approval_approve", value, user=DAVE), headers=RETRY
    )
    assert again.status_code == 200 and again.text == ""
    await app.settle()
    refused = audit_records(app.settings.data_dir, "approval.refused")
    assert len(refused) == 1 and refused[0]["actor"] == f"slack:{DAVE}"
    assert len(ephemerals(app.fake, DAVE)) == 1

    # a retry of a click that was never seen (say, before a restart) changes nothing either
    await app.post(click_body(app.sandbox, "approval_approve", value, user=BOB), headers=RETRY)
    await app.settle()
    assert audit_records(app.settings.data_dir, "approval.decided") == []
    assert app.engine.store.get_run(run_id).status == "waiting"

    # the person's own next click (no retry header) counts as usual
    await app.click("approval_approve", value, user=BOB)
    await app.run_until(run_id, lambda r: len(r.steps["ask"].gate.approvals) == 1)


async def test_retried_commands_and_submissions_do_nothing(start_app: Any) -> None:
    app = await start_app({"gated.yaml": GATED})
    body, key = command_body(app.sandbox, "run gated", user=ALICE)
    answer = await app.post(body, headers=RETRY)
    assert answer.status_code == 200 and answer.text == ""
    submission = {
        "type": "view_submission",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": BOB, "team_id": "T0SANDBOX"},
        "view": {
            "type": "modal",
            "callback_id": "approval_fields",
            "private_metadata": "x",
            "state": {},
        },
    }
    from urllib.parse import urlencode

    form = urlencode({"payload": json.dumps(submission)}).encode()
    answer = await app.post(form, headers=RETRY)
    assert answer.status_code == 200 and answer.text == ""
    await app.settle()
    assert audit_records(app.settings.data_dir, "run.started") == []
    assert app.fake.responses(key) == []
    assert approval_posts(app.fake) == []


async def test_url_verification_is_answered_even_when_retried(start_app: Any) -> None:
    app = await start_app({"gated.yaml": GATED})
    body = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "t"}).encode()
    for headers in ({}, RETRY):
        answer = await app.post(body, headers={"Content-Type": "application/json", **headers})
        assert answer.status_code == 200
        assert "c-123" in answer.text
