"""Approval fields are asked in a modal opened with the click's trigger_id, and checked there."""

from __future__ import annotations

from typing import Any

from slack_harness import (
    ALICE,
    BOB,
    DAVE,
    actions_of,
    approval_posts,
    audit_records,
    ephemerals,
    submission_body,
)

FIELDS = """
name: with-fields
channel: "#soc-incidents"
steps:
  - id: ask
    approval:
      prompt: "Reboot prod?"
      approvers: {users: [U0BOB]}
      fields:
        ticket: {type: string, pattern: '^INC[0-9]+$', description: Change ticket}
        minutes: {type: integer, default: 5}
        mode: {type: string, enum: [soft, hard], default: soft}
  - id: after
    uses: core.echo
    with: {ticket: "{{ steps.ask.output.fields.ticket }}"}
"""


async def test_fields_modal_validates_then_decides(start_app: Any) -> None:
    app = await start_app({"fields.yaml": FIELDS})
    fake = app.fake
    await app.command("run with-fields", user=ALICE)
    await app.until(lambda: len(approval_posts(fake)) == 1)
    value = actions_of(approval_posts(fake)[0].args["blocks"])[0]["value"]
    run_id = value.split(":")[1]

    # someone who may not decide is refused at once (audited), no modal
    await app.click("approval_approve", value, user=DAVE, trigger_id="trig-dave")
    await app.until(lambda: bool(ephemerals(fake, DAVE)))
    assert fake.api_calls("views.open") == []

    await app.click("approval_approve", value, user=BOB, trigger_id="trig-bob")
    await app.until(lambda: bool(fake.api_calls("views.open")))
    (opened,) = fake.api_calls("views.open")
    assert opened.args["trigger_id"] == "trig-bob"
    view = opened.args["view"]
    assert view["callback_id"] == "approval_fields"
    labels = [b["label"]["text"] for b in view["blocks"] if b["type"] == "input"]
    assert labels == ["ticket", "minutes", "mode", "Comment"]
    mode = next(b for b in view["blocks"] if b.get("block_id") == "field:mode")
    assert mode["element"]["type"] == "static_select"
    assert mode["element"]["initial_option"]["value"] == '"soft"'

    # a bad value: the modal shows the error and nothing is decided
    bad = {
        "field:ticket": {"value": {"type": "plain_text_input", "value": "CHG1"}},
        "field:minutes": {"value": {"type": "number_input", "value": "7"}},
        "field:mode": {"value": {"type": "static_select", "selected_option": {"value": '"hard"'}}},
    }
    response = await app.post(submission_body(view, bad, user=BOB))
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_action"] == "errors"
    assert "does not match pattern" in answer["errors"]["field:ticket"]
    assert app.engine.store.get_run(run_id).status == "waiting"

    good = dict(bad)
    good["field:ticket"] = {"value": {"type": "plain_text_input", "value": "INC42"}}
    good["comment"] = {"value": {"type": "plain_text_input", "value": "approved in CAB"}}
    response = await app.post(submission_body(view, good, user=BOB))
    assert response.status_code == 200
    assert "errors" not in response.text
    run = await app.run_until(run_id, lambda r: r.ended)
    assert run.status == "succeeded"
    output = run.steps["ask"].output
    assert output["fields"] == {"ticket": "INC42", "minutes": 7, "mode": "hard"}
    assert output["comments"] and "approved in CAB" in str(output["comments"])
    assert run.steps["after"].output == {"ticket": "INC42"}
    (decided,) = audit_records(app.settings.data_dir, "approval.decided")
    assert decided["actor"] == "slack:U0BOB"


async def test_a_modal_submitted_by_someone_else_is_judged_as_them(start_app: Any) -> None:
    app = await start_app({"fields.yaml": FIELDS})
    fake = app.fake
    await app.command("run with-fields", user=ALICE)
    await app.until(lambda: len(approval_posts(fake)) == 1)
    value = actions_of(approval_posts(fake)[0].args["blocks"])[0]["value"]
    await app.click("approval_approve", value, user=BOB)
    await app.until(lambda: bool(fake.api_calls("views.open")))
    view = fake.api_calls("views.open")[0].args["view"]
    values = {"field:ticket": {"value": {"type": "plain_text_input", "value": "INC1"}}}
    # the modal's metadata names the gate; the submitter (DAVE) is who decides
    await app.post(submission_body(view, values, user=DAVE))
    await app.until(lambda: bool(ephemerals(fake, DAVE)))
    assert "not an approver" in ephemerals(fake, DAVE)[0]
    assert app.engine.store.get_run(value.split(":")[1]).status == "waiting"
