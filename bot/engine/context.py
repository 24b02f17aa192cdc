"""The template context of a run (pure): inputs, steps, alert, run, item/index, output."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from bot.engine.state import Outcome, RunState


class StepsView(Mapping[str, Mapping[str, Any]]):
    """``steps.<id>.output|outcome|error|attempts``, built on access."""

    def __init__(self, run: RunState) -> None:
        self._run = run

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        step = self._run.steps[key]
        output = step.output
        return {
            "output": output,
            "outcome": str(step.outcome) if step.outcome else None,
            "error": step.error,
            "attempts": step.attempts,
        }

    def __iter__(self) -> Iterator[str]:
        return iter(self._run.step_ids)

    def __len__(self) -> int:
        return len(self._run.step_ids)


def run_facts(run: RunState) -> dict[str, Any]:
    return {
        "id": run.id,
        "runbook": run.runbook,
        "requester": run.requester,
        "trigger": run.trigger.get("kind"),
        "started_at": run.started_at,
        "sandbox": run.sandbox,
    }


def build_context(run: RunState, **extra: Any) -> dict[str, Any]:
    """The names templates and expressions see for this run."""

    def failure() -> bool:
        return run.failure

    def success() -> bool:
        return not run.failure and not run.rejected

    context: dict[str, Any] = {
        "inputs": run.inputs,
        "steps": StepsView(run),
        "alert": run.alert,
        "run": run_facts(run),
        "failure": failure,
        "success": success,
    }
    context.update(extra)
    return context


def gate_output(decisions: list[Any], decision: str, at: str | None) -> dict[str, Any]:
    """``steps.<gate>.output``: {decision, decided_by, decided_at, fields, comments}."""
    fields: dict[str, Any] = {}
    for item in decisions:
        fields.update(item.fields or {})
    return {
        "decision": decision,
        "decided_by": [item.by for item in decisions],
        "decided_at": at,
        "fields": fields,
        "comments": [{"by": item.by, "text": item.comment} for item in decisions if item.comment],
    }


SUCCESS_LIKE = (Outcome.SUCCEEDED, Outcome.APPROVED)
