"""pagerduty.* against the fake Events API v2."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import AuthenticationError, ConnectorError
from bot.sandbox import Sandbox


async def test_trigger_uses_the_steps_idempotency_key_as_dedup_key(
    vendor: Any, sandbox: Sandbox
) -> None:
    vendor.idempotency_key = "r-42:page"
    out = await vendor.call(
        "pagerduty.trigger",
        summary="web-1 contained",
        source="web-1",
        severity="critical",
        details={"run": "r-42"},
        link="https://runbook.example/runs/r-42",
    )
    assert out == {"dedup_key": "r-42:page", "status": "success", "message": "Event processed"}
    (call,) = sandbox.pagerduty.calls
    assert call.body["event_action"] == "trigger"
    assert call.body["routing_key"] == sandbox.pagerduty.credentials["routing_key"]
    assert call.body["payload"] == {
        "summary": "web-1 contained",
        "source": "web-1",
        "severity": "critical",
        "custom_details": {"run": "r-42"},
    }
    assert call.body["links"][0]["href"] == "https://runbook.example/runs/r-42"
    assert "authorization" not in call.headers


async def test_a_retried_trigger_does_not_page_twice(vendor: Any, sandbox: Sandbox) -> None:
    args = {"summary": "disk full", "source": "db-1", "severity": "error"}
    await vendor.call("pagerduty.trigger", **args)
    vendor.attempt = 2
    await vendor.call("pagerduty.trigger", **args)
    assert len(sandbox.pagerduty.alerts) == 1
    (alert,) = sandbox.pagerduty.alerts.values()
    assert len(alert.events) == 2


async def test_acknowledge_and_resolve_by_dedup_key(vendor: Any, sandbox: Sandbox) -> None:
    await vendor.call(
        "pagerduty.trigger", summary="s", source="x", severity="info", dedup_key="host/web-1"
    )
    await vendor.call("pagerduty.acknowledge", dedup_key="host/web-1")
    assert sandbox.pagerduty.alerts["host/web-1"].status == "acknowledged"
    out = await vendor.call("pagerduty.resolve", dedup_key="host/web-1")
    assert out["dedup_key"] == "host/web-1"
    assert sandbox.pagerduty.alerts["host/web-1"].status == "resolved"


async def test_a_long_summary_is_cut_to_pagerdutys_limit(vendor: Any, sandbox: Sandbox) -> None:
    await vendor.call("pagerduty.trigger", summary="x" * 5000, source="s", severity="info")
    sent = sandbox.pagerduty.calls[0].body["payload"]["summary"]
    assert len(sent) == 1024
    assert sent.endswith("…")


async def test_a_badly_shaped_routing_key_is_an_authentication_failure(vendor: Any) -> None:
    vendor.configure(RUNBOOK_PAGERDUTY_ROUTING_KEY="short-key-123")
    with pytest.raises(AuthenticationError) as caught:
        await vendor.call("pagerduty.trigger", summary="s", source="x", severity="info")
    assert "routing key was refused" in str(caught.value)
    assert "short-key-123" not in str(caught.value)


async def test_severity_must_be_one_of_pagerdutys(vendor: Any, sandbox: Sandbox) -> None:
    with pytest.raises(ConnectorError, match="severity"):
        await vendor.call("pagerduty.trigger", summary="s", source="x", severity="sev1")
    assert sandbox.pagerduty.calls == []


async def test_dry_run_masks_the_routing_key(vendor: Any, sandbox: Sandbox) -> None:
    shown = vendor.describe("pagerduty.trigger", summary="s", source="x", severity="warning")
    assert shown["url"] == sandbox.base_url("pagerduty") + "/v2/enqueue"
    assert shown["body"]["routing_key"] == "***"
    assert shown["body"]["dedup_key"] == "<idempotency key of the step>"
    assert sandbox.pagerduty.credentials["routing_key"] not in repr(shown)
