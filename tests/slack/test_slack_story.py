"""The whole story over real HTTP: slash command → run → approval → refusals → quorum → summary."""

from __future__ import annotations

import time
from typing import Any

from slack_harness import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    SOC,
    actions_of,
    approval_posts,
    audit_records,
    ephemerals,
    text_of,
)

CONTAIN = """
name: contain-host
title: Contain a host
channel: "#soc-incidents"
inputs:
  host: {type: string, pattern: '^[a-z0-9-]+$', description: Host name}
  reason: {type: string, default: suspected compromise}
triggers:
  - command: contain
steps:
  - id: look
    uses: core.echo
    with: {host: "{{ inputs.host }}", platform: linux}
  - id: approve
    title: Ask two leads
    description: |
      Containment cuts the host off. **Tell the owner** first;
      see [the guide](https://example.com/guide).
    approval:
      prompt: "Contain *{{ inputs.host }}* ({{ steps.look.output.platform }})? {{ inputs.reason }}"
      approvers: {groups: [soc-leads], users: [U0BOB]}
      min_approvals: 2
      timeout: 1h
  - id: contain
    uses: core.echo
    with: {done: true}
  - id: tell
    notify: {text: "Host {{ inputs.host }} contained"}
"""


async def test_the_whole_story(start_app: Any) -> None:
    app = await start_app({"contain.yaml": CONTAIN})
    fake = app.fake

    began = time.perf_counter()
    response, key = await app.command('run contain-host host=web-1 reason="two words"', user=ALICE)
    acked = time.perf_counter() - began
    assert response.status_code == 200
    assert "Starting" in response.json()["text"]
    assert acked < 3.0

    # the run's thread, then the approval request in it
    await app.until(lambda: len(approval_posts(fake)) == 1)
    (root,) = [m for m in fake.messages(SOC) if "thread_ts" not in m]
    (gate_post,) = approval_posts(fake)
    thread_ts = root["ts"]
    assert gate_post.args["thread_ts"] == thread_ts
    assert "started by <@U024BE7LH>" in text_of(root["blocks"])
    assert "host=`web-1`" in text_of(root["blocks"])
    shown = text_of(gate_post.args["blocks"])
    for expected in (
        "Ask two leads",
        "*Tell the owner*",
        "<https://example.com/guide|the guide>",
        "Contain *web-1* (linux)? two words",
        "contain-host",
        "<@U024BE7LH>",
        "<!subteam^S0SOCLEADS>",
        "<@U0BOB>",
        "2 approvals",
        "Deadline",
        "host=",
        "Earlier steps",
    ):
        assert expected in shown, expected
    buttons = {b["action_id"]: b for b in actions_of(gate_post.args["blocks"])}
    assert set(buttons) == {"approval_approve", "approval_reject"}
    assert buttons["approval_approve"]["style"] == "primary"
    assert "confirm" in buttons["approval_approve"]
    assert buttons["approval_reject"]["style"] == "danger"
    value = buttons["approval_approve"]["value"]
    run_id = value.split(":")[1]
    gate_ts = next(m["ts"] for m in fake.messages(SOC) if actions_of(m.get("blocks")))
    await app.until(
        lambda: any(
            r.get("text", "").startswith(":arrow_forward: Started run") for r in fake.responses(key)
        )
    )

    # a non-approver is refused privately, and it is audited
    await app.click("approval_approve", value, user=DAVE, message_ts=gate_ts)
    await app.until(lambda: bool(ephemerals(fake, DAVE)))
    assert "not an approver" in ephemerals(fake, DAVE)[0]

    # the requester may not approve (four-eyes)
    await app.click("approval_approve", value, user=ALICE, message_ts=gate_ts)
    await app.until(lambda: bool(ephemerals(fake, ALICE)))
    assert "four-eyes" in ephemerals(fake, ALICE)[0]

    # first approver: accepted, the message says who and how many are still needed
    updates_before = len(fake.api_calls("chat.update"))
    await app.click("approval_approve", value, user=BOB, message_ts=gate_ts)
    run = await app.run_until(run_id, lambda r: len(r.steps["approve"].gate.approvals) == 1)
    await app.until(
        lambda: any(
            c.args.get("ts") == gate_ts
            and "1 more approval needed" in text_of(c.args.get("blocks"))
            for c in fake.api_calls("chat.update")[updates_before:]
        )
    )
    assert run.status == "waiting"
    # ... and so does its `text`, for clients that read only that
    partly = app.message(SOC, gate_ts)["text"]
    assert "<@U0BOB> approved at " in partly and "1 more approval needed" in partly
    assert "Contain *web-1* (linux)? two words" in partly

    # bob clicks again (a double click): refused, never counted twice
    await app.click("approval_approve", value, user=BOB, message_ts=gate_ts)
    await app.until(lambda: bool(ephemerals(fake, BOB)))
    assert "already decided" in ephemerals(fake, BOB)[0]
    assert len(app.engine.store.get_run(run_id).steps["approve"].gate.approvals) == 1

    # second approver: quorum reached, the run carries on to the end
    await app.click("approval_approve", value, user=CAROL, message_ts=gate_ts)
    run = await app.run_until(run_id, lambda r: r.ended)
    assert run.status == "succeeded"
    assert run.steps["approve"].output["decided_by"] == ["slack:U0BOB", "slack:U0CAROL"]
    assert run.steps["contain"].outcome == "succeeded"

    # the gate message lost its buttons and shows the outcome; the thread has notice + summary;
    # the root message, updated last, shows the outcome
    await app.until(lambda: "*succeeded*" in text_of(app.message(SOC, thread_ts)["blocks"]))
    await app.settle()
    gate_now = next(m for m in fake.messages(SOC) if m["ts"] == gate_ts)
    assert actions_of(gate_now.get("blocks")) == []
    assert "Approved* by <@U0BOB>, <@U0CAROL>" in text_of(gate_now["blocks"])
    assert "approved by <@U0BOB>, <@U0CAROL>" in gate_now["text"]
    in_thread = [m for m in fake.messages(SOC) if m.get("thread_ts") == thread_ts]
    texts = [m.get("text", "") for m in in_thread]
    assert "Host web-1 contained" in texts
    assert any("succeeded in" in t for t in texts)  # the summary
    status = [m for m in in_thread if "Status:" in text_of(m.get("blocks"))]
    assert len(status) == 1, "one status message, edited in place"
    assert "Status: succeeded" in text_of(status[0]["blocks"])
    assert "edited" in status[0]

    refused = audit_records(app.settings.data_dir, "approval.refused")
    assert [(r["actor"], r["data"]["decision"]) for r in refused] == [
        ("slack:U0DAVE", "approve"),
        ("slack:U024BE7LH", "approve"),
        ("slack:U0BOB", "approve"),
    ]
    decided = audit_records(app.settings.data_dir, "approval.decided")
    assert [r["actor"] for r in decided] == ["slack:U0BOB", "slack:U0CAROL"]
    started = audit_records(app.settings.data_dir, "run.started")
    assert started[0]["actor"] == "slack:U024BE7LH"
    assert started[0]["data"]["inputs"] == {"host": "web-1", "reason": "two words"}
    assert started[0]["data"]["trigger"] == {"kind": "slack", "channel": SOC}


async def test_a_slack_retry_is_ignored_without_a_record(start_app: Any) -> None:
    app = await start_app({"contain.yaml": CONTAIN})
    fake = app.fake
    await app.command("contain host=web-2", user=ALICE)
    await app.until(lambda: len(approval_posts(fake)) == 1)
    value = actions_of(approval_posts(fake)[0].args["blocks"])[0]["value"]
    run_id = value.split(":")[1]
    from slack_harness import click_body

    body = click_body(app.sandbox, "approval_approve", value, user=BOB)
    first = await app.post(body)
    again = await app.post(
        body, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    assert first.status_code == again.status_code == 200
    await app.run_until(run_id, lambda r: len(r.steps["approve"].gate.approvals) == 1)
    await app.settle()
    assert audit_records(app.settings.data_dir, "approval.refused") == []
    assert len(audit_records(app.settings.data_dir, "approval.decided")) == 1
    assert ephemerals(fake, BOB) == []


async def test_reject_ends_the_run_and_removes_the_buttons(start_app: Any) -> None:
    app = await start_app({"contain.yaml": CONTAIN})
    fake = app.fake
    await app.command("contain host=web-3", user=ALICE)
    await app.until(lambda: len(approval_posts(fake)) == 1)
    value = actions_of(approval_posts(fake)[0].args["blocks"])[0]["value"]
    run_id = value.split(":")[1]
    gate_ts = next(m["ts"] for m in fake.messages(SOC) if actions_of(m.get("blocks")))
    # the requester may reject (four-eyes only stops approving)
    await app.click("approval_reject", value, user=ALICE, message_ts=gate_ts)
    run = await app.run_until(run_id, lambda r: r.ended)
    assert run.status == "rejected"
    await app.until(lambda: "Rejected* by" in text_of(app.message(SOC, gate_ts)["blocks"]))
    gate_now = app.message(SOC, gate_ts)
    assert actions_of(gate_now["blocks"]) == []
    assert "Rejected* by <@U024BE7LH>" in text_of(gate_now["blocks"])


STEPS = """
name: steps
channel: "#soc-incidents"
steps:
  - {id: a, uses: core.noop}
  - {id: b, uses: core.noop}
  - {id: c, uses: core.noop}
  - {id: wait, uses: core.sleep, with: {seconds: 0.6}}
  - {id: d, uses: core.noop}
  - {id: e, uses: core.noop}
"""


async def test_the_status_message_is_edited_in_place_not_flooded(start_app: Any) -> None:
    app = await start_app({"steps.yaml": STEPS})
    app.extension.chat.status_interval = 0.2
    fake = app.fake
    await app.command("run steps", user=ALICE)
    await app.until(lambda: any("succeeded in" in m.get("text", "") for m in fake.messages(SOC)))
    await app.settle()
    (root,) = [m for m in fake.messages(SOC) if "thread_ts" not in m]
    replies = [m for m in fake.messages(SOC) if m.get("thread_ts") == root["ts"]]
    status = [m for m in replies if "Status:" in text_of(m.get("blocks"))]
    assert len(status) == 1
    assert "Status: succeeded" in text_of(status[0]["blocks"])
    edits = [c for c in fake.api_calls("chat.update") if c.args["ts"] == status[0]["ts"]]
    assert 1 <= len(edits) <= 3, "14 records, a handful of edits"
    assert len(replies) == 2  # the status message and the summary


GATE_FIRST = """
name: gate-first
channel: "#soc-incidents"
steps:
  - id: ask
    approval: {prompt: "Go?", approvers: {users: [U0BOB]}}
  - {id: after, uses: core.noop}
"""


async def test_the_status_message_comes_first_in_the_thread(start_app: Any) -> None:
    app = await start_app({"gate.yaml": GATE_FIRST})
    app.extension.chat.status_interval = 60.0  # edits wait; the first post must not
    fake = app.fake
    await app.command("run gate-first", user=ALICE)
    await app.until(lambda: len(approval_posts(fake)) == 1)
    (root,) = [m for m in fake.messages(SOC) if "thread_ts" not in m]
    in_thread = [m for m in fake.messages(SOC) if m.get("thread_ts") == root["ts"]]
    assert "Status:" in text_of(in_thread[0].get("blocks"))
    assert actions_of(in_thread[1].get("blocks")), "then the approval request"
    assert len(in_thread) == 2
