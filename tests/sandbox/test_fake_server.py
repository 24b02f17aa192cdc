"""The sandbox server: starting and stopping, env, control routes, reset."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.sandbox import MOUNTS, LoopbackServer, Sandbox
from connectors.base import ActionContext
from connectors.registry import ConnectorPool, ConnectorRegistry


def test_a_loopback_server_serves_until_stopped() -> None:
    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    server = LoopbackServer(Starlette(routes=[Route("/", hello)]))
    with server:
        assert server.port > 0
        assert httpx.get(server.url + "/").text == "hello"
        url = server.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/", timeout=2)


def test_the_sandbox_starts_and_stops_from_synchronous_code() -> None:
    with Sandbox() as sandbox:
        answer = httpx.get(sandbox.url + "/echo/ping")
        assert answer.json()["path"] == "/ping"
    assert sandbox.url.startswith("http://127.0.0.1:")


async def test_the_sandbox_starts_and_stops_in_async_code() -> None:
    async with Sandbox() as sandbox, httpx.AsyncClient() as client:
        answer = await client.get(sandbox.url + "/echo/ping")
        assert answer.status_code == 200


def test_env_configures_every_vendor_connector(sandbox: Sandbox) -> None:
    registry = ConnectorRegistry.discover(include_entry_points=False)
    env = sandbox.env
    for name in registry.names():
        assert registry.connector_class(name).is_configured(env), name
    assert env["RUNBOOK_CROWDSTRIKE_BASE_URL"] == sandbox.url + "/crowdstrike"
    assert env["RUNBOOK_SLACK_API_URL"] == sandbox.url + "/slack/api/"
    assert env["RUNBOOK_DEFENDER_LOGIN_URL"] == sandbox.url + "/microsoft-login"
    assert set(MOUNTS) == set(sandbox.fakes)


async def test_a_pool_uses_the_sandbox_only_for_unconfigured_connectors(
    sandbox: Sandbox,
) -> None:
    registry = ConnectorRegistry.discover(include_entry_points=False)
    real = {
        "RUNBOOK_OKTA_BASE_URL": "https://acme.okta.example/api/v1",
        "RUNBOOK_OKTA_API_TOKEN": "real-okta-token-123",
    }
    pool = ConnectorPool(registry, real, register_secret=lambda _s: None, sandbox_env=sandbox.env)
    try:
        assert pool.is_sandboxed("crowdstrike")
        assert not pool.is_sandboxed("okta")
        ctx = ActionContext(run_id="r", step_id="s", attempt=1, idempotency_key="k")
        found = await pool.call(
            registry.lookup("crowdstrike.find_host"), {"hostname": "web-1"}, ctx
        )
        assert found["found"] is True
        assert ctx.sandbox is True
        assert pool.instance("okta").http.base_url == "https://acme.okta.example/api/v1"
    finally:
        await pool.aclose()


def test_reset_restores_the_seeded_state(sandbox: Sandbox) -> None:
    host = sandbox.crowdstrike.host("web-1")
    host.status = "contained"
    sandbox.okta.user("alice@example.com").status = "SUSPENDED"
    sandbox.crowdstrike.rate_limit(times=None)
    sandbox.crowdstrike.epoch_ms = True
    sandbox.defender.next_outcome = "Failed"
    sandbox.awx.next_outcome = "failed"
    sandbox.slack.fail("auth.test", "invalid_auth")
    sandbox.reset()
    assert sandbox.crowdstrike.epoch_ms is False
    assert sandbox.defender.next_outcome == "Succeeded"
    assert sandbox.awx.next_outcome == "successful"
    assert sandbox.slack.failures == {}
    assert sandbox.crowdstrike.host("web-1").status == "normal"
    assert sandbox.okta.user("alice@example.com").status == "ACTIVE"
    assert sandbox.crowdstrike.faults == []
    assert sandbox.crowdstrike.calls == []


def test_unknown_paths_get_the_vendors_own_404(sandbox: Sandbox) -> None:
    answer = httpx.get(sandbox.url + "/crowdstrike/no/such/api")
    assert answer.status_code == 404
    assert answer.json()["errors"][0]["code"] == 404
    okta = httpx.get(sandbox.url + "/okta/api/v1/groups")
    assert okta.json()["errorCode"] == "NotFound"


def test_faults_over_http(sandbox: Sandbox) -> None:
    control = sandbox.url + "/_control"
    made = httpx.post(
        control + "/virustotal/faults",
        json={"kind": "rate_limit", "times": 2, "retry_after": 9},
    )
    assert made.status_code == 201
    headers = {"x-apikey": sandbox.virustotal.credentials["api_key"]}
    url = sandbox.url + "/virustotal/api/v3/domains/example.com"
    assert [httpx.get(url, headers=headers).status_code for _ in range(3)] == [429, 429, 200]
    httpx.post(control + "/virustotal/faults", json={"kind": "server_error", "times": None})
    assert httpx.get(url, headers=headers).status_code == 500
    assert httpx.delete(control + "/virustotal/faults").status_code == 200
    assert httpx.get(url, headers=headers).status_code == 200
    bad = httpx.post(control + "/virustotal/faults", json={"kind": "meteor"})
    assert bad.status_code == 400 and "rate_limit" in bad.json()["error"]
    assert httpx.post(control + "/nobody/faults", json={"kind": "html"}).status_code == 404


def test_recorded_calls_over_http_mask_secrets(sandbox: Sandbox) -> None:
    key = sandbox.pagerduty.credentials["routing_key"]
    event = {
        "routing_key": key,
        "event_action": "trigger",
        "payload": {"summary": "s", "source": "x", "severity": "info"},
    }
    assert httpx.post(sandbox.url + "/pagerduty/v2/enqueue", json=event).status_code == 202
    calls = httpx.get(sandbox.url + "/_control/pagerduty/calls")
    assert calls.json()[0]["body"]["routing_key"] == "***"
    assert key not in calls.text
    assert httpx.post(sandbox.url + "/_control/reset").status_code == 200
    assert sandbox.pagerduty.calls == []


def test_reset_wakes_a_slow_answer(sandbox: Sandbox) -> None:
    sandbox.echo.slow(30)
    answers: list[int] = []

    def slow_request() -> None:
        answers.append(httpx.get(sandbox.url + "/echo/slow", timeout=20).status_code)

    thread = threading.Thread(target=slow_request)
    thread.start()
    sandbox.echo.wait_for_calls("/slow")
    sandbox.reset()
    thread.join(timeout=10)
    assert answers == [200]


def test_a_fault_can_target_one_path(sandbox: Sandbox) -> None:
    sandbox.echo.server_error(match="/b", times=None)
    assert httpx.get(sandbox.url + "/echo/a").status_code == 200
    assert httpx.get(sandbox.url + "/echo/b").status_code == 500
    assert httpx.get(sandbox.url + "/echo/b").status_code == 500
