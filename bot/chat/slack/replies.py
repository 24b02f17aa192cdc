"""Private answers to one person: ``chat.postEphemeral``, or the request's ``response_url``.

Used after the acknowledgement, from background tasks: a refusal, an input
error found late, a run started. A private answer that cannot be delivered
is logged, never raised: the person's request has already been handled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from bot.errors import ChatError
from bot.redact import REDACTOR

log = logging.getLogger("runbook.slack")


class WebAPI(Protocol):
    async def call(self, method: str, args: dict[str, Any] | None = None) -> dict[str, Any]: ...

    async def post_response(self, url: str, body: dict[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class Audience:
    """Whom a private answer goes to, and where.

    Attributes:
        user: the Slack user id.
        channel: the channel the request came from.
        response_url: Slack's URL for answers to this request, if any.
    """

    user: str
    channel: str | None = None
    response_url: str | None = None


class Replier:
    """Sends private answers."""

    def __init__(self, api: WebAPI) -> None:
        self.api = api
        self.sent = 0

    async def ephemeral(
        self,
        to: Audience,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        *,
        prefer_response_url: bool = False,
    ) -> bool:
        """Answer ``to.user`` privately; True when Slack took it.

        ``chat.postEphemeral`` is tried first (it works in any channel the bot
        is in); the ``response_url`` is the fallback, or the first choice with
        ``prefer_response_url`` (slash commands typed where the bot is not).
        """
        text = REDACTOR.text(text)
        attempts = ["url", "ephemeral"] if prefer_response_url else ["ephemeral", "url"]
        for how in attempts:
            try:
                if how == "ephemeral" and to.channel:
                    args: dict[str, Any] = {"channel": to.channel, "user": to.user, "text": text}
                    if blocks:
                        args["blocks"] = blocks
                    await self.api.call("chat.postEphemeral", args)
                elif how == "url" and to.response_url:
                    body: dict[str, Any] = {
                        "response_type": "ephemeral",
                        "replace_original": False,
                        "text": text,
                    }
                    if blocks:
                        body["blocks"] = blocks
                    await self.api.post_response(to.response_url, body)
                else:
                    continue
            except ChatError as exc:
                log.warning("could not answer %s privately (%s): %s", to.user, how, exc)
                continue
            self.sent += 1
            return True
        log.warning("no private answer reached %s: %s", to.user, text)
        return False
