"""An in-memory store: the same reducer, no disk (dry runs and unit tests)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bot.audit.log import KEYS
from bot.engine.state import RunState, World, apply
from bot.errors import AuditError, ConflictError


class MemoryTransaction:
    """Applies records at once; nothing to write."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.records: list[dict[str, Any]] = []

    def add(self, event: dict[str, Any], max_bytes: int | None = None) -> dict[str, Any]:
        if max_bytes is not None:
            from bot.audit.log import canonical

            try:
                size = len(canonical(event.get("data") or {}))
            except (TypeError, ValueError) as exc:
                raise AuditError(f"not JSON-serialisable: {exc}") from None
            if size > max_bytes:
                raise AuditError(f"{size:,} bytes; the limit is {max_bytes // 1024} KiB")
        world = self.store.world
        record = {key: event.get(key) for key in KEYS}
        record["ts"] = event["ts"]
        record["seq"] = world.seq + 1
        record["prev"] = world.last_hash
        record["data"] = record["data"] or {}
        record["hash"] = hashlib.sha256(f"{record['seq']}".encode()).hexdigest()
        apply(world, record)
        self.store.records.append(record)
        self.records.append(record)
        return record

    def commit(self) -> list[dict[str, Any]]:
        for listener in self.store.on_durable:
            listener(self.records)
        return self.records


class MemoryStore:
    """Store port without durability."""

    @property
    def broken(self) -> str | None:
        return None

    def __init__(self) -> None:
        self.on_durable: list[Callable[[list[dict[str, Any]]], None]] = []
        self.world = World()
        self.records: list[dict[str, Any]] = []
        self._definitions: dict[str, tuple[str, str]] = {}

    def begin(self, expected_versions: Mapping[str, int] | None = None) -> MemoryTransaction:
        for run_id, version in (expected_versions or {}).items():
            run = self.world.runs.get(run_id)
            if run is not None and run.version != version:
                raise ConflictError(f"run {run_id} moved on")
        return MemoryTransaction(self)

    async def append(
        self,
        events: Sequence[dict[str, Any]],
        expected_versions: Mapping[str, int] | None = None,
    ) -> list[dict[str, Any]]:
        txn = self.begin(expected_versions)
        for event in events:
            txn.add(event)
        return txn.commit()

    async def sync(self) -> None:
        return None

    def flush_now(self) -> None:
        return None

    async def save_definition(self, digest: str, form: str, text: str) -> None:
        self._definitions[digest] = (form, text)

    def load_definition(self, digest: str) -> tuple[str, str] | None:
        return self._definitions.get(digest)

    async def checkpoint(self) -> None:
        return None

    def summaries(self) -> list[dict[str, Any]]:
        return self.world.summary_rows()

    def get_run(self, run_id: str) -> RunState | None:
        return self.world.runs.get(run_id)
