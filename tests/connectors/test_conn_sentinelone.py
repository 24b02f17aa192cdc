"""sentinelone.* against the fake SentinelOne API."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import ConnectorError
from bot.sandbox import Sandbox


async def test_find_agent_keeps_only_the_exact_name(vendor: Any, sandbox: Sandbox) -> None:
    found = await vendor.call("sentinelone.find_agent", hostname="WEB-1")
    assert found["found"] is True
    assert found["agent_id"] == sandbox.sentinelone.agent("web-1").id
    assert found["computer_name"] == "web-1"  # not web-10, which the like-search also returns
    assert found["network_status"] == "connected"
    (call,) = sandbox.sentinelone.calls_to("/agents")
    assert call.param("computerName__like") == "WEB-1"
    assert call.headers["authorization"].startswith("ApiToken ")


async def test_an_unknown_agent_is_found_false(vendor: Any) -> None:
    found = await vendor.call("sentinelone.find_agent", hostname="web")
    assert found["found"] is False
    assert found["agent_id"] is None


async def test_disconnect_and_reconnect(vendor: Any, sandbox: Sandbox) -> None:
    agent = sandbox.sentinelone.agent("ws-042")
    out = await vendor.call("sentinelone.disconnect_agent", agent_id=agent.id)
    assert out == {"agent_id": agent.id, "affected": 1}
    assert agent.network_status == "disconnected"
    assert sandbox.sentinelone.calls_to("/disconnect")[0].body == {"filter": {"ids": [agent.id]}}
    again = await vendor.call("sentinelone.disconnect_agent", agent_id=agent.id)
    assert again["affected"] == 1
    assert agent.network_status == "disconnected"
    back = await vendor.call("sentinelone.reconnect_agent", agent_id=agent.id)
    assert back["affected"] == 1
    assert agent.network_status == "connected"


async def test_an_unknown_agent_id_affects_nothing(vendor: Any) -> None:
    out = await vendor.call("sentinelone.disconnect_agent", agent_id="1")
    assert out["affected"] == 0


async def test_agent_ids_are_digits(vendor: Any) -> None:
    with pytest.raises(ConnectorError, match="agent_id"):
        await vendor.call("sentinelone.disconnect_agent", agent_id="1;DROP")


async def test_dry_run(vendor: Any, sandbox: Sandbox) -> None:
    shown = vendor.describe("sentinelone.disconnect_agent", agent_id="42")
    assert shown["url"] == sandbox.base_url("sentinelone") + "/agents/actions/disconnect"
    assert shown["body"] == {"filter": {"ids": ["42"]}}
    assert shown["auth"] == "Authorization: ApiToken ***"


def crowd_out(sandbox: Sandbox, name: str, others: int) -> str:
    """Put ``others`` agents whose names contain ``name`` before the agent ``name``."""
    fake = sandbox.sentinelone
    fake.remove_agent(name)
    for number in range(others):
        fake.add_agent(f"{name}{number:02d}")
    return fake.add_agent(name).id


async def test_find_agent_follows_the_cursor_to_a_later_page(vendor: Any, sandbox: Sandbox) -> None:
    agent_id = crowd_out(sandbox, "web-1", 450)  # + web-10: 452 matches, 3 pages of 200
    found = await vendor.call("sentinelone.find_agent", hostname="web-1")
    assert found["found"] is True
    assert found["agent_id"] == agent_id
    assert found["complete"] is True
    calls = sandbox.sentinelone.calls_to("/agents", "GET")
    assert len(calls) == 3
    assert calls[0].param("cursor") is None
    assert all(call.param("cursor") for call in calls[1:])
    assert {call.param("limit") for call in calls} == {"200"}


async def test_the_fake_pages_like_the_real_api(sandbox: Sandbox) -> None:
    import httpx

    crowd_out(sandbox, "web-1", 12)
    headers = {"Authorization": "ApiToken " + sandbox.sentinelone.credentials["api_token"]}
    url = sandbox.base_url("sentinelone") + "/agents"
    async with httpx.AsyncClient() as client:
        first = (
            await client.get(url, params={"computerName__like": "web-1"}, headers=headers)
        ).json()
        assert len(first["data"]) == 10  # the API's default page
        assert first["pagination"]["totalItems"] == 14
        cursor = first["pagination"]["nextCursor"]
        second = (
            await client.get(
                url, params={"computerName__like": "web-1", "cursor": cursor}, headers=headers
            )
        ).json()
    assert len(second["data"]) == 4
    assert second["pagination"]["nextCursor"] is None
    names = [a["computerName"] for a in first["data"] + second["data"]]
    assert len(set(names)) == 14 and names[-1] == "web-1"


async def test_past_the_page_cap_no_match_is_an_error_not_found_false(
    vendor: Any, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors import sentinelone

    monkeypatch.setattr(sentinelone, "MAX_PAGES", 2)
    monkeypatch.setattr(sentinelone, "PAGE_SIZE", 10)
    crowd_out(sandbox, "web-1", 30)
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("sentinelone.find_agent", hostname="web-1")
    message = str(caught.value)
    assert not caught.value.retryable
    assert "none of the 20 read (2 pages, the most read)" in message
    assert "found: false" in message
    assert len(sandbox.sentinelone.calls_to("/agents", "GET")) == 2


async def test_past_the_page_cap_a_match_is_answered_as_incomplete(
    vendor: Any, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors import sentinelone

    monkeypatch.setattr(sentinelone, "MAX_PAGES", 1)
    monkeypatch.setattr(sentinelone, "PAGE_SIZE", 1)
    found = await vendor.call("sentinelone.find_agent", hostname="web-1")  # web-1; web-10 unread
    assert found["found"] is True
    assert found["complete"] is False
