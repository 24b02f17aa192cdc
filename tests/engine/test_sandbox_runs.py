"""A sandbox run is only ever carried on by a process with the sandbox, and a real run never is.

A process with the other setting leaves the run exactly as it is: no step
runs, no deadline fires, decisions and cancels are refused with a message
saying where to continue it (docs/concepts.md, "Sandbox runs").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.engine.state import RunStatus
from bot.errors import ConflictError
from tests.engine.harness import make_engine

RUNBOOK = """
name: contain
steps:
  - id: approve
    approval:
      prompt: "go?"
      approvers: {users: ["cli:bob"]}
      timeout: 1h
      on_timeout: reject
  - id: act
    uses: core.echo
    with: {contained: web-1}
"""


async def _waiting_run(data: Path, *, sandbox: bool) -> str:
    first = make_engine(RUNBOOK, data_dir=data, sandbox=sandbox)
    await first.engine.start()
    run = await first.start("contain", requester="cli:alice")
    assert run.status is RunStatus.WAITING and run.sandbox is sandbox
    await first.close()
    return run.id


@pytest.mark.parametrize("sandbox", [True, False])
async def test_the_other_setting_leaves_the_run_untouched(tmp_path: Path, sandbox: bool) -> None:
    run_id = await _waiting_run(tmp_path, sandbox=sandbox)
    other = make_engine(RUNBOOK, data_dir=tmp_path, sandbox=not sandbox)
    try:
        await other.engine.start(resume=True)
        with pytest.raises(ConflictError) as decided:
            await other.engine.decide(run_id, "approve", "cli:bob", "approve")
        with pytest.raises(ConflictError) as cancelled:
            await other.engine.cancel(run_id, "cli:alice")
        await other.advance(2 * 3600)  # the gate's deadline is not armed here
        run = other.engine.store.get_run(run_id)
        assert run is not None and run.status is RunStatus.WAITING
        assert run.steps["act"].outcome is None
        assert other.records == []  # nothing recorded: not even a refusal
    finally:
        await other.close()
    if sandbox:
        expected = "sandbox run: its connector calls only go to the fake vendors; continue it with --sandbox / serve --sandbox"
    else:
        expected = "is not a sandbox run"
    assert expected in str(decided.value) and expected in str(cancelled.value)


async def test_the_same_setting_carries_the_run_on(tmp_path: Path) -> None:
    run_id = await _waiting_run(tmp_path, sandbox=True)
    again = make_engine(RUNBOOK, data_dir=tmp_path, sandbox=True)
    try:
        await again.engine.start(resume=True)
        result = await again.engine.decide(run_id, "approve", "cli:bob", "approve")
        assert result.verdict == "accepted"
        run = await again.settle(run_id)
        assert run.status is RunStatus.SUCCEEDED
        assert run.steps["act"].output == {"contained": "web-1"}
    finally:
        await again.close()
