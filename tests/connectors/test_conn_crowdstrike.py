"""crowdstrike.* against the fake Falcon API: hosts, containment, alerts, tokens."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import AuthenticationError, ConnectorError
from bot.sandbox import Sandbox


async def test_find_host_returns_the_device(vendor: Any, sandbox: Sandbox) -> None:
    host = sandbox.crowdstrike.host("web-1")
    found = await vendor.call("crowdstrike.find_host", hostname="web-1")
    assert found["found"] is True
    assert found["device_id"] == host.device_id
    assert found["hostname"] == "web-1"
    assert found["platform"] == "Linux"
    assert found["status"] == "normal"
    query = sandbox.crowdstrike.calls_to("/devices/queries/devices/v1")[0]
    assert query.param("filter") == "hostname:'web-1'"


async def test_an_unknown_host_is_found_false_not_an_error(vendor: Any) -> None:
    found = await vendor.call("crowdstrike.find_host", hostname="no-such-host")
    assert found == {
        "found": False,
        "device_id": None,
        "hostname": "no-such-host",
        "platform": None,
        "status": None,
        "local_ip": None,
        "last_seen": None,
        "matches": 0,
    }


async def test_quotes_in_a_hostname_cannot_break_the_filter(vendor: Any, sandbox: Sandbox) -> None:
    found = await vendor.call("crowdstrike.find_host", hostname="x' + hostname:'web-1")
    assert found["found"] is False
    query = sandbox.crowdstrike.calls_to("/devices/queries/devices/v1")[0]
    assert query.param("filter") == "hostname:'x\\' + hostname:\\'web-1'"


async def test_contain_makes_the_host_contained_and_it_stays_contained(
    vendor: Any, sandbox: Sandbox
) -> None:
    device_id = sandbox.crowdstrike.host("web-1").device_id
    result = await vendor.call("crowdstrike.contain_host", device_id=device_id)
    assert result == {"device_id": device_id, "status": "containment_pending"}
    action = sandbox.crowdstrike.calls_to("devices-actions", "POST")[0]
    assert action.param("action_name") == "contain"
    assert action.body == {"ids": [device_id]}
    polled = await vendor.call("crowdstrike.get_host", device_id=device_id)
    assert polled["status"] == "contained"
    again = await vendor.call("crowdstrike.contain_host", device_id=device_id)
    assert again["status"] == "contained"
    assert (await vendor.call("crowdstrike.get_host", device_id=device_id))["status"] == "contained"


async def test_lift_containment_releases_the_host(vendor: Any, sandbox: Sandbox) -> None:
    device_id = sandbox.crowdstrike.host("db-1").device_id
    await vendor.call("crowdstrike.contain_host", device_id=device_id)
    lifted = await vendor.call("crowdstrike.lift_containment", device_id=device_id)
    assert lifted["status"] == "lift_containment_pending"
    assert (await vendor.call("crowdstrike.get_host", device_id=device_id))["status"] == "normal"
    assert sandbox.crowdstrike.host("db-1").status == "normal"


async def test_containing_an_unknown_device_is_a_permanent_error(vendor: Any) -> None:
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("crowdstrike.contain_host", device_id="f" * 32)
    assert not caught.value.retryable
    assert caught.value.status == 404
    assert "not found" in str(caught.value)


async def test_a_malformed_device_id_is_refused_before_any_request(
    vendor: Any, sandbox: Sandbox
) -> None:
    with pytest.raises(ConnectorError, match="device_id"):
        await vendor.call("crowdstrike.contain_host", device_id="../../etc/passwd")
    assert sandbox.crowdstrike.calls == []


async def test_get_alerts_filters_and_summarises(vendor: Any) -> None:
    result = await vendor.call(
        "crowdstrike.get_alerts", filter="status:'new'+severity:>=70", limit=10
    )
    assert result["total"] == 1
    (alert,) = result["alerts"]
    assert alert["hostname"] == "web-1"
    assert alert["severity"] == 90
    assert alert["name"] == "Suspicious reverse shell"
    none = await vendor.call("crowdstrike.get_alerts", filter="severity:>100")
    assert none == {"total": 0, "alerts": []}


async def test_a_bad_filter_carries_falcons_message(vendor: Any) -> None:
    with pytest.raises(ConnectorError, match="invalid filter expression"):
        await vendor.call("crowdstrike.get_alerts", filter="not a filter at all")


async def test_the_token_is_fetched_once_and_reused(vendor: Any, sandbox: Sandbox) -> None:
    for _ in range(3):
        await vendor.call("crowdstrike.find_host", hostname="web-1")
    (token_call,) = sandbox.crowdstrike.calls_to("/oauth2/token")
    assert token_call.body["client_id"] == sandbox.crowdstrike.credentials["client_id"]
    assert token_call.status == 201


async def test_the_token_is_refreshed_before_it_expires(vendor: Any, sandbox: Sandbox) -> None:
    connector = vendor.instance("crowdstrike")
    now = [1_000_000.0]
    connector.http.clock = lambda: now[0]
    await vendor.call("crowdstrike.find_host", hostname="web-1")
    now[0] += 1799 - 200  # still more than the safety margin left
    await vendor.call("crowdstrike.find_host", hostname="web-1")
    assert len(sandbox.crowdstrike.calls_to("/oauth2/token")) == 1
    now[0] += 100  # inside the last 10% of its life: refresh first
    await vendor.call("crowdstrike.find_host", hostname="web-1")
    assert len(sandbox.crowdstrike.calls_to("/oauth2/token")) == 2
    assert 401 not in [call.status for call in sandbox.crowdstrike.calls]


async def test_an_expired_token_is_replaced_once_on_401(vendor: Any, sandbox: Sandbox) -> None:
    await vendor.call("crowdstrike.find_host", hostname="web-1")
    sandbox.crowdstrike.expire_tokens()
    found = await vendor.call("crowdstrike.find_host", hostname="web-1")
    assert found["found"] is True
    statuses = [call.status for call in sandbox.crowdstrike.calls]
    assert statuses.count(401) == 1
    assert len(sandbox.crowdstrike.calls_to("/oauth2/token")) == 2


async def test_a_second_401_after_refreshing_is_an_authentication_failure(
    vendor: Any, sandbox: Sandbox
) -> None:
    sandbox.crowdstrike.unauthorized(times=2)
    with pytest.raises(AuthenticationError, match="authentication failed for crowdstrike"):
        await vendor.call("crowdstrike.find_host", hostname="web-1")
    assert len(sandbox.crowdstrike.calls_to("/oauth2/token")) == 2


async def test_retry_after_in_epoch_milliseconds(vendor: Any, sandbox: Sandbox) -> None:
    sandbox.crowdstrike.epoch_ms = True
    sandbox.crowdstrike.rate_limit(retry_after=12)
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("crowdstrike.find_host", hostname="web-1")
    assert caught.value.retry_after is not None
    assert 10.5 <= caught.value.retry_after <= 12


async def test_a_429_on_the_token_endpoint_is_retryable(vendor: Any, sandbox: Sandbox) -> None:
    sandbox.crowdstrike.rate_limit(retry_after=20, match="/oauth2/token")
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("crowdstrike.find_host", hostname="web-1")
    assert caught.value.retryable
    assert caught.value.retry_after is not None


async def test_dry_run_describes_containment_without_secrets(vendor: Any, sandbox: Sandbox) -> None:
    device_id = sandbox.crowdstrike.host("web-1").device_id
    shown = vendor.describe("crowdstrike.contain_host", device_id=device_id)
    assert shown == {
        "method": "POST",
        "url": sandbox.base_url("crowdstrike") + "/devices/entities/devices-actions/v2",
        "params": {"action_name": "contain"},
        "body": {"ids": [device_id]},
        "auth": "Authorization: Bearer *** (OAuth2 client credentials)",
    }
    assert sandbox.crowdstrike.calls == []
