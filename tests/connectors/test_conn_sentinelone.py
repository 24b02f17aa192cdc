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
