"""Escalation and expiry on an injected clock: the thread hears of it, the message follows."""

from __future__ import annotations

from typing import Any

from slack_harness import BOB, CAROL, DAVE, SOC, actions_of, approval_posts, ephemerals, text_of

from bot.engine.clock import FakeClock
from bot.engine.timers import ClockTimers

ESCALATING = """
name: escalating
channel: "#soc-incidents"
steps:
  - id: ask
    approval:
      prompt: "Contain?"
      approvers: {users: [U0BOB]}
      timeout: 30m
      escalate: {after: 15m, to: {groups: [soc-managers]}}
  - id: after
    uses: core.noop
"""


async def start_with_clock(start_app: Any) -> tuple[Any, FakeClock]:
    clock = FakeClock()
    app = await start_app({"escalating.yaml": ESCALATING}, clock=clock, timers=ClockTimers(clock))
    return app, clock


async def open_gate(app: Any) -> tuple[str, str, str]:
    await app.command("run escalating", user=DAVE)
    await app.until(lambda: len(approval_posts(app.fake)) == 1)
    value = actions_of(approval_posts(app.fake)[0].args["blocks"])[0]["value"]
    gate_ts = next(m["ts"] for m in app.fake.messages(SOC) if actions_of(m.get("blocks")))
    thread_ts = next(m["ts"] for m in app.fake.messages(SOC) if "thread_ts" not in m)
    return value, gate_ts, thread_ts


async def test_escalation_mentions_the_group_and_lets_it_decide(start_app: Any) -> None:
    app, clock = await start_with_clock(start_app)
    value, gate_ts, thread_ts = await open_gate(app)
    run_id = value.split(":")[1]
    assert "Escalates" in text_of(app.message(SOC, gate_ts)["blocks"])

    # before the escalation CAROL (soc-managers) may not decide
    await app.click("approval_approve", value, user=CAROL, message_ts=gate_ts)
    await app.until(lambda: bool(ephemerals(app.fake, CAROL)))
    assert "not an approver" in ephemerals(app.fake, CAROL)[0]

    await clock.advance(14 * 60)
    assert not app.engine.store.get_run(run_id).steps["ask"].gate.escalated
    await clock.advance(60)
    await app.until(
        lambda: any(
            m.get("thread_ts") == thread_ts and "<!subteam^S0SOCMGR>" in text_of(m.get("blocks"))
            for m in app.fake.messages(SOC)
        )
    )
    await app.until(
        lambda: "escalated to <!subteam^S0SOCMGR>" in text_of(app.message(SOC, gate_ts)["blocks"])
    )
    # a client that reads only `text` sees the mentions too
    notice = next(m for m in app.fake.messages(SOC) if m.get("text", "").startswith("Escalated:"))
    assert "<!subteam^S0SOCMGR>" in notice["text"]
    assert "(escalated) <!subteam^S0SOCMGR>" in app.message(SOC, gate_ts)["text"]
    assert actions_of(app.message(SOC, gate_ts)["blocks"])  # still open

    await app.click("approval_approve", value, user=CAROL, message_ts=gate_ts)
    run = await app.run_until(run_id, lambda r: r.ended)
    assert run.status == "succeeded"
    assert run.steps["ask"].output["decided_by"] == ["slack:U0CAROL"]


async def test_expiry_ends_the_gate_and_removes_the_buttons(start_app: Any) -> None:
    app, clock = await start_with_clock(start_app)
    value, gate_ts, thread_ts = await open_gate(app)
    run_id = value.split(":")[1]
    await clock.advance(30 * 60)
    run = await app.run_until(run_id, lambda r: r.ended)
    assert run.status == "rejected"
    assert run.steps["ask"].outcome == "expired"
    await app.until(lambda: "Expired" in text_of(app.message(SOC, gate_ts).get("blocks")))
    assert actions_of(app.message(SOC, gate_ts)["blocks"]) == []
    await app.until(
        lambda: any(
            m.get("thread_ts") == thread_ts
            and "rejected" in m.get("text", "")
            and "in 30m" in m.get("text", "")
            for m in app.fake.messages(SOC)
        )
    )

    # a click after the expiry: a clear private answer
    await app.click("approval_approve", value, user=BOB, message_ts=gate_ts)
    await app.until(lambda: bool(ephemerals(app.fake, BOB)))
    assert "no longer waiting" in ephemerals(app.fake, BOB)[0]
