"""Run the ``runbook`` command with a disk that fills up on cue.

Once the file named by ``RUNBOOK_TEST_DISK_FULL`` exists, every write to the
data directory fails with ENOSPC, as on a full disk (without needing a tmpfs). Run as
a script: ``python tests/plugins/diskfull.py <runbook arguments>``.
"""

from __future__ import annotations

import errno
import os
import sys

import bot.store.store
from bot.cli import main
from bot.store.fileops import FileOps


class FillingDisk(FileOps):
    """Writes fail with ENOSPC once the marker file exists."""

    def write(self, fd: int, data: bytes) -> int:
        if os.path.exists(os.environ["RUNBOOK_TEST_DISK_FULL"]):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(fd, data)


if __name__ == "__main__":
    bot.store.store.FileOps = FillingDisk  # type: ignore[misc]
    sys.exit(main(sys.argv[1:]))
