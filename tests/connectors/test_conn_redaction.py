"""No credential and no token obtained with one appears in outputs, errors, logs or prints."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import Any

import pytest

from bot.errors import ConnectorError
from bot.redact import Redactor
from bot.sandbox import Sandbox
from bot.sandbox.virustotal import EICAR_SHA256


async def _gauntlet(vendor: Any, sandbox: Sandbox) -> list[str]:
    """Call every connector, succeed and fail in every way; return everything said."""
    said: list[str] = []

    async def attempt(ref: str, **args: Any) -> None:
        try:
            said.append(json.dumps(await vendor.call(ref, **args)))
        except ConnectorError as exc:
            said.extend([str(exc), repr(exc), repr(exc.args)])

    cs_host = sandbox.crowdstrike.host("web-1").device_id
    machine = sandbox.defender.machine("web-1").id
    calls: list[tuple[str, dict[str, Any]]] = [
        ("crowdstrike.find_host", {"hostname": "web-1"}),
        ("crowdstrike.contain_host", {"device_id": cs_host}),
        ("defender.isolate_machine", {"machine_id": machine}),
        ("sentinelone.find_agent", {"hostname": "web-1"}),
        ("pagerduty.trigger", {"summary": "s", "source": "x", "severity": "info"}),
        ("jira.create_issue", {"project": "SEC", "summary": "x"}),
        ("servicenow.create_incident", {"short_description": "x"}),
        ("virustotal.file_report", {"hash": EICAR_SHA256}),
        ("okta.find_user", {"login": "alice@example.com"}),
        ("awx.launch_job", {"template_id": 7}),
        ("slack.post_message", {"channel": "#ops", "text": "x"}),
    ]
    for ref, args in calls:
        await attempt(ref, **args)
        said.append(json.dumps(vendor.describe(ref, **args)))
    # token expiry and refresh
    sandbox.crowdstrike.expire_tokens()
    sandbox.defender.expire_tokens()
    await attempt("crowdstrike.find_host", hostname="web-1")
    await attempt("defender.find_machine", hostname="web-1")
    # every fault on every fake
    for fake in sandbox.fakes.values():
        fake.rate_limit(retry_after=5)
        fake.server_error(status=503)
        fake.html()
        fake.malformed_json()
        fake.unauthorized(times=2)
    for _ in range(5):
        for ref, args in calls:
            await attempt(ref, **args)
    return said


async def test_secrets_and_tokens_appear_nowhere(
    vendor: Any,
    sandbox: Sandbox,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    said = await _gauntlet(vendor, sandbox)
    # then with every credential wrong, each distinctive
    wrong = {
        "RUNBOOK_CROWDSTRIKE_CLIENT_SECRET": "WRONG-cs-secret-7d1f0a",
        "RUNBOOK_DEFENDER_CLIENT_SECRET": "WRONG-mde-secret-91bc2e",
        "RUNBOOK_SENTINELONE_API_TOKEN": "WRONG-s1-token-4a7e66",
        "RUNBOOK_PAGERDUTY_ROUTING_KEY": "WRONGpdroutingkey0123456789abcde",
        "RUNBOOK_JIRA_API_TOKEN": "WRONG-jira-token-5f5f5f",
        "RUNBOOK_SERVICENOW_PASSWORD": "WRONG-snow-pass-0e0e0e",
        "RUNBOOK_VIRUSTOTAL_API_KEY": "WRONG-vt-key-c0ffee",
        "RUNBOOK_OKTA_API_TOKEN": "WRONG-okta-token-bead00",
        "RUNBOOK_AWX_TOKEN": "WRONG-awx-token-d00d00",
        "SLACK_BOT_TOKEN": "xoxb-WRONG-slack-token-f00f",
    }
    issued = [*sandbox.crowdstrike.tokens.issued, *sandbox.defender.tokens.issued]
    assert len(issued) >= 4, "the gauntlet should have obtained and refreshed tokens"
    secrets = [*sandbox.secrets(), *wrong.values()]
    sandbox.reset()
    vendor.configure(**wrong)
    said += await _gauntlet(vendor, sandbox)
    secrets += sandbox.secrets()
    captured = capsys.readouterr()
    texts = {
        "outputs and errors": "\n".join(said),
        "logs": "\n".join([r.getMessage() for r in caplog.records] + [caplog.text]),
        "stdout": captured.out,
        "stderr": captured.err,
    }
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {where}"


async def test_every_secret_and_token_is_registered_for_redaction(
    vendor: Any, sandbox: Sandbox
) -> None:
    await vendor.call("crowdstrike.find_host", hostname="web-1")
    await vendor.call("defender.find_machine", hostname="web-1")
    await vendor.call("jira.create_issue", project="SEC", summary="x")
    sandbox.crowdstrike.expire_tokens()
    await vendor.call("crowdstrike.find_host", hostname="web-1")
    registered = set(vendor.registered)
    assert sandbox.crowdstrike.credentials["client_secret"] in registered
    assert sandbox.microsoft_login.credentials["client_secret"] in registered
    assert sandbox.jira.credentials["api_token"] in registered
    for token in [*sandbox.crowdstrike.tokens.issued, *sandbox.defender.tokens.issued]:
        assert token in registered
    redactor = Redactor()
    for value in registered:
        redactor.add(value)
    token = sandbox.crowdstrike.tokens.issued[-1]
    assert redactor.text(f"Authorization: Bearer {token}") == "Authorization: Bearer ***"


def test_runbook_connectors_shows_configured_state_not_secrets(sandbox: Sandbox) -> None:
    env = {**os.environ, **sandbox.env}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "connectors", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    data = {c["name"]: c for c in json.loads(done.stdout)}
    assert all(data[name]["configured"] for name in data)
    for secret in sandbox.secrets():
        assert secret not in done.stdout
        assert secret not in done.stderr
