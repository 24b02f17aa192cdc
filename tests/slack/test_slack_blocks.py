"""Block Kit rendering, ids and mrkdwn helpers (pure functions)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.chat.slack import blocks, modal
from bot.chat.slack import mrkdwn as md
from bot.chat.slack.ids import (
    ActionId,
    GateRef,
    ModalMeta,
    gate_value,
    parse_gate_value,
    parse_modal_meta,
)
from bot.engine.state import Decision, GateState, Outcome, RunState, RunStatus, StepState


class View:
    title = "Contain a host"
    channel = "#soc-incidents"
    description = "Cut the host off."

    def step_title(self, sid: str) -> str:
        return {"look": "Look it up", "ask": "Ask a lead"}.get(sid, sid)

    def step_description(self, sid: str) -> str | None:
        return "**Careful**: see [docs](https://example.com)." if sid == "ask" else None

    def step_kind(self, sid: str) -> str:
        return {"look": "core.echo", "ask": "approval"}.get(sid, "core.noop")


def gate(**changes: Any) -> GateState:
    values: dict[str, Any] = {
        "prompt": "Contain *web-1*? <!channel>",
        "channel": None,
        "users": ["U0BOB"],
        "groups": ["soc-leads"],
        "open_to_all": False,
        "min_approvals": 2,
        "allow_requester": False,
        "requested_at": "2026-11-22T10:00:00.000000Z",
        "deadline": "2026-11-22T11:00:00.000000Z",
        "on_timeout": "reject",
        "escalate_at": None,
        "escalate_users": [],
        "escalate_groups": [],
        "fields": {},
    }
    values.update(changes)
    values.setdefault("markup_prompt", values["prompt"])  # a prompt with no data in it
    return GateState(**values)


def run_with(
    the_gate: GateState, outcome: Outcome | None = None, inputs: dict[str, Any] | None = None
) -> RunState:
    run = RunState(
        id="r-0abc",
        runbook="contain-host",
        digest="d",
        inputs=inputs or {"host": "web-1"},
        requester="slack:U024BE7LH",
        trigger={"kind": "slack", "channel": "C0SOCINC"},
        alert=None,
        started_at="2026-11-22T10:00:00.000000Z",
        step_ids=["look", "ask", "go"],
        seq=1,
        status=RunStatus.WAITING,
    )
    run.steps = {
        "look": StepState(outcome=Outcome.SUCCEEDED, output={"platform": "linux"}),
        "ask": StepState(outcome=outcome, gate=the_gate),
        "go": StepState(),
    }
    if outcome is not None:
        the_gate.open = False
    return run


def buttons(message: blocks.Message) -> dict[str, dict[str, Any]]:
    return {
        e["action_id"]: e for b in message.blocks if b["type"] == "actions" for e in b["elements"]
    }


def test_a_waiting_gate_has_approve_and_reject_with_everything_an_approver_needs() -> None:
    g = gate()
    message = blocks.approval(run_with(g), View(), "ask", g, {"soc-leads": "S0SOCLEADS"})
    shown = json.dumps(message.blocks)
    assert message.blocks[0]["type"] == "header"
    assert set(buttons(message)) == {"approval_approve", "approval_reject"}
    approve = buttons(message)["approval_approve"]
    assert approve["style"] == "primary" and approve["value"] == "v1:r-0abc:ask"
    assert approve["confirm"]["confirm"]["text"] == "Approve"
    assert buttons(message)["approval_reject"]["style"] == "danger"
    for expected in (
        "*Careful*",
        "<https://example.com|docs>",
        "Contain *web-1*? @channel",
        "<!subteam^S0SOCLEADS>",
        "<@U0BOB>",
        "quorum:* 2 approvals",
        "requester may not approve",
        "<!date^1795345200^",
        "then rejected",
        "Look it up",
        "platform",
        "<@U024BE7LH>",
        "slash command in <#C0SOCINC>",
    ):
        assert expected in shown, expected
    assert "<!channel>" not in shown


def test_after_a_decision_and_when_it_ends() -> None:
    g = gate()
    g.decisions.append(
        Decision("slack:U0BOB", "approve", "2026-11-22T10:05:00.000000Z", "fine by me")
    )
    waiting = blocks.approval(run_with(g), View(), "ask", g)
    shown = json.dumps(waiting.blocks)
    assert "<@U0BOB> approved" in shown and "fine by me" in shown
    assert "1 more approval needed" in shown and buttons(waiting)

    g.decisions.append(Decision("slack:U0CAROL", "approve", "2026-11-22T10:06:00.000000Z"))
    ended = blocks.approval(run_with(g, Outcome.APPROVED), View(), "ask", g)
    assert buttons(ended) == {}
    assert "Approved* by <@U0BOB>, <@U0CAROL>" in json.dumps(ended.blocks)

    expired_gate = gate()
    expired = blocks.approval(run_with(expired_gate, Outcome.EXPIRED), View(), "ask", expired_gate)
    assert buttons(expired) == {} and "Expired" in json.dumps(expired.blocks)


def test_the_text_fallback_carries_what_the_blocks_show() -> None:
    g = gate(escalate_groups=["soc-managers"], escalate_users=["U0BOSS"])
    asked = blocks.approval(run_with(g), View(), "ask", g).text
    assert asked.startswith("Approval needed: Ask a lead (run r-0abc, contain-host)")
    assert "Contain *web-1*?" in asked and "<!channel>" not in asked
    assert "<@U0BOB>" in asked and "@soc-leads" in asked and "2 approvals needed" in asked
    assert "Deadline: 2026-11-22 11:00:00 UTC" in asked

    g.decisions.append(
        Decision("slack:U0BOB", "approve", "2026-11-22T10:05:00.000000Z", "fine by me")
    )
    partly = blocks.approval(run_with(g), View(), "ask", g).text
    assert "<@U0BOB> approved at 2026-11-22 10:05:00 UTC: fine by me" in partly
    assert "1 more approval needed" in partly

    g.decisions.append(Decision("slack:U0CAROL", "approve", "2026-11-22T10:06:00.000000Z"))
    ended = blocks.approval(run_with(g, Outcome.APPROVED), View(), "ask", g).text
    assert "Ask a lead (run r-0abc, contain-host): approved by <@U0BOB>, <@U0CAROL>" in ended
    assert "<@U0CAROL> approved at 2026-11-22 10:06:00 UTC" in ended
    assert "more approval" not in ended

    r = gate()
    r.decisions.append(Decision("slack:U0CAROL", "reject", "2026-11-22T10:07:00.000000Z"))
    rejected = blocks.approval(run_with(r, Outcome.REJECTED), View(), "ask", r).text
    assert "rejected by <@U0CAROL>" in rejected
    e = gate()
    expired = blocks.approval(run_with(e, Outcome.EXPIRED), View(), "ask", e).text
    assert "expired at 2026-11-22 11:00:00 UTC" in expired

    g.escalated = True
    notice = blocks.escalation_notice(
        run_with(g), View(), "ask", g, {"soc-managers": "S0SOCMGR"}
    ).text
    assert "<@U0BOSS>" in notice and "<!subteam^S0SOCMGR>" in notice
    assert "Ask a lead (run r-0abc)" in notice


def test_a_recovery_gate_offers_skip() -> None:
    g = gate(recovery=True, min_approvals=1, allow_requester=True)
    message = blocks.approval(run_with(g), View(), "ask", g)
    assert set(buttons(message)) == {"approval_approve", "approval_reject", "approval_skip"}
    assert "after a restart" in message.blocks[0]["text"]["text"]


def test_data_is_escaped_and_limits_are_kept() -> None:
    g = gate(prompt="x" * 5000)
    run = run_with(g, inputs={"host": "<!here> & <@U1>", "long": "y" * 500})
    message = blocks.approval(run, View(), "ask", g)
    shown = json.dumps(message.blocks)
    assert "&lt;!here&gt; &amp; &lt;@U1&gt;" in shown
    for block in message.blocks:
        text = block.get("text", {}).get("text", "")
        assert len(text) <= (150 if block["type"] == "header" else 3000)
    assert len(message.blocks) <= 50


def test_status_summary_and_root() -> None:
    g = gate()
    run = run_with(g)
    status = json.dumps(blocks.run_status(run, View()).blocks)
    assert "Status: waiting" in status and "1/3 steps done" in status
    assert "waiting for approval (0/2)" in status and "`core.echo`" in status
    root = json.dumps(blocks.run_root(run, View()).blocks)
    assert "started by <@U024BE7LH>" in root and "host=`web-1`" in root
    run.status, run.ended_at = RunStatus.SUCCEEDED, "2026-11-22T10:01:30.000000Z"
    summary = blocks.run_summary(run, View())
    assert "succeeded" in summary.text and "1m30s" in summary.text


def test_gate_values_and_modal_metadata() -> None:
    assert parse_gate_value(gate_value("r-0abc", "ask")) == GateRef("r-0abc", "ask")
    for junk in (None, 3, "", "v2:r-0abc:ask", "v1:r-0abc:Ask", "v1:x:ask", "v1:r-0abc:ask:x"):
        assert parse_gate_value(junk) is None
    meta = ModalMeta(GateRef("r-0abc", "ask"), "approve", "C0SOCINC", "1.2")
    assert parse_modal_meta(meta.dump()) == meta
    assert parse_modal_meta("{not json") is None
    assert parse_modal_meta('{"gate": "v1:r-0abc:ask", "decision": "delete"}') is None
    assert [a.decision for a in ActionId] == ["approve", "reject", "skip"]


def test_fields_modal_and_its_values() -> None:
    meta = ModalMeta(GateRef("r-0abc", "ask"), "approve", None, None)
    fields = {
        "ticket": {"type": "string", "description": "Change ticket"},
        "force": {"type": "boolean", "default": False},
        "count": {"type": "integer", "required": False},
        "mode": {"type": "string", "enum": ["soft", "hard"]},
    }
    view = modal.fields_modal(meta, "Ask a lead", "Go?", fields)
    assert view["callback_id"] == "approval_fields"
    assert parse_modal_meta(view["private_metadata"]) == meta
    inputs = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    assert inputs["field:ticket"]["optional"] is False
    assert inputs["field:ticket"]["hint"]["text"] == "Change ticket"
    assert inputs["field:force"]["element"]["initial_option"]["value"] == "false"
    assert inputs["field:count"]["element"]["type"] == "number_input"
    assert inputs["field:count"]["optional"] is True
    state = {
        "values": {
            "field:ticket": {"value": {"type": "plain_text_input", "value": "INC1"}},
            "field:mode": {
                "value": {"type": "static_select", "selected_option": {"value": '"hard"'}}
            },
            "field:count": {"value": {"type": "number_input", "value": None}},
            "comment": {"value": {"type": "plain_text_input", "value": "  "}},
        }
    }
    assert modal.modal_values({"state": state}) == ({"ticket": "INC1", "mode": "hard"}, None)


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and *it*", "*bold* and _it_"),
        ("## Heading", "*Heading*"),
        ("- one\n* two", "• one\n• two"),
        ("[a](https://x.y/?q=1&r=2)", "<https://x.y/?q=1&amp;r=2|a>"),
        ("`a<b` & <c>", "`a&lt;b` &amp; &lt;c&gt;"),
        ("```\nx <y>\n```", "```\nx &lt;y&gt;\n```"),
    ],
)
def test_markdown_to_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert md.markdown_to_mrkdwn(markdown) == mrkdwn


def test_mentions_and_identities() -> None:
    assert md.identity("slack:U0BOB") == "<@U0BOB>"
    assert md.identity("cli:alice") == "alice (terminal)"
    assert md.identity("api:ci") == "ci (API)"
    assert md.group_mention("soc", {}) == "@soc"
    assert md.group_mention("soc", {"soc": "S1"}) == "<!subteam^S1>"
    assert md.no_broadcasts("hey <!here> <!channel|channel> <@U1>") == "hey @here @channel <@U1>"


@pytest.mark.parametrize("module", ["blocks", "modal", "ids", "mrkdwn", "commands"])
def test_rendering_modules_stay_pure(module: str) -> None:
    import ast
    from pathlib import Path

    import bot.chat.slack

    source = Path(bot.chat.slack.__file__).with_name(f"{module}.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    adapters = {
        "httpx",
        "slack_bolt",
        "slack_sdk",
        "starlette",
        "aiohttp",
        "tinydb",
        "apscheduler",
        "uvicorn",
    }
    assert not imported & adapters


def test_data_in_the_prompt_is_escaped_and_the_authors_mrkdwn_kept() -> None:
    from bot.engine.context import build_context
    from bot.runbook.templates import escape_markup, render_string

    template = "*Contain* {{ inputs.host }}? See <https://wiki.example/ir|the playbook>"
    run = run_with(gate(), inputs={"host": "<https://evil.example/x|Approve here> <@U0CAROL>"})
    markup = render_string(template, build_context(run), escape=escape_markup)
    g = gate(prompt=render_string(template, build_context(run)), markup_prompt=markup)
    message = blocks.approval(run, View(), "ask", g)
    for shown in (json.dumps(message.blocks), message.text):
        assert "<https://evil.example" not in shown and "<@U0CAROL>" not in shown
        assert "&lt;https://evil.example/x|Approve here&gt; &lt;@U0CAROL&gt;" in shown
        assert "*Contain* " in shown and "<https://wiki.example/ir|the playbook>" in shown


def test_a_gate_recorded_without_the_escaped_prompt_is_escaped_whole() -> None:
    g = gate(prompt="Contain <https://evil.example/x|Approve here>?", markup_prompt=None)
    message = blocks.approval(run_with(g), View(), "ask", g)
    assert "<https://evil.example" not in json.dumps(message.blocks)
    assert "&lt;https://evil.example/x|Approve here&gt;" in json.dumps(message.blocks)


def test_a_notice_is_its_escaped_form_with_broadcasts_defused_or_else_escaped_whole() -> None:
    assert blocks.notice_mrkdwn("x", "*hi* <https://a.example|a> <!here>") == (
        "*hi* <https://a.example|a> @here"
    )
    assert blocks.notice_mrkdwn("<!here> <https://a.example|a>", None) == (
        "&lt;!here&gt; &lt;https://a.example|a&gt;"
    )
