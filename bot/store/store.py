"""The journal-backed store: the audit log as journal, a TinyDB snapshot, an archive.

Layout of a data directory::

    audit.jsonl          the audit log (source of truth for all state)
    state.json           TinyDB snapshot: journal watermark, run summaries,
                         active runs, dedup windows, schedule firings
    runs/archive.jsonl   final state of each finished run (appended once, at a checkpoint)
    runs/index.jsonl     their summaries, with where each sits in the archive
    definitions/<sha>.*  the exact runbook text each run started with
    lock, owner.json     who owns the directory

Persisting a step costs two fsynced appends (shared with concurrent writers
by group commit); nothing per step grows with the number of past runs or the
length of the run. Snapshots are written lazily (at checkpoints) and only
speed up loading: on open, the tail of the journal after the snapshot's
watermark is replayed through the same reducer the engine uses live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bot.audit.log import GENESIS, AuditLog, iter_lines, next_seq
from bot.engine.clock import iso, utcnow
from bot.engine.serialize import run_from_dict, run_to_dict
from bot.engine.state import FINAL_STATUSES, DedupEntry, RunState, World, apply
from bot.errors import AuditGapError, ConflictError, CorruptStateError, StoreError
from bot.store.fileops import FileOps, describe_os_error
from bot.store.lock import DataDirLock
from bot.store.repair import set_aside_torn_tail, world_from_audit_log
from bot.store.snapshot import Snapshot

log = logging.getLogger("runbook.store")

IDEMPOTENCY_KEEP = 20_000
REARCHIVE_DUE = "rearchive.due"  # in runs/: a torn-line repair whose re-archive is not done


class Transaction:
    """Records built and applied at once, then queued for the next write by ``commit``.

    Group commit: every transaction committed during one turn of the event
    loop is written with one write and one fsync at the end of that turn
    (:meth:`DataStore.sync`), or at once by :meth:`DataStore.flush_now`.
    Nothing acts on a transaction — no step starts, no message is posted, no
    listener hears of it, no answer leaves the process — before it is
    durable: callers await ``sync()`` first. If a write fails, the store is
    broken (memory is ahead of the disk) and refuses further work; the engine
    stops, and a restart rebuilds state from what is on disk.
    """

    def __init__(self, store: DataStore) -> None:
        self.store = store
        self.records: list[dict[str, Any]] = []
        self._lines: list[bytes] = []

    def add(self, event: dict[str, Any], max_bytes: int | None = None) -> dict[str, Any]:
        audit = self.store.audit
        offset = audit.reserved
        built, line = audit.build(event, event["ts"], max_bytes)
        # Apply exactly what replay will read back (tuples become lists, int keys
        # strings...), so live state and state rebuilt after a restart are equal.
        # (only ``data`` can hold such values: the other fields are strings and ints)
        record = json.loads(line) if _needs_normalising(built["data"]) else built
        apply(self.store.world, record, offset)
        self.records.append(record)
        self._lines.append(line)
        return record

    def commit(self) -> list[dict[str, Any]]:
        """Queue the lines for the next write (see :meth:`DataStore.sync`)."""
        if self._lines:
            self.store.queue(self._lines, self.records)
            self._lines = []
        return self.records


class DataStore:
    """Store port implementation over a data directory."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        readonly: bool = False,
        fileops: FileOps | None = None,
        sync: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.readonly = readonly
        self.fileops = fileops or FileOps()
        self.world = World()
        self.audit = AuditLog(str(self.data_dir / "audit.jsonl"), fileops=self.fileops, sync=sync)
        self.lock = DataDirLock(self.data_dir)
        self.snapshot = Snapshot(self.data_dir / "state.json", self.fileops, readonly)
        self.applied_offset = 0
        self.warnings: list[str] = []
        self._opened = False
        self.dirty = 0
        self.on_durable: list[Callable[[list[dict[str, Any]]], None]] = []
        self._pending_lines: list[bytes] = []
        self._pending_records: list[dict[str, Any]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flush_scheduled = False
        self._index: dict[str, dict[str, Any]] | None = None
        self.index_damaged = False
        self._from_audit: World | None = None
        self._snapshot_seq = 0
        self.gap: tuple[int, int] | None = None  # (seq the snapshot saw, last seq of the log)
        self.accepted_gap: dict[str, Any] | None = None  # the audit.gap record written by open
        # runs the accept-gap reconciliation changed: {"ended": [...], "interrupted": [...],
        # "not_in_log": [...]} (see ``_reconcile_after_gap``)
        self.gap_runs: dict[str, list[str]] = {}
        self._saved_definitions: set[str] = set()

    # -- opening and closing -------------------------------------------------------------

    def open(
        self, owner: Mapping[str, Any] | None = None, *, accept_gap: str | None = None
    ) -> None:
        """Load the world; unless read-only, take the lock and open the journal for appends.

        A torn last line of ``runs/index.jsonl`` or ``runs/archive.jsonl`` is set
        aside and the runs it held are archived again from the audit log. The
        re-archive is due until it is done (``runs/rearchive.due``): a crash or a
        failed write in between leaves it to the next writable open.

        Args:
            accept_gap: the operator (``cli:<user>``) who accepts that the
                snapshot is ahead of the audit log: the snapshot is kept as
                ``state.json.ahead-<time>``, state is rebuilt from the log and an
                ``audit.gap`` record is appended. Without it such a directory is
                refused (:class:`AuditGapError`).

        Raises:
            DataDirLocked: another process owns the directory.
            AuditGapError: the snapshot is ahead of the audit log (not read-only).
            StoreError: the directory cannot be created, read or written.
        """
        if not self.readonly:
            try:
                for sub in ("", "runs", "definitions"):
                    (self.data_dir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise StoreError(f"cannot create data directory {self.data_dir}: {exc}") from exc
            self.lock.acquire(dict(owner or {"command": "runbook"}))
        elif not self.data_dir.exists():
            self._opened = True
            return
        try:
            if not self.readonly:
                self._set_aside_torn_tails()
            self._load()
            if not self.readonly:
                gap = self.gap
                if gap is not None:
                    if accept_gap is None:
                        raise AuditGapError(
                            _gap_message(self.data_dir, *gap), expected_seq=gap[0], found_seq=gap[1]
                        )
                    kept = self._keep_ahead_snapshot()
                try:
                    self.audit.open(
                        seq=self.world.seq, last_hash=self.world.last_hash, size=self.applied_offset
                    )
                except OSError as exc:
                    raise StoreError(describe_os_error(exc, self.audit.path)) from exc
                if gap is not None:
                    self._record_gap(gap, kept, accept_gap or "system")
                    self._reconcile_after_gap(kept)
                if self._due.exists():
                    self._rearchive_from_audit_log()
                    try:
                        self._due.unlink()
                    except OSError as exc:
                        raise StoreError(describe_os_error(exc, str(self._due))) from exc
        except BaseException:
            self.lock.release()
            raise
        self._opened = True

    async def close(self) -> None:
        """Checkpoint, close the journal and release the lock."""
        if not self._opened:
            return
        try:
            if not self.readonly:
                if self._pending_lines and self.audit.broken is None:
                    with contextlib.suppress(StoreError):
                        self.flush_now()
                self.audit.close()
                if self.audit.broken is not None:
                    return  # memory is ahead of the disk: never snapshot it
                try:
                    await self.checkpoint()
                except StoreError as exc:
                    log.warning("could not write the snapshot: %s", exc)
        finally:
            self.lock.release()
            self._opened = False

    def _load(self) -> None:
        try:
            tables = self.snapshot.load()
        except CorruptStateError as exc:
            tables = None
            self.warnings.append(
                f"{exc}; rebuilding state from the audit log (nothing recorded is lost)"
            )
            if not self.readonly:
                aside = self.snapshot.path.with_name(f"state.json.corrupt-{int(time.time())}")
                with contextlib.suppress(OSError):  # a failed rename is overwritten anyway
                    self.snapshot.path.replace(aside)
                self.snapshot = Snapshot(self.data_dir / "state.json", self.fileops)
        start = 0
        if tables is not None:
            meta = tables["meta"]
            self.world.seq = self._snapshot_seq = int(meta.get("seq", 0))
            self.world.last_hash = str(meta.get("hash", GENESIS))
            start = int(meta.get("offset", 0))
            for row in tables["active"]:
                run = run_from_dict(row)
                self.world.runs[run.id] = run
            for row in tables["dedup"]:
                self.world.dedup[row["slot"]] = DedupEntry(row["run_id"], row["until"])
            for row in tables["schedules"]:
                self.world.schedules[row["key"]] = row["last"]
            for row in tables["idempotency"]:
                self.world.idempotency[row["key"]] = row["run_id"]
        self._replay(start)

    def _replay(self, start: int) -> None:
        audit_path = self.data_dir / "audit.jsonl"
        size = audit_path.stat().st_size if audit_path.exists() else 0
        ahead = start > size
        if ahead:
            if self.readonly:
                self.warnings.append(
                    "the snapshot is ahead of the audit log; state shown is rebuilt from the "
                    "audit log (see `runbook audit verify`)"
                )
            self.world = World()
            start = 0
        offset = start
        for offset_at, _number, raw in iter_lines(str(audit_path), start):
            try:
                record = json.loads(raw)
            except ValueError:
                raise CorruptStateError(
                    f"audit log line at byte {offset_at} is not JSON; run `runbook audit verify`"
                ) from None
            if record.get("seq") != next_seq(record, self.world.seq) or record.get("prev") != (
                self.world.last_hash
            ):
                self.warnings.append(
                    f"audit chain broken at seq {record.get('seq')} (byte {offset_at}); "
                    "run `runbook audit verify`"
                )
            apply(self.world, record, offset_at)
            offset = offset_at + len(raw)
        self.applied_offset = offset
        if ahead:
            self.gap = (self._snapshot_seq, self.world.seq)

    # -- repairs -------------------------------------------------------------------------

    @property
    def _due(self) -> Path:
        return self.data_dir / "runs" / REARCHIVE_DUE

    def _set_aside_torn_tails(self) -> None:
        """Drop a partial last line of the archive and the index (kept in ``*.torn``);
        the re-archive from the audit log is then due (see ``open``)."""
        for name in ("archive.jsonl", "index.jsonl"):
            path = self.data_dir / "runs" / name
            try:
                dropped = set_aside_torn_tail(path, self._due)
            except OSError as exc:
                raise StoreError(describe_os_error(exc, str(path))) from exc
            if dropped:
                self.warnings.append(
                    f"{path} ended in a partial line ({dropped} bytes, from a crash or a full "
                    f"disk); it was set aside in {path.name}.torn and the runs it held are "
                    "archived again from the audit log"
                )

    def _rearchive_from_audit_log(self) -> None:
        """Archive again every finished run the index or the archive does not hold."""
        self._index = None
        index = self._load_index()
        world = world_from_audit_log(self.audit.path)
        missing = [
            run
            for run in world.runs.values()
            if run.ended and run.id not in self.world.runs and not self._archived(index, run.id)
        ]
        if missing:
            self._archive(missing)

    def _archived(self, index: dict[str, dict[str, Any]], run_id: str) -> bool:
        row = index.get(run_id)
        if row is None or "archive" not in row:
            return False
        try:
            return self._read_archived(int(row["archive"])).id == run_id
        except (OSError, ValueError, TypeError, KeyError):
            return False

    def _read_archived(self, offset: int) -> RunState:
        with open(self.data_dir / "runs" / "archive.jsonl", "rb") as handle:
            handle.seek(offset)
            return run_from_dict(json.loads(handle.readline()))

    def _keep_ahead_snapshot(self) -> str:
        """Rename the snapshot that is ahead of the log; it is never deleted automatically."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        kept = self.snapshot.path.with_name(f"state.json.ahead-{stamp}")
        try:
            self.snapshot.path.replace(kept)
        except OSError as exc:
            raise StoreError(describe_os_error(exc, str(self.snapshot.path))) from exc
        self.snapshot = Snapshot(self.data_dir / "state.json", self.fileops)
        return kept.name

    def _record_gap(self, gap: tuple[int, int], kept: str, actor: str) -> None:
        expected, found = gap
        # the record takes seq expected + 1: seqs found + 1 .. expected were issued
        # once (and may have been exported); they are never issued again
        self.audit.seq = max(self.audit.seq, expected)
        txn = self.begin()
        self.accepted_gap = txn.add(
            {
                "ts": iso(utcnow()),
                "event": "audit.gap",
                "actor": actor,
                "data": {"expected_seq": expected, "found_seq": found, "snapshot_kept": kept},
            }
        )
        txn.commit()
        self.flush_now()
        self.gap = None

    def _reconcile_after_gap(self, kept: str) -> None:
        """Make the state rebuilt from the log agree with what the directory knew.

        The log lost its last records, but the run index, the archive and the kept
        snapshot still say how far runs got. A run they show as ended is not
        resumed: its end is recorded (``run.finished`` with the status it ended
        with, ``data.reason: "ended before the audit gap"``), and a run already
        archived is not archived again. A step the kept snapshot shows started
        (or ended) that the log shows not started is recorded as started, so that
        the next start treats it as a step a crash interrupted: run again when its
        action is safe to repeat, a recovery gate when not. It is never run as a
        fresh step. (An approval the log lost is asked again in its turn.)
        """
        archived: dict[str, dict[str, Any]] = {}
        self._index = None
        for run_id, row in self._load_index().items():
            archived[run_id] = {"status": row.get("status"), "error": None}
        for doc in _archived_documents(self.data_dir / "runs" / "archive.jsonl"):
            archived[str(doc["id"])] = {"status": doc.get("status"), "error": doc.get("error")}
        ahead: dict[str, RunState] = {}
        try:
            tables = Snapshot(self.data_dir / kept, self.fileops, readonly=True).load()
        except CorruptStateError as exc:
            self.warnings.append(f"the kept snapshot {kept} cannot be read ({exc}); not compared")
            tables = None
        for row in (tables or {}).get("active", []):
            try:
                run = run_from_dict(row)
            except (KeyError, TypeError, ValueError):
                continue
            ahead[run.id] = run
        world = self.world
        ended: list[str] = []
        interrupted: list[str] = []
        txn = self.begin()
        now = iso(utcnow())
        for run in list(world.runs.values()):
            if run.ended:
                if run.id in archived:  # archived before the gap: never twice
                    self._forget(run.id)
                continue
            known = archived.get(run.id)
            snap = ahead.get(run.id)
            if known is None and snap is not None and snap.ended:
                known = {"status": str(snap.status), "error": snap.error}
            if known is not None and _final(known.get("status")):
                data: dict[str, Any] = {
                    "status": known["status"],
                    "reason": "ended before the audit gap",
                }
                if known.get("error"):
                    data["error"] = known["error"]
                txn.add(_system_event(run, "run.finished", now, data=data))
                ended.append(run.id)
                if run.id in archived:
                    self._forget(run.id)
                continue
            if snap is None:
                continue
            further = False
            for sid in run.step_ids:
                state, before = run.steps[sid], snap.steps.get(sid)
                if before is None or state.started_at is not None or state.ended:
                    continue
                if state.running or state.waiting:
                    continue
                if before.started_at is None and not before.ended and not before.running:
                    continue
                if before.gate is not None and not before.gate.recovery:
                    continue  # an approval: asked again in its turn (that changes nothing)
                attempt = max(before.attempts, 1)
                data = {"attempt": attempt, "reason": "started before the audit gap"}
                txn.add(_system_event(run, "step.started", now, step=sid, data=data))
                further = True
            if further:
                interrupted.append(run.id)
        txn.commit()
        self.flush_now()
        lost = sorted(
            run_id
            for run_id in ahead
            if run_id not in world.runs and run_id not in archived and run_id not in ended
        )
        self.gap_runs = {"ended": ended, "interrupted": interrupted, "not_in_log": lost}

    def _forget(self, run_id: str) -> None:
        """Drop a run that is archived already from memory (as a checkpoint would)."""
        self.world.runs.pop(run_id, None)
        self.world.finished[:] = [r for r in self.world.finished if r != run_id]

    # -- group commit ----------------------------------------------------------------------

    def queue(self, lines: list[bytes], records: list[dict[str, Any]]) -> None:
        """Lines of a committed transaction, to be written by the next flush."""
        self._pending_lines.extend(lines)
        self._pending_records.extend(records)

    async def sync(self) -> None:
        """Return once everything committed so far is durable (one fsync for all of it).

        Raises:
            StoreError: the write failed (and the store is now broken).
        """
        if not self._pending_lines:
            if self.audit.broken is not None:
                raise StoreError(self.audit.broken)
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._scheduled_flush)
        await waiter

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        with contextlib.suppress(StoreError):  # the waiters have been told
            self.flush_now()

    def flush_now(self) -> None:
        """Write and fsync everything committed so far, now (synchronously)."""
        lines, self._pending_lines = self._pending_lines, []
        records, self._pending_records = self._pending_records, []
        waiters, self._waiters = self._waiters, []
        try:
            if lines:
                self.audit.write(lines)
        except StoreError as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
                    waiter.exception()  # retrieved: the raiser below tells its caller
            raise
        self.applied_offset = self.audit.size
        self.dirty += len(lines)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if records:
            for listener in self.on_durable:
                try:
                    listener(records)
                except Exception:
                    log.exception("a listener of durable records failed")

    # -- the store port ------------------------------------------------------------------

    def begin(self, expected_versions: Mapping[str, int] | None = None) -> Transaction:
        """Start a transaction: records added are applied at once and written on commit.

        Raises:
            StoreError: read-only, or the journal can no longer be written.
            ConflictError: a run moved on since the writer last saw it.
        """
        if self.readonly:
            raise StoreError("the store is open read-only")
        self.audit.check_writable()
        if expected_versions:
            for run_id, version in expected_versions.items():
                run = self.world.runs.get(run_id)
                if run is not None and run.version != version:
                    raise ConflictError(
                        f"run {run_id} moved on (version {run.version}, expected {version})"
                    )
        return Transaction(self)

    async def append(
        self,
        events: Sequence[dict[str, Any]],
        expected_versions: Mapping[str, int] | None = None,
    ) -> list[dict[str, Any]]:
        """Durably append events and apply them, in order (one transaction)."""
        txn = self.begin(expected_versions)
        for event in events:
            txn.add(event)
        records = txn.commit()
        await self.sync()
        return records

    async def checkpoint(self, now: str | None = None) -> None:
        """Archive finished runs and write the snapshot (atomically).

        Everything committed is flushed first: a snapshot never holds state that
        the journal does not.
        """
        if self.readonly:
            return
        if self.audit.broken is not None:
            raise StoreError(f"no snapshot: {self.audit.broken}")
        if self._pending_lines:
            self.flush_now()
        world = self.world
        finished = [
            world.runs[run_id]
            for run_id in world.finished
            if run_id in world.runs and world.runs[run_id].ended
        ]
        if finished:
            self._archive(finished)
            for run in finished:
                del world.runs[run.id]
        world.finished.clear()
        if now is not None:
            for slot in [s for s, e in world.dedup.items() if e.until <= now]:
                del world.dedup[slot]
        if len(world.idempotency) > IDEMPOTENCY_KEEP:
            for key in list(world.idempotency)[: len(world.idempotency) - IDEMPOTENCY_KEEP]:
                del world.idempotency[key]
        tables = {
            "meta": {
                "seq": world.seq,
                "hash": world.last_hash,
                "offset": self.applied_offset,
            },
            "active": [run_to_dict(run) for run in world.runs.values()],
            "dedup": [
                {"slot": slot, "run_id": e.run_id, "until": e.until}
                for slot, e in world.dedup.items()
            ],
            "schedules": [{"key": k, "last": v} for k, v in world.schedules.items()],
            "idempotency": [{"key": k, "run_id": v} for k, v in world.idempotency.items()],
        }
        try:
            self.snapshot.save(tables)
        except OSError as exc:
            raise StoreError(f"cannot write {self.snapshot.path}: {exc.strerror or exc}") from exc
        self.dirty = 0

    @property
    def broken(self) -> str | None:
        return self.audit.broken

    def _archive(self, runs: list[RunState]) -> None:
        """Append finished runs to ``runs/archive.jsonl`` and their summaries (with the
        offset) to ``runs/index.jsonl``: two fsyncs for any number of runs, before the
        snapshot that no longer carries them. A repeat after a crash is harmless."""
        archive = self.data_dir / "runs" / "archive.jsonl"
        offset = archive.stat().st_size if archive.exists() else 0
        documents: list[bytes] = []
        rows: list[dict[str, Any]] = []
        for run in runs:
            line = json.dumps(run_to_dict(run), ensure_ascii=False, separators=(",", ":"))
            data = line.encode() + b"\n"
            rows.append({**run.summary(), "archive": offset})
            documents.append(data)
            offset += len(data)
        self._append(archive, documents)
        self._append(
            self.data_dir / "runs" / "index.jsonl",
            [json.dumps(row, ensure_ascii=False).encode() + b"\n" for row in rows],
        )
        if self._index is not None:  # keep a loaded index current; never load it just for this
            for row in rows:
                self._index[row["id"]] = row

    def _append(self, path: Path, lines: list[bytes]) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                data = b"".join(lines)
                while data:
                    written = self.fileops.write(fd, data)
                    if written <= 0:
                        raise OSError(5, "short write")
                    data = data[written:]
                self.fileops.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc

    def _load_index(self) -> dict[str, dict[str, Any]]:
        """Archived runs by id (read once, then kept up to date by this process)."""
        if self._index is not None:
            return self._index
        rows: dict[str, dict[str, Any]] = {}
        path = self.data_dir / "runs" / "index.jsonl"
        bad = 0
        with contextlib.suppress(FileNotFoundError), open(path, "rb") as handle:
            for raw in handle:
                try:
                    if not raw.endswith(b"\n"):
                        raise ValueError("partial line")
                    row = json.loads(raw)
                    rows[str(row["id"])] = row
                except (ValueError, KeyError, TypeError):
                    bad += 1
        if self.readonly and self._due.exists():  # a repair was cut short: runs may lack
            self.index_damaged = True
            if not bad:
                self.warnings.append(
                    f"{path}: a repair was cut short and the index may lack runs; they are "
                    "read from the audit log (a state-changing command finishes the repair)"
                )
        if bad:
            self.index_damaged = True
            self.warnings.append(
                f"{path}: skipped {bad} line(s) that cannot be read; the runs they listed are "
                "read from the audit log (a state-changing command repairs the index)"
            )
        self._index = rows
        return rows

    def _audit_world(self) -> World:
        """Every run as the audit log alone tells it (folded once, only when needed)."""
        if self._from_audit is None:
            self._from_audit = world_from_audit_log(self.audit.path)
        return self._from_audit

    def summaries(self) -> list[dict[str, Any]]:
        """Every run, newest first: archived ones from the index, the rest from memory."""
        fields = ("id", "runbook", "status", "started_at", "ended_at", "requester")
        rows = {
            run_id: {k: row.get(k) for k in fields} for run_id, row in self._load_index().items()
        }
        if self.index_damaged:  # lines were skipped: the audit log has what they listed
            for run in self._audit_world().runs.values():
                if run.ended and run.id not in rows:
                    rows[run.id] = run.summary()
        for run in self.world.runs.values():
            rows[run.id] = run.summary()
        return sorted(rows.values(), key=lambda r: (r["started_at"], r["id"]), reverse=True)

    def get_run(self, run_id: str) -> RunState | None:
        run = self.world.runs.get(run_id)
        if run is not None:
            return run
        row = self._load_index().get(run_id)
        try:
            if row is not None and "archive" in row:
                archived = self._read_archived(int(row["archive"]))
                if archived.id != run_id:
                    raise ValueError(f"the archive holds run {archived.id} at that offset")
                return archived
            legacy = self.data_dir / "runs" / f"{run_id}.json"  # before the archive existed
            if legacy.exists():
                return run_from_dict(json.loads(legacy.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            found = self._run_from_audit_log(run_id)
            if found is None:
                raise CorruptStateError(f"cannot read the record of run {run_id}: {exc}") from exc
            self.warnings.append(
                f"the archived record of run {run_id} cannot be read ({exc}); shown from the "
                "audit log"
            )
            return found
        if self.index_damaged:
            return self._run_from_audit_log(run_id)
        return None

    def _run_from_audit_log(self, run_id: str) -> RunState | None:
        if self._from_audit is not None:
            return self._from_audit.runs.get(run_id)
        return world_from_audit_log(self.audit.path, run_id).runs.get(run_id)

    async def save_definition(self, digest: str, form: str, text: str) -> None:
        path = self.data_dir / "definitions" / f"{digest}.{'md' if form == 'markdown' else 'yaml'}"
        if digest in self._saved_definitions:
            return
        if path.exists():
            self._saved_definitions.add(digest)
            return
        try:
            self.fileops.write_file(str(path), text.encode("utf-8"))
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
        self._saved_definitions.add(digest)

    def load_definition(self, digest: str) -> tuple[str, str] | None:
        for suffix, form in (("yaml", "yaml"), ("md", "markdown")):
            path = self.data_dir / "definitions" / f"{digest}.{suffix}"
            if path.exists():
                return form, path.read_text(encoding="utf-8")
        return None


def _final(status: Any) -> bool:
    return isinstance(status, str) and status in {str(s) for s in FINAL_STATUSES}


def _system_event(
    run: RunState, event: str, ts: str, *, step: str | None = None, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "ts": ts,
        "event": event,
        "run_id": run.id,
        "runbook": run.runbook,
        "step": step,
        "actor": "system",
        "data": data,
    }


def _archived_documents(path: Path) -> list[dict[str, Any]]:
    """``id``, ``status`` and ``error`` of every readable run in the archive."""
    found: list[dict[str, Any]] = []
    with contextlib.suppress(FileNotFoundError), open(path, "rb") as handle:
        for raw in handle:
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            if isinstance(doc, dict) and "id" in doc:
                found.append(
                    {"id": doc["id"], "status": doc.get("status"), "error": doc.get("error")}
                )
    return found


_JSON_NATIVE = (str, int, float, bool, type(None))


def _needs_normalising(value: Any) -> bool:
    """Whether a value holds anything JSON would give back differently (cheap walk)."""
    if isinstance(value, _JSON_NATIVE):
        return False
    if isinstance(value, list):
        return any(_needs_normalising(item) for item in value)
    if isinstance(value, dict):
        return any(
            not isinstance(key, str) or _needs_normalising(item) for key, item in value.items()
        )
    return True


def _gap_message(data_dir: Path, expected_seq: int, found_seq: int) -> str:
    return (
        f"the audit log {data_dir / 'audit.jsonl'} ends at seq {found_seq} but the snapshot "
        f"state.json saw seq {expected_seq}: records were cut from its end (or a backup was "
        "restored whose log was copied before its snapshot); nothing was changed. To keep the "
        "snapshot aside, record the gap in the audit log and carry on from the log, run "
        "`runbook audit accept-gap`"
    )
