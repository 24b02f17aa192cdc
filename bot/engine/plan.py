"""Which steps may start, which are skipped, and how a run ends (pure).

Implements SPEC §1.3: a step is decided once every step it needs has ended;
an explicit ``if`` alone decides; otherwise a need that failed (without
``continue_on_error``), was rejected, expired or cancelled skips it; a step
whose needs were all skipped is skipped; else it runs. Once the run has a
failure, only steps whose ``if`` refers to the failure may still start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bot.engine.state import Outcome, RunState, RunStatus
from bot.runbook.model import ApprovalStep, CallStep, NotifyStep, Runbook
from bot.runbook.templates import TemplateError, analyse_expression

BLOCKING_OUTCOMES = frozenset({Outcome.REJECTED, Outcome.EXPIRED, Outcome.CANCELLED})


class Action(StrEnum):
    RUN = "run"
    SKIP = "skip"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class StepDecision:
    action: Action
    reason: str | None = None


@dataclass(slots=True)
class StepInfo:
    """Graph facts about one step, computed once per runbook definition."""

    id: str
    index: int
    step: CallStep | ApprovalStep | NotifyStep
    needs: list[str]
    dependents: list[str] = field(default_factory=list)
    failure_handler: bool = False

    @property
    def continue_on_error(self) -> bool:
        return self.step.continue_on_error


class RunbookPlan:
    """A runbook's step graph, ready for quick readiness checks."""

    def __init__(self, runbook: Runbook) -> None:
        self.runbook = runbook
        self.order = runbook.step_ids
        self.steps: dict[str, StepInfo] = {}
        for index, step in enumerate(runbook.steps):
            info = StepInfo(step.id, index, step, runbook.needs_of(index))
            if step.if_ is not None:
                try:
                    info.failure_handler = analyse_expression(step.if_).refers_to_failure
                except TemplateError:
                    info.failure_handler = False
            self.steps[step.id] = info
        for info in self.steps.values():
            for need in info.needs:
                self.steps[need].dependents.append(info.id)

    def needs_ended(self, run: RunState, step_id: str) -> bool:
        return all(run.steps[need].ended for need in self.steps[step_id].needs)

    def decide(
        self,
        run: RunState,
        step_id: str,
        evaluate_if: Callable[[str], Any],
    ) -> StepDecision | None:
        """Decide a step whose needs have all ended; None if it cannot be decided yet."""
        info = self.steps[step_id]
        state = run.steps[step_id]
        if state.ended or state.running or state.waiting:
            return None
        if not self.needs_ended(run, step_id):
            return None
        if run.failure and not info.failure_handler:
            return StepDecision(Action.SKIP, "not started: an earlier step failed")
        if info.step.if_ is not None:
            try:
                result = evaluate_if(info.step.if_)
            except TemplateError as exc:
                return StepDecision(Action.FAIL, f"if: {exc.message}")
            if result:
                return StepDecision(Action.RUN)
            return StepDecision(Action.SKIP, f"condition is false: {info.step.if_}")
        needs = [run.steps[need] for need in info.needs]
        for need_id, need in zip(info.needs, needs, strict=True):
            if need.outcome is Outcome.FAILED and not self.steps[need_id].continue_on_error:
                return StepDecision(Action.SKIP, f"{need_id} failed")
            if need.outcome in BLOCKING_OUTCOMES:
                return StepDecision(Action.SKIP, f"{need_id} {need.outcome}")
        if needs and all(
            need.outcome is Outcome.SKIPPED and not need.passed_over for need in needs
        ):
            return StepDecision(Action.SKIP, "every step it needs was skipped")
        return StepDecision(Action.RUN)


def final_status(run: RunState) -> RunStatus:
    """How a run that has nothing left to do ends."""
    if run.cancelled_by is not None:
        return RunStatus.CANCELLED
    if run.failure:
        return RunStatus.FAILED
    if run.rejected:
        return RunStatus.REJECTED
    return RunStatus.SUCCEEDED


def compensation_order(run: RunState, plan: RunbookPlan) -> list[str]:
    """Succeeded steps that declare ``compensate``, most recently completed first."""
    done = [
        step_id
        for step_id, state in run.steps.items()
        if state.outcome is Outcome.SUCCEEDED
        and isinstance(plan.steps[step_id].step, CallStep)
        and plan.steps[step_id].step.compensate is not None  # type: ignore[union-attr]
        and not _compensated(state)
    ]
    return sorted(done, key=lambda sid: run.steps[sid].completed or 0, reverse=True)


def _compensated(state: Any) -> bool:
    """Whether every compensation a succeeded step needs has ended (for_each: each item)."""
    if isinstance(state.output, list) and (
        state.compensated_items
        or state.compensating_item is not None
        or state.compensation == "items"
    ):
        return all(index in state.compensated_items for index in range(len(state.output)))
    return state.compensation in ("succeeded", "failed")
