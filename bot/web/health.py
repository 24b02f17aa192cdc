"""Extra ``/healthz`` facts: runbooks loaded, and whether the data directory takes writes.

The service itself reports whether it is ready and whether the audit log is
broken (a write already failed). This check looks ahead: a data directory
that is read-only, or a disk with less than :data:`MIN_FREE_BYTES` free,
makes ``/healthz`` answer 503 before a write fails.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from bot.config import Settings
    from bot.service import Service

MIN_FREE_BYTES = 16 * 1024 * 1024


class DataDirHealth:
    """The ``checks`` facts of ``/healthz``."""

    name = "checks"

    def __init__(self, settings: Settings) -> None:
        self.data_dir = settings.data_dir
        self.service: Service | None = None

    async def prepare(self, service: Service) -> None:
        self.service = service

    async def start(self, service: Service) -> None:
        return None

    async def stop(self) -> None:
        return None

    def routes(self) -> list[BaseRoute]:
        return []

    def health(self) -> dict[str, Any]:
        loaded = self.service.loaded if self.service is not None else None
        writable = os.access(self.data_dir, os.W_OK)
        try:
            free = shutil.disk_usage(self.data_dir).free
        except OSError:
            free = 0
        facts: dict[str, Any] = {
            "runbooks_loaded": len(loaded.runbooks) if loaded is not None else 0,
            "data_dir_writable": writable,
            "disk_free_bytes": free,
        }
        if not writable or free < MIN_FREE_BYTES:
            facts["ok"] = False
        return facts
