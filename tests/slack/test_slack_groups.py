"""Approvers by Slack user group, when the Web API offers less than Slack does.

A stand-in of the Web API may serve ``usergroups.users.list`` but not
``usergroups.list`` (or answer it with a 404). People named in ``users`` must
still decide without any group look-up, groups must still resolve where they
can, and a click that cannot be judged is refused *and audited*, never dropped.
"""

from __future__ import annotations

from typing import Any

import pytest
from slack_harness import (
    BOB,
    CAROL,
    DAVE,
    actions_of,
    approval_posts,
    audit_records,
    ephemerals,
    groups_by_handle,
    without_method,
)

from bot.chat.slack.api import SlackAPI
from bot.chat.slack.groups import SlackGroups
from bot.errors import ChatError
from bot.sandbox import Sandbox

# soc-leads is alice and carol in the sandbox; dave is in no group the gate names
GATED = """
name: gated
channel: "#soc-incidents"
steps:
  - id: ask
    approval:
      prompt: "Go?"
      approvers: {users: [U0BOB], groups: [soc-leads]}
      min_approvals: 2
  - id: after
    uses: core.noop
"""


async def _gate(app: Any) -> tuple[str, str]:
    await app.command("run gated", user=DAVE)
    await app.until(lambda: len(approval_posts(app.fake)) == 1)
    value = actions_of(approval_posts(app.fake)[0].args["blocks"])[0]["value"]
    return value, value.split(":")[1]


def _group_calls(app: Any) -> int:
    return len(app.fake.calls_to("/api/usergroups."))


@pytest.mark.parametrize("http404", [False, True], ids=["unknown_method", "http404"])
async def test_listed_users_decide_without_usergroups_list(start_app: Any, http404: bool) -> None:
    app = await start_app({"gated.yaml": GATED})
    without_method(app.fake, "usergroups.list", http404=http404)
    groups_by_handle(app.fake)  # this stand-in keys usergroups.users.list by handle
    value, run_id = await _gate(app)

    before = _group_calls(app)
    await app.click("approval_approve", value, user=BOB)
    await app.run_until(run_id, lambda r: len(r.steps["ask"].gate.approvals) == 1)
    assert _group_calls(app) == before, "a listed approver needs no group look-up"

    await app.click("approval_approve", value, user=CAROL)  # in soc-leads, found by handle
    run = await app.run_until(run_id, lambda r: r.ended)
    assert run.status == "succeeded"
    assert run.steps["ask"].output["decided_by"] == [f"slack:{BOB}", f"slack:{CAROL}"]
    by_handle = [
        c for c in app.fake.api_calls("usergroups.users.list") if c.args["usergroup"] == "soc-leads"
    ]
    assert by_handle and all(c.ok for c in by_handle)


async def test_a_stranger_is_refused_and_audited_when_groups_cannot_be_read(
    start_app: Any,
) -> None:
    app = await start_app({"gated.yaml": GATED})
    # neither usergroups.list, nor usergroups.users.list by handle: membership is unknowable
    without_method(app.fake, "usergroups.list")
    value, run_id = await _gate(app)

    await app.click("approval_approve", value, user=DAVE)
    await app.click("approval_approve", value, user=CAROL)
    await app.until(lambda: bool(ephemerals(app.fake, DAVE)) and bool(ephemerals(app.fake, CAROL)))
    await app.settle()
    refused = audit_records(app.settings.data_dir, "approval.refused")
    assert [r["actor"] for r in refused] == [f"slack:{DAVE}", f"slack:{CAROL}"]
    for record in refused:
        assert "not an approver" in record["data"]["reason"]
        assert "group membership could not be checked" in record["data"]["reason"]
    assert "not an approver" in ephemerals(app.fake, DAVE)[0]
    assert "audit log" in ephemerals(app.fake, CAROL)[0]

    # the listed approver is not held up by any of it
    await app.click("approval_approve", value, user=BOB)
    run = await app.run_until(run_id, lambda r: len(r.steps["ask"].gate.approvals) == 1)
    assert run.status == "waiting"


async def test_group_ids_work_without_usergroups_list(start_app: Any) -> None:
    app = await start_app({"gated.yaml": GATED.replace("[soc-leads]", "[S0SOCLEADS]")})
    without_method(app.fake, "usergroups.list")
    value, run_id = await _gate(app)
    await app.click("approval_approve", value, user=CAROL)
    await app.click("approval_approve", value, user=BOB)
    run = await app.run_until(run_id, lambda r: r.ended)
    assert run.status == "succeeded"
    assert app.fake.api_calls("usergroups.list") == [] or all(
        not c.ok for c in app.fake.api_calls("usergroups.list")
    )


# -- the resolver on its own -------------------------------------------------------------


@pytest.fixture
async def api(sandbox: Sandbox) -> Any:
    client = SlackAPI(sandbox.slack.bot_token, sandbox.base_url("slack") + "/api/")
    yield client
    await client.aclose()


async def test_resolution_order_and_caching(api: Any, sandbox: Sandbox) -> None:
    fake = sandbox.slack
    now = [0.0]
    groups = SlackGroups(api, ttl=60, now=lambda: now[0])

    def asked(method: str) -> list[str]:
        return [str(c.args.get("usergroup", "")) for c in fake.api_calls(method)]

    # a handle usergroups.list knows: mapped to its id, members read by id
    assert await groups.groups_of(f"slack:{CAROL}", ["soc-leads"]) == {"soc-leads"}
    assert asked("usergroups.users.list") == ["S0SOCLEADS"]
    # an id is used as it is, without usergroups.list
    assert await groups.members("S0SOCMGR") == {CAROL}
    assert len(fake.api_calls("usergroups.list")) == 1
    # a handle nobody knows: nobody is in it (and that is remembered)
    assert await groups.groups_of(f"slack:{CAROL}", ["no-such-group"]) == set()
    assert await groups.groups_of(f"slack:{CAROL}", ["no-such-group"]) == set()
    assert asked("usergroups.users.list").count("no-such-group") == 1

    # usergroups.list missing: the handle as written goes to usergroups.users.list
    groups.forget()
    without_method(fake, "usergroups.list")
    groups_by_handle(fake)
    assert await groups.groups_of(f"slack:{CAROL}", ["soc-leads"]) == {"soc-leads"}
    assert asked("usergroups.users.list")[-1] == "soc-leads"
    lists = len(fake.api_calls("usergroups.list"))
    assert await groups.groups_of(f"slack:{BOB}", ["soc-leads", "soc-managers"]) == set()
    # a missing method is not asked again while the cache lasts
    assert len(fake.api_calls("usergroups.list")) == lists
    now[0] += 61
    assert await groups.groups_of(f"slack:{CAROL}", ["soc-managers"]) == {"soc-managers"}
    assert len(fake.api_calls("usergroups.list")) == lists + 1


async def test_membership_that_cannot_be_read_raises_unless_another_group_answers(
    api: Any, sandbox: Sandbox
) -> None:
    fake = sandbox.slack
    groups = SlackGroups(api, ttl=60)
    without_method(fake, "usergroups.list")  # and usergroups.users.list takes ids only
    with pytest.raises(ChatError):
        await groups.groups_of(f"slack:{CAROL}", ["soc-leads"])
    # one group that answers is enough to say yes
    assert await groups.groups_of(f"slack:{CAROL}", ["soc-leads", "S0SOCMGR"]) == {"S0SOCMGR"}
    # but not to say no
    with pytest.raises(ChatError):
        await groups.groups_of(f"slack:{BOB}", ["soc-leads", "S0SOCMGR"])
