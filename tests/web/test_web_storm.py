"""Storm control against a real ``runbook serve``: limits, order, nothing dropped.

Each run calls a loopback API (:class:`Barrier`) that holds the call until the
test releases it, so what runs at once is seen from the outside, the way a
vendor would see it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from web_harness import Barrier, ServeProcess, base_env, post_alert, write_runbooks

SOURCES = {f"RUNBOOK_ALERT_SECRET_{s.upper()}": "alert-secret-0123456789" for s in ("storm",)}


def runbook(name: str, url: str, extra: str = "") -> str:
    return f"""
name: {name}
{extra}
inputs:
  host: {{type: string}}
  n: {{type: integer}}
triggers:
  - alert:
      source: storm
      if: alert.runbook == '{name}'
      inputs: {{host: "{{{{ alert.host }}}}", n: "{{{{ alert.n }}}}"}}
steps:
  - id: call
    uses: http.get
    with: {{url: "{url}/{name}/{{{{ inputs.host }}}}-{{{{ inputs.n }}}}"}}
  - id: after
    uses: core.noop
"""


@pytest.fixture
def barrier() -> Iterator[Barrier]:
    with Barrier() as fake:
        yield fake


def start(tmp: Path, barrier: Barrier, limit: int) -> ServeProcess:
    write_runbooks(
        tmp / "runbooks",
        {
            "slow": runbook("slow", barrier.url),
            "single": runbook("single", barrier.url, "max_concurrent: 1"),
            "hostkey": runbook("hostkey", barrier.url, 'concurrency_key: "{{ inputs.host }}"'),
        },
    )
    env = base_env(tmp, RUNBOOK_MAX_CONCURRENT_RUNS=str(limit), **SOURCES)
    return ServeProcess(tmp, env).start()


def post(client: httpx.Client, name: str, host: str, n: int) -> str:
    answer = post_alert(client, "storm", {"runbook": name, "host": host, "n": n})
    assert answer.status_code == 202, answer.text
    [run] = answer.json()["runs"]
    return str(run["id"])


def statuses(client: httpx.Client) -> dict[str, str]:
    return {row["id"]: row["status"] for row in client.get("/api/runs?limit=1000").json()}


def release_in_order(barrier: Barrier, total: int, limit: int) -> None:
    """Release held calls one at a time; each release lets exactly one more run start."""
    for index in range(total):
        arrived = barrier.wait_arrivals(min(index + limit, total))
        barrier.release(arrived[index])
        if index + limit < total:
            barrier.wait_arrivals(index + limit + 1)


def test_global_limit_is_kept_in_arrival_order_and_every_run_finishes(
    tmp_path: Path, barrier: Barrier
) -> None:
    server = start(tmp_path, barrier, limit=3)
    try:
        with server.client() as client:
            ids = [post(client, "slow", f"h{i}", i) for i in range(8)]
            # the first three start together (their calls may arrive in any order)
            assert sorted(barrier.wait_arrivals(3)) == ["slow/h0-0", "slow/h1-1", "slow/h2-2"]
            now = statuses(client)
            assert [now[i] for i in ids[3:]] == ["pending"] * 5
            assert [now[i] for i in ids[:3]] == ["running"] * 3
            release_in_order(barrier, 8, 3)
            assert [server.wait_finished(i) for i in ids] == ["succeeded"] * 8
        assert barrier.arrivals[3:] == [f"slow/h{i}-{i}" for i in range(3, 8)], "arrival order"
        assert barrier.max_in_flight == 3
    finally:
        barrier.release_all()
        server.stop()


def test_per_runbook_limit_holds_that_runbook_only(tmp_path: Path, barrier: Barrier) -> None:
    server = start(tmp_path, barrier, limit=10)
    try:
        with server.client() as client:
            singles = [post(client, "single", "a", i) for i in range(3)]
            others = [post(client, "slow", "b", i) for i in range(2)]
            arrived = barrier.wait_arrivals(3)
            assert sorted(arrived) == ["single/a-0", "slow/b-0", "slow/b-1"]
            now = statuses(client)
            assert [now[i] for i in singles] == ["running", "pending", "pending"]
            barrier.release("slow/b-0")
            barrier.release("slow/b-1")
            assert [server.wait_finished(i) for i in others] == ["succeeded"] * 2
            assert statuses(client)[singles[1]] == "pending", "other runbooks free no slot"
            for index in range(3):
                barrier.release(f"single/a-{index}")
                if index < 2:
                    assert barrier.wait_arrivals(4 + index)[-1] == f"single/a-{index + 1}"
            assert [server.wait_finished(i) for i in singles] == ["succeeded"] * 3
    finally:
        barrier.release_all()
        server.stop()


def test_concurrency_key_keeps_two_runs_off_the_same_host(tmp_path: Path, barrier: Barrier) -> None:
    server = start(tmp_path, barrier, limit=10)
    try:
        with server.client() as client:
            hosts = ["x", "y", "x", "z", "x"]
            ids = [post(client, "hostkey", host, i) for i, host in enumerate(hosts)]
            assert sorted(barrier.wait_arrivals(3)) == ["hostkey/x-0", "hostkey/y-1", "hostkey/z-3"]
            now = statuses(client)
            assert now[ids[2]] == "pending" and now[ids[4]] == "pending"
            barrier.release("hostkey/y-1")
            barrier.release("hostkey/z-3")
            barrier.release("hostkey/x-0")
            assert barrier.wait_arrivals(4)[-1] == "hostkey/x-2", "same host: in order"
            barrier.release("hostkey/x-2")
            assert barrier.wait_arrivals(5)[-1] == "hostkey/x-4"
            barrier.release("hostkey/x-4")
            assert [server.wait_finished(i) for i in ids] == ["succeeded"] * 5
    finally:
        barrier.release_all()
        server.stop()


def test_pending_runs_survive_a_crash_and_all_finish(tmp_path: Path, barrier: Barrier) -> None:
    server = start(tmp_path, barrier, limit=1)
    with server.client() as client:
        ids = [post(client, "slow", f"c{i}", i) for i in range(5)]
        assert barrier.wait_arrivals(1) == ["slow/c0-0"]
    assert server.proc is not None
    server.proc.kill()  # no goodbye: only what is on disk survives
    server.proc.wait()
    server._close()

    again = ServeProcess(tmp_path, server.env).start()
    try:
        assert again.logs is not None
        ready = again.logs.wait_for(lambda r: str(r["message"]).startswith("ready:"))
        assert ready["run_id"] is None, "resumed runs' ids do not leak into other lines"
        with again.client() as client:
            now = statuses(client)
            assert [now[i] for i in ids[1:]] == ["pending"] * 4
            # the interrupted call is read-only, so it is simply made again
            assert barrier.wait_arrivals(2)[1] == "slow/c0-0"
            barrier.release_all()
            assert [again.wait_finished(i) for i in ids] == ["succeeded"] * 5
        assert barrier.arrivals[2:] == [f"slow/c{i}-{i}" for i in range(1, 5)]
    finally:
        barrier.release_all()
        again.stop()


def test_runs_whose_definition_is_gone_fail_and_the_queue_moves_on(
    tmp_path: Path, barrier: Barrier
) -> None:
    server = start(tmp_path, barrier, limit=1)
    with server.client() as client:
        ids = [post(client, "slow", f"g{i}", i) for i in range(3)]
        assert barrier.wait_arrivals(1) == ["slow/g0-0"]
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait()
    server._close()
    # The exact text these runs started with is gone, and the file has changed since.
    for stored in (tmp_path / "data" / "definitions").iterdir():
        stored.unlink()
    slow = tmp_path / "runbooks" / "slow.yaml"
    slow.write_text(slow.read_text().replace("name: slow", "name: slow\ntitle: Changed"))

    again = ServeProcess(tmp_path, server.env).start()
    try:
        assert again.logs is not None
        for run_id in ids:
            again.logs.wait_for(
                lambda r, run_id=run_id: r["message"].startswith(
                    f"run {run_id} failed: cannot load"
                )
            )
        with again.client() as client:
            assert [client.get(f"/api/runs/{i}").json()["status"] for i in ids] == ["failed"] * 3
    finally:
        barrier.release_all()
        again.stop()
