"""The pieces of the fake Slack that are data: ids, recorded calls, channels, arguments."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from bot.sandbox.fake import FakeRequest

TEAM_ID = "T0SANDBOX"
BOT_USER = "U0RUNBOOK"
BOT_ID = "B0RUNBOOK"
JSON_ARGS = ("blocks", "attachments", "view", "metadata", "users")


@dataclass(slots=True)
class SlackCall:
    """One Web API call: the method and its arguments (JSON-ish ones decoded)."""

    method: str
    args: dict[str, Any]
    authorized: bool
    ok: bool | None = None
    error: str | None = None


@dataclass(slots=True)
class Channel:
    """A channel (or DM) with the messages it shows now."""

    id: str
    name: str
    is_member: bool = True
    is_im: bool = False
    members: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def as_entity(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_im,
            "is_im": self.is_im,
            "is_member": self.is_member,
            "is_private": False,
            "is_archived": False,
            "num_members": len(self.members),
        }


class SlackError(Exception):
    """A Slack method failed: answered as ``{"ok": false, "error": <error>}``."""

    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__(error)


def arguments(request: FakeRequest) -> dict[str, Any]:
    """A call's arguments from its query, JSON or form body; JSON-in-form values decoded."""
    args: dict[str, Any] = {key: values[0] for key, values in request.query.items()}
    if isinstance(request.body, dict):
        args.update(request.body)
    for key in JSON_ARGS:
        value = args.get(key)
        if isinstance(value, str) and value[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                args[key] = json.loads(value)
    return args
