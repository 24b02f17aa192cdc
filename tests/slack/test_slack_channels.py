"""Where messages go: channels as the runbook writes them; no channel, no Slack (SPEC 1.1)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from slack_harness import ALICE, BOB, SOC, actions_of, approval_posts

NO_CHANNEL = """
name: nochan
steps:
  - id: tell
    notify: {text: "starting the work"}
  - id: ask
    approval:
      prompt: "Go?"
  - id: after
    uses: core.noop
"""

OWN_GATE_CHANNEL = """
name: leads-only
steps:
  - id: ask
    approval:
      prompt: "Leads, go?"
      channel: "#soc-leads"
      approvers: {users: [U0CAROL]}
  - id: tell
    notify: {text: "done", channel: "#ops"}
"""

WITH_CHANNEL = """
name: gated
channel: "#soc-incidents"
steps:
  - id: ask
    approval:
      prompt: "Go?"
      approvers: {users: [U0BOB]}
  - id: tell
    notify: {text: "approved and done"}
"""


async def test_a_runbook_without_channel_posts_nothing_in_slack(
    start_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="runbook.slack")
    app = await start_app({"nochan.yaml": NO_CHANNEL})
    warnings = [r.getMessage() for r in caplog.records if "nochan" in r.getMessage()]
    assert len(warnings) == 1
    assert "has no channel" in warnings[0] and "ask" in warnings[0] and "tell" in warnings[0]

    response, key = await app.command("run nochan", user=ALICE, channel=SOC)
    assert response.status_code == 200
    await app.until(lambda: bool(app.fake.responses(key)))
    told = json.dumps(app.fake.responses(key))
    assert "Started run" in told and "no Slack channel" in told
    run_id = next(r for r in app.engine.store.world.runs.values()).id
    assert run_id in told
    run = await app.run_until(run_id, lambda r: r.status == "waiting")
    await app.settle()
    assert run.steps["tell"].outcome == "succeeded"
    assert app.fake.api_calls("chat.postMessage") == []
    assert app.fake.api_calls("chat.update") == []

    # decided elsewhere (the API, the terminal): the run ends, still nothing in Slack
    await app.engine.decide(run_id, "ask", "api:ci", "approve", comment=None, fields=None)
    run = await app.run_until(run_id, lambda r: r.ended)
    assert run.status == "succeeded"
    await app.settle()
    assert app.fake.api_calls("chat.postMessage") == []


async def test_a_gate_or_notice_with_its_own_channel_still_posts_there(start_app: Any) -> None:
    app = await start_app({"leads.yaml": OWN_GATE_CHANNEL})
    await app.command("run leads-only", user=ALICE, channel=SOC)
    await app.until(lambda: len(approval_posts(app.fake)) == 1)
    (post,) = approval_posts(app.fake)
    assert post.args["channel"] == "#soc-leads"
    assert "thread_ts" not in post.args  # no thread: it stands on its own
    value = actions_of(post.args["blocks"])[0]["value"]
    await app.click("approval_approve", value, user="U0CAROL", channel="C0SOCLEAD")
    run = await app.run_until(value.split(":")[1], lambda r: r.ended)
    assert run.status == "succeeded"
    posted = [c.args["channel"] for c in app.fake.api_calls("chat.postMessage")]
    assert posted == ["#soc-leads", "#ops"]


async def test_channels_are_sent_as_written_and_the_thread_follows_slacks_id(
    start_app: Any,
) -> None:
    app = await start_app({"gated.yaml": WITH_CHANNEL})
    await app.command("run gated", user=ALICE)
    await app.until(lambda: len(approval_posts(app.fake)) == 1)
    root = app.fake.api_calls("chat.postMessage")[0]
    assert root.args["channel"] == "#soc-incidents" and "thread_ts" not in root.args
    thread_ts = app.fake.messages(SOC)[0]["ts"]
    (gate,) = approval_posts(app.fake)
    assert gate.args["channel"] == "#soc-incidents"
    assert gate.args["thread_ts"] == thread_ts  # the runbook's spelling is the thread's channel
    value = actions_of(gate.args["blocks"])[0]["value"]
    await app.click("approval_approve", value, user=BOB)
    await app.run_until(value.split(":")[1], lambda r: r.ended)
    await app.settle()
    notice = next(
        c
        for c in app.fake.api_calls("chat.postMessage")
        if c.args.get("text") == "approved and done"
    )
    assert notice.args["thread_ts"] == thread_ts
    # edits go to the id Slack answered with
    assert {c.args["channel"] for c in app.fake.api_calls("chat.update")} == {SOC}
