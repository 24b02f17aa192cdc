"""What a foreground run sees while it has released the data directory.

A foreground ``run`` or ``approve`` that waits at a gate releases the data
directory, so a second terminal can decide or cancel (SPEC §3). While the
question is open, :class:`RunWatcher` looks at the audit log every half
second (a ``stat``; the records are read only when it grew): records of
this run written by another process are printed, and the question stops
when the gate was decided, the run cancelled or ended elsewhere, or the
gate's deadline or escalation time came (the process then takes the data
directory back, so the deadline fires on time).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.chat.console import REDRAW, Timeline
from bot.cli.context import CliContext
from bot.engine.clock import parse_iso
from bot.engine.state import RunState
from bot.errors import RunbookBotError

POLL_SECONDS = 0.5


class AuditFollower:
    """New complete records of one run in ``audit.jsonl``, from an offset on."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self.offset = self.size()

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def grew(self) -> bool:
        return self.size() > self.offset

    def read(self) -> list[dict[str, Any]]:
        """Records of the run written since the last read (complete lines only)."""
        records: list[dict[str, Any]] = []
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed below
        except OSError:
            return records
        with handle:
            handle.seek(self.offset)
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # a write in progress
                self.offset += len(raw)
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("run_id") == self.run_id:
                    records.append(record)
        return records


def next_due(run: RunState) -> datetime | None:
    """The earliest deadline or escalation time of the run's waiting gates."""
    times = []
    for sid in run.waiting_gates:
        gate = run.steps[sid].gate
        if gate is None:
            continue
        if gate.deadline:
            times.append(gate.deadline)
        if gate.escalate_at and not gate.escalated:
            times.append(gate.escalate_at)
    return min((parse_iso(t) for t in times), default=None)


def is_due(run: RunState) -> bool:
    due = next_due(run)
    return due is not None and due <= datetime.now(UTC)


class RunWatcher:
    """Follows one run through the audit log while this process does not own the data."""

    def __init__(self, ctx: CliContext, run: RunState, timeline: Timeline) -> None:
        self.ctx = ctx
        self.run = run
        self.timeline = timeline
        self.follower = AuditFollower(Path(ctx.settings.data_dir) / "audit.jsonl", run.id)
        self.printed = 0

    def refresh(self, *, after_prompt: bool = False) -> RunState:
        """Print what others recorded for the run; its state as the data directory has it.

        ``after_prompt``: the cursor is after an open question; start on a new line.
        """
        records = self.follower.read()
        self.printed = 0
        if records:
            from bot.cli.session import open_readonly

            try:
                store = open_readonly(self.ctx)
                run = store.get_run(self.run.id)
            except RunbookBotError:
                run = None
            if run is not None:
                self.run = run
            lines = [self.timeline.render(self.run, record) for record in records]
            self.printed = sum(1 for line in lines if line)
            for index, line in enumerate(line for line in lines if line):
                self.timeline.write(f"\n{line}" if after_prompt and index == 0 else line)
        return self.run

    def drain(self) -> None:
        """Print the records written before this process took the data directory back."""
        if self.follower.grew():
            self.refresh()

    def prompt_watch(self, gate_id: str) -> Any:
        """The ``watch`` of the question asked at ``gate_id`` (see ``ask_line``)."""

        async def watch() -> str | None:
            if is_due(self.run):
                return "due"
            if not self.follower.grew():
                return None
            run = self.refresh(after_prompt=True)
            if run.ended or run.cancelled_by is not None:
                return "ended"
            if not run.steps[gate_id].waiting:
                return "decided"
            return REDRAW if self.printed else None

        return watch
