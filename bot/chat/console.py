"""The console chat adapter and the live step timeline of ``runbook run``.

Plain lines when the output is not a terminal (CI, pipes); in a terminal the
same lines, coloured. Every line passes through the redactor.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from bot.engine.clock import parse_iso
from bot.engine.defaults import NullChat
from bot.engine.state import RunState
from bot.redact import REDACTOR
from bot.runbook.durations import format_duration

_COLOURS = {
    "ok": "\x1b[32m",
    "bad": "\x1b[31m",
    "warn": "\x1b[33m",
    "dim": "\x1b[2m",
    "bold": "\x1b[1m",
    "info": "\x1b[36m",
}
_RESET = "\x1b[0m"


def _elapsed(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    seconds = (parse_iso(end) - parse_iso(start)).total_seconds()
    return format_duration(max(seconds, 0.0))


def short(value: Any, limit: int = 120) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_PAST = {"approve": "approved", "reject": "rejected", "skip": "skipped"}


def _past(decision: Any) -> str:
    """``approved``, ``rejected``, ``skipped`` (of a decision word)."""
    return _PAST.get(str(decision), str(decision))


class Timeline:
    """Prints one line per interesting record of the runs it follows."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        colour: bool | None = None,
        follow: set[str] | None = None,
        runbooks: set[str] | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.colour = self.stream.isatty() if colour is None else colour
        self.follow = follow
        self.runbooks = runbooks

    def _paint(self, kind: str, text: str) -> str:
        if not self.colour:
            return text
        return f"{_COLOURS[kind]}{text}{_RESET}"

    def write(self, text: str) -> None:
        print(REDACTOR.text(text), file=self.stream, flush=True)

    def __call__(self, run: RunState, record: dict[str, Any]) -> None:
        if self.follow is not None and run.id not in self.follow:
            return
        if self.runbooks is not None and run.runbook not in self.runbooks:
            return
        line = self.render(run, record)
        if line:
            self.write(line)

    def render(self, run: RunState, record: dict[str, Any]) -> str | None:
        event = record["event"]
        data = record.get("data") or {}
        sid = record.get("step") or ""
        state = run.steps.get(sid) if sid else None
        paint = self._paint
        if event == "run.started":
            who = data.get("requester") or record.get("actor")
            sandbox = paint("warn", " [sandbox]") if data.get("sandbox") else ""
            return paint("bold", f"▶ run {run.id} ({run.runbook}) started by {who}") + sandbox
        if event == "step.started":
            attempt = data.get("attempt", 1)
            again = f" (attempt {attempt})" if attempt > 1 else ""
            return f"  {paint('info', '…')} {sid} {paint('dim', data.get('uses', ''))}{again}"
        if event == "step.retrying":
            return "  " + paint(
                "warn",
                f"↻ {sid} attempt {data.get('attempt')} failed: {short(data.get('error'))}; "
                f"retrying in {format_duration(float(data.get('delay', 0)))}",
            )
        if event == "step.succeeded":
            took = _elapsed(state.started_at if state else None, record["ts"])
            return (
                f"  {paint('ok', '✓')} {sid} {paint('dim', took)}  {short(data.get('output'), 90)}"
            )
        if event == "step.failed":
            return f"  {paint('bad', '✗')} {sid}: {data.get('error')}"
        if event == "step.skipped":
            return f"  {paint('dim', '⤼ ' + sid + ' skipped: ' + str(data.get('reason') or ''))}"
        if event == "step.cancelled":
            return f"  {paint('warn', '■')} {sid} cancelled"
        if event == "step.dry_run":
            if "notify" in data:
                note = data["notify"]
                where = note.get("channel") or "the console"
                text = short(note.get("text"))
                return f"  {paint('warn', '~')} {sid} would post to {where}: {text}"
            if "poll" in data:
                from bot.engine.dryrun import describe_poll

                return (
                    f"  {paint('warn', '~')} {sid} would poll {describe_poll(data['poll'])}; "
                    "a dry run takes the first answer"
                )
            request = data.get("request")
            detail = f" → {short(request, 160)}" if request else ""
            call = f"{data.get('uses')} {short(data.get('args'))}{detail}"
            why = " (its arguments come from a call the dry run did not make)"
            return f"  {paint('warn', '~')} {sid} would call {call}" + (
                why if data.get("unknown_args") else ""
            )
        if event == "approval.requested":
            if data.get("dry_run"):
                prompt = data.get("prompt")
                mark = paint("warn", "~")
                return f"  {mark} {sid} approval counts as approved (dry run): {prompt}"
            who = ", ".join([*data.get("users", []), *[f"@{g}" for g in data.get("groups", [])]])
            who = who or "anyone"
            need = data.get("min_approvals", 1)
            deadline = f", deadline {data['deadline']}" if data.get("deadline") else ""
            kind = "recovery decision" if data.get("recovery") else "approval"
            prompt = str(data.get("prompt") or "").strip().replace("\n", "\n      ")
            return (
                f"  {paint('warn', '⏸')} {sid} waits for {kind}: {prompt}\n"
                f"      approvers: {who}; {need} needed{deadline}"
            )
        if event == "approval.decided":
            return (
                f"    {paint('ok', '•')} {record.get('actor')} {_past(data.get('decision'))}"
                f" ({data.get('approvals')}/{data.get('required')})"
                + (f": {data['comment']}" if data.get("comment") else "")
            )
        if event == "approval.refused":
            return f"    {paint('bad', '•')} refused {record.get('actor')}: {data.get('reason')}"
        if event == "approval.escalated":
            who = ", ".join([*data.get("users", []), *[f"@{g}" for g in data.get("groups", [])]])
            return f"    {paint('warn', '↑')} escalated to {who}"
        if event == "approval.expired":
            return f"    {paint('warn', '⌛')} {sid} expired ({data.get('on_timeout')} on timeout)"
        if event in ("step.approved", "step.rejected", "step.expired"):
            output = data.get("output") or {}
            by = ", ".join(output.get("decided_by") or []) or "timeout"
            mark = paint("ok", "✓") if event == "step.approved" else paint("bad", "✗")
            return f"  {mark} {sid} {event.split('.')[1]} by {by}"
        if event == "step.paused":
            return f"  {paint('warn', '⏸')} {sid} paused between calls: the engine is stopping"
        if event == "step.resumed":
            return f"  {paint('info', '↻')} {sid} will run again ({data.get('by')})"
        if event == "compensation.started":
            return f"  {paint('warn', '↺')} compensating {sid}: {data.get('uses')}"
        if event == "compensation.succeeded":
            return f"  {paint('ok', '↺')} compensated {sid}"
        if event == "compensation.paused":
            return f"  {paint('warn', '⏸')} compensation of {sid} paused: the engine is stopping"
        if event == "compensation.failed":
            return f"  {paint('bad', '↺')} compensation of {sid} failed: {data.get('error')}"
        if event == "run.cancelled":
            return paint("warn", f"■ run {run.id} cancelled by {record.get('actor')}")
        if event == "run.finished":
            status = data.get("status")
            kind = "ok" if status == "succeeded" else "bad"
            took = format_duration(float(data.get("duration") or 0))
            extra = f": {data['error']}" if data.get("error") else ""
            return paint(kind, f"■ run {run.id} {status} in {took}{extra}")
        return None


class ConsoleChat(NullChat):
    """Chat port for the terminal: notifications print; gates are asked by the CLI itself
    (the timeline shows the rest)."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline

    async def notify(
        self,
        run: RunState,
        step_id: str,
        text: str,
        channel: str | None,
        thread: bool,
        view: Any,
        *,
        markup: str | None = None,
    ) -> None:
        if self.timeline.follow is None or run.id in self.timeline.follow:
            where = f" ({channel})" if channel else ""
            self.timeline.write(f"  📣 {step_id}{where}: {text}")


# -- asking at the terminal -------------------------------------------------------------


class PromptInterrupted(Exception):
    """The question stopped being asked: something changed elsewhere, or a deadline came."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


REDRAW = "redraw"
"""What a prompt's ``watch`` returns after it printed something: show the question again."""


async def ask_line(
    prompt: str,
    *,
    stream: TextIO | None = None,
    watch: Callable[[], Awaitable[str | None]] | None = None,
    every: float = 0.5,
) -> str | None:
    """Ask ``prompt`` on the terminal; the line typed, or None at the end of input.

    While nobody types, ``watch`` is called every ``every`` seconds: None to
    keep asking, :data:`REDRAW` after it printed something (the question's
    last line is shown again), any other text to stop asking — it is raised
    as :class:`PromptInterrupted`. The read never blocks the event loop.

    Raises:
        PromptInterrupted: ``watch`` said the question is moot.
    """
    out = stream or sys.stdout
    out.write(prompt)
    out.flush()
    try:
        fd = sys.stdin.fileno()
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        loop.add_reader(fd, ready.set)
    except (OSError, ValueError, NotImplementedError, AttributeError):
        return await asyncio.to_thread(_blocking_line)  # no way to wait on this stdin
    buffered = b""
    try:
        while True:
            try:
                await asyncio.wait_for(ready.wait(), timeout=every)
            except TimeoutError:
                if watch is None:
                    continue
                verdict = await watch()
                if verdict == REDRAW:
                    out.write(prompt.rsplit("\n", 1)[-1])
                    out.flush()
                elif verdict is not None:
                    raise PromptInterrupted(verdict) from None
                continue
            ready.clear()
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                continue
            if not chunk:
                return buffered.decode(errors="replace") if buffered else None
            buffered += chunk
            if b"\n" in buffered:
                return buffered.split(b"\n", 1)[0].decode(errors="replace")
    finally:
        loop.remove_reader(fd)


def _blocking_line() -> str | None:
    try:
        return input()
    except EOFError:
        return None
