"""Slack as a feature of the service: the chat adapter, group resolver and ``/slack/events``.

Life cycle (see :class:`bot.service.Extension`):

* ``prepare`` — before the engine exists: installs :class:`SlackChat` as the
  service's chat and :class:`SlackGroups` for ``slack:`` identities, and asks
  Slack who we are (``auth.test``: the workspace and the bot user). A token
  Slack refuses stops the service; Slack being unreachable does not (it is
  asked again in the background, and requests are answered "not connected"
  until then unless ``RUNBOOK_SLACK_TEAM_ID`` names the workspace).
* ``start`` — after the engine restored its runs: follows the engine's
  records for status messages, posts waiting gates that have no message yet,
  and starts answering requests.
* ``stop`` — stops answering and lets background work finish; ``close``
  (after the engine stopped) ends the status updates and the HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from slack_bolt.authorization import AuthorizeResult
from starlette.routing import BaseRoute

from bot.chat.slack.api import AUTH_CODES, SlackAPI
from bot.chat.slack.app import build_bolt_app, events_route
from bot.chat.slack.chat import SlackChat
from bot.chat.slack.groups import SlackGroups
from bot.chat.slack.interactions import Interactions
from bot.chat.slack.replies import Replier
from bot.chat.slack.slash import SlashCommands
from bot.errors import ChatError, ConfigError, RunbookBotError
from bot.redact import REDACTOR
from bot.runbook.model import ApprovalStep

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.engine.engine import Engine
    from bot.engine.state import RunState
    from bot.service import Service

log = logging.getLogger("runbook.slack")

RECONNECT_EVERY = 30.0


class SlackExtension:
    """Everything Slack, as one :class:`bot.service.Extension`."""

    name = "slack"

    def __init__(
        self,
        settings: Settings,
        *,
        status_interval: float = 1.0,
        group_ttl: float = 300.0,
        api: SlackAPI | None = None,
    ) -> None:
        if settings.slack_bot_token is None or settings.slack_signing_secret is None:
            raise ConfigError("Slack needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET")
        token = settings.slack_bot_token.get_secret_value()
        secret = settings.slack_signing_secret.get_secret_value()
        REDACTOR.add(token)
        REDACTOR.add(secret)
        self.settings = settings
        self.token = token
        self.api = api or SlackAPI(token, settings.slack_api_url)
        self.groups = SlackGroups(self.api, ttl=group_ttl)
        self.chat = SlackChat(self.api, self.groups, status_interval=status_interval)
        self.replier = Replier(self.api)
        self.expected_team = settings.slack_team_id
        self.team_id: str | None = settings.slack_team_id
        self.bot_user_id: str | None = None
        self.bot_id: str | None = None
        self.engine: Engine | None = None
        self.ready = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconnect: asyncio.Task[None] | None = None
        self.commands = SlashCommands(self.live_engine, self.replier, self.spawn)
        self.interactions = Interactions(self.live_engine, self.api, self.replier, self.spawn)
        self.bolt = build_bolt_app(
            signing_secret=secret,
            api_url=settings.slack_api_url,
            team=lambda: self.team_id,
            authorize=self._authorize,
            commands=self.commands,
            interactions=self.interactions,
            spawn=self.spawn,
        )
        self._route = events_route(self.bolt, secret)

    # -- the Extension protocol ------------------------------------------------------------

    async def prepare(self, service: Service) -> None:
        service.chat = self.chat
        service.groups.realms["slack"] = self.groups
        if not await self._connect():
            self._reconnect = asyncio.create_task(self._keep_connecting(), name="slack-connect")

    async def start(self, service: Service) -> None:
        engine = service.engine
        assert engine is not None
        self.engine = engine
        self.chat.attach(engine)

        def record(run: RunState, sid: str, ref: dict[str, Any]) -> None:
            engine.record_now(run, "chat.posted", step=sid, data={"purpose": "gate", **ref})

        self._warn_channelless(engine)
        posted = await self.chat.post_missing_gates(engine, record)
        if posted:
            log.info("posted %d waiting approval(s) that had no Slack message", posted)
        self.ready = True
        log.info(
            "Slack is on: workspace %s, bot user %s, requests at POST /slack/events",
            self.team_id or "unknown yet",
            self.bot_user_id or "unknown yet",
        )

    @staticmethod
    def _warn_channelless(engine: Engine) -> None:
        for name in engine.catalog.names():
            book = engine.catalog.get(name).runbook
            if book.channel is not None:
                continue
            asks = [
                s.id
                for s in book.steps
                if isinstance(s, ApprovalStep) and s.approval.channel is None
            ]
            if asks:
                log.warning(
                    "runbook %s has no channel: its approvals (%s) reach Slack only for runs "
                    "started with /runbook (in the channel it was typed in); decide the others "
                    "with the API or the terminal",
                    name,
                    ", ".join(asks),
                )

    async def stop(self) -> None:
        """Stop answering; let background work (decisions, starts) finish."""
        self.ready = False
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect
        await self.drain(grace=10.0)

    async def close(self) -> None:
        """After the engine stopped: final status updates, then the HTTP client."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.chat.idle(), 5.0)
        await self.chat.close()
        await self.api.aclose()

    def routes(self) -> list[BaseRoute]:
        return [self._route]

    def health(self) -> dict[str, Any]:
        return {
            "ok": True,
            "connected": self.bot_user_id is not None,
            "team_id": self.team_id,
            "background_tasks": len(self._tasks),
            "rate_limited": self.api.rate_limited,
        }

    # -- helpers ---------------------------------------------------------------------------

    def live_engine(self) -> Engine | None:
        """The engine once requests may be served, else None."""
        return self.engine if self.ready else None

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run work after the acknowledgement, tracked so shutdown can wait for it."""
        task = asyncio.create_task(self._guarded(coro, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guarded(coro: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Slack background task %s failed", name)

    async def drain(self, grace: float | None = None) -> None:
        """Wait for background work to finish; after ``grace`` seconds, cancel the rest."""
        while self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            if pending and grace is not None:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                return

    def _authorize(self) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=None,
            team_id=self.team_id,
            bot_token=self.token,
            bot_user_id=self.bot_user_id,
            bot_id=self.bot_id,
        )

    async def _connect(self) -> bool:
        try:
            who = await self.api.call("auth.test")
        except ChatError as exc:
            if exc.code in AUTH_CODES:
                raise ConfigError(f"Slack refused SLACK_BOT_TOKEN ({exc.code})") from exc
            log.error("cannot reach Slack (%s); retrying every %.0fs", exc, RECONNECT_EVERY)
            return False
        team = str(who.get("team_id") or "")
        if self.expected_team and team and team != self.expected_team:
            raise ConfigError(
                f"SLACK_BOT_TOKEN belongs to workspace {team}, not RUNBOOK_SLACK_TEAM_ID "
                f"{self.expected_team}"
            )
        self.team_id = self.expected_team or team or None
        self.bot_user_id = str(who.get("user_id") or "") or None
        self.bot_id = str(who.get("bot_id") or "") or None
        return True

    async def _keep_connecting(self) -> None:
        while True:
            await asyncio.sleep(RECONNECT_EVERY)
            try:
                if await self._connect():
                    log.info("connected to Slack workspace %s", self.team_id)
                    return
            except RunbookBotError as exc:
                log.error("Slack: %s", exc)
                return
