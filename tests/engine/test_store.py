"""The durable store: replay equals live state, snapshots, faults, the lock, corrupt state."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from bot.audit.verify import verify
from bot.engine.serialize import run_to_dict
from bot.errors import DataDirLocked, StoreError
from bot.store.fileops import FileOps
from bot.store.store import DataStore
from tests.engine.harness import make_engine

RUNBOOK = """
name: durable
inputs:
  host: {type: string, default: web-1}
steps:
  - id: a
    uses: core.echo
    with: {host: "{{ inputs.host }}"}
  - id: gate
    approval: {prompt: "go?", approvers: {users: [alice]}, timeout: 1h}
  - id: b
    uses: core.flaky
    with: {failures: 1}
    retry: {attempts: 2, delay: 1s}
    compensate: {uses: core.noop}
  - id: c
    uses: core.fail
    with: {message: boom}
"""


def reload(path: Path) -> DataStore:
    store = DataStore(path, readonly=True)
    store.open()
    return store


async def test_state_rebuilt_from_disk_equals_live_state(tmp_path: Path) -> None:
    h = make_engine(RUNBOOK, data_dir=tmp_path)
    run = await h.start("durable")
    await h.engine.decide(run.id, "gate", "cli:alice", "approve")
    await h.advance(1)
    live = await h.settle(run.id)
    assert live.status == "failed"
    live_doc = run_to_dict(live)
    # a reader replaying the journal (no snapshot yet) sees the same state
    replayed = reload(tmp_path).get_run(run.id)
    assert replayed is not None and run_to_dict(replayed) == live_doc
    await h.close()  # checkpoint: archive + snapshot
    archived = reload(tmp_path).get_run(run.id)
    assert archived is not None
    assert run_to_dict(archived) == {**live_doc, "audit_offset": live_doc["audit_offset"]}
    assert verify(str(tmp_path / "audit.jsonl")).ok


async def test_snapshot_plus_tail_replay(tmp_path: Path) -> None:
    h = make_engine(RUNBOOK, data_dir=tmp_path)
    first = await h.start("durable")
    await h.store.checkpoint()
    second = await h.start("durable", {"host": "db-1"})
    # the reader gets run 1 from the snapshot and run 2 from the journal's tail
    reader = reload(tmp_path)
    assert reader.world.runs[first.id].status == "waiting"
    assert reader.world.runs[second.id].inputs == {"host": "db-1"}
    assert [row["id"] for row in reader.summaries()] == [second.id, first.id]
    await h.close()


async def test_corrupt_state_file_is_set_aside_and_rebuilt(tmp_path: Path) -> None:
    h = make_engine(RUNBOOK, data_dir=tmp_path)
    run = await h.start("durable")
    await h.close()
    (tmp_path / "state.json").write_text("{not json", encoding="utf-8")
    store = DataStore(tmp_path)
    store.open({"command": "test"})
    assert any("rebuilding state from the audit log" in w for w in store.warnings)
    assert store.world.runs[run.id].status == "waiting"
    assert list(tmp_path.glob("state.json.corrupt-*"))
    await store.close()


async def test_partial_last_line_from_a_crash_is_dropped(tmp_path: Path) -> None:
    h = make_engine(RUNBOOK, data_dir=tmp_path)
    run = await h.start("durable")
    await h.close()
    with open(tmp_path / "audit.jsonl", "ab") as handle:
        handle.write(b'{"seq": 999, "event": "step.succ')  # a write cut short
    h2 = make_engine(RUNBOOK, data_dir=tmp_path)
    assert h2.store.world.runs[run.id].status == "waiting"
    await h2.engine.start(resume=True)
    await h2.engine.decide(run.id, "gate", "cli:alice", "approve")
    await h2.advance(1)
    await h2.settle(run.id)
    await h2.close()
    result = verify(str(tmp_path / "audit.jsonl"))
    assert result.ok, result


class FailingOps(FileOps):
    """Fails writes after a budget of bytes: ENOSPC, EROFS, or a short write."""

    def __init__(self, budget: int, error: int | None) -> None:
        self.budget = budget
        self.error = error

    def write(self, fd: int, data: bytes) -> int:
        if self.budget <= 0:
            if self.error is None:
                return 0
            raise OSError(self.error, os.strerror(self.error))
        chunk = data[: self.budget]
        self.budget -= len(chunk)
        return os.write(fd, chunk)


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EROFS, None])
async def test_disk_faults_stop_the_run_and_lose_nothing_recorded(
    tmp_path: Path, error: int | None
) -> None:
    h = make_engine(RUNBOOK, data_dir=tmp_path)
    run = await h.start("durable")
    recorded = (tmp_path / "audit.jsonl").read_bytes()
    before = len(recorded.splitlines())
    h.store.audit.fileops = FailingOps(budget=40, error=error)
    with pytest.raises(StoreError) as info:
        await h.engine.decide(run.id, "gate", "cli:alice", "approve")
    message = str(info.value)
    assert "cannot write the audit log" in message and "runbook resume" in message
    # nothing already recorded is lost, and the partial write was rolled back
    assert (tmp_path / "audit.jsonl").read_bytes() == recorded
    with pytest.raises(StoreError):
        await h.engine.start_run("durable", {}, requester="cli:x")
    await h.engine.close()
    h.store.lock.release()
    # a new process sees exactly what was durable, and carries on
    h2 = make_engine(RUNBOOK, data_dir=tmp_path)
    assert len((tmp_path / "audit.jsonl").read_bytes().splitlines()) == before
    await h2.engine.start(resume=True)
    result = await h2.engine.decide(run.id, "gate", "cli:alice", "approve")
    assert result.outcome == "approved"
    await h2.advance(1)
    assert (await h2.settle(run.id)).status == "failed"
    await h2.close()
    assert verify(str(tmp_path / "audit.jsonl")).ok


async def test_second_writer_is_refused_with_the_owner_named(tmp_path: Path) -> None:
    h = make_engine(RUNBOOK, data_dir=tmp_path)
    other = DataStore(tmp_path)
    with pytest.raises(DataDirLocked) as info:
        other.open({"command": "runbook run durable"})
    assert "in use by `test`" in str(info.value) and f"pid {os.getpid()}" in str(info.value)
    # readers are fine while the owner works
    assert reload(tmp_path).world.seq == h.store.world.seq
    await h.close()
    other.open({"command": "runbook run durable"})  # released: now it may
    await other.close()


async def test_records_are_redacted_on_the_way_to_disk(tmp_path: Path) -> None:
    from bot.redact import REDACTOR

    secret = "s3cr3t-T0KEN-for-redaction"
    REDACTOR.add(secret)
    try:
        h = make_engine(
            """
name: leaky
inputs:
  token: {type: string}
steps:
  - id: a
    uses: core.echo
    with: {value: "{{ inputs.token }}", nested: {deep: "Bearer {{ inputs.token }}"}}
""",
            data_dir=tmp_path,
        )
        run = await h.start("leaky", {"token": secret})
        assert run.status == "succeeded"
        await h.close()
        for path in tmp_path.rglob("*"):
            if path.is_file() and path.name != "lock":
                assert secret.encode() not in path.read_bytes(), path
        assert verify(str(tmp_path / "audit.jsonl")).ok
        lines = (tmp_path / "audit.jsonl").read_text().splitlines()
        assert any("***" in line for line in lines)
    finally:
        REDACTOR.clear()


async def test_archived_runs_are_listed_from_the_index_and_the_snapshot_stays_small(
    tmp_path: Path,
) -> None:
    h = make_engine("name: quick\nsteps:\n  - id: a\n    uses: core.noop\n", data_dir=tmp_path)
    ids = [(await h.start("quick")).id for _ in range(3)]
    await h.close()
    snapshot = (tmp_path / "state.json").read_text()
    assert all(run_id not in snapshot for run_id in ids)  # nothing of finished runs in it
    index = (tmp_path / "runs" / "index.jsonl").read_text().splitlines()
    assert len(index) == 3
    reader = reload(tmp_path)
    assert [row["id"] for row in reader.summaries()] == list(reversed(ids))
    assert reader.get_run(ids[0]) is not None and reader.get_run(ids[0]).status == "succeeded"


class CountingOps(FileOps):
    fsyncs = 0

    def fsync(self, fd: int) -> None:
        CountingOps.fsyncs += 1
        os.fsync(fd)


async def test_concurrent_transactions_share_fsyncs(tmp_path: Path) -> None:
    h = make_engine(
        "name: quick\nsteps:\n  - id: a\n    uses: core.noop\n  - id: b\n    uses: core.noop\n",
        data_dir=tmp_path,
    )
    h.store.audit.fileops = CountingOps()
    CountingOps.fsyncs = 0
    import asyncio

    started = await asyncio.gather(
        *(h.engine.start_run("quick", {}, requester="cli:x") for _ in range(20))
    )
    runs = [await h.settle(r.run.id) for r in started]
    assert all(run.status == "succeeded" for run in runs)
    records = len(h.records)
    assert records == 20 * 6  # started, 2 x (step started, step succeeded), finished
    assert CountingOps.fsyncs < records / 3, (CountingOps.fsyncs, records)
    await h.close()
    assert verify(str(tmp_path / "audit.jsonl")).ok


async def test_nothing_is_announced_before_it_is_durable(tmp_path: Path) -> None:
    h = make_engine("name: quick\nsteps:\n  - id: a\n    uses: core.noop\n", data_dir=tmp_path)
    sizes: list[tuple[int, int]] = []
    audit = tmp_path / "audit.jsonl"
    h.engine.listeners.append(
        lambda _run, record: sizes.append((record["seq"], len(audit.read_bytes().splitlines())))
    )
    await h.start("quick")
    assert sizes and all(seq <= lines_on_disk for seq, lines_on_disk in sizes)
    await h.close()


@pytest.mark.parametrize(
    "secret", ['pa"ss\\w0rd-XYZ', "tab\tsecret99", "line\nbreak-secret", "plainSecret123"]
)
async def test_secrets_with_json_special_characters_are_redacted_on_disk(
    tmp_path: Path, secret: str
) -> None:
    from bot.redact import REDACTOR

    REDACTOR.add(secret)
    try:
        h = make_engine(
            """
name: leaky
inputs:
  token: {type: string}
steps:
  - id: a
    uses: core.echo
    with: {value: "{{ inputs.token }}"}
""",
            data_dir=tmp_path,
        )
        await h.start("leaky", {"token": secret})
        await h.close()
        escaped = json.dumps(secret, ensure_ascii=False)[1:-1].encode()
        for path in tmp_path.rglob("*"):
            if path.is_file() and path.name != "lock":
                data = path.read_bytes()
                assert secret.encode() not in data and escaped not in data, path
        assert verify(str(tmp_path / "audit.jsonl")).ok
    finally:
        REDACTOR.clear()
