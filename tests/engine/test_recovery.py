"""Steps interrupted by a restart: re-run when safe, a recovery gate when not (SPEC §1.4)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest

from connectors.base import ActionContext, ActionInput, Connector, action
from connectors.core import Core
from connectors.registry import ConnectorRegistry
from tests.engine.harness import make_engine


class Gate(ActionInput):
    pass


class Slow(Connector):
    """Actions that block until the test lets them go (or the 'process' stops)."""

    name = "slow"
    calls: ClassVar[list[str]] = []
    go: ClassVar[asyncio.Event | None] = None

    async def _wait(self, kind: str) -> dict[str, Any]:
        Slow.calls.append(kind)
        assert Slow.go is not None
        await Slow.go.wait()
        return {"kind": kind}

    @action(input=Gate, mutating=True, idempotent=False)
    async def ticket(self, ctx: ActionContext, args: Gate) -> dict[str, Any]:
        """Opens a ticket (not idempotent)."""
        return await self._wait("ticket")

    @action(input=Gate, mutating=True, idempotent=True)
    async def contain(self, ctx: ActionContext, args: Gate) -> dict[str, Any]:
        """Contains a host (idempotent)."""
        return await self._wait("contain")


REGISTRY = ConnectorRegistry({"core": Core, "slow": Slow})
RUNBOOK = """
name: interrupted
run_by: {users: [lead, carol]}
steps:
  - id: step
    uses: slow.{action}
  - id: after
    uses: core.noop
"""


async def crash_during(tmp_path: Path, kind: str) -> tuple[Any, str]:
    Slow.calls = []
    Slow.go = asyncio.Event()
    h = make_engine(RUNBOOK.replace("{action}", kind), data_dir=tmp_path, registry=REGISTRY)
    result = await h.engine.start_run("interrupted", {}, requester="cli:carol")
    await h.clock.advance(0)
    assert Slow.calls == [kind]
    await h.engine.close(grace=0)  # the process dies: the call never ends, nothing recorded
    await h.store.close()
    Slow.go = asyncio.Event()
    Slow.go.set()
    Slow.calls = []  # count what the restarted "process" does
    h2 = make_engine(RUNBOOK.replace("{action}", kind), data_dir=tmp_path, registry=REGISTRY)
    h2.clock._now = h.clock.now()
    await h2.engine.start(resume=True)
    return h2, result.run.id


async def test_idempotent_step_is_simply_run_again(tmp_path: Path) -> None:
    h, run_id = await crash_during(tmp_path, "contain")
    run = await h.settle(run_id)
    assert run.status == "succeeded"
    assert Slow.calls == ["contain"]  # once more in this "process": it was safe to repeat
    assert not h.of("approval.requested")
    assert [r["data"]["attempt"] for r in h.of("step.started") if r["step"] == "step"] == [2]
    await h.close()


@pytest.mark.parametrize(
    ("decision", "outcome", "status", "calls"),
    [
        ("approve", "succeeded", "succeeded", ["ticket"]),
        ("skip", "skipped", "succeeded", []),
        ("reject", "failed", "failed", []),
    ],
)
async def test_non_idempotent_step_waits_at_a_recovery_gate(
    tmp_path: Path, decision: str, outcome: str, status: str, calls: list[str]
) -> None:
    h, run_id = await crash_during(tmp_path, "ticket")
    run = await h.settle(run_id)
    assert run.status == "waiting"
    requested = h.of("approval.requested")[0]
    assert requested["step"] == "step" and requested["data"]["recovery"] is True
    assert "interrupted by a restart" in requested["data"]["prompt"]
    assert Slow.calls == []  # not run again by itself
    # only the people of run_by decide (the requester is one of them here)
    refused = await h.engine.decide(run_id, "step", "cli:mallory", decision)
    assert refused.reason == "you are not an approver for this step"
    result = await h.engine.decide(run_id, "step", "cli:lead", decision)
    assert result.gate_open is False
    run = await h.settle(run_id)
    assert run.status == status
    assert run.steps["step"].outcome == outcome
    assert Slow.calls == calls
    # skip means "go on": the step after it runs (it is not a branch that was not taken)
    assert run.steps["after"].outcome == ("skipped" if decision == "reject" else "succeeded")
    # the gate's message reference survives the decision (chat can still update it)
    assert run.steps["step"].gate is not None
    assert run.steps["step"].gate.message == {"channel": "C1", "ts": "ts-step"}
    late = await h.engine.decide(run_id, "step", "cli:lead", "approve")
    assert late.verdict == "not_waiting"
    await h.close()
