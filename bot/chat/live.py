"""The live step timeline of ``runbook run`` in a terminal (rich).

One row per step — state, attempt, duration, a short result — redrawn in
place as records arrive; notable moments (decisions, refusals, errors) are
also printed above the table. The table pauses while the terminal asks an
approval question.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from bot.chat.console import Timeline, short
from bot.engine.clock import parse_iso
from bot.engine.state import RunState
from bot.redact import REDACTOR
from bot.runbook.durations import format_duration

_STATE_STYLE = {
    "succeeded": ("✓", "green"),
    "approved": ("✓", "green"),
    "failed": ("✗", "red"),
    "rejected": ("✗", "red"),
    "expired": ("⌛", "red"),
    "cancelled": ("■", "yellow"),
    "skipped": ("⤼", "dim"),
    "running": ("…", "cyan"),
    "waiting": ("⏸", "yellow"),
    "pending": ("·", "dim"),
}
_NOTABLE = {
    "approval.decided",
    "approval.refused",
    "approval.escalated",
    "approval.expired",
    "step.failed",
    "step.retrying",
    "step.paused",
    "compensation.started",
    "compensation.paused",
    "compensation.failed",
    "run.cancelled",
    "step.dry_run",
}


class LiveTimeline(Timeline):
    """A Timeline that draws a table of steps in place."""

    def __init__(self, stream: TextIO, *, follow: set[str] | None = None) -> None:
        super().__init__(stream, colour=True, follow=follow)
        self.console = Console(file=stream, highlight=False)
        self.live: Live | None = None
        self.run: RunState | None = None
        self.titles: dict[str, str] = {}
        self.kinds: dict[str, str] = {}
        self.header = ""

    def describe(self, titles: dict[str, str], kinds: dict[str, str]) -> None:
        self.titles, self.kinds = titles, kinds

    def write(self, text: str) -> None:
        text = REDACTOR.text(text)
        if self.live is not None:
            self.live.console.print(Text.from_ansi(text))
        else:
            self.console.print(Text.from_ansi(text))

    def __call__(self, run: RunState, record: dict[str, Any]) -> None:
        if self.follow is not None and run.id not in self.follow:
            return
        self.run = run
        event = record["event"]
        if event == "run.started":
            self.header = self.render(run, record) or ""
        if event in _NOTABLE:
            line = self.render(run, record)
            if line:
                self.write(line)
        if self.live is None and not run.ended:
            self.live = Live(
                self._table(), console=self.console, refresh_per_second=8, transient=False
            )
            self.live.start()
        elif self.live is not None:
            self.live.update(self._table())
        if event == "run.finished":
            self.stop()
            line = self.render(run, record)
            if line:
                self.write(line)

    def stop(self) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.stop()
            self.live = None

    pause = stop

    def _table(self) -> Group:
        run = self.run
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        table.add_column("", width=1)
        table.add_column("step")
        table.add_column("action", style="dim")
        table.add_column("attempt", justify="right")
        table.add_column("time", justify="right")
        table.add_column("result", overflow="ellipsis", no_wrap=True, max_width=60)
        if run is None:
            return Group(table)
        now = time.time()
        for sid in run.step_ids:
            step = run.steps[sid]
            state = (
                str(step.outcome)
                if step.outcome
                else ("waiting" if step.waiting else "running" if step.running else "pending")
            )
            mark, style = _STATE_STYLE.get(state, ("·", "dim"))
            took = ""
            if step.started_at:
                start = parse_iso(step.started_at).timestamp()
                end = parse_iso(step.ended_at).timestamp() if step.ended_at else now
                took = format_duration(max(end - start, 0.0))
            result = ""
            if step.error:
                result = step.error
            elif step.waiting and step.gate is not None:
                result = f"{len(step.gate.approvals)}/{step.gate.min_approvals} approvals"
            elif step.output is not None:
                result = short(step.output, 60)
            elif step.reason:
                result = step.reason
            table.add_row(
                Text(mark, style=style),
                Text(self.titles.get(sid, sid), style=style if state != "pending" else "dim"),
                self.kinds.get(sid, ""),
                str(step.attempts) if step.attempts > 1 else "",
                took,
                Text(REDACTOR.text(result)),
            )
        return Group(Text.from_ansi(self.header), table)
