"""jira.* against the fake Jira Cloud."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import ConnectorError
from bot.sandbox import Sandbox
from bot.sandbox.jira import adf_text
from connectors.jira import adf


async def test_create_issue_sends_adf_and_answers_key_id_url(vendor: Any, sandbox: Sandbox) -> None:
    out = await vendor.call(
        "jira.create_issue",
        project="SEC",
        summary="Host web-1 contained",
        description="Contained by run r-1.\nSee the timeline.\n\nNext: forensics.",
        labels=["runbook-bot"],
    )
    assert out == {
        "key": "SEC-1",
        "id": sandbox.jira.issues["SEC-1"].id,
        "url": sandbox.base_url("jira") + "/browse/SEC-1",
    }
    issue = sandbox.jira.issues["SEC-1"]
    assert issue.issue_type == "Task"
    assert issue.labels == ["runbook-bot"]
    assert adf_text(issue.description) == (
        "Contained by run r-1.\nSee the timeline.\n\nNext: forensics."
    )


def test_adf_keeps_paragraphs_and_line_breaks() -> None:
    doc = adf("one\ntwo\n\nthree")
    assert doc["type"] == "doc" and doc["version"] == 1
    first, second = doc["content"]
    assert [n["type"] for n in first["content"]] == ["text", "hardBreak", "text"]
    assert second["content"] == [{"type": "text", "text": "three"}]


async def test_an_unknown_project_carries_jiras_field_error(vendor: Any) -> None:
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("jira.create_issue", project="NOPE", summary="x")
    assert caught.value.status == 400
    assert "project: valid project is required" in str(caught.value)


async def test_an_unknown_issue_type(vendor: Any) -> None:
    with pytest.raises(ConnectorError, match="Specify a valid issue type"):
        await vendor.call("jira.create_issue", project="SEC", summary="x", issue_type="Epicc")


async def test_add_comment(vendor: Any, sandbox: Sandbox) -> None:
    await vendor.call("jira.create_issue", project="OPS", summary="x")
    out = await vendor.call("jira.add_comment", issue="OPS-1", body="contained at 10:02")
    assert out == {"id": "20001", "issue": "OPS-1"}
    assert adf_text(sandbox.jira.issues["OPS-1"].comments[0]["body"]) == "contained at 10:02"


async def test_commenting_an_unknown_issue(vendor: Any) -> None:
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("jira.add_comment", issue="SEC-999", body="x")
    assert caught.value.status == 404
    assert "Issue does not exist" in str(caught.value)


async def test_transition_by_name_or_target_status(vendor: Any, sandbox: Sandbox) -> None:
    await vendor.call("jira.create_issue", project="SEC", summary="x")
    started = await vendor.call("jira.transition", issue="SEC-1", to="start progress")
    assert started == {"issue": "SEC-1", "status": "In Progress", "changed": True}
    done = await vendor.call("jira.transition", issue="SEC-1", to="Done")
    assert done == {"issue": "SEC-1", "status": "Done", "changed": True}
    assert sandbox.jira.issues["SEC-1"].status == "Done"
    posted = sandbox.jira.calls_to("/transitions", "POST")
    assert [c.body for c in posted] == [{"transition": {"id": "11"}}, {"transition": {"id": "31"}}]


async def test_transition_to_the_current_status_changes_nothing(vendor: Any) -> None:
    await vendor.call("jira.create_issue", project="SEC", summary="x")
    await vendor.call("jira.transition", issue="SEC-1", to="Done")
    again = await vendor.call("jira.transition", issue="SEC-1", to="done")
    assert again == {"issue": "SEC-1", "status": "Done", "changed": False}


async def test_an_unavailable_transition_names_the_available_ones(vendor: Any) -> None:
    await vendor.call("jira.create_issue", project="SEC", summary="x")
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("jira.transition", issue="SEC-1", to="Won't Fix")
    assert "available: Start Progress, Done" in str(caught.value)
    assert not caught.value.retryable


async def test_wrong_credentials_plain_text_401(vendor: Any) -> None:
    vendor.configure(RUNBOOK_JIRA_EMAIL="someone-else@example.com")
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("jira.create_issue", project="SEC", summary="x")
    assert str(caught.value).startswith("authentication failed for jira: Client must be")


async def test_dry_run_shows_the_issue_body(vendor: Any, sandbox: Sandbox) -> None:
    shown = vendor.describe("jira.create_issue", project="SEC", summary="x", description="d")
    assert shown["url"] == sandbox.base_url("jira") + "/rest/api/3/issue"
    assert shown["body"]["fields"]["project"] == {"key": "SEC"}
    assert shown["auth"] == "Authorization: Basic runbook-bot@example.com:***"
