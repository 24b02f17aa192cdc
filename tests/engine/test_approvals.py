"""Approval gates (SPEC §1.4): eligibility, four-eyes, quorum, refusals, deadlines, restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.engine.approvals import Verdict
from bot.errors import InputError
from tests.engine.harness import make_engine

GATE = """
name: gate
steps:
  - id: find
    uses: core.echo
    with: {host: web-1}
  - id: approve
    approval:
      prompt: "Contain *{{ steps.find.output.host }}*?"
      approvers: {users: [alice, bob, carol], groups: [leads]}
      min_approvals: 2
  - id: contain
    uses: core.echo
    with: {by: "{{ steps.approve.output.decided_by }}"}
"""


async def test_quorum_of_distinct_people_with_refusals_audited() -> None:
    h = make_engine(GATE, groups={"leads": ["dora"]})
    run = await h.start("gate", requester="cli:carol")
    assert run.status == "waiting"
    assert h.of("approval.requested")[0]["data"]["prompt"] == "Contain *web-1*?"
    assert ("gate_opened", run.id, "approve") in h.chat.calls

    refused = await h.engine.decide(run.id, "approve", "cli:mallory", "approve")
    assert refused.verdict is Verdict.REFUSED
    assert refused.reason == "you are not an approver for this step"

    own = await h.engine.decide(run.id, "approve", "cli:carol", "approve")
    assert own.verdict is Verdict.REFUSED and "four-eyes" in own.reason

    first = await h.engine.decide(run.id, "approve", "cli:alice", "approve", comment="ok")
    assert first.verdict is Verdict.ACCEPTED and first.gate_open and first.approvals == 1
    again = await h.engine.decide(run.id, "approve", "cli:alice", "approve")
    assert again.verdict is Verdict.REFUSED and "already decided" in again.reason

    second = await h.engine.decide(run.id, "approve", "cli:dora", "approve")  # via group
    assert second.verdict is Verdict.ACCEPTED and not second.gate_open
    assert second.outcome == "approved"
    run = await h.settle(run.id)
    assert run.status == "succeeded"
    assert run.steps["contain"].output == {"by": ["cli:alice", "cli:dora"]}
    refusals = h.of("approval.refused")
    assert [r["actor"] for r in refusals] == ["cli:mallory", "cli:carol", "cli:alice"]
    decided = h.of("approval.decided")
    assert [(r["actor"], r["data"]["approvals"], r["data"]["required"]) for r in decided] == [
        ("cli:alice", 1, 2),
        ("cli:dora", 2, 2),
    ]
    late = await h.engine.decide(run.id, "approve", "cli:bob", "approve")
    assert late.verdict is Verdict.NOT_WAITING
    await h.close()


async def test_requester_may_reject_and_one_reject_ends_the_gate() -> None:
    h = make_engine(GATE)
    run = await h.start("gate", requester="cli:carol")
    await h.engine.decide(run.id, "approve", "cli:alice", "approve")
    result = await h.engine.decide(run.id, "approve", "cli:carol", "reject", comment="wrong host")
    assert result.verdict is Verdict.ACCEPTED and result.outcome == "rejected"
    run = await h.settle(run.id)
    assert run.status == "rejected"
    assert run.steps["approve"].output["decided_by"] == ["cli:carol"]
    await h.close()


async def test_gate_without_approvers_is_open_to_all_but_requester_may_only_reject() -> None:
    h = make_engine("""
name: open
steps:
  - id: g
    approval: {prompt: "ok?"}
  - id: g2
    approval: {prompt: "ok again?", allow_requester: true}
""")
    run = await h.start("open", requester="cli:carol")
    assert (await h.engine.decide(run.id, "g", "cli:carol", "approve")).verdict is Verdict.REFUSED
    assert (await h.engine.decide(run.id, "g", "cli:anyone", "approve")).outcome == "approved"
    await h.settle(run.id)
    assert (await h.engine.decide(run.id, "g2", "cli:carol", "approve")).outcome == "approved"
    assert (await h.settle(run.id)).status == "succeeded"
    await h.close()


async def test_skip_is_only_for_recovery_gates() -> None:
    h = make_engine(GATE)
    run = await h.start("gate")
    result = await h.engine.decide(run.id, "approve", "cli:alice", "skip")
    assert result.verdict is Verdict.REFUSED and "recovery" in result.reason
    await h.close()


TIMED = """
name: timed
steps:
  - id: g
    approval:
      prompt: "go?"
      approvers: {users: [alice]}
      timeout: 30m
      escalate: {after: 10m, to: {users: [manager], groups: [managers]}}
  - id: after
    uses: core.noop
"""


async def test_escalation_then_expiry_on_the_injected_clock() -> None:
    h = make_engine(TIMED)
    run = await h.start("timed")
    # the manager may not decide before escalation
    early = await h.engine.decide(run.id, "g", "cli:manager", "approve")
    assert early.verdict is Verdict.REFUSED
    await h.advance(10 * 60)
    assert h.of("approval.escalated")[0]["data"] == {"users": ["manager"], "groups": ["managers"]}
    assert ("gate_escalated", run.id, "g") in h.chat.calls
    await h.advance(20 * 60)
    run = await h.settle(run.id)
    assert run.status == "rejected"
    assert run.steps["g"].outcome == "expired"
    assert run.steps["after"].outcome == "skipped"
    assert h.of("approval.expired")[0]["data"]["on_timeout"] == "reject"
    assert ("gate_changed", run.id, "g") in h.chat.calls
    await h.close()


async def test_escalated_people_may_decide() -> None:
    h = make_engine(TIMED)
    run = await h.start("timed")
    await h.advance(11 * 60)
    result = await h.engine.decide(run.id, "g", "cli:manager", "approve")
    assert result.outcome == "approved"
    assert (await h.settle(run.id)).status == "succeeded"
    await h.close()


async def test_on_timeout_approve_ends_approved_with_nobody() -> None:
    h = make_engine("""
name: autoapprove
steps:
  - id: g
    approval: {prompt: "go?", timeout: 5m, on_timeout: approve}
  - id: after
    uses: core.echo
    with: {by: "{{ steps.g.output.decided_by }}"}
""")
    run = await h.start("autoapprove")
    await h.advance(300)
    run = await h.settle(run.id)
    assert run.status == "succeeded"
    assert run.steps["g"].outcome == "approved"
    assert run.steps["after"].output == {"by": []}
    assert len(h.of("approval.expired")) == 1
    await h.close()


async def test_fields_are_validated_and_land_in_the_output() -> None:
    h = make_engine("""
name: fields
steps:
  - id: g
    approval:
      prompt: "why?"
      fields:
        reason: {type: string, required: true}
        hours: {type: integer, default: 4}
  - id: after
    uses: core.echo
    with: {reason: "{{ steps.g.output.fields.reason }}", hours: "{{ steps.g.output.fields.hours }}"}
""")
    run = await h.start("fields")
    with pytest.raises(InputError):
        await h.engine.decide(run.id, "g", "cli:alice", "approve")
    with pytest.raises(InputError):
        await h.engine.decide(
            run.id, "g", "cli:alice", "approve", fields={"reason": "x", "hours": "many"}
        )
    await h.engine.decide(
        run.id, "g", "cli:alice", "approve", fields={"reason": "phish", "hours": "8"}
    )
    run = await h.settle(run.id)
    assert run.steps["after"].output == {"reason": "phish", "hours": 8}
    await h.close()


async def test_gate_post_failure_fails_the_step_clearly() -> None:
    from bot.errors import ChatError

    h = make_engine(GATE)
    h.chat.fail_gate = ChatError("not_in_channel")
    run = await h.start("gate")
    assert run.status == "failed"
    assert run.steps["approve"].error == "could not post the approval request: not_in_channel"
    await h.close()


async def test_deadline_survives_a_restart_and_fires_when_due(tmp_path: Path) -> None:
    h = make_engine(TIMED, data_dir=tmp_path)
    run = await h.start("timed")
    run_id = run.id
    await h.close()  # the process "stops"; the gate waits on disk
    h2 = make_engine(TIMED, data_dir=tmp_path)
    h2.clock._now = h.clock.now()
    await h2.engine.start(resume=True)
    assert h2.store.get_run(run_id).status == "waiting"
    await h2.advance(31 * 60)  # escalation and expiry both fire from the stored deadlines
    run = await h2.settle(run_id)
    assert run.status == "rejected"
    assert [r["event"] for r in h2.records][:2] == ["approval.escalated", "approval.expired"]
    await h2.close()


async def test_deadline_that_passed_while_down_fires_at_start(tmp_path: Path) -> None:
    h = make_engine(TIMED, data_dir=tmp_path)
    run = await h.start("timed")
    await h.close()
    h2 = make_engine(TIMED, data_dir=tmp_path)
    h2.clock._now = h.clock.now()
    await h2.clock.advance(3600)  # an hour of downtime
    await h2.engine.start(resume=True)
    run = await h2.settle(run.id)
    assert run.steps["g"].outcome == "expired"
    await h2.close()


async def test_the_prompt_is_recorded_with_its_data_escaped_for_chat_markup() -> None:
    source = """
name: gate
inputs:
  host: {type: string}
steps:
  - id: approve
    approval:
      prompt: "Contain *{{ inputs.host }}*? <https://wiki.example/ir|Playbook>"
"""
    h = make_engine(source)
    host = "<https://evil.example/x|Approve here> <@U0CAROL> &"
    run = await h.start("gate", inputs={"host": host}, requester="cli:carol")
    data = h.of("approval.requested")[0]["data"]
    assert data["prompt"] == f"Contain *{host}*? <https://wiki.example/ir|Playbook>"
    escaped = "&lt;https://evil.example/x|Approve here&gt; &lt;@U0CAROL&gt; &amp;"
    assert data["markup_prompt"] == f"Contain *{escaped}*? <https://wiki.example/ir|Playbook>"
    gate = run.steps["approve"].gate
    assert gate is not None and gate.markup_prompt == data["markup_prompt"]
