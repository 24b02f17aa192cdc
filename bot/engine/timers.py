"""Timers driven by the engine's clock (the CLI and tests); serve may use APScheduler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from bot.engine.ports import Clock

log = logging.getLogger("runbook.timers")


class ClockTimers:
    """One task per armed timer, sleeping on the injected clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def arm(self, key: str, when: datetime, callback: Callable[[], Awaitable[None]]) -> None:
        self.disarm(key)

        async def fire() -> None:
            await self.clock.sleep_until(when)
            self._tasks.pop(key, None)
            try:
                await callback()
            except Exception:
                log.exception("timer %s failed", key)

        self._tasks[key] = asyncio.create_task(fire(), name=f"timer:{key}")

    def disarm(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
