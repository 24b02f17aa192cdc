"""The example runbooks in runbooks/: they validate, and they run end to end against the fakes.

The engine runs on a fake clock; the connectors talk real HTTP to the sandbox.
:func:`drive` only moves the clock when no connector call is in flight, so
polls and step timeouts see the time they would see in production, and no
test sleeps.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bot.engine.catalog import RunbookCatalog
from bot.engine.clock import FakeClock
from bot.engine.engine import Engine, StaticGroups
from bot.runbook.loader import load_paths
from bot.sandbox import Sandbox
from bot.sandbox.virustotal import CLEAN_SHA256, EICAR_SHA256
from bot.store.memory import MemoryStore
from connectors.registry import ConnectorPool, ConnectorRegistry

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "runbooks"
GROUPS = {
    "soc": ["carol", "dave"],
    "soc-leads": ["alice"],
    "soc-managers": ["erin"],
    "ops": ["carol"],
    "ops-leads": ["alice"],
}


def test_the_example_runbooks_validate_with_only_configuration_warnings() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "validate", str(RUNBOOKS), "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["valid"] is True
    assert set(report["runbooks"]) >= {
        "isolate-host",
        "defender-isolate-and-collect",
        "phishing-triage",
        "critical-patch-rollout",
        "alert-escalation",
    }
    assert all("is not configured" in w["message"] for w in report["warnings"])
    forms = {path.suffix for path in RUNBOOKS.iterdir()}
    assert {".md", ".yaml"} <= forms


class TrackingPool:
    """A connector pool that knows whether a call is in flight."""

    def __init__(self, pool: ConnectorPool) -> None:
        self.pool = pool
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)

    async def call(self, spec: Any, args: Mapping[str, Any], ctx: Any) -> dict[str, Any]:
        self.in_flight += 1
        self.idle.clear()
        try:
            return await self.pool.call(spec, args, ctx)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.idle.set()


class Chat:
    """Records what the engine would show in chat."""

    def __init__(self) -> None:
        self.notices: list[str] = []
        self.gates: list[str] = []

    async def run_started(self, run: Any, view: Any) -> None:
        return None

    async def run_progress(self, run: Any, view: Any) -> None:
        return None

    async def run_finished(self, run: Any, view: Any) -> None:
        return None

    async def gate_opened(self, run: Any, step_id: str, view: Any) -> dict[str, str] | None:
        self.gates.append(step_id)
        return {"channel": "C0SOCINC", "ts": f"ts-{step_id}"}

    async def gate_changed(self, run: Any, step_id: str, view: Any) -> None:
        return None

    async def gate_escalated(self, run: Any, step_id: str, view: Any) -> None:
        return None

    async def notify(
        self,
        run: Any,
        step_id: str,
        text: str,
        channel: str | None,
        thread: bool,
        view: Any,
        *,
        markup: str | None = None,
    ) -> dict[str, str] | None:
        self.notices.append(text)
        return {"channel": channel or "C0SOCINC", "ts": "1.0"}


class World:
    """An engine over runbooks/, its connectors pointed at the sandbox."""

    def __init__(self, sandbox: Sandbox) -> None:
        registry = ConnectorRegistry.discover(include_entry_points=False)
        loaded = load_paths([str(RUNBOOKS)], registry).runbooks
        self.sandbox = sandbox
        self.store = MemoryStore()
        self.clock = FakeClock()
        self.chat = Chat()
        self.registered: list[str] = []
        self.pool = TrackingPool(
            ConnectorPool(
                registry, {}, register_secret=self.registered.append, sandbox_env=sandbox.env
            )
        )
        self.records: list[dict[str, Any]] = []
        self.engine = Engine(
            self.store,
            RunbookCatalog(loaded, registry, self.store.load_definition),
            self.pool,
            chat=self.chat,
            clock=self.clock,
            groups=StaticGroups(GROUPS),
            rng=lambda: 1.0,
        )
        self.engine.listeners.append(lambda _run, record: self.records.append(record))

    async def quiet(self) -> None:
        """Let ready work run until no connector call is in flight."""
        while True:
            await self.clock.advance(0)
            if self.pool.in_flight == 0:
                return
            await self.pool.idle.wait()

    async def run(
        self,
        name: str,
        inputs: dict[str, Any],
        decisions: dict[str, str] | None = None,
        *,
        requester: str = "cli:carol",
        approver: str = "cli:alice",
    ) -> dict[str, Any]:
        """Start a run, decide its gates as told, move time until it ends; its document."""
        decisions = dict(decisions or {})
        started = await self.engine.start_run(name, inputs, requester=requester)
        run_id = started.run.id
        for _ in range(2000):
            await self.quiet()
            run = self.store.get_run(run_id)
            assert run is not None
            if run.ended:
                return dict(run.document())
            open_gates = [g for g in self.chat.gates if g in decisions]
            if self.engine.is_settled(run):
                assert open_gates, f"{name} waits at a gate nobody decides: {self.chat.gates}"
                gate = open_gates[0]
                await self.engine.decide(run_id, gate, approver, decisions.pop(gate))
                continue
            await self.clock.advance(5)
        raise AssertionError(f"{name} did not end")

    def events(self, event: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["event"] == event]

    async def close(self) -> None:
        await self.engine.close()
        await self.pool.pool.aclose()


@pytest.fixture
async def world(sandbox: Sandbox) -> AsyncIterator[World]:
    w = World(sandbox)
    yield w
    await w.close()


def outcomes(doc: dict[str, Any]) -> dict[str, str | None]:
    return {step: data["outcome"] for step, data in doc["steps"].items()}


def assert_no_secrets(world: World, doc: dict[str, Any]) -> None:
    said = json.dumps([doc, world.records, world.chat.notices], default=str)
    for secret in world.sandbox.secrets():
        assert secret not in said


# -- isolate-host (CrowdStrike) -------------------------------------------------------


async def test_isolate_host_contains_and_opens_a_ticket(world: World, sandbox: Sandbox) -> None:
    doc = await world.run(
        "isolate-host", {"host": "web-1", "reason": "C2 beacon"}, {"approve": "approve"}
    )
    assert doc["status"] == "succeeded", doc
    assert outcomes(doc)["unknown_host"] == "skipped"
    assert sandbox.crowdstrike.host("web-1").status == "contained"
    assert doc["steps"]["confirm"]["output"]["status"] == "contained"
    issue = sandbox.jira.issues["SEC-1"]
    assert issue.summary == "Host web-1 contained in CrowdStrike"
    assert "Approved by: cli:alice" in json.dumps(issue.description)
    assert "SEC-1" in world.chat.notices[-1]
    assert_no_secrets(world, doc)


async def test_isolate_host_unknown_host_fails_clearly(world: World, sandbox: Sandbox) -> None:
    doc = await world.run("isolate-host", {"host": "ghost-9"})
    assert doc["status"] == "failed"
    assert "does not know a host named ghost-9" in doc["steps"]["unknown_host"]["error"]
    assert outcomes(doc)["approve"] == "skipped"
    assert world.chat.gates == []
    assert sandbox.crowdstrike.calls_to("devices-actions") == []


async def test_isolate_host_rejected_touches_nothing(world: World, sandbox: Sandbox) -> None:
    doc = await world.run("isolate-host", {"host": "web-2"}, {"approve": "reject"})
    assert doc["status"] == "rejected"
    assert sandbox.crowdstrike.host("web-2").status == "normal"
    assert sandbox.jira.issues == {}


async def test_isolate_host_lifts_containment_when_the_ticket_fails(
    world: World, sandbox: Sandbox
) -> None:
    sandbox.jira.server_error(times=None)
    doc = await world.run("isolate-host", {"host": "db-1"}, {"approve": "approve"})
    assert doc["status"] == "failed"
    assert doc["steps"]["ticket"]["outcome"] == "failed"
    lifts = [
        c
        for c in sandbox.crowdstrike.calls_to("devices-actions")
        if c.param("action_name") == "lift_containment"
    ]
    assert len(lifts) == 1
    assert sandbox.crowdstrike.host("db-1").status in ("lift_containment_pending", "normal")
    assert [r["step"] for r in world.events("compensation.succeeded")] == ["contain"]


async def test_isolate_host_retries_through_a_429_storm(world: World, sandbox: Sandbox) -> None:
    sandbox.crowdstrike.rate_limit(retry_after=3, times=2, match="/devices/queries")
    doc = await world.run("isolate-host", {"host": "web-1"}, {"approve": "approve"})
    assert doc["status"] == "succeeded"
    assert doc["steps"]["find"]["attempts"] == 3


# -- defender-isolate-and-collect ---------------------------------------------------


async def test_defender_isolates_collects_and_opens_an_incident(
    world: World, sandbox: Sandbox
) -> None:
    doc = await world.run(
        "defender-isolate-and-collect",
        {"host": "ws-042", "isolation": "Selective"},
        {"approve": "approve"},
    )
    assert doc["status"] == "succeeded", doc
    machine = sandbox.defender.machine("ws-042")
    assert machine.isolated
    kinds = sorted(a.type for a in sandbox.defender.actions.values())
    assert kinds == ["CollectInvestigationPackage", "Isolate", "RunAntiVirusScan"]
    assert doc["steps"]["collected"]["output"]["status"] == "Succeeded"
    (incident,) = sandbox.servicenow.incidents.values()
    assert incident["short_description"] == "ws-042.corp.example.com isolated in Defender"
    assert incident["urgency"] == "1"
    assert_no_secrets(world, doc)


async def test_defender_failed_isolation_fails_the_run_and_releases(
    world: World, sandbox: Sandbox
) -> None:
    sandbox.defender.next_outcome = "Failed"
    doc = await world.run("defender-isolate-and-collect", {"host": "web-1"}, {"approve": "approve"})
    assert doc["status"] == "failed"
    assert "ended Failed" in doc["steps"]["isolated"]["error"]
    assert outcomes(doc)["collect"] == "skipped"
    assert len(sandbox.defender.calls_to("/unisolate")) == 1


# -- phishing-triage ------------------------------------------------------------------


async def test_phishing_with_malicious_indicators_locks_the_account(
    world: World, sandbox: Sandbox
) -> None:
    inputs = {
        "user": "bob@example.com",
        "subject": "Your invoice",
        "hashes": [EICAR_SHA256, "2" * 64],
        "domains": ["evil.example", "example.com"],
        "clicked": True,
    }
    doc = await world.run("phishing-triage", inputs, {"approve_lockout": "approve"})
    assert doc["status"] == "succeeded", doc
    files = doc["steps"]["files"]["output"]
    assert [f["found"] for f in files] == [True, False]
    bob = sandbox.okta.user("bob@example.com")
    assert bob.status == "SUSPENDED" and bob.sessions == 0
    issue = sandbox.jira.issues["SEC-1"]
    assert len(issue.comments) == 1
    text = json.dumps(issue.description)
    assert "62 malicious" in text and "unknown to VirusTotal" in text
    assert "evil.example" in world.chat.notices[0]


async def test_phishing_with_clean_indicators_asks_nobody(world: World, sandbox: Sandbox) -> None:
    inputs = {"user": "carol@example.com", "hashes": [CLEAN_SHA256], "domains": ["example.com"]}
    doc = await world.run("phishing-triage", inputs)
    assert doc["status"] == "succeeded"
    assert outcomes(doc)["approve_lockout"] == "skipped"
    assert outcomes(doc)["suspend"] == "skipped"
    assert world.chat.gates == []
    assert sandbox.okta.user("carol@example.com").status == "ACTIVE"
    assert "SEC-1" in sandbox.jira.issues


# -- critical-patch-rollout -------------------------------------------------------------


async def test_patch_rollout_success_is_announced(world: World, sandbox: Sandbox) -> None:
    doc = await world.run(
        "critical-patch-rollout",
        {"hosts": ["web-1", "web-2"], "advisory": "CVE-2024-3094"},
        {"approve": "approve"},
    )
    assert doc["status"] == "succeeded", doc
    (job,) = sandbox.awx.jobs.values()
    assert job.limit == "web-1,web-2"
    assert job.extra_vars["advisory"] == "CVE-2024-3094"
    assert job.status == "successful"
    assert outcomes(doc)["page"] == "skipped"
    (posted,) = sandbox.slack.messages("ops")
    assert "CVE-2024-3094 is installed on web-1, web-2" in posted["text"]
    assert sandbox.pagerduty.alerts == {}


async def test_patch_rollout_failure_pages_on_call(world: World, sandbox: Sandbox) -> None:
    doc = await world.run(
        "critical-patch-rollout",
        {"hosts": ["web-1", "fail-db-1"], "advisory": "RHSA-2024:1234"},
        {"approve": "approve"},
    )
    assert doc["status"] == "failed"
    assert "finished failed" in doc["steps"]["watch"]["error"]
    assert outcomes(doc)["announce"] == "skipped"
    assert outcomes(doc)["page"] == "succeeded"
    alert = sandbox.pagerduty.alerts["patch/RHSA-2024:1234/template-7"]
    assert alert.severity == "critical"
    assert sandbox.slack.messages("ops") == []


# -- alert-escalation ----------------------------------------------------------------


async def test_alert_escalation_pages_opens_an_incident_and_briefs(
    world: World, sandbox: Sandbox
) -> None:
    inputs = {"host": "web-1", "severity": 95, "title": "Reverse shell", "alert_id": "x:1001"}
    doc = await world.run("alert-escalation", inputs)
    assert doc["status"] == "succeeded", doc
    alert = sandbox.pagerduty.alerts["edr/web-1"]
    assert alert.severity == "critical"
    assert "Reverse shell on web-1" in alert.summary
    (incident,) = sandbox.servicenow.incidents.values()
    assert incident["urgency"] == "1"
    assert "Suspicious reverse shell" in incident["description"]
    assert "/runbook isolate host=web-1" in world.chat.notices[-1]
    (owners,) = sandbox.slack.messages("ops")
    assert incident["number"] in owners["text"]
    again = await world.run("alert-escalation", inputs)
    assert again["status"] == "succeeded"
    assert len(sandbox.pagerduty.alerts) == 1  # same dedup key: one PagerDuty alert
    assert len(sandbox.pagerduty.alerts["edr/web-1"].events) == 2
