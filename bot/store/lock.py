"""One process owns a data directory at a time: an advisory lock plus a note of who."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from bot.errors import DataDirLocked, StoreError
from bot.store.fileops import describe_os_error


class DataDirLock:
    """``flock`` on ``<data>/lock``; ``<data>/owner.json`` says who holds it.

    The kernel releases the lock when the process dies, even by SIGKILL.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, owner: dict[str, Any]) -> None:
        """Take the lock or raise DataDirLocked naming the owner.

        Raises:
            DataDirLocked: another process holds the lock.
            StoreError: the lock or the owner note cannot be written (a full or
                read-only disk); nothing is left behind.
        """
        path = self.data_dir / "lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(describe_os_error(exc, str(path))) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = read_owner(self.data_dir)
            raise DataDirLocked(describe_owner(self.data_dir, info), owner=info) from None
        self._fd = fd
        note = {
            **owner,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            self._write_owner(note)
        except StoreError:
            self.release()
            raise

    def update_owner(self, changes: dict[str, Any]) -> None:
        """Amend the owner note (e.g. the URL once the server is listening)."""
        self._write_owner({**read_owner(self.data_dir), **changes})

    def _write_owner(self, note: dict[str, Any]) -> None:
        """Replace ``owner.json`` (mode 0600) through a temp file removed on failure.

        Raises:
            StoreError: it cannot be written.
        """
        path = self.data_dir / "owner.json"
        tmp = self.data_dir / f"owner.json.tmp-{os.getpid()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                data = json.dumps(note).encode()
                while data:
                    data = data[os.write(fd, data) :]
            finally:
                os.close(fd)
            tmp.replace(path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise StoreError(describe_os_error(exc, str(path))) from exc

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            with contextlib.suppress(OSError):  # a read-only disk: the note is stale, harmless
                (self.data_dir / "owner.json").unlink(missing_ok=True)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def read_owner(data_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((data_dir / "owner.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_owner(data_dir: Path, info: dict[str, Any]) -> str:
    who = info.get("command", "another process")
    parts = [f"pid {info['pid']}"] if "pid" in info else []
    if info.get("url"):
        parts.append(str(info["url"]))
    detail = f" ({', '.join(parts)})" if parts else ""
    hint = (
        "; use its API or Slack, or stop it first"
        if str(who).startswith("runbook serve")
        else "; wait for it to finish or stop it"
    )
    return f"the data directory {data_dir} is in use by `{who}`{detail}{hint}"
