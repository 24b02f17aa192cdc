"""Slack user group membership for approvals (the engine's GroupResolver for ``slack:``).

Runbooks name groups by their handle (``soc-leads``) or, less often, by id
(``S0123ABC``). An id is asked about directly (``usergroups.users.list``).
A handle is mapped to its id with ``usergroups.list`` when that method
works and knows it; otherwise ``usergroups.users.list`` is asked with the
handle as written (some Web API stand-ins key groups by handle), so a
workspace or fake without ``usergroups.list`` still answers. Everything is
cached for ``ttl`` seconds, so a person added to a group may decide within
that time; concurrent look-ups of the same group share one call.

When membership cannot be determined (Slack cannot be asked, and nothing,
even stale, is cached), :class:`~bot.errors.ChatError` is raised: the
engine then judges the person on what it knows (``users``) and refuses,
with an audit record, rather than accept on a guess.
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
#: What ``usergroups.users.list`` answers for a group it does not know.
_NO_SUCH_GROUP = frozenset({"no_such_subteam", "subteam_not_found", "invalid_usergroup"})


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
        self._no_list_until = float("-inf")
        self._no_list_code = ""

    async def groups_of(self, identity: str, candidates: Sequence[str]) -> set[str]:
        """Which of ``candidates`` (handles or ids) the Slack user belongs to.

        Raises:
            ChatError: the person is in none of the groups that could be read,
                and at least one could not be read.
        """
        realm, _, user = identity.partition(":")
        if realm != "slack" or not user:
            return set()
        found: set[str] = set()
        failed: ChatError | None = None
        for group in candidates:
            try:
                members = await self.members(group)
            except ChatError as exc:
                failed = failed or exc
                continue
            if user in members:
                found.add(group)
        if failed is not None and not found:
            raise failed
        return found

    async def members(self, group: str) -> frozenset[str]:
        """User ids of a group (handle or id); empty for a group Slack does not know."""
        if _GROUP_ID.match(group):
            return await self._members(group)
        try:
            handles: dict[str, str] | None = await self.handles()
        except ChatError as exc:
            log.debug("usergroups.list unavailable (%s); asking by handle", exc.code or exc)
            handles = None
        gid = handles.get(group.removeprefix("@")) if handles is not None else None
        if gid is not None:
            return await self._members(gid)
        try:
            return await self._members(group)  # the handle as written
        except ChatError as exc:
            if handles is None or exc.code not in _NO_SUCH_GROUP:
                raise
        # usergroups.list answered without it, and it is no group id either: no such group
        if group not in self._warned:
            self._warned.add(group)
            log.warning("Slack user group %r does not exist; nobody is in it", group)
        self._cache[f"members:{group}"] = _Entry([], self._now() + self.ttl)
        return frozenset()

    async def _members(self, usergroup: str) -> frozenset[str]:
        users = await self._cached(f"members:{usergroup}", lambda: self._fetch(usergroup))
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
            if f"mentions:{exc.code}" not in self._warned:
                self._warned.add(f"mentions:{exc.code}")
                log.warning(
                    "cannot read Slack user groups for mentions (%s); groups are shown as @handle",
                    exc,
                )
            return {}
        return {h: known[h] for h in handles if h in known}

    async def handles(self) -> dict[str, str]:
        """Every group handle Slack knows, with its id.

        Raises:
            ChatError: ``usergroups.list`` failed. A method Slack (or a
                stand-in) does not offer is not asked again for ``ttl`` seconds.
        """
        if self._no_list_until > self._now():
            raise ChatError("Slack usergroups.list is unavailable", code=self._no_list_code)
        try:
            result: dict[str, str] = await self._cached("handles", self._fetch_handles)
        except ChatError as exc:
            if not exc.retryable or exc.code in ("unknown_method", "http_404"):
                self._no_list_until = self._now() + self.ttl
                self._no_list_code = exc.code or "error"
            raise
        return result

    def forget(self) -> None:
        """Drop everything cached (tests, or after a change in Slack)."""
        self._cache.clear()
        self._no_list_until = float("-inf")

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

    async def _fetch(self, usergroup: str) -> list[str]:
        answer = await self.api.call("usergroups.users.list", {"usergroup": usergroup})
        users = answer.get("users")
        if not isinstance(users, list):
            raise ChatError(
                "Slack usergroups.users.list: the answer has no user list", code="invalid_response"
            )
        return [str(user) for user in users]
