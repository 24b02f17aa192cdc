"""Schedules: on time, once per slot, and once (audited) after downtime.

The real service runs in a thread with an injected clock; the test moves the
clock and calls the tick the service's timer would call.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from web_harness import ServeProcess, ServerThread, base_env, write_runbooks

from bot.engine.clock import FakeClock, iso
from bot.runbook.model import ScheduleSpec
from bot.triggers.schedules import Schedule, Schedules

RUNBOOKS = {
    "canary": """
name: canary
inputs:
  host: {type: string}
triggers:
  - schedule: {every: 10m, inputs: {host: canary-1}}
steps:
  - id: probe
    uses: core.echo
    with: {host: "{{ inputs.host }}"}
""",
    "nightly": """
name: nightly
triggers:
  - schedule: {cron: "0 3 * * *", timezone: Europe/Berlin}
steps:
  - id: sweep
    uses: core.noop
""",
}
START = datetime(2031, 3, 1, 10, 3, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- slots (pure) ---------------------------------------------------------------------------


def test_every_is_anchored_at_the_epoch() -> None:
    schedule = Schedule("x", 0, ScheduleSpec(every="10m"))
    assert schedule.next_slot(at("2031-03-01T10:03:00")) == at("2031-03-01T10:10:00")
    assert schedule.next_slot(at("2031-03-01T10:10:00")) == at("2031-03-01T10:20:00")
    first, latest, count = schedule.due(at("2031-03-01T10:10:00"), at("2031-03-01T12:34:00")) or ()
    assert (first, latest, count) == (at("2031-03-01T10:20:00"), at("2031-03-01T12:30:00"), 14)
    assert schedule.due(at("2031-03-01T10:10:00"), at("2031-03-01T10:19:59")) is None


def test_cron_uses_its_time_zone() -> None:
    schedule = Schedule("x", 0, ScheduleSpec(cron="0 3 * * *", timezone="Europe/Berlin"))
    assert schedule.next_slot(at("2031-03-01T10:00:00")) == at("2031-03-02T02:00:00")  # CET
    assert schedule.next_slot(at("2031-07-01T10:00:00")) == at("2031-07-02T01:00:00")  # CEST
    due = schedule.due(at("2031-03-01T10:00:00"), at("2031-03-05T12:00:00"))
    assert due == (at("2031-03-02T02:00:00"), at("2031-03-05T02:00:00"), 4)


def test_a_long_downtime_still_finds_the_latest_slot() -> None:
    schedule = Schedule("x", 0, ScheduleSpec(cron="* * * * *"))
    due = schedule.due(at("2031-01-01T00:00:00"), at("2031-06-01T00:00:30"))
    assert due is not None
    assert due[1] == at("2031-06-01T00:00:00")


def test_changing_the_timing_makes_a_new_schedule() -> None:
    a = Schedule("x", 0, ScheduleSpec(every="10m"))
    b = Schedule("x", 0, ScheduleSpec(every="10m", inputs={"host": "other"}))
    c = Schedule("x", 0, ScheduleSpec(every="5m"))
    assert a.key == b.key != c.key


# -- the service ----------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_runbooks(tmp_path / "runbooks", RUNBOOKS)
    return tmp_path


def schedules_of(server: ServerThread) -> Schedules:
    found = [e for e in server.service.extensions if isinstance(e, Schedules)]
    return found[0]


def move_to(server: ServerThread, when: datetime) -> list[Any]:
    """Move the clock to ``when`` and tick, as the service's timer does."""
    server.advance((when - server.clock.now()).total_seconds())
    return server.call(schedules_of(server).tick(server.clock.now()))


def audit(folder: Path) -> list[dict[str, Any]]:
    lines = (folder / "data" / "audit.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def runs(server: ServerThread, runbook: str) -> list[dict[str, Any]]:
    with server.client() as client:
        rows = client.get("/api/runs", params={"limit": 1000}).json()
        return [
            client.get(f"/api/runs/{row['id']}").json()
            for row in reversed(rows)
            if row["runbook"] == runbook
        ]


def test_schedules_fire_on_their_slot_exactly_once(folder: Path) -> None:
    with ServerThread(folder, base_env(folder), FakeClock(START)) as server:
        registered = [r for r in audit(folder) if r["event"] == "schedule.registered"]
        assert sorted(r["runbook"] for r in registered) == ["canary", "nightly"]
        assert move_to(server, at("2031-03-01T10:09:59")) == []
        [firing] = move_to(server, at("2031-03-01T10:10:00"))
        assert firing.caught_up is False and firing.missed == 0
        assert server.call(schedules_of(server).tick(server.clock.now())) == []
        assert move_to(server, at("2031-03-01T10:19:00")) == []
        server.wait_settled(firing.run_id)
        [run] = runs(server, "canary")
        assert run["status"] == "succeeded"
        assert run["inputs"] == {"host": "canary-1"} and run["requester"] is None
        assert run["trigger"]["kind"] == "schedule"
        assert run["trigger"]["scheduled_for"] == "2031-03-01T10:10:00.000000Z"
        assert "catch_up" not in run["trigger"]
        [started] = [r for r in audit(folder) if r["event"] == "run.started"]
        assert started["actor"] == "schedule"
        assert started["data"]["idempotency_key"] == "schedule:canary:0:2031-03-01T10:10:00.000000Z"
        assert server.service.health()[1]["schedules"]["count"] == 2


def test_after_downtime_a_missed_schedule_runs_once_and_the_catch_up_is_audited(
    folder: Path,
) -> None:
    env = base_env(folder)
    with ServerThread(folder, env, FakeClock(START)) as server:
        [firing] = move_to(server, at("2031-03-01T10:10:00"))
        server.wait_settled(firing.run_id)
    # Down from 10:10 until the next day 05:00: 112 canary slots and one nightly slot pass.
    back = at("2031-03-02T05:00:30")
    with ServerThread(folder, env, FakeClock(back)) as server:
        canary = runs(server, "canary")
        nightly = runs(server, "nightly")
        assert len(canary) == 2 and len(nightly) == 1, "once, not once per missed slot"
        caught = canary[1]
        assert caught["trigger"]["scheduled_for"] == "2031-03-02T05:00:00.000000Z"
        assert caught["trigger"]["catch_up"]["missed"] == 112
        assert nightly[0]["trigger"]["scheduled_for"] == "2031-03-02T02:00:00.000000Z"
        assert nightly[0]["trigger"]["catch_up"] == {
            "missed": 0,
            "first_missed": None,
            "late_by": 3 * 3600 + 30.0,
        }
        records = {r["runbook"]: r for r in audit(folder) if r["event"] == "schedule.caught_up"}
        assert set(records) == {"canary", "nightly"}
        assert records["canary"]["actor"] == "schedule"
        assert records["canary"]["run_id"] == caught["id"]
        assert records["canary"]["data"]["missed"] == 112
        assert records["canary"]["data"]["first_missed"] == "2031-03-01T10:20:00.000000Z"
        assert server.call(schedules_of(server).tick(server.clock.now())) == []
        [on_time] = move_to(server, at("2031-03-02T05:10:00"))
        assert on_time.caught_up is False
        for run in [*canary, *nightly]:
            assert server.wait_settled(run["id"]).status == "succeeded"


def test_a_short_restart_catches_up_nothing(folder: Path) -> None:
    env = base_env(folder)
    with ServerThread(folder, env, FakeClock(START)) as server:
        [firing] = move_to(server, at("2031-03-01T10:10:00"))
        server.wait_settled(firing.run_id)
    with ServerThread(folder, env, FakeClock(at("2031-03-01T10:12:00"))) as server:
        assert len(runs(server, "canary")) == 1
        assert not [r for r in audit(folder) if r["event"] == "schedule.caught_up"]


def test_a_slot_never_starts_twice(folder: Path) -> None:
    with ServerThread(folder, base_env(folder), FakeClock(START)) as server:
        server.advance((at("2031-03-01T10:10:00") - START).total_seconds())
        schedules = schedules_of(server)
        other = Schedules()  # a second worker on the same store (e.g. another replica)
        other.schedules = schedules.schedules
        other.engine = server.service.engine

        async def both() -> list[Any]:
            now = server.clock.now()
            firings = await asyncio.gather(schedules.tick(now), other.tick(now))
            return [f for batch in firings for f in batch]

        [firing] = [f for f in server.call(both()) if f.schedule.runbook == "canary"]
        # A worker whose view is behind (the watermark before the slot) tries the slot
        # again: the firing's idempotency key finds the run that already started.
        engine = server.service.engine
        assert engine is not None
        engine.store.world.schedules[firing.schedule.key] = "2031-03-01T10:03:00.000000Z"
        [again] = [
            f for f in server.call(other.tick(server.clock.now())) if f.schedule.runbook == "canary"
        ]
        assert again.run_id == firing.run_id
        assert len(runs(server, "canary")) == 1


def test_the_timer_is_armed_for_the_next_slot(folder: Path) -> None:
    with ServerThread(folder, base_env(folder), FakeClock(START)) as server:
        schedules = schedules_of(server)
        assert schedules.next_due == at("2031-03-01T10:10:00")
        job = server.service.scheduler.get_job("schedules:tick")
        assert job is not None
        assert job.next_run_time == at("2031-03-01T10:10:00")
        assert iso(schedules.next_due + timedelta(0)) == "2031-03-01T10:10:00.000000Z"


def test_serve_fires_a_schedule_on_time(tmp_path: Path) -> None:
    write_runbooks(
        tmp_path / "runbooks",
        {
            "tick": """
name: tick
triggers:
  - schedule: {every: 1s}
steps:
  - id: noop
    uses: core.noop
"""
        },
    )

    def finished(record: dict[str, Any]) -> bool:
        message = str(record["message"])
        return message.startswith("run ") and message.endswith(" succeeded")

    with ServeProcess(tmp_path, base_env(tmp_path)) as server, server.client() as client:
        assert server.logs is not None
        first = server.logs.wait_for(finished)
        second = server.logs.wait_for(lambda r: finished(r) and r["run_id"] != first["run_id"])
        documents = [client.get(f"/api/runs/{r['run_id']}").json() for r in (first, second)]
    slots = [
        datetime.fromisoformat(d["trigger"]["scheduled_for"].replace("Z", "+00:00"))
        for d in documents
    ]
    started = [datetime.fromisoformat(d["started_at"].replace("Z", "+00:00")) for d in documents]
    assert slots[1] - slots[0] == timedelta(seconds=1)
    for slot, began in zip(slots, started, strict=True):
        assert slot.microsecond == 0
        assert timedelta(0) <= began - slot < timedelta(seconds=1), "fired on time"
