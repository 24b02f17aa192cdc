"""Slack user group membership for approvals (the engine's GroupResolver for ``slack:``).

Runbooks name groups by their handle (``soc-leads``). Handles are mapped to
group ids with ``usergroups.list`` and members are read with
``usergroups.users.list``; both are cached for ``ttl`` seconds, so a person
added to a group may decide within that time. Concurrent look-ups of the same
group share one call. When Slack cannot be asked and nothing (even stale) is
cached, :class:`~bot.errors.ChatError` is raised: a decision is never refused
or accepted on a guess.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.errors import ChatError

log = logging.getLogger("runbook.slack.groups")

_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")


class WebAPI(Protocol):
    async def call(self, method: str, args: dict[str, Any] | None = None) -> dict[str, Any]: ...


@dataclass(slots=True)
class _Entry:
    value: Any
    expires: float


class SlackGroups:
    """Resolves ``slack:U…`` identities against Slack user groups, with a cache.

    Args:
        api: the Slack Web API.
        ttl: seconds a membership list or the handle map stays fresh.
        now: a monotonic clock (tests move it).
    """

    def __init__(
        self, api: WebAPI, *, ttl: float = 300.0, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.api = api
        self.ttl = ttl
        self._now = now
        self._cache: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._warned: set[str] = set()

    async def groups_of(self, identity: str, candidates: Sequence[str]) -> set[str]:
        """Which of ``candidates`` (handles or ids) the Slack user belongs to."""
        realm, _, user = identity.partition(":")
        if realm != "slack" or not user:
            return set()
        found: set[str] = set()
        for group in candidates:
            if user in await self.members(group):
                found.add(group)
        return found

    async def members(self, group: str) -> frozenset[str]:
        """User ids of a group (handle or id); empty for an unknown group."""
        gid = await self.group_id(group)
        if gid is None:
            if group not in self._warned:
                self._warned.add(group)
                log.warning("Slack user group %r does not exist; nobody is in it", group)
            return frozenset()
        users = await self._cached(f"members:{gid}", lambda: self._fetch_members(gid))
        return frozenset(users)

    async def group_id(self, group: str) -> str | None:
        """The id (``S…``) of a group handle; ids are returned as they are."""
        if _GROUP_ID.match(group):
            return group
        handles = await self.handles()
        return handles.get(group.removeprefix("@"))

    async def known_ids(self, handles: Sequence[str]) -> dict[str, str]:
        """Handle → id for the handles Slack knows (for mentions); never raises."""
        if not handles:
            return {}
        try:
            known = await self.handles()
        except ChatError as exc:
            log.warning("cannot read Slack user groups for mentions: %s", exc)
            return {}
        return {h: known[h] for h in handles if h in known}

    async def handles(self) -> dict[str, str]:
        """Every group handle Slack knows, with its id."""
        result: dict[str, str] = await self._cached("handles", self._fetch_handles)
        return result

    def forget(self) -> None:
        """Drop everything cached (tests, or after a change in Slack)."""
        self._cache.clear()

    async def _cached(self, key: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
        entry = self._cache.get(key)
        if entry is not None and entry.expires > self._now():
            return entry.value
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._inflight[key] = pending
            try:
                value = await fetch()
            except ChatError as exc:
                self._inflight.pop(key, None)
                if entry is not None:  # stale beats nothing: Slack is briefly unavailable
                    log.warning("Slack user groups: %s; using the cached list", exc)
                    pending.set_result(entry.value)
                    return entry.value
                pending.set_exception(exc)
                pending.exception()  # retrieved: other waiters get it from `await`
                raise
            except BaseException:
                self._inflight.pop(key, None)
                pending.cancel()
                raise
            self._inflight.pop(key, None)
            self._cache[key] = _Entry(value, self._now() + self.ttl)
            pending.set_result(value)
            return value
        return await asyncio.shield(pending)

    async def _fetch_handles(self) -> dict[str, str]:
        answer = await self.api.call("usergroups.list", {"include_disabled": False})
        return {
            str(group["handle"]): str(group["id"])
            for group in answer.get("usergroups", [])
            if isinstance(group, dict) and group.get("handle") and group.get("id")
        }

    async def _fetch_members(self, gid: str) -> list[str]:
        answer = await self.api.call("usergroups.users.list", {"usergroup": gid})
        return [str(user) for user in answer.get("users", [])]
