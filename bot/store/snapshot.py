"""The TinyDB snapshot of the world, written lazily and atomically.

TinyDB's default storage rewrites its file in place on every write; here a
storage keeps the tables in memory and writes them only on :meth:`flush`,
atomically (temp file, fsync, rename). Durability never depends on it: the
journal (the audit log) is the source of truth, and the snapshot records the
journal offset it reflects so that loading replays only the tail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage

from bot.errors import CorruptStateError
from bot.store.fileops import FileOps

FORMAT_VERSION = 2  # 2: archived run summaries moved to runs/index.jsonl


class DeferredAtomicStorage(Storage):
    """Reads the file once; writes go to memory until ``flush``."""

    def __init__(self, path: str, fileops: FileOps | None = None, readonly: bool = False) -> None:
        self.path = path
        self.fileops = fileops or FileOps()
        self.readonly = readonly
        self._data: dict[str, Any] | None = None
        self._dirty = False

    def read(self) -> dict[str, Any] | None:
        if self._data is None:
            try:
                text = Path(self.path).read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
            except (OSError, UnicodeDecodeError) as exc:
                raise CorruptStateError(f"cannot read {self.path}: {exc}") from exc
            try:
                data = json.loads(text) if text.strip() else None
            except ValueError as exc:
                raise CorruptStateError(f"{self.path} is not valid JSON: {exc}") from exc
            if data is not None and not isinstance(data, dict):
                raise CorruptStateError(f"{self.path} does not hold a TinyDB document")
            self._data = data
        return self._data

    def write(self, data: dict[str, Any]) -> None:
        self._data = data
        self._dirty = True

    def flush(self) -> None:
        if not self._dirty or self._data is None or self.readonly:
            return
        payload = json.dumps(self._data, separators=(",", ":"), ensure_ascii=False).encode()
        self.fileops.write_file(self.path, payload)
        self._dirty = False

    def close(self) -> None:
        return None


class Snapshot:
    """Tables: ``meta`` (journal watermark), ``active`` (state of runs still in memory),
    ``dedup``, ``schedules``, ``idempotency``. Summaries of archived runs live in the
    append-only ``runs/index.jsonl``, so this file stays as small as the active state.
    """

    def __init__(self, path: Path, fileops: FileOps | None = None, readonly: bool = False) -> None:
        self.path = path
        self.storage = DeferredAtomicStorage(str(path), fileops, readonly)
        self.db = TinyDB(storage=lambda: self.storage)

    def load(self) -> dict[str, Any] | None:
        """Every table as plain data, or None when there is no snapshot yet."""
        if self.storage.read() is None:
            return None
        meta = self.db.table("meta").all()
        if not meta:
            return None
        info = dict(meta[0])
        if info.get("format") != FORMAT_VERSION:
            raise CorruptStateError(
                f"{self.path} has snapshot format {info.get('format')!r}; expected {FORMAT_VERSION}"
            )
        return {
            "meta": info,
            "active": [dict(doc) for doc in self.db.table("active").all()],
            "dedup": [dict(doc) for doc in self.db.table("dedup").all()],
            "schedules": [dict(doc) for doc in self.db.table("schedules").all()],
            "idempotency": [dict(doc) for doc in self.db.table("idempotency").all()],
        }

    def save(self, tables: dict[str, Any]) -> None:
        """Replace every table and write the file once, atomically."""
        for name in ("active", "dedup", "schedules", "idempotency"):
            table = self.db.table(name)
            table.truncate()
            rows = tables.get(name, [])
            if rows:
                table.insert_multiple(rows)
        meta = self.db.table("meta")
        meta.truncate()
        meta.insert({**tables["meta"], "format": FORMAT_VERSION})
        self.storage.flush()


def snapshot_watermark(path: Path) -> tuple[int, str] | None:
    """``(seq, hash)`` of the last journal record a snapshot file reflects, if readable.

    For ``runbook audit verify``: read-only, tolerant (a missing or unreadable
    snapshot gives None, and the chain alone is checked).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        meta = next(iter(data["meta"].values()))
        seq, digest = int(meta["seq"]), str(meta["hash"])
    except (OSError, ValueError, KeyError, TypeError, StopIteration, AttributeError):
        return None
    return (seq, digest) if seq > 0 else None
