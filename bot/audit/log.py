"""The audit log: append-only JSON Lines, hash-chained, fsynced, one record per event.

It is also the engine's journal: state is rebuilt from it. The records of one
engine transaction are written together with one fsync before the engine
yields to anything else. Secrets are redacted here, on the way to disk.

Record: ``{seq, ts, run_id, runbook, step, event, actor, data, prev, hash}``;
``hash`` is SHA-256 over the canonical JSON of the record without ``hash``,
``prev`` the previous record's hash (64 zeros for the first).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any

from bot.errors import AuditError, StoreError
from bot.redact import REDACTOR, Redactor
from bot.store.fileops import FileOps, disk_reason

GENESIS = "0" * 64
KEYS = ("seq", "ts", "run_id", "runbook", "step", "event", "actor", "data", "prev")


def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 of the record without its ``hash`` key, canonically serialised."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def next_seq(record: dict[str, Any], last_seq: int) -> int:
    """The seq a record must carry after ``last_seq``: the next one, except for an
    ``audit.gap`` record, which takes ``data.expected_seq + 1`` so that no seq issued
    before records were cut from the log's end is ever issued again."""
    if record.get("event") == "audit.gap":
        data = record.get("data")
        expected = data.get("expected_seq") if isinstance(data, dict) else None
        if isinstance(expected, int) and not isinstance(expected, bool) and expected > last_seq:
            return expected + 1
    return last_seq + 1


def iter_lines(path: str, start: int = 0) -> Iterator[tuple[int, int, bytes]]:
    """Yield (offset, line number from start, raw line) of complete lines.

    A final line without a newline is a write in progress (or cut short by a
    crash) and is not yielded.
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    with handle:
        handle.seek(start)
        offset = start
        for number, raw in enumerate(handle, 1):
            if not raw.endswith(b"\n"):
                return
            yield offset, number, raw
            offset += len(raw)


def iter_records(path: str, start: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (offset, record) of every complete record from ``start``.

    Raises:
        AuditError: a line that is not a JSON object.
    """
    for offset, _number, raw in iter_lines(path, start):
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise AuditError(f"audit log line at byte {offset} is not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise AuditError(f"audit log line at byte {offset} is not an object")
        yield offset, record


class AuditLog:
    """Appends hash-chained records; each :meth:`write` is one write and one fsync.

    ``build`` completes a record (seq, prev, hash; secrets redacted) and
    advances the chain in memory; ``write`` makes a set of built lines
    durable. The engine builds all records of one transaction, then writes
    them together before it yields to anything else. ``open`` positions the
    chain at the end of the file (after dropping a final partial line left
    by a crash). Once a write fails, the log refuses further writes until
    reopened: nothing may become visible that is not durable.
    """

    def __init__(
        self,
        path: str,
        *,
        fileops: FileOps | None = None,
        redactor: Redactor = REDACTOR,
        sync: bool = True,
    ) -> None:
        self.path = path
        self.fileops = fileops or FileOps()
        self.redactor = redactor
        self.sync = sync
        self.seq = 0
        self.last_hash = GENESIS
        self.size = 0
        self.reserved = 0  # end offset of every record built so far
        self._fd: int | None = None
        self.broken: str | None = None

    def open(self, *, seq: int, last_hash: str, size: int) -> None:
        """Open for appending; the caller has read the chain up to ``size`` bytes."""
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        actual = os.fstat(self._fd).st_size
        if actual > size:
            # a partial final line from a crash: it was never acknowledged
            os.ftruncate(self._fd, size)
            os.fsync(self._fd)
        self.seq, self.last_hash, self.size = seq, last_hash, size
        self.reserved = size

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def check_writable(self) -> None:
        """Raise StoreError when records cannot be written."""
        if self.broken is not None:
            raise StoreError(self.broken)
        if self._fd is None:
            raise StoreError("the audit log is not open for writing")

    def build(
        self, event: dict[str, Any], ts: str, max_bytes: int | None = None
    ) -> tuple[dict[str, Any], bytes]:
        """Complete, redact, chain and serialise one record (advances the chain).

        Raises:
            AuditError: the record is not JSON-serialisable or exceeds ``max_bytes``
                (the chain is left untouched).
        """
        record = {key: event.get(key) for key in KEYS}
        record["ts"] = ts
        record["seq"] = self.seq + 1
        record["prev"] = self.last_hash
        if record["data"] is None:
            record["data"] = {}
        try:
            body = canonical(record)
        except (TypeError, ValueError) as exc:
            raise AuditError(f"not JSON-serialisable: {exc}") from None
        if max_bytes is not None and len(body) > max_bytes:
            raise AuditError(f"{len(body):,} bytes; the limit is {max_bytes // 1024} KiB")
        if self.redactor.contains_secret(body.decode()):
            record = self.redactor.value(record)
            body = canonical(record)
        digest = hashlib.sha256(body).hexdigest()
        record["hash"] = digest
        line = body[:-1] + b',"hash":"' + digest.encode() + b'"}\n'
        self.seq += 1
        self.last_hash = digest
        self.reserved += len(line)
        return record, line

    def write(self, lines: list[bytes]) -> None:
        """Write built lines and fsync once.

        Raises:
            StoreError: the data directory cannot be written; the log is now broken.
        """
        self.check_writable()
        data = b"".join(lines)
        if not data:
            return
        try:
            self._write(data)
        except OSError as exc:
            self.broken = _describe(exc, self.path)
            raise StoreError(self.broken) from exc
        self.size += len(data)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        start = self.size
        try:
            view = memoryview(data)
            while view:
                written = self.fileops.write(self._fd, bytes(view))
                if written <= 0:
                    raise OSError(errno.EIO, "short write")
                view = view[written:]
            if self.sync:
                self.fileops.fsync(self._fd)
        except OSError:
            # if even the truncate fails, the partial line is dropped at the next open
            with contextlib.suppress(OSError):
                self.fileops.truncate(self._fd, start)
            raise


def _describe(exc: OSError, path: str) -> str:
    return (
        f"cannot write the audit log {path}: {disk_reason(exc)}; runs stop where they are and "
        "carry on with `runbook resume` once the data directory is writable"
    )
