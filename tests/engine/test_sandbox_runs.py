"""A sandbox run is only ever carried on by a process with the sandbox, and a real run never is.

A process with the other setting leaves the run exactly as it is: no step
runs, no deadline fires, decisions and cancels are refused with a message
saying where to continue it (docs/concepts.md, "Sandbox runs").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.engine.state import RunStatus, dedup_slot
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


DEDUP_RUNBOOK = """
name: iso
steps:
  - id: ok
    approval: {prompt: "go?"}
  - id: a
    uses: core.noop
"""


async def _start(data: Path, *, sandbox: bool, key: str = "web-1") -> tuple[str, bool, bool]:
    """Start ``iso`` with a dedup window and an idempotency key; (run id, joined, sandbox)."""
    h = make_engine(DEDUP_RUNBOOK, data_dir=data, sandbox=sandbox)
    try:
        await h.engine.start(resume=True)
        result = await h.engine.start_run(
            "iso", {}, requester=None, dedup=(key, 3600.0), idempotency_key=f"alert:{key}"
        )
        await h.settle(result.run.id)
        return result.run.id, result.deduplicated, result.run.sandbox
    finally:
        await h.close()


@pytest.mark.parametrize("sandbox", [True, False])
async def test_dedup_windows_and_idempotency_keys_are_kept_apart(
    tmp_path: Path, sandbox: bool
) -> None:
    # regression: a real alert inside a sandbox run's dedup window was joined to
    # that run, which a real service never acts on, so the real incident started nothing
    first, joined, kind = await _start(tmp_path, sandbox=sandbox)
    assert not joined and kind is sandbox
    other, joined, kind = await _start(tmp_path, sandbox=not sandbox)
    assert not joined and other != first and kind is (not sandbox)
    # each run holds the window (and the key) for its own kind, across restarts
    again, joined, _ = await _start(tmp_path, sandbox=not sandbox)
    assert joined and again == other
    again, joined, _ = await _start(tmp_path, sandbox=sandbox)
    assert joined and again == first


async def test_a_foreign_run_in_an_unmarked_dedup_slot_is_not_joined(tmp_path: Path) -> None:
    # state written before windows were kept apart holds a sandbox run's window
    # under the plain slot; a real service starts a run of its own all the same
    first, _, _ = await _start(tmp_path, sandbox=True)
    real = make_engine(DEDUP_RUNBOOK, data_dir=tmp_path, sandbox=False)
    try:
        await real.engine.start(resume=True)
        world = real.engine.store.world
        world.dedup[dedup_slot("iso", "web-1")] = world.dedup[dedup_slot("iso", "web-1", True)]
        world.idempotency["alert:web-1"] = first
        result = await real.engine.start_run(
            "iso", {}, requester=None, dedup=("web-1", 3600.0), idempotency_key="alert:web-1"
        )
        assert not result.deduplicated and result.run.id != first and not result.run.sandbox
        joined = await real.engine.start_run("iso", {}, requester=None, dedup=("web-1", 3600.0))
        assert joined.deduplicated and joined.run.id == result.run.id
    finally:
        await real.close()
