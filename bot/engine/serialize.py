"""Run state to and from JSON-safe dicts (snapshots and the archive of finished runs)."""

from __future__ import annotations

from typing import Any

from bot.engine.state import Decision, GateState, Outcome, RunState, RunStatus, StepState


def run_to_dict(run: RunState) -> dict[str, Any]:
    """A JSON-safe copy of a run's state."""
    data = {name: getattr(run, name) for name in RunState.__dataclass_fields__}
    data["status"] = str(run.status)
    data["steps"] = {sid: _step_to_dict(step) for sid, step in run.steps.items()}
    return data


def _step_to_dict(step: StepState) -> dict[str, Any]:
    data = {name: getattr(step, name) for name in StepState.__dataclass_fields__}
    data["outcome"] = str(step.outcome) if step.outcome else None
    data["items"] = {str(k): v for k, v in step.items.items()}
    data["compensated_items"] = sorted(step.compensated_items)
    if step.gate is not None:
        gate = {name: getattr(step.gate, name) for name in GateState.__dataclass_fields__}
        gate["decisions"] = [
            {name: getattr(d, name) for name in Decision.__dataclass_fields__}
            for d in step.gate.decisions
        ]
        data["gate"] = gate
    return data


def run_from_dict(data: dict[str, Any]) -> RunState:
    """Rebuild a run's state from :func:`run_to_dict` output."""
    fields = dict(data)
    steps = fields.pop("steps", {})
    fields["status"] = RunStatus(fields.get("status", "pending"))
    known = set(RunState.__dataclass_fields__)
    run = RunState(**{k: v for k, v in fields.items() if k in known})
    run.steps = {sid: _step_from_dict(step) for sid, step in steps.items()}
    return run


def _step_from_dict(data: dict[str, Any]) -> StepState:
    fields = dict(data)
    gate = fields.pop("gate", None)
    fields["outcome"] = Outcome(fields["outcome"]) if fields.get("outcome") else None
    fields["items"] = {int(k): v for k, v in (fields.get("items") or {}).items()}
    fields["compensated_items"] = set(fields.get("compensated_items") or [])
    known = set(StepState.__dataclass_fields__)
    step = StepState(**{k: v for k, v in fields.items() if k in known})
    if gate is not None:
        decisions = [Decision(**d) for d in gate.pop("decisions", [])]
        gate_known = set(GateState.__dataclass_fields__)
        step.gate = GateState(**{k: v for k, v in gate.items() if k in gate_known})
        step.gate.decisions = decisions
    return step
