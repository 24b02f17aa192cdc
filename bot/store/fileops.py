"""The few file operations durability depends on, behind one seam for fault injection.

Tests swap :class:`FileOps` for one that fails with ENOSPC, EROFS or a short
write, to prove that nothing already recorded is lost.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EIO: "an I/O error occurred",
}


def disk_reason(exc: OSError) -> str:
    """Why a write failed, in words an operator acts on."""
    return _REASONS.get(exc.errno or 0, exc.strerror or str(exc))


def describe_os_error(exc: OSError, path: str) -> str:
    """One line for a data directory file that cannot be written (no traceback)."""
    return (
        f"cannot write {path}: {disk_reason(exc)}; nothing was changed — fix the data "
        "directory and run the command again (read-only commands still work)"
    )


class FileOps:
    """Real file operations."""

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def replace(self, src: str, dst: str) -> None:
        Path(src).replace(dst)

    def write_file(self, path: str, data: bytes) -> None:
        """Write a whole file atomically: temp file, fsync, rename, fsync the folder."""
        tmp = f"{path}.tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = self.write(fd, bytes(view[: 1 << 20]))
                if written <= 0:
                    raise OSError(5, "short write")
                view = view[written:]
            self.fsync(fd)
        except BaseException:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        os.close(fd)
        try:
            self.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(str(Path(path).parent))


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
