"""The audit log's hash chain: SPEC §6 record shape, and tamper detection."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bot.audit.verify import verify
from tests.engine.harness import make_engine

RUNBOOK = """
name: audited
steps:
  - id: a
    uses: core.echo
    with: {x: 1}
  - id: b
    uses: core.echo
    with: {y: 2}
  - id: c
    uses: core.noop
"""


@pytest.fixture
async def log_path(tmp_path: Path) -> Path:
    h = make_engine(RUNBOOK, data_dir=tmp_path)
    await h.start("audited")
    await h.start("audited")
    await h.close()
    return tmp_path / "audit.jsonl"


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def write(path: Path, rows: list[str]) -> None:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_records_follow_the_contract(log_path: Path) -> None:
    rows = [json.loads(line) for line in lines(log_path)]
    assert rows[0]["prev"] == "0" * 64
    for index, row in enumerate(rows):
        assert set(row) == {
            "seq",
            "ts",
            "run_id",
            "runbook",
            "step",
            "event",
            "actor",
            "data",
            "prev",
            "hash",
        }
        body = {k: v for k, v in row.items() if k != "hash"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert row["hash"] == hashlib.sha256(canonical.encode()).hexdigest()
        assert row["seq"] == index + 1
        if index:
            assert row["prev"] == rows[index - 1]["hash"]
        assert row["ts"].endswith("Z")
    events = [r["event"] for r in rows]
    assert events[:3] == ["run.started", "step.started", "step.succeeded"]
    assert verify(str(log_path)).ok


def test_changed_record_is_found(log_path: Path) -> None:
    rows = lines(log_path)
    record = json.loads(rows[4])
    record["actor"] = "cli:mallory"
    rows[4] = json.dumps(record, sort_keys=True, separators=(",", ":"))
    write(log_path, rows)
    result = verify(str(log_path))
    assert not result.ok and result.line == 5 and "changed" in (result.problem or "")


def test_changed_record_with_recomputed_hash_breaks_the_next_link(log_path: Path) -> None:
    rows = lines(log_path)
    record = json.loads(rows[4])
    record["data"] = {"forged": True}
    body = {k: v for k, v in record.items() if k != "hash"}
    record["hash"] = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    rows[4] = json.dumps(record)
    write(log_path, rows)
    result = verify(str(log_path))
    assert not result.ok and result.line == 6 and "prev" in (result.problem or "")


def test_removed_record_is_found(log_path: Path) -> None:
    rows = lines(log_path)
    del rows[3]
    write(log_path, rows)
    result = verify(str(log_path))
    assert not result.ok and result.line == 4 and "expected seq 4" in (result.problem or "")


def test_inserted_record_is_found(log_path: Path) -> None:
    rows = lines(log_path)
    rows.insert(2, rows[2])
    write(log_path, rows)
    result = verify(str(log_path))
    assert not result.ok and result.line == 4


def test_reordered_records_are_found(log_path: Path) -> None:
    rows = lines(log_path)
    rows[2], rows[3] = rows[3], rows[2]
    write(log_path, rows)
    result = verify(str(log_path))
    assert not result.ok and result.line == 3


def test_truncated_tail_is_still_a_valid_prefix_but_garbage_is_not(log_path: Path) -> None:
    rows = lines(log_path)
    write(log_path, rows[:5])
    assert verify(str(log_path)).ok
    write(log_path, [*rows[:5], "not json"])
    result = verify(str(log_path))
    assert not result.ok and result.line == 6


def test_records_cut_from_the_end_are_found_against_the_snapshot(log_path: Path) -> None:
    from bot.store.snapshot import snapshot_watermark

    seen = snapshot_watermark(log_path.parent / "state.json")
    rows = lines(log_path)
    assert seen is not None and seen[0] == len(rows)
    assert verify(str(log_path), seen).ok
    write(log_path, rows[:-1])
    result = verify(str(log_path), seen)
    assert not result.ok and result.seq == len(rows)
    assert "removed from its end" in (result.problem or "")


def test_a_log_rewritten_whole_is_found_against_the_snapshot(log_path: Path) -> None:
    seen = (len(lines(log_path)), "0" * 64)  # what the snapshot saw is not what the log holds
    result = verify(str(log_path), seen)
    assert not result.ok and "rewritten" in (result.problem or "")
    assert verify(str(log_path)).ok  # the chain itself is intact: only the snapshot tells


def _chained(prev: dict[str, object], seq: int, event: str, data: dict[str, object]) -> str:
    from bot.audit.log import record_hash

    record: dict[str, object] = {
        "seq": seq,
        "ts": "2026-12-04T00:00:00Z",
        "run_id": None,
        "runbook": None,
        "step": None,
        "event": event,
        "actor": "system",
        "data": data,
        "prev": prev["hash"],
    }
    record["hash"] = record_hash(record)
    return json.dumps(record)


def test_only_an_audit_gap_record_may_skip_the_seqs_issued_before_a_cut(log_path: Path) -> None:
    kept = lines(log_path)[:4]
    last = json.loads(kept[-1])
    gap = {"expected_seq": 9, "found_seq": 4, "snapshot_kept": "state.json.ahead-x"}

    def check(*extra: str) -> object:
        log_path.write_text("\n".join([*kept, *extra]) + "\n", encoding="utf-8")
        return verify(str(log_path))

    gap_line = _chained(last, 10, "audit.gap", gap)
    result = check(gap_line, _chained(json.loads(gap_line), 11, "x.after", {}))
    assert result.ok and result.records == 6
    assert [g["seq"] for g in result.gaps] == [10]
    assert verify(str(log_path), seen=(11, json.loads(lines(log_path)[-1])["hash"])).ok

    assert not check(_chained(last, 10, "x.other", gap)).ok  # only audit.gap may jump
    bad = check(_chained(last, 11, "audit.gap", gap))  # and only to expected_seq + 1
    assert not bad.ok and bad.problem is not None and "expected seq 10" in bad.problem
    assert not check(_chained(last, 5, "audit.gap", gap)).ok  # found_seq + 1 is a reused seq
