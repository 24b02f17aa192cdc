"""The connector framework: declarations, settings, retry headers, vendor messages, shapes."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from bot.errors import ConnectorError
from bot.sandbox import Sandbox
from bot.sandbox.virustotal import EICAR_SHA256
from connectors.http_errors import (
    CROWDSTRIKE_RETRY_AFTER,
    OKTA_RATE_LIMIT_RESET,
    RETRY_AFTER,
    parse_epoch_reset,
    parse_retry_after,
    retry_after,
    vendor_message,
)
from connectors.registry import ConnectorRegistry

NOW = 1_800_000_000.0

# The contract of issue 6: action -> (input keys, output keys) that must exist.
CONTRACT: dict[str, tuple[set[str], set[str]]] = {
    "http.request": (
        {"method", "url", "headers", "json", "params", "expected_status"},
        {"status", "headers", "json", "text"},
    ),
    "crowdstrike.find_host": ({"hostname"}, {"device_id", "hostname", "platform", "status"}),
    "crowdstrike.contain_host": ({"device_id"}, set()),
    "crowdstrike.lift_containment": ({"device_id"}, set()),
    "crowdstrike.get_alerts": ({"filter", "limit"}, set()),
    "defender.find_machine": (
        {"hostname"},
        {"machine_id", "hostname", "os_platform", "health_status", "risk_score"},
    ),
    "defender.isolate_machine": (
        {"machine_id", "comment", "isolation_type"},
        {"action_id", "status"},
    ),
    "defender.release_machine": ({"machine_id", "comment"}, {"action_id", "status"}),
    "defender.collect_investigation_package": (
        {"machine_id", "comment"},
        {"action_id", "status"},
    ),
    "defender.run_av_scan": ({"machine_id", "scan_type", "comment"}, {"action_id", "status"}),
    "defender.get_machine_action": ({"action_id"}, {"action_id", "status"}),
    "sentinelone.find_agent": ({"hostname"}, set()),
    "sentinelone.disconnect_agent": ({"agent_id"}, set()),
    "sentinelone.reconnect_agent": ({"agent_id"}, set()),
    "pagerduty.trigger": (
        {"summary", "source", "severity", "dedup_key", "details"},
        {"dedup_key"},
    ),
    "pagerduty.acknowledge": ({"dedup_key"}, set()),
    "pagerduty.resolve": ({"dedup_key"}, set()),
    "jira.create_issue": (
        {"project", "summary", "description", "issue_type"},
        {"key", "id", "url"},
    ),
    "jira.add_comment": ({"issue", "body"}, set()),
    "jira.transition": ({"issue", "to"}, set()),
    "servicenow.create_incident": (
        {"short_description", "description", "urgency", "impact"},
        {"sys_id", "number"},
    ),
    "servicenow.update_incident": ({"sys_id", "fields"}, set()),
    "virustotal.file_report": (
        {"hash"},
        {"found", "malicious", "suspicious", "harmless", "undetected", "reputation"},
    ),
    "virustotal.ip_report": (
        {"ip"},
        {"found", "malicious", "suspicious", "harmless", "undetected", "reputation"},
    ),
    "virustotal.domain_report": (
        {"domain"},
        {"found", "malicious", "suspicious", "harmless", "undetected", "reputation"},
    ),
    "okta.find_user": ({"login"}, set()),
    "okta.suspend_user": ({"user_id"}, set()),
    "okta.clear_sessions": ({"user_id"}, set()),
    "awx.launch_job": ({"template_id", "extra_vars", "limit"}, {"job_id"}),
    "awx.get_job": ({"job_id"}, {"job_id", "status", "failed"}),
    "slack.post_message": ({"channel", "text"}, set()),
}

# Containing a contained host is harmless; opening a ticket twice is not.
IDEMPOTENCY = {
    "crowdstrike.contain_host": True,
    "crowdstrike.lift_containment": True,
    "defender.isolate_machine": True,
    "sentinelone.disconnect_agent": True,
    "okta.suspend_user": True,
    "pagerduty.trigger": True,
    "jira.create_issue": False,
    "jira.add_comment": False,
    "awx.launch_job": False,
    "slack.post_message": False,
    "http.request": False,
}

SPEC_SETTINGS = {
    "crowdstrike": {
        "RUNBOOK_CROWDSTRIKE_BASE_URL",
        "RUNBOOK_CROWDSTRIKE_CLIENT_ID",
        "RUNBOOK_CROWDSTRIKE_CLIENT_SECRET",
    },
    "pagerduty": {"RUNBOOK_PAGERDUTY_BASE_URL", "RUNBOOK_PAGERDUTY_ROUTING_KEY"},
    "virustotal": {"RUNBOOK_VIRUSTOTAL_BASE_URL", "RUNBOOK_VIRUSTOTAL_API_KEY"},
    "defender": {
        "RUNBOOK_DEFENDER_BASE_URL",
        "RUNBOOK_DEFENDER_TENANT_ID",
        "RUNBOOK_DEFENDER_CLIENT_ID",
        "RUNBOOK_DEFENDER_CLIENT_SECRET",
        "RUNBOOK_DEFENDER_LOGIN_URL",
    },
    "jira": {"RUNBOOK_JIRA_BASE_URL", "RUNBOOK_JIRA_EMAIL", "RUNBOOK_JIRA_API_TOKEN"},
    "okta": {"RUNBOOK_OKTA_BASE_URL", "RUNBOOK_OKTA_API_TOKEN"},
    "awx": {"RUNBOOK_AWX_BASE_URL", "RUNBOOK_AWX_TOKEN"},
    "sentinelone": {"RUNBOOK_SENTINELONE_BASE_URL", "RUNBOOK_SENTINELONE_API_TOKEN"},
    "servicenow": {
        "RUNBOOK_SERVICENOW_BASE_URL",
        "RUNBOOK_SERVICENOW_USERNAME",
        "RUNBOOK_SERVICENOW_PASSWORD",
    },
    "slack": {"RUNBOOK_SLACK_API_URL", "SLACK_BOT_TOKEN"},
    "http": {"RUNBOOK_HTTP_BASE_URL"},
}


def _fields(model: Any) -> set[str]:
    if model is None:
        return set()
    return {info.alias or name for name, info in model.model_fields.items()}


@pytest.mark.parametrize("ref", sorted(CONTRACT))
def test_actions_take_and_give_at_least_the_contracted_keys(
    registry: ConnectorRegistry, ref: str
) -> None:
    spec = registry.lookup(ref)
    inputs, outputs = CONTRACT[ref]
    assert inputs <= _fields(spec.input_model)
    assert outputs <= _fields(spec.output_model)
    assert spec.output_model is not None
    assert spec.description


@pytest.mark.parametrize(("ref", "idempotent"), sorted(IDEMPOTENCY.items()))
def test_idempotency_is_declared(registry: ConnectorRegistry, ref: str, idempotent: bool) -> None:
    spec = registry.lookup(ref)
    assert spec.mutating
    assert spec.idempotent is idempotent


def test_look_ups_are_read_only(registry: ConnectorRegistry) -> None:
    for ref in CONTRACT:
        name = ref.split(".")[1]
        if name.startswith(("find_", "get_")) or name.endswith("_report"):
            assert not registry.lookup(ref).mutating, ref


def test_every_mutating_vendor_action_can_describe_its_request(
    registry: ConnectorRegistry,
) -> None:
    for spec in registry.specs():
        if spec.mutating and spec.connector != "core":
            cls = registry.connector_class(spec.connector)
            assert hasattr(cls, f"plan_{spec.name}"), spec.ref


@pytest.mark.parametrize("connector", sorted(SPEC_SETTINGS))
def test_settings_use_the_documented_variable_names(
    registry: ConnectorRegistry, connector: str
) -> None:
    cls = registry.connector_class(connector)
    names = {cls.env_name(field) for field in cls.Settings.model_fields}
    assert SPEC_SETTINGS[connector] <= names
    assert f"RUNBOOK_{connector.upper()}_READ_TIMEOUT" in names
    assert f"RUNBOOK_{connector.upper()}_CONNECT_TIMEOUT" in names


def test_a_connector_without_credentials_is_not_configured(
    registry: ConnectorRegistry, sandbox: Sandbox
) -> None:
    for name in registry.names():
        cls = registry.connector_class(name)
        assert cls.is_configured({}) is (name in ("core", "http")), name
        assert cls.is_configured(sandbox.env), name


def test_secrets_are_secret_settings(registry: ConnectorRegistry) -> None:
    expected = {
        "crowdstrike": ["client_secret"],
        "defender": ["client_secret"],
        "sentinelone": ["api_token"],
        "pagerduty": ["routing_key"],
        "jira": ["api_token"],
        "servicenow": ["password"],
        "virustotal": ["api_key"],
        "okta": ["api_token"],
        "awx": ["token"],
        "slack": ["bot_token"],
        "http": ["bearer_token"],
    }
    for name, secrets in expected.items():
        assert registry.connector_class(name).secret_settings() == secrets


def test_importing_every_connector_does_not_import_httpx() -> None:
    code = (
        "import sys\n"
        "from connectors.registry import ConnectorRegistry\n"
        "registry = ConnectorRegistry.discover()\n"
        "assert len(registry.names()) >= 12, registry.names()\n"
        "print('httpx' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"


# -- retry headers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), ("0", 0.0), ("1.5", 1.5), ("-3", 0.0), ("soon", None), ("", None)],
)
def test_retry_after_seconds(value: str, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_retry_after_http_date() -> None:
    when = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=90)
    assert parse_retry_after(format_datetime(when, usegmt=True), NOW) == pytest.approx(90)
    past = datetime.fromtimestamp(NOW, UTC) - timedelta(seconds=90)
    assert parse_retry_after(format_datetime(past, usegmt=True), NOW) == 0.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (str(int(NOW + 25)), 25.0),  # epoch seconds
        (str(int((NOW + 25) * 1000)), 25.0),  # epoch milliseconds
        (str(int(NOW - 10)), 0.0),  # already passed
        ("never", None),
    ],
)
def test_epoch_reset_seconds_or_milliseconds(value: str, seconds: float | None) -> None:
    assert parse_epoch_reset(value, NOW) == seconds


def test_the_first_usable_hint_wins_and_names_are_case_insensitive() -> None:
    headers = {"x-ratelimit-retryafter": str(int(NOW + 7)), "retry-after": "60"}
    assert retry_after(headers, (CROWDSTRIKE_RETRY_AFTER, RETRY_AFTER), NOW) == 7
    assert retry_after({"Retry-After": "60"}, (CROWDSTRIKE_RETRY_AFTER, RETRY_AFTER), NOW) == 60
    okta = {"X-Rate-Limit-Reset": str(int(NOW + 33)), "X-Rate-Limit-Remaining": "0"}
    assert retry_after(okta, (OKTA_RATE_LIMIT_RESET, RETRY_AFTER), NOW) == 33
    assert retry_after({"X-RateLimit-RetryAfter": "x"}, (CROWDSTRIKE_RETRY_AFTER,), NOW) is None
    assert retry_after({}, (RETRY_AFTER,), NOW) is None


# -- vendor messages ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"errors": [{"code": 403, "message": "access denied"}], "resources": []}, "access denied"),
        ({"error": {"code": "ResourceNotFound", "message": "nope"}}, "ResourceNotFound: nope"),
        (
            {"error": "invalid_client", "error_description": "AADSTS7000215"},
            "invalid_client: AADSTS7000215",
        ),
        (
            {"errorMessages": ["bad"], "errors": {"summary": "required"}},
            "bad; summary: required",
        ),
        (
            {"errorMessages": [], "errors": {"project": "valid project is required"}},
            "project: valid project is required",
        ),
        (
            {"errorCode": "E0000011", "errorSummary": "Invalid token provided"},
            "E0000011: Invalid token provided",
        ),
        (
            {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": ["Invalid routing key"],
            },
            "Event object is invalid; Invalid routing key",
        ),
        ({"detail": "Invalid token."}, "Invalid token."),
        (
            {"extra_vars": ["Must be a valid JSON or YAML dictionary."]},
            "extra_vars: Must be a valid JSON or YAML dictionary.",
        ),
        ({"ok": False, "error": "channel_not_found"}, "channel_not_found"),
        (
            {"error": {"message": "No Record found", "detail": "ACL"}, "status": "failure"},
            "No Record found; ACL",
        ),
        (
            {"errors": [{"code": 4010010, "detail": None, "title": "Authentication Failed"}]},
            "Authentication Failed",
        ),
        ({"unrelated": 1}, None),
        ([1, 2], None),
    ],
)
def test_vendor_messages(body: Any, message: str | None) -> None:
    assert vendor_message(body) == message


def test_vendor_messages_are_one_short_line() -> None:
    text = vendor_message({"message": "line\n" * 500})
    assert text is not None and "\n" not in text and len(text) <= 300


# -- answers that lack what we need -------------------------------------------


async def test_a_token_answer_without_a_token(vendor: Any, sandbox: Sandbox) -> None:
    vendor.configure(RUNBOOK_CROWDSTRIKE_BASE_URL=sandbox.url + "/echo")
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("crowdstrike.find_host", hostname="web-1")
    assert not caught.value.retryable
    assert str(caught.value) == (
        "crowdstrike: unexpected answer to POST /echo/oauth2/token: missing 'access_token'"
    )


async def test_a_report_without_data(vendor: Any, sandbox: Sandbox) -> None:
    vendor.configure(RUNBOOK_VIRUSTOTAL_BASE_URL=sandbox.url + "/echo")
    with pytest.raises(ConnectorError, match=r"virustotal: unexpected answer to GET .*'data'"):
        await vendor.call("virustotal.file_report", hash=EICAR_SHA256)


async def test_aclose_closes_the_shared_client(vendor: Any) -> None:
    await vendor.call("virustotal.file_report", hash=EICAR_SHA256)
    connector = vendor.instance("virustotal")
    client = connector.http.client()
    assert connector.http.client() is client  # one shared client
    await connector.aclose()
    assert client.is_closed
