"""servicenow.* against the fake Table API."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import ConnectorError
from bot.sandbox import Sandbox


async def test_create_incident(vendor: Any, sandbox: Sandbox) -> None:
    out = await vendor.call(
        "servicenow.create_incident",
        short_description="Phishing: alice@example.com",
        description="Reported by alice",
        urgency=1,
        impact=2,
        fields={"assignment_group": "SOC"},
    )
    record = sandbox.servicenow.incidents[out["sys_id"]]
    assert out["number"] == record["number"] and out["number"].startswith("INC")
    assert out["url"].endswith(f"incident.do?sys_id={out['sys_id']}")
    assert record["urgency"] == "1" and record["impact"] == "2"
    assert record["assignment_group"] == "SOC"
    assert record["correlation_id"] == "r-test:step"


async def test_a_retried_create_finds_the_incident_it_opened(vendor: Any, sandbox: Sandbox) -> None:
    first = await vendor.call("servicenow.create_incident", short_description="x")
    vendor.attempt = 2
    second = await vendor.call("servicenow.create_incident", short_description="x")
    assert second["sys_id"] == first["sys_id"]
    assert len(sandbox.servicenow.incidents) == 1
    vendor.idempotency_key = "r-other:step"
    third = await vendor.call("servicenow.create_incident", short_description="x")
    assert third["sys_id"] != first["sys_id"]


async def test_update_incident(vendor: Any, sandbox: Sandbox) -> None:
    created = await vendor.call("servicenow.create_incident", short_description="x")
    out = await vendor.call(
        "servicenow.update_incident",
        sys_id=created["sys_id"],
        fields={"state": 6, "close_notes": "contained"},
    )
    assert out["state"] == "6"
    assert sandbox.servicenow.incidents[created["sys_id"]]["close_notes"] == "contained"
    (patch,) = sandbox.servicenow.calls_to("/incident/", "PATCH")
    assert patch.body == {"state": 6, "close_notes": "contained"}


async def test_updating_an_unknown_incident(vendor: Any) -> None:
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("servicenow.update_incident", sys_id="0" * 32, fields={"state": 2})
    assert caught.value.status == 404
    assert "No Record found" in str(caught.value)


async def test_urgency_out_of_range_is_refused_locally(vendor: Any, sandbox: Sandbox) -> None:
    with pytest.raises(ConnectorError, match="urgency"):
        await vendor.call("servicenow.create_incident", short_description="x", urgency=5)
    assert sandbox.servicenow.calls == []


async def test_a_bad_field_value_carries_servicenows_message(vendor: Any) -> None:
    created = await vendor.call("servicenow.create_incident", short_description="x")
    with pytest.raises(ConnectorError, match="Invalid value for impact"):
        await vendor.call(
            "servicenow.update_incident", sys_id=created["sys_id"], fields={"impact": 9}
        )
