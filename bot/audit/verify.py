"""Checking the audit log's hash chain end to end."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.audit.log import GENESIS, KEYS, iter_lines, next_seq, record_hash


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of a verification: ``ok``, how many records, and the first problem.

    ``gaps`` lists the ``audit.gap`` records met: records once cut from the log's
    end, which an operator accepted (``runbook audit accept-gap``). The chain is
    intact around them, so ``ok`` stays true, but the loss is reported for good.
    """

    ok: bool
    records: int
    problem: str | None = None
    line: int | None = None
    seq: int | None = None
    gaps: tuple[dict[str, Any], ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "records": self.records,
            "problem": self.problem,
            "line": self.line,
            "seq": self.seq,
            "gaps": list(self.gaps),
        }


def verify(path: str, seen: tuple[int, str] | None = None) -> VerifyResult:
    """Verify every record: well-formed, consecutive ``seq``, ``prev`` links, ``hash``.

    A changed record fails its hash; a removed, inserted or reordered record
    breaks ``seq`` or ``prev``. An ``audit.gap`` record (an accepted cut) may
    advance ``seq`` to ``data.expected_seq + 1``: the seqs issued before the cut
    are never issued again, while ``prev`` still links to the last record kept.
    The first bad record is named by line and seq.

    Args:
        seen: ``(seq, hash)`` of a record known to have been written (the state
            snapshot's watermark). A chain cannot show that records were cut
            from its end, nor that it was rewritten whole; this can: the log
            must still hold that record, unchanged.
    """
    expected_prev = GENESIS
    last_seq = 0
    count = 0
    gaps: list[dict[str, Any]] = []
    for _offset, number, raw in iter_lines(path):
        try:
            record = json.loads(raw)
        except ValueError:
            return VerifyResult(False, count, "line is not valid JSON", number)
        if not isinstance(record, dict):
            return VerifyResult(False, count, "line is not a JSON object", number)
        seq = record.get("seq")
        missing = [key for key in (*KEYS, "hash") if key not in record]
        if missing:
            return VerifyResult(False, count, f"record lacks {', '.join(missing)}", number, seq)
        extra = sorted(set(record) - {*KEYS, "hash"})
        if extra:
            return VerifyResult(False, count, f"record has unexpected keys {extra}", number, seq)
        if record.get("hash") != record_hash(record):
            return VerifyResult(
                False, count, "hash does not match the record (it was changed)", number, seq
            )
        expected_seq = next_seq(record, last_seq)
        if seq != expected_seq:
            return VerifyResult(
                False,
                count,
                f"expected seq {expected_seq}, found {seq} (records removed, inserted or "
                "reordered)",
                number,
                seq,
            )
        if record.get("prev") != expected_prev:
            return VerifyResult(
                False,
                count,
                "prev does not match the previous record's hash (records removed, inserted "
                "or reordered)",
                number,
                seq,
            )
        if seen is not None and seq == seen[0] and record["hash"] != seen[1]:
            return VerifyResult(
                False,
                count,
                "record differs from the one the state snapshot saw (the log was rewritten)",
                number,
                seq,
            )
        if record.get("event") == "audit.gap":
            data = record["data"] if isinstance(record["data"], dict) else {}
            gaps.append(
                {
                    "seq": seq,
                    "ts": record["ts"],
                    "actor": record["actor"],
                    "found_seq": data.get("found_seq"),
                    "expected_seq": data.get("expected_seq"),
                    "snapshot_kept": data.get("snapshot_kept"),
                }
            )
        expected_prev = record["hash"]
        last_seq = seq
        count += 1
    if seen is not None and seen[0] > last_seq:
        return VerifyResult(
            False,
            count,
            f"the log ends at seq {last_seq} but seq {seen[0]} was written "
            "(records were removed from its end; see `runbook audit accept-gap`)",
            count + 1,
            last_seq + 1,
            tuple(gaps),
        )
    return VerifyResult(True, count, gaps=tuple(gaps))
