"""Engine timers on APScheduler: in-process jobs re-created from the store at start.

A job is never the only copy of a deadline: deadlines live with their gates
in the store, and the engine re-arms every one of them when it starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

log = logging.getLogger("runbook.timers")


class SchedulerTimers:
    """The engine's Timers port on an APScheduler ``AsyncIOScheduler``."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self._callbacks: dict[str, Callable[[], Awaitable[None]]] = {}
        self._running: set[asyncio.Task[None]] = set()

    def arm(self, key: str, when: datetime, callback: Callable[[], Awaitable[None]]) -> None:
        self._callbacks[key] = callback
        self.scheduler.add_job(
            self._fire,
            trigger="date",
            run_date=when,
            args=[key],
            id=f"timer:{key}",
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
        )

    def disarm(self, key: str) -> None:
        self._callbacks.pop(key, None)
        job = self.scheduler.get_job(f"timer:{key}")
        if job is not None:
            job.remove()

    async def _fire(self, key: str) -> None:
        callback = self._callbacks.pop(key, None)
        if callback is None:
            return
        try:
            await callback()
        except Exception:
            log.exception("timer %s failed", key)

    async def close(self) -> None:
        for key in list(self._callbacks):
            self.disarm(key)
