"""defender.* against the fake Defender API and its Entra ID token endpoint."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import AuthenticationError, ConnectorError
from bot.sandbox import Sandbox


async def test_find_machine_by_short_name_and_fqdn(vendor: Any, sandbox: Sandbox) -> None:
    machine = sandbox.defender.machine("ws-042")
    by_short = await vendor.call("defender.find_machine", hostname="ws-042")
    by_fqdn = await vendor.call("defender.find_machine", hostname="WS-042.corp.example.com")
    for found in (by_short, by_fqdn):
        assert found["found"] is True
        assert found["machine_id"] == machine.id
        assert found["hostname"] == "ws-042.corp.example.com"
        assert found["os_platform"] == "Windows10"
        assert found["health_status"] == "Active"
        assert found["risk_score"] == "High"
    filters = [c.param("$filter") for c in sandbox.defender.calls_to("/api/machines")]
    assert "computerDnsName eq 'ws-042'" in filters
    assert "startswith(computerDnsName,'ws-042.')" in filters


async def test_an_unknown_machine_is_found_false(vendor: Any) -> None:
    found = await vendor.call("defender.find_machine", hostname="ghost")
    assert found["found"] is False
    assert found["machine_id"] is None


async def test_the_token_request_is_the_client_credentials_grant(
    vendor: Any, sandbox: Sandbox
) -> None:
    await vendor.call("defender.find_machine", hostname="web-1")
    (token_call,) = sandbox.microsoft_login.calls
    tenant = sandbox.microsoft_login.credentials["tenant_id"]
    assert token_call.path == f"/{tenant}/oauth2/v2.0/token"
    assert token_call.body["grant_type"] == "client_credentials"
    assert token_call.body["scope"] == "https://api.securitycenter.microsoft.com/.default"


async def test_isolate_sends_pascal_case_and_the_run_in_the_comment(
    vendor: Any, sandbox: Sandbox
) -> None:
    machine = sandbox.defender.machine("web-1")
    action = await vendor.call(
        "defender.isolate_machine", machine_id=machine.id, isolation_type="Selective"
    )
    assert action["status"] == "Pending"
    assert action["type"] == "Isolate"
    assert action["done"] is False
    (call,) = sandbox.defender.calls_to("/isolate")
    assert call.body == {
        "Comment": "Runbook Bot run r-test, step step",
        "IsolationType": "Selective",
    }


async def test_a_machine_action_goes_pending_in_progress_succeeded(
    vendor: Any, sandbox: Sandbox
) -> None:
    machine = sandbox.defender.machine("ws-042")
    started = await vendor.call(
        "defender.collect_investigation_package", machine_id=machine.id, comment="IR-42"
    )
    seen = []
    for _ in range(3):
        polled = await vendor.call("defender.get_machine_action", action_id=started["action_id"])
        seen.append((polled["status"], polled["done"], polled["succeeded"]))
    assert seen == [
        ("Pending", False, False),
        ("InProgress", False, False),
        ("Succeeded", True, True),
    ]


async def test_a_failed_machine_action_is_done_but_not_succeeded(
    vendor: Any, sandbox: Sandbox
) -> None:
    sandbox.defender.next_outcome = "Failed"
    machine = sandbox.defender.machine("web-1")
    started = await vendor.call("defender.run_av_scan", machine_id=machine.id, scan_type="Full")
    for _ in range(3):
        polled = await vendor.call("defender.get_machine_action", action_id=started["action_id"])
    assert polled["status"] == "Failed"
    assert polled["done"] is True
    assert polled["succeeded"] is False


async def test_a_second_collection_returns_the_running_one(vendor: Any, sandbox: Sandbox) -> None:
    machine = sandbox.defender.machine("ws-042")
    first = await vendor.call("defender.collect_investigation_package", machine_id=machine.id)
    second = await vendor.call("defender.collect_investigation_package", machine_id=machine.id)
    assert second["action_id"] == first["action_id"]
    assert len(sandbox.defender.actions) == 1
    refused = [c for c in sandbox.defender.calls_to("/collectInvestigationPackage")]
    assert [c.status for c in refused] == [201, 400]


async def test_isolate_then_release(vendor: Any, sandbox: Sandbox) -> None:
    machine = sandbox.defender.machine("laptop-7")
    isolate = await vendor.call("defender.isolate_machine", machine_id=machine.id)
    for _ in range(3):
        await vendor.call("defender.get_machine_action", action_id=isolate["action_id"])
    assert machine.isolated is True
    release = await vendor.call(
        "defender.release_machine", machine_id=machine.id, comment="all clear"
    )
    assert release["type"] == "Unisolate"
    for _ in range(3):
        await vendor.call("defender.get_machine_action", action_id=release["action_id"])
    assert machine.isolated is False


async def test_an_unknown_machine_action_is_a_permanent_error(vendor: Any) -> None:
    with pytest.raises(ConnectorError) as caught:
        await vendor.call(
            "defender.get_machine_action", action_id="00000000-0000-0000-0000-000000000000"
        )
    assert not caught.value.retryable
    assert "ResourceNotFound" in str(caught.value)


async def test_isolating_an_unknown_machine_is_a_permanent_error(vendor: Any) -> None:
    with pytest.raises(ConnectorError, match="Machine was not found"):
        await vendor.call("defender.isolate_machine", machine_id="a" * 40)


async def test_an_unknown_tenant_is_an_authentication_failure(vendor: Any) -> None:
    vendor.configure(RUNBOOK_DEFENDER_TENANT_ID="ffffffff-0000-4000-8000-000000000000")
    with pytest.raises(AuthenticationError) as caught:
        await vendor.call("defender.find_machine", hostname="web-1")
    assert "AADSTS90002" in str(caught.value)


async def test_an_expired_token_is_replaced(vendor: Any, sandbox: Sandbox) -> None:
    await vendor.call("defender.find_machine", hostname="web-1")
    sandbox.defender.expire_tokens()
    assert (await vendor.call("defender.find_machine", hostname="web-1"))["found"] is True
    assert len(sandbox.microsoft_login.calls) == 2


async def test_retry_after_seconds_on_429(vendor: Any, sandbox: Sandbox) -> None:
    sandbox.defender.rate_limit(retry_after=45)
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("defender.find_machine", hostname="web-1")
    assert caught.value.retry_after == 45
    assert "TooManyRequests" in str(caught.value)


async def test_dry_run_shows_the_isolation_request(vendor: Any, sandbox: Sandbox) -> None:
    machine = sandbox.defender.machine("web-1")
    shown = vendor.describe("defender.isolate_machine", machine_id=machine.id)
    assert shown["method"] == "POST"
    assert shown["url"].endswith(f"/api/machines/{machine.id}/isolate")
    assert shown["body"] == {
        "Comment": "Runbook Bot run <run id>, step <step id>",
        "IsolationType": "Full",
    }


async def test_require_success_fails_a_failed_action(vendor: Any, sandbox: Sandbox) -> None:
    sandbox.defender.next_outcome = "TimeOut"
    machine = sandbox.defender.machine("web-1")
    started = await vendor.call("defender.isolate_machine", machine_id=machine.id)
    args = {"action_id": started["action_id"], "require_success": True}
    assert (await vendor.call("defender.get_machine_action", **args))["status"] == "Pending"
    assert (await vendor.call("defender.get_machine_action", **args))["status"] == "InProgress"
    with pytest.raises(ConnectorError, match="ended TimeOut"):
        await vendor.call("defender.get_machine_action", **args)
