"""Repairs of the files that can be rebuilt from the audit log.

``runs/index.jsonl`` and ``runs/archive.jsonl`` are appended at checkpoints;
a crash or a full disk in the middle of an append leaves a partial last line.
It is set aside (into ``<file>.torn``) before anything is appended again, so
that the next record never ends up glued onto the torn bytes, and the runs it
held are written again from the audit log, which holds everything.

The repair survives a crash at any point: before the file is truncated, a
marker (``runs/rearchive.due``) is made durable; every writable open that finds
it archives again from the audit log, and only then removes it. Until then,
readers take the runs the index lacks from the audit log.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bot.audit.log import iter_lines
from bot.engine.state import World, apply


def mark_due(marker: Path) -> None:
    """Make ``marker`` exist, durably (it says: a re-archive from the audit log is due)."""
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    sync_dir(marker.parent)


def sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def set_aside_torn_tail(path: Path, due: Path) -> int:
    """Move a final line without its newline to ``<path>.torn``; return its length.

    ``due`` is marked (durably) before the file is truncated: the runs the torn
    line held are then archived again by whoever opens the directory next.

    Raises:
        OSError: the file cannot be read, truncated or the torn bytes kept.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        end = size
        chunk = 1 << 16
        while end > 0:  # find the last newline, reading backwards
            start = max(0, end - chunk)
            data = os.pread(fd, end - start, start)
            newline = data.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        if keep == size:
            return 0
        torn = os.pread(fd, size - keep, keep)
        aside = os.open(
            path.with_name(path.name + ".torn"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        try:
            os.write(aside, torn + b"\n")
            os.fsync(aside)
        finally:
            os.close(aside)
        mark_due(due)
        os.ftruncate(fd, keep)
        os.fsync(fd)
        return size - keep
    finally:
        os.close(fd)


def world_from_audit_log(path: str, run_id: str | None = None) -> World:
    """Fold the whole audit log (or only the records of one run) into a fresh world.

    Lines that are not JSON objects are skipped: this is a fallback for reading,
    ``runbook audit verify`` is where a damaged log is reported.
    """
    world = World()
    for offset, _number, raw in iter_lines(path):
        if run_id is not None and run_id.encode() not in raw:
            continue  # cheap pre-filter before parsing
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(record, dict) or "seq" not in record or "event" not in record:
            continue
        if run_id is not None and record.get("run_id") != run_id:
            continue
        try:
            apply(world, record, offset)
        except (KeyError, TypeError, ValueError):
            continue
    return world
