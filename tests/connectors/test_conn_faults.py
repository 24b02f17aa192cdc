"""Every connector against every fault its fake can produce, mapped the same way."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.errors import AuthenticationError, ConnectorError, RetryableError
from bot.sandbox import Sandbox
from bot.sandbox.fake import FakeVendor
from bot.sandbox.virustotal import EICAR_SHA256

WRONG = "wrong-secret-Q7Z9X2K4M8"


@dataclass(frozen=True)
class Probe:
    """One call that reaches a connector's vendor, and how to break it."""

    connector: str
    ref: str
    args: dict[str, Any]
    fake: str
    wrong_credentials: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = 30.0  # what a 429 with retry_after=30 must yield
    env_prefix: str = ""
    url_settings: tuple[str, ...] = ()
    oauth: bool = False

    @property
    def prefix(self) -> str:
        return self.env_prefix or f"RUNBOOK_{self.connector.upper()}_"


PROBES = [
    Probe(
        "crowdstrike",
        "crowdstrike.find_host",
        {"hostname": "web-1"},
        "crowdstrike",
        {"RUNBOOK_CROWDSTRIKE_CLIENT_SECRET": WRONG},
        url_settings=("RUNBOOK_CROWDSTRIKE_BASE_URL",),
        oauth=True,
    ),
    Probe(
        "defender",
        "defender.find_machine",
        {"hostname": "web-1"},
        "defender",
        {"RUNBOOK_DEFENDER_CLIENT_SECRET": WRONG},
        url_settings=("RUNBOOK_DEFENDER_BASE_URL", "RUNBOOK_DEFENDER_LOGIN_URL"),
        oauth=True,
    ),
    Probe(
        "sentinelone",
        "sentinelone.find_agent",
        {"hostname": "web-1"},
        "sentinelone",
        {"RUNBOOK_SENTINELONE_API_TOKEN": WRONG},
        url_settings=("RUNBOOK_SENTINELONE_BASE_URL",),
    ),
    Probe(
        "pagerduty",
        "pagerduty.trigger",
        {"summary": "probe", "source": "web-1", "severity": "warning"},
        "pagerduty",
        {"RUNBOOK_PAGERDUTY_ROUTING_KEY": "Zz" + WRONG.replace("-", "") + "0" * 8},
        retry_after=None,  # PagerDuty's 429 has no retry header
        url_settings=("RUNBOOK_PAGERDUTY_BASE_URL",),
    ),
    Probe(
        "jira",
        "jira.create_issue",
        {"project": "SEC", "summary": "probe"},
        "jira",
        {"RUNBOOK_JIRA_API_TOKEN": WRONG},
        url_settings=("RUNBOOK_JIRA_BASE_URL",),
    ),
    Probe(
        "servicenow",
        "servicenow.create_incident",
        {"short_description": "probe"},
        "servicenow",
        {"RUNBOOK_SERVICENOW_PASSWORD": WRONG},
        url_settings=("RUNBOOK_SERVICENOW_BASE_URL",),
    ),
    Probe(
        "virustotal",
        "virustotal.file_report",
        {"hash": EICAR_SHA256},
        "virustotal",
        {"RUNBOOK_VIRUSTOTAL_API_KEY": WRONG},
        retry_after=None,  # QuotaExceededError carries no retry header
        url_settings=("RUNBOOK_VIRUSTOTAL_BASE_URL",),
    ),
    Probe(
        "okta",
        "okta.find_user",
        {"login": "alice@example.com"},
        "okta",
        {"RUNBOOK_OKTA_API_TOKEN": WRONG},
        url_settings=("RUNBOOK_OKTA_BASE_URL",),
    ),
    Probe(
        "awx",
        "awx.launch_job",
        {"template_id": 7},
        "awx",
        {"RUNBOOK_AWX_TOKEN": WRONG},
        url_settings=("RUNBOOK_AWX_BASE_URL",),
    ),
    Probe(
        "slack",
        "slack.post_message",
        {"channel": "#soc-incidents", "text": "probe"},
        "slack",
        {"SLACK_BOT_TOKEN": "xoxb-" + WRONG},
        env_prefix="RUNBOOK_SLACK_",
        url_settings=("RUNBOOK_SLACK_API_URL",),
    ),
]
IDS = [p.connector for p in PROBES]
CREDENTIALED = [p for p in PROBES if p.connector != "pagerduty"]


def fake_of(sandbox: Sandbox, probe: Probe) -> FakeVendor:
    return sandbox.fakes[probe.fake]


@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_probe_succeeds_without_faults(vendor: Any, probe: Probe) -> None:
    output = await vendor.call(probe.ref, **probe.args)
    assert isinstance(output, dict) and output


@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_rate_limit_is_retryable_with_the_vendors_retry_after(
    vendor: Any, sandbox: Sandbox, probe: Probe
) -> None:
    fake_of(sandbox, probe).rate_limit(retry_after=30)
    with pytest.raises(RetryableError) as caught:
        await vendor.call(probe.ref, **probe.args)
    error = caught.value
    assert error.status == 429
    assert error.connector == probe.connector
    assert "rate limited" in str(error)
    assert error.no_effect  # refused unprocessed: safe to repeat even a non-idempotent action
    if probe.retry_after is None:
        assert error.retry_after is None
    else:
        assert error.retry_after is not None
        # epoch-based headers (CrowdStrike, Okta) lose up to a second to rounding
        assert probe.retry_after - 1.5 <= error.retry_after <= probe.retry_after


@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_a_429_storm_keeps_failing_retryably_then_recovers(
    vendor: Any, sandbox: Sandbox, probe: Probe
) -> None:
    fake_of(sandbox, probe).rate_limit(retry_after=2, times=3)
    for _ in range(3):
        with pytest.raises(RetryableError):
            await vendor.call(probe.ref, **probe.args)
    assert await vendor.call(probe.ref, **probe.args)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_server_errors_are_retryable(
    vendor: Any, sandbox: Sandbox, probe: Probe, status: int
) -> None:
    fake_of(sandbox, probe).server_error(status=status)
    with pytest.raises(RetryableError) as caught:
        await vendor.call(probe.ref, **probe.args)
    assert caught.value.status == status
    assert f"HTTP {status}" in str(caught.value)
    # only a 503 says the request was not taken on; 500/502/504 may come after it acted
    assert caught.value.no_effect is (status == 503)


@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_a_slow_vendor_times_out_retryably(
    vendor: Any, sandbox: Sandbox, probe: Probe
) -> None:
    vendor.configure(**{probe.prefix + "READ_TIMEOUT": "0.3"})
    fake_of(sandbox, probe).slow(10)
    with pytest.raises(RetryableError) as caught:
        await vendor.call(probe.ref, **probe.args)
    assert "timed out while waiting for the answer" in str(caught.value)
    assert not caught.value.no_effect  # the vendor may be acting on it


@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_an_html_page_is_a_clear_permanent_error(
    vendor: Any, sandbox: Sandbox, probe: Probe
) -> None:
    fake_of(sandbox, probe).html()
    with pytest.raises(ConnectorError) as caught:
        await vendor.call(probe.ref, **probe.args)
    assert not caught.value.retryable
    assert "HTML page instead of JSON" in str(caught.value)


@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_an_html_gateway_error_is_retryable(
    vendor: Any, sandbox: Sandbox, probe: Probe
) -> None:
    fake_of(sandbox, probe).html(status=502)
    with pytest.raises(RetryableError) as caught:
        await vendor.call(probe.ref, **probe.args)
    assert "HTML page" in str(caught.value)
    assert not caught.value.no_effect


@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_malformed_json_is_a_clear_permanent_error(
    vendor: Any, sandbox: Sandbox, probe: Probe
) -> None:
    fake_of(sandbox, probe).malformed_json()
    with pytest.raises(ConnectorError) as caught:
        await vendor.call(probe.ref, **probe.args)
    assert not caught.value.retryable
    assert "malformed JSON" in str(caught.value)


@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_wrong_credentials_fail_clearly_without_the_secret(vendor: Any, probe: Probe) -> None:
    vendor.configure(**probe.wrong_credentials)
    with pytest.raises(AuthenticationError) as caught:
        await vendor.call(probe.ref, **probe.args)
    message = str(caught.value)
    assert message.startswith(f"authentication failed for {probe.connector}")
    assert not caught.value.retryable
    for secret in probe.wrong_credentials.values():
        assert secret not in message
        assert secret not in repr(caught.value)


@pytest.mark.parametrize("probe", CREDENTIALED, ids=[p.connector for p in CREDENTIALED])
async def test_a_revoked_credential_mid_run(vendor: Any, sandbox: Sandbox, probe: Probe) -> None:
    """A 401 after working: OAuth connectors fetch a new token once; static ones fail clearly."""
    assert await vendor.call(probe.ref, **probe.args)
    fake_of(sandbox, probe).unauthorized()
    if probe.oauth:
        assert await vendor.call(probe.ref, **probe.args)
    else:
        with pytest.raises(
            AuthenticationError, match=f"authentication failed for {probe.connector}"
        ):
            await vendor.call(probe.ref, **probe.args)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_connection_refused_is_retryable(vendor: Any, probe: Probe) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/"
    vendor.configure(**dict.fromkeys(probe.url_settings, dead))
    with pytest.raises(RetryableError) as caught:
        await vendor.call(probe.ref, **probe.args)
    assert "connection failed" in str(caught.value)
    assert caught.value.no_effect  # nothing was sent


@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_not_a_url_is_a_permanent_error(vendor: Any, probe: Probe) -> None:
    vendor.configure(**dict.fromkeys(probe.url_settings, "ftp://vendor.example/"))
    with pytest.raises(ConnectorError) as caught:
        await vendor.call(probe.ref, **probe.args)
    assert not caught.value.retryable
    assert "base URL" in str(caught.value)
