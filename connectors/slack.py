"""Slack: post a message somewhere other than the run's own thread.

Settings are Slack's own (SPEC §5): ``SLACK_BOT_TOKEN`` (``xoxb-…``) and
``RUNBOOK_SLACK_API_URL`` (default ``https://slack.com/api/``). The bot must
be a member of the channel it posts to.

Slack answers HTTP 200 with ``{"ok": false, "error": "..."}`` for most
failures: ``invalid_auth``, ``not_authed``, ``token_revoked`` ... become
"authentication failed for slack"; ``channel_not_found``, ``not_in_channel``
and the like are permanent errors naming Slack's code; ``ratelimited`` (HTTP
429 with ``Retry-After``) is retried after the wait Slack asks for.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from bot.errors import AuthenticationError, ConnectorError, RetryableError
from connectors.base import ActionContext, ActionInput, ActionOutput, action
from connectors.http_auth import Auth, HeaderAuth
from connectors.http_client import PlannedRequest
from connectors.vendor import HTTPConnector, HTTPSettings

AUTH_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
    }
)
RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "service_unavailable", "fatal_error", "internal_error"}
)
# Refused before anything was posted; after fatal_error/internal_error Slack
# says part of the operation may have succeeded.
UNPROCESSED_ERRORS = frozenset({"ratelimited", "service_unavailable"})


class SlackSettings(HTTPSettings):
    api_url: str = "https://slack.com/api/"
    bot_token: SecretStr


class PostMessageInput(ActionInput):
    channel: str = Field(min_length=1, description="channel id (C…) or name (#soc)")
    text: str = Field(min_length=1, max_length=40000, description="Slack mrkdwn")
    thread_ts: str | None = Field(None, description="reply in this thread")


class PostMessageOutput(ActionOutput):
    channel: str
    ts: str


class Slack(HTTPConnector[SlackSettings]):
    """Slack Web API (chat.postMessage)."""

    name = "slack"
    title = "Slack"
    Settings = SlackSettings
    base_url_setting: ClassVar[str] = "api_url"

    @classmethod
    def env_name(cls, field_name: str) -> str:
        if field_name == "bot_token":
            return "SLACK_BOT_TOKEN"
        if field_name == "api_url":
            return "RUNBOOK_SLACK_API_URL"
        return f"RUNBOOK_SLACK_{field_name.upper()}"

    def make_auth(self) -> Auth:
        return HeaderAuth("Authorization", self.cfg.bot_token, prefix="Bearer ")

    def plan_post_message(
        self, args: PostMessageInput, ctx: ActionContext | None
    ) -> PlannedRequest:
        body: dict[str, str] = {"channel": args.channel.removeprefix("#"), "text": args.text}
        if args.thread_ts:
            body["thread_ts"] = args.thread_ts
        return PlannedRequest("POST", "chat.postMessage", json=body)

    @action(input=PostMessageInput, output=PostMessageOutput, mutating=True, idempotent=False)
    async def post_message(self, ctx: ActionContext, args: PostMessageInput) -> PostMessageOutput:
        """Post a message to a channel (or a thread)."""
        data = await self.send(self.plan_post_message(args, ctx), ctx)
        with self.reading("POST chat.postMessage"):
            if data.get("ok"):
                return PostMessageOutput(channel=str(data["channel"]), ts=str(data["ts"]))
            error = str(data.get("error") or "unknown_error")
        if error in AUTH_ERRORS:
            raise AuthenticationError(
                f"authentication failed for slack: {error} (chat.postMessage)", connector=self.name
            )
        if error in RETRYABLE_ERRORS:
            raise RetryableError(
                f"slack: chat.postMessage failed: {error}",
                connector=self.name,
                no_effect=error in UNPROCESSED_ERRORS,
            )
        raise ConnectorError(f"slack: chat.postMessage failed: {error}", connector=self.name)
