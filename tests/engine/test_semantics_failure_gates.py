"""Failure mode with gates (SPEC §1.3): a gate that does not handle the failure is
cancelled; a failure-handler gate still waits; compensation comes after it."""

from __future__ import annotations

from typing import Any

from tests.engine.harness import make_engine


def outcomes(run: Any) -> dict[str, str | None]:
    return {k: (str(v.outcome) if v.outcome else None) for k, v in run.steps.items()}


RB = """
name: fw
steps:
  - id: a
    uses: core.fail
    with: {message: x}
  - id: s
    needs: []
    uses: core.sleep
    with: {seconds: 1}
    compensate: {uses: core.noop}
  - id: g
    needs: []
    approval: {prompt: p}
  - id: h
    needs: [a]
    if: failure()
    approval: {prompt: handle}
"""


async def test_failure_cancels_other_gates_waits_for_handlers_then_compensates() -> None:
    h = make_engine(RB)
    r = await h.engine.start_run("fw", {}, requester="cli:carol")
    await h.advance(0)
    run = h.engine.store.world.runs[r.run.id]
    assert outcomes(run) == {"a": "failed", "s": None, "g": "cancelled", "h": None}
    assert run.steps["s"].running and run.steps["h"].waiting
    await h.advance(1)
    run = await h.settle(run.id)
    assert run.status == "waiting"  # the handler gate still waits for people
    assert outcomes(run)["s"] == "succeeded"
    assert not [r for r in h.records if r["event"].startswith("compensation")]
    await h.engine.decide(run.id, "h", "cli:bob", "approve")
    run = await h.settle(run.id)
    assert run.status == "failed"
    assert outcomes(run) == {"a": "failed", "s": "succeeded", "g": "cancelled", "h": "approved"}
    assert [(r["event"], r["step"]) for r in h.records if r["event"].startswith("comp")] == [
        ("compensation.started", "s"),
        ("compensation.succeeded", "s"),
    ]
    await h.close()


LEAF = """
name: leaf
steps:
  - id: pre
    needs: []
    uses: core.noop
    compensate: {uses: core.echo, with: {undo: pre}}
  - id: ok
    needs: []
    approval: {prompt: p, approvers: {users: [bob]}}
  - id: after_ok
    needs: [ok]
    uses: core.noop
  - id: boom
    needs: [pre]
    uses: core.fail
    with: {message: boom}
"""


async def test_a_failing_leaf_step_still_ends_the_waiting_gate_and_compensates() -> None:
    # nothing depends on `boom`: its failure must still end `ok` and wind the run down
    h = make_engine(LEAF)
    r = await h.engine.start_run("leaf", {}, requester="cli:carol")
    await h.advance(0)
    run = await h.settle(r.run.id)
    assert run.status == "failed"
    assert outcomes(run) == {
        "pre": "succeeded",
        "ok": "cancelled",
        "after_ok": "skipped",
        "boom": "failed",
    }
    assert [(r["event"], r["step"]) for r in h.records if r["event"].startswith("comp")] == [
        ("compensation.started", "pre"),
        ("compensation.succeeded", "pre"),
    ]
    await h.close()
