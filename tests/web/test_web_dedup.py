"""Dedup windows: fixed, counted from the run that opened them, and durable across restarts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from web_harness import ServeProcess, ServerThread, base_env, post_alert, write_runbooks

from bot.engine.clock import FakeClock

RUNBOOKS = {
    "contain": """
name: contain
inputs:
  host: {type: string}
triggers:
  - alert:
      source: edr
      inputs: {host: "{{ alert.host }}"}
      dedup_key: "{{ alert.host }}"
      dedup_window: 1h
steps:
  - id: find
    uses: core.echo
    with: {host: "{{ inputs.host }}"}
""",
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_runbooks(tmp_path / "runbooks", RUNBOOKS)
    return tmp_path


def test_window_is_fixed_from_the_first_run_and_then_reopens(folder: Path) -> None:
    clock = FakeClock(datetime(2031, 3, 1, 12, 0, tzinfo=UTC))
    with ServerThread(folder, base_env(folder), clock) as server, server.client(None) as client:
        first = post_alert(client, "edr", {"host": "web-1"}).json()["runs"][0]["id"]
        server.wait_settled(first)
        server.advance(30 * 60)
        inside = post_alert(client, "edr", {"host": "web-1"}).json()
        assert inside["deduplicated"] == [
            {"runbook": "contain", "dedup_key": "web-1", "run_id": first}
        ]
        server.advance(29 * 60 + 59)  # 1 s before the end: a repeat does not extend the window
        assert post_alert(client, "edr", {"host": "web-1"}).json()["deduplicated"][0]["run_id"] == (
            first
        )
        server.advance(1)
        after = post_alert(client, "edr", {"host": "web-1"}).json()
        assert after["deduplicated"] == []
        [second] = after["runs"]
        assert second["id"] != first
        server.wait_settled(second["id"])
        again = post_alert(client, "edr", {"host": "web-1"}).json()
        assert again["deduplicated"][0]["run_id"] == second["id"]


def test_window_survives_a_crash(folder: Path) -> None:
    env = base_env(folder)
    server = ServeProcess(folder, env).start()
    with server.client(None) as client:
        answer = post_alert(client, "edr", {"host": "web-9"})
        assert answer.status_code == 202
        [run] = answer.json()["runs"]
    assert server.proc is not None
    server.proc.kill()  # the 202 promised the run was on disk; nothing else was saved
    server.proc.wait()
    server._close()

    again = ServeProcess(folder, env).start()
    try:
        with again.client(None) as client:
            repeat = post_alert(client, "edr", {"host": "web-9"}).json()
            assert repeat["runs"] == []
            assert repeat["deduplicated"] == [
                {"runbook": "contain", "dedup_key": "web-9", "run_id": run["id"]}
            ]
        with again.client() as api:
            assert api.get(f"/api/runs/{run['id']}").json()["runbook"] == "contain"
    finally:
        again.stop()


def test_window_survives_a_clean_restart(folder: Path) -> None:
    env = base_env(folder)
    with ServeProcess(folder, env) as server, server.client(None) as client:
        [run] = post_alert(client, "edr", {"host": "web-7"}).json()["runs"]
        assert server.wait_finished(run["id"]) == "succeeded"
    state = json.loads((folder / "data" / "state.json").read_text())
    assert state, "the snapshot was written at shutdown"
    with ServeProcess(folder, env) as server, server.client(None) as client:
        repeat = post_alert(client, "edr", {"host": "web-7"}).json()
        assert repeat["deduplicated"][0]["run_id"] == run["id"]


def test_two_thousand_concurrent_duplicates_start_one_run(folder: Path) -> None:
    import asyncio

    import httpx
    from web_harness import sign

    body = json.dumps({"host": "storm-1"}).encode()
    headers = {"X-Runbook-Signature": sign(body), "Content-Type": "application/json"}

    async def blast(url: str) -> list[dict[str, object]]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=url, limits=limits, trust_env=False) as client:
            answers = await asyncio.gather(
                *(client.post("/alerts/edr", content=body, headers=headers) for _ in range(300))
            )
        assert {a.status_code for a in answers} == {202}
        return [a.json() for a in answers]

    with ServeProcess(folder, base_env(folder)) as server:
        bodies = asyncio.run(blast(server.url))
    started = [run["id"] for b in bodies for run in b["runs"]]
    joined = {d["run_id"] for b in bodies for d in b["deduplicated"]}
    assert len(started) == 1
    assert joined == set(started)
    assert sum(len(b["deduplicated"]) for b in bodies) == len(bodies) - 1
