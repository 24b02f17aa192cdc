"""What chat adapters may know of a runbook when they render a run."""

from __future__ import annotations

from bot.runbook.model import ApprovalStep, CallStep, Runbook


class RunbookView:
    """Read-only facts about a run's runbook."""

    def __init__(self, runbook: Runbook) -> None:
        self.runbook = runbook
        self.title = runbook.display_title
        self.channel = runbook.channel
        self.description = runbook.description
        self._steps = {step.id: step for step in runbook.steps}

    def step_title(self, step_id: str) -> str:
        step = self._steps.get(step_id)
        return (step.title or step_id) if step else step_id

    def step_description(self, step_id: str) -> str | None:
        step = self._steps.get(step_id)
        return step.description if step else None

    def step_kind(self, step_id: str) -> str:
        step = self._steps.get(step_id)
        if isinstance(step, CallStep):
            return step.uses
        if isinstance(step, ApprovalStep):
            return "approval"
        return "notify"
