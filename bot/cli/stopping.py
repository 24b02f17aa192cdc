"""Ctrl-C and SIGTERM in a foreground command (``run``, ``approve``, ``resume``, ``cancel``).

The first signal stops the command gracefully, like ``serve``: the engine
starts nothing new (no step, attempt, poll, item or compensation), the calls
in flight end and are recorded (for up to 30 s), the data directory is
released, and the command exits 130 (SIGINT) or 143 (SIGTERM), saying how to
carry on with ``runbook resume``. A second signal stops at once, cutting off
what is still in flight; so does the first when nothing is running (at an
approval question, for instance).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from bot.cli import CliExit
from bot.errors import EngineStopping

if TYPE_CHECKING:
    from bot.cli.context import CliContext
    from bot.cli.session import EngineSession

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """Counts the signals a foreground command receives and acts on them."""

    def __init__(self) -> None:
        self.count = 0
        self.signum: int | None = None
        self.session: EngineSession | None = None  # the open session, if any
        self._task: asyncio.Task[int] | None = None

    @property
    def exit_code(self) -> int:
        """130 after Ctrl-C (SIGINT), 143 after SIGTERM: the shell's convention."""
        return 128 + int(self.signum or signal.SIGINT)

    @contextlib.contextmanager
    def installed(self, task: asyncio.Task[int]) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        self._task = task
        for signum in SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            yield
        finally:
            for signum in SIGNALS:
                loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
        engine = self.session.engine if self.session is not None else None
        if self.count == 1 and engine is not None and engine.working():
            key = "Ctrl-C" if signum == signal.SIGINT else "the signal"
            print(
                "\nrunbook: stopping: nothing new starts; waiting for the running steps "
                f"to finish and be recorded (up to 30s; {key} again stops at once)",
                file=sys.stderr,
                flush=True,
            )
            engine.stop_starting()
            return
        if self._task is not None:
            self._task.cancel()

    def hint(self) -> str:
        follow = self.session.timeline.follow if self.session is not None else None
        ids = sorted(follow or ())
        if len(ids) == 1:
            return f"run {ids[0]} stops where it is; carry on with `runbook resume {ids[0]}`"
        return "unfinished runs stop where they are; carry on with `runbook resume`"


async def interruptible(ctx: CliContext, command: Callable[[CliContext], Awaitable[int]]) -> int:
    """Run ``command`` with graceful Ctrl-C / SIGTERM handling (see the module docstring)."""
    interrupts = ctx.interrupts = Interrupts()
    task: asyncio.Task[int] = asyncio.ensure_future(command(ctx))
    with interrupts.installed(task):
        try:
            return await asyncio.shield(task)
        except EngineStopping:
            raise CliExit(interrupts.exit_code, f"stopped: {interrupts.hint()}") from None
        except asyncio.CancelledError:
            if interrupts.count == 0:
                raise
            session = interrupts.session
            if session is not None:
                await session.close(grace=0)  # forced: what is still in flight is cut off
            raise CliExit(interrupts.exit_code, f"interrupted; {interrupts.hint()}") from None
