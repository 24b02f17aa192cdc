"""Default ports and helpers: run ids, a silent chat, groups from settings."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from bot.engine.state import RunState

_B32 = "0123456789abcdefghjkmnpqrstvwxyz"


_last_stamp = 0


def new_run_id() -> str:
    """``r-`` + 16 base32 characters: milliseconds then random bits.

    Strictly increasing within a process (two runs in one millisecond still
    sort in the order they started), and unguessable enough.
    """
    global _last_stamp  # one counter per process, on purpose
    stamp = max(int(time.time() * 1000), _last_stamp + 1)
    _last_stamp = stamp
    value = (stamp << 32) | secrets.randbits(32)
    chars = []
    for _ in range(16):
        chars.append(_B32[value & 31])
        value >>= 5
    return "r-" + "".join(reversed(chars))


class NullChat:
    """Chat that says nothing (tests, dry runs)."""

    async def run_started(self, run: RunState, view: Any) -> None:
        return None

    async def run_progress(self, run: RunState, view: Any) -> None:
        return None

    async def run_finished(self, run: RunState, view: Any) -> None:
        return None

    async def gate_opened(self, run: RunState, step_id: str, view: Any) -> None:
        return None

    async def gate_changed(self, run: RunState, step_id: str, view: Any) -> None:
        return None

    async def gate_escalated(self, run: RunState, step_id: str, view: Any) -> None:
        return None

    async def notify(
        self,
        run: RunState,
        step_id: str,
        text: str,
        channel: str | None,
        thread: bool,
        view: Any,
        *,
        markup: str | None = None,
    ) -> None:
        return None


class StaticGroups:
    """Group membership from settings (``RUNBOOK_GROUPS``) for ``cli:`` and ``api:`` people."""

    def __init__(self, groups: Mapping[str, list[str]]) -> None:
        self.groups = {name: set(members) for name, members in groups.items()}

    async def groups_of(self, identity: str, candidates: Iterable[str]) -> set[str]:
        short = identity.split(":", 1)[1] if ":" in identity else identity
        return {
            group
            for group in candidates
            if short in self.groups.get(group, set()) or identity in self.groups.get(group, set())
        }
