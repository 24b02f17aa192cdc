"""Schedules: runs that start themselves on a cron expression or a fixed interval.

Each schedule trigger is known by a key, ``<runbook>:<trigger index>:<spec hash>``
(so editing a schedule's timing makes it a new schedule rather than one with
a misleading history). The store keeps, per key, the time of the latest slot
that was handled (``World.schedules``, rebuilt from ``run.started`` records
and ``schedule.*`` records). :meth:`Schedules.tick` compares that watermark
with the clock:

- a schedule seen for the first time is registered (``schedule.registered``)
  with the current time as its watermark: its first run is its next slot;
- when one or more slots have passed since the watermark, the runbook runs
  **once**, for the latest of them, with the idempotency key
  ``schedule:<runbook>:<trigger index>:<slot time>`` so no slot ever starts
  twice (after a crash, or with several workers);
- when that run is late — slots were missed, or it starts more than
  :data:`LATE_AFTER` after its slot, i.e. after downtime — it is a catch-up:
  its trigger says so, and a ``schedule.caught_up`` record names how many
  slots were missed.

``every`` intervals are anchored at the Unix epoch (UTC): ``every: 10m`` fires
at :00, :10, :20, ... whatever time the service started, so restarts never
shift or skip a slot. ``cron`` uses its ``timezone`` (default UTC).

In ``serve`` one APScheduler job is armed for the earliest next slot, ticks,
and re-arms itself; tests call :meth:`Schedules.tick` with the time they want.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.engine.clock import iso, parse_iso
from bot.errors import ConflictError, InputError, NotFoundError, StoreError
from bot.runbook.cron import parse_cron
from bot.runbook.model import Runbook, ScheduleSpec, ScheduleTrigger
from bot.runbook.templates import TemplateError, render_value

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from bot.engine.engine import Engine
    from bot.engine.ports import Clock
    from bot.service import Service

log = logging.getLogger("runbook.schedules")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LATE_AFTER = timedelta(seconds=60)
MAX_COUNT = 100_000
JOB_ID = "schedules:tick"


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule trigger of one runbook."""

    runbook: str
    index: int
    spec: ScheduleSpec

    @property
    def key(self) -> str:
        timing = (
            f"cron={self.spec.cron} tz={self.spec.timezone}"
            if self.spec.cron
            else (f"every={self.spec.every}")
        )
        digest = hashlib.sha256(timing.encode()).hexdigest()[:8]
        return f"{self.runbook}:{self.index}:{digest}"

    def describe(self) -> str:
        if self.spec.cron:
            return f"cron {self.spec.cron!r} ({self.spec.timezone})"
        return f"every {self.spec.every:g}s"

    def next_slot(self, after: datetime) -> datetime:
        """The first slot strictly after ``after``."""
        if self.spec.cron is not None:
            return parse_cron(self.spec.cron).next_after(after, self.spec.timezone)
        step = self._step()
        return EPOCH + ((after - EPOCH) // step + 1) * step

    def _step(self) -> timedelta:
        assert self.spec.every is not None
        return timedelta(microseconds=round(self.spec.every * 1_000_000))

    def due(self, watermark: datetime, now: datetime) -> tuple[datetime, datetime, int] | None:
        """Slots in ``(watermark, now]``: (first, latest, how many), or None.

        The count stops at :data:`MAX_COUNT` for cron expressions (it is only reported).
        """
        first = self.next_slot(watermark)
        if first > now:
            return None
        if self.spec.cron is None:
            step = self._step()
            latest = EPOCH + ((now - EPOCH) // step) * step
            return first, latest, (latest - first) // step + 1
        latest, count = first, 1
        while count < MAX_COUNT:
            following = self.next_slot(latest)
            if following > now:
                return first, latest, count
            latest, count = following, count + 1
        return first, self._latest_cron_slot(latest, now), count

    def _latest_cron_slot(self, known: datetime, now: datetime) -> datetime:
        for window in (
            timedelta(hours=2),
            timedelta(days=2),
            timedelta(days=32),
            timedelta(days=367),
            timedelta(days=5 * 367),
        ):
            start = max(known, now - window)
            slot = self.next_slot(start)
            if slot <= now:
                while (following := self.next_slot(slot)) <= now:
                    slot = following
                return slot
        return known


def schedules_of(runbooks: list[Runbook]) -> list[Schedule]:
    """Every schedule trigger, in runbook-name then trigger order."""
    found = []
    for runbook in sorted(runbooks, key=lambda rb: rb.name):
        for index, trigger in enumerate(runbook.triggers):
            if isinstance(trigger, ScheduleTrigger):
                found.append(Schedule(runbook.name, index, trigger.schedule))
    return found


@dataclass(frozen=True, slots=True)
class Firing:
    """What a tick did for one schedule."""

    schedule: Schedule
    slot: datetime
    run_id: str | None
    missed: int = 0
    caught_up: bool = False
    error: str | None = None


class Schedules:
    """The schedules extension: fires schedule triggers on time, and catches up once."""

    name = "schedules"

    def __init__(self) -> None:
        self.service: Service | None = None
        self.engine: Engine | None = None
        self.clock: Clock | None = None
        self.schedules: list[Schedule] = []
        self._handled: dict[str, datetime] = {}  # slots whose start failed: not retried
        self._lock = asyncio.Lock()
        self._scheduler: Any = None
        self.next_due: datetime | None = None

    # -- extension ------------------------------------------------------------------------

    async def prepare(self, service: Service) -> None:
        self.service = service
        loaded = service.loaded
        self.schedules = (
            schedules_of([lr.runbook for lr in loaded.runbooks.values()]) if (loaded) else []
        )

    async def start(self, service: Service) -> None:
        """Catch up on what was missed while the service was down, then arm the timer."""
        self.engine = service.engine
        self.clock = service.clock
        self._scheduler = service.scheduler
        if not self.schedules:
            return
        for schedule in self.schedules:
            log.info("schedule: %s %s", schedule.runbook, schedule.describe())
        await self._tick_and_arm()

    async def stop(self) -> None:
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.get_job(JOB_ID) is not None:
            scheduler.remove_job(JOB_ID)

    def routes(self) -> list[BaseRoute]:
        return []

    def health(self) -> dict[str, Any]:
        if not self.schedules:
            return {}
        return {
            "count": len(self.schedules),
            "next": iso(self.next_due) if self.next_due is not None else None,
        }

    # -- firing ---------------------------------------------------------------------------

    async def _tick_and_arm(self) -> None:
        assert self.clock is not None
        try:
            await self.tick(self.clock.now())
        except Exception:
            log.exception("schedule tick failed")
        self._arm()

    def _arm(self) -> None:
        if self._scheduler is None or self.clock is None or not self.schedules:
            return
        now = self.clock.now()
        self.next_due = min(schedule.next_slot(now) for schedule in self.schedules)
        self._scheduler.add_job(
            self._tick_and_arm,
            trigger="date",
            run_date=self.next_due,
            id=JOB_ID,
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
        )

    async def tick(self, now: datetime) -> list[Firing]:
        """Start every schedule whose slot has come (once each, however many passed).

        Safe to call at any time and any number of times: a slot never starts twice.
        """
        engine = self.engine
        if engine is None:
            return []
        fired: list[Firing] = []
        async with self._lock:
            for schedule in self.schedules:
                firing = await self._tick_one(engine, schedule, now)
                if firing is not None:
                    fired.append(firing)
        return fired

    async def _tick_one(self, engine: Engine, schedule: Schedule, now: datetime) -> Firing | None:
        key = schedule.key
        last = engine.store.world.schedules.get(key)
        if last is None:
            engine.record_now(
                None,
                "schedule.registered",
                actor="schedule",
                runbook=schedule.runbook,
                data={
                    "schedule_key": key,
                    "scheduled_for": iso(now),
                    "trigger_index": schedule.index,
                    "schedule": schedule.describe(),
                },
            )
            return None
        watermark = max(parse_iso(last), self._handled.get(key, EPOCH))
        due = schedule.due(watermark, now)
        if due is None:
            return None
        first, slot, count = due
        missed = count - 1
        caught_up = missed > 0 or now - slot > LATE_AFTER
        trigger: dict[str, Any] = {
            "kind": "schedule",
            "schedule_key": key,
            "scheduled_for": iso(slot),
            "trigger_index": schedule.index,
        }
        if caught_up:
            trigger["catch_up"] = {
                "missed": missed,
                "first_missed": iso(first) if missed else None,
                "late_by": round((now - slot).total_seconds(), 3),
            }
        try:
            inputs = render_value(dict(schedule.spec.inputs), {})
            started = await engine.start_run(
                schedule.runbook,
                inputs,
                requester=None,
                trigger=trigger,
                idempotency_key=f"schedule:{schedule.runbook}:{schedule.index}:{iso(slot)}",
            )
        except (InputError, NotFoundError, TemplateError, ConflictError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            self._handled[key] = slot
            log.error("schedule %s (%s) did not start: %s", key, iso(slot), message)
            if not isinstance(exc, ConflictError):
                engine.record_now(
                    None,
                    "schedule.failed",
                    actor="schedule",
                    runbook=schedule.runbook,
                    data={"schedule_key": key, "scheduled_for": iso(slot), "error": message},
                )
            return Firing(schedule, slot, None, missed, caught_up, message)
        except StoreError as exc:
            log.error("schedule %s (%s) did not start: %s", key, iso(slot), exc)
            return Firing(schedule, slot, None, missed, caught_up, str(exc))
        run = started.run
        if started.deduplicated:
            return Firing(schedule, slot, run.id, missed, False)
        if caught_up:
            log.warning(
                "schedule %s: caught up after downtime with one run for %s (%d slot%s missed)",
                key,
                iso(slot),
                missed,
                "" if missed == 1 else "s",
            )
            engine.record_now(
                None,
                "schedule.caught_up",
                actor="schedule",
                run_id=run.id,
                runbook=schedule.runbook,
                data={"schedule_key": key, "scheduled_for": iso(slot), **trigger["catch_up"]},
            )
        return Firing(schedule, slot, run.id, missed, caught_up)
