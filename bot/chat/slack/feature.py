"""Slack as a feature of the service: the chat adapter, group resolver and ``/slack/events``.

Life cycle (see :class:`bot.service.Extension`):

* ``preflight`` — ``runbook serve`` only, before it listens: asks Slack who
  we are (``auth.test``) once; a token Slack refuses (``invalid_auth``,
  ``not_authed``, ``account_inactive``, ``token_revoked``, ``token_expired``)
  or one of another workspace than ``RUNBOOK_SLACK_TEAM_ID`` stops the start
  with one line and exit status 1.
* ``prepare`` — before the engine exists: installs :class:`SlackChat` as the
  service's chat and :class:`SlackGroups` for ``slack:`` identities, and uses
  the preflight's answer (or asks ``auth.test`` itself). ``auth.test`` only
  tells us the workspace and the bot user: when it fails for another reason
  (unreachable, 5xx, 429, ``unknown_method``) or answers without a
  ``team_id``, Slack stays on. Signed requests are served — the signature
  is what proves they come from Slack — and the workspace check is skipped
  (logged once) until a ``team_id`` is known; ``auth.test`` is asked again in
  the background with backoff, and sooner when requests arrive.
  ``RUNBOOK_SLACK_TEAM_ID`` pins the workspace from the start.
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
import time
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
from bot.runbook.model import ApprovalStep, NotifyStep

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.engine.engine import Engine
    from bot.engine.state import RunState
    from bot.service import Service

log = logging.getLogger("runbook.slack")

#: auth.test again after a failure: first wait, then doubling up to the last.
RECONNECT_FIRST = 2.0
RECONNECT_MAX = 60.0
#: auth.test answered, but without a team id: ask again this rarely.
RECHECK_INCOMPLETE = 300.0
#: A request while the workspace is unknown asks auth.test again, at most this often.
RECHECK_ON_REQUEST = 30.0


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
        self.connected = False  # auth.test answered ok
        self.auth_error: str | None = None  # its last error code, while it fails
        self.engine: Engine | None = None
        self.ready = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconnect: asyncio.Task[None] | None = None
        self._who: dict[str, Any] | None = None  # the preflight's auth.test answer
        self._wake: asyncio.Event | None = None
        self._last_attempt = float("-inf")
        self._warned_no_team = False
        self.commands = SlashCommands(self.live_engine, self.replier, self.spawn)
        self.interactions = Interactions(self.live_engine, self.api, self.replier, self.spawn)
        self.bolt = build_bolt_app(
            signing_secret=secret,
            api_url=settings.slack_api_url,
            team=self._team_for_request,
            authorize=self._authorize,
            commands=self.commands,
            interactions=self.interactions,
            spawn=self.spawn,
        )
        self._route = events_route(self.bolt, secret)

    # -- the Extension protocol ------------------------------------------------------------

    async def preflight(self) -> None:
        """Check the token before serving (``runbook serve``), with a client of its own.

        Raises:
            ConfigError: Slack refused the token, or it belongs to another
                workspace than ``RUNBOOK_SLACK_TEAM_ID``. Anything else (Slack
                unreachable, 5xx, 429, ``unknown_method``) is left to ``prepare``.
        """
        api = SlackAPI(self.token, self.settings.slack_api_url, timeout=10.0)
        self._last_attempt = time.monotonic()
        try:
            who = await api.call("auth.test", patient=False)
        except ChatError as exc:
            if exc.code in AUTH_CODES:
                raise ConfigError(_refused(exc.code)) from None
            return
        finally:
            await api.aclose()
        self._check_team(who)
        self._who = who

    async def prepare(self, service: Service) -> None:
        service.chat = self.chat
        service.groups.realms["slack"] = self.groups
        self._wake = asyncio.Event()
        if self._who is not None:
            self._apply(self._who)
        else:
            await self._connect()
        if self.team_id is None or not self.connected:
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
            self.team_id or "unknown yet (no workspace check until auth.test names it)",
            self.bot_user_id or "unknown yet",
        )

    @staticmethod
    def _warn_channelless(engine: Engine) -> None:
        """SPEC 1.1: a runbook without ``channel`` keeps its gates and notices out of Slack."""
        for name in engine.catalog.names():
            book = engine.catalog.get(name).runbook
            if book.channel is not None:
                continue
            asks = [
                s.id
                for s in book.steps
                if isinstance(s, ApprovalStep) and s.approval.channel is None
            ]
            tells = [
                s.id for s in book.steps if isinstance(s, NotifyStep) and s.notify.channel is None
            ]
            if not asks and not tells:
                continue
            what = []
            if asks:
                what.append(
                    f"approvals ({', '.join(asks)}) are decided with the API or the terminal"
                )
            if tells:
                what.append(f"notices ({', '.join(tells)}) go to the log")
            log.warning(
                "runbook %s has no channel, so its runs have no Slack thread: its %s only, "
                "even for runs started with /runbook (give it a channel to use Slack)",
                name,
                " and its ".join(what),
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
        """Slack's state for ``/healthz``; Slack trouble never makes the service unready.

        ``state``: ``connected`` (auth.test answered with the workspace),
        ``no_workspace`` (it answered without a team id: requests are served
        without the workspace check), ``unreachable`` (it fails; asked again),
        ``refused`` (Slack refused the token while running).
        """
        if self.auth_error in AUTH_CODES:
            state = "refused"
        elif not self.connected:
            state = "unreachable"
        elif self.team_id is None:
            state = "no_workspace"
        else:
            state = "connected"
        return {
            "ok": True,
            "state": state,
            "connected": self.connected,
            "team_id": self.team_id,
            "bot_user_id": self.bot_user_id,
            "workspace_check": self.team_id is not None,
            "last_error": self.auth_error,
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

    def _team_for_request(self) -> str | None:
        """The workspace a request must come from; None skips the check (and asks again)."""
        team = self.team_id
        if team is None:
            if not self._warned_no_team:
                self._warned_no_team = True
                log.warning(
                    "Slack: the workspace is not known yet (auth.test has not named it); "
                    "serving signed requests without the workspace check until it does"
                )
            now = time.monotonic()
            if self._wake is not None and now - self._last_attempt >= RECHECK_ON_REQUEST:
                self._last_attempt = now
                self._wake.set()
        return team

    def _check_team(self, who: dict[str, Any]) -> None:
        team = str(who.get("team_id") or "")
        if self.expected_team and team and team != self.expected_team:
            raise ConfigError(
                f"SLACK_BOT_TOKEN belongs to workspace {team}, not RUNBOOK_SLACK_TEAM_ID "
                f"{self.expected_team}"
            )

    def _apply(self, who: dict[str, Any]) -> None:
        self._check_team(who)
        team = str(who.get("team_id") or "") or None
        self.team_id = self.expected_team or team
        self.bot_user_id = str(who.get("user_id") or "") or self.bot_user_id
        self.bot_id = str(who.get("bot_id") or "") or self.bot_id
        self.connected = True
        self.auth_error = None
        if self.team_id is None and not self._warned_no_team:
            self._warned_no_team = True
            log.warning(
                "Slack auth.test answered without a team_id; serving signed requests without "
                "the workspace check (set RUNBOOK_SLACK_TEAM_ID to pin the workspace)"
            )

    async def _connect(self) -> None:
        """Ask auth.test once (no waiting on 429s or retries: the caller asks again).

        Raises:
            ConfigError: Slack refused the token, or it is another workspace's.
        """
        self._last_attempt = time.monotonic()
        try:
            who = await self.api.call("auth.test", patient=False)
        except ChatError as exc:
            again = self.auth_error == (exc.code or "error")
            self.auth_error = exc.code or "error"
            if exc.code in AUTH_CODES:
                raise ConfigError(_refused(exc.code)) from None
            log.log(
                logging.DEBUG if again else logging.WARNING,
                "Slack auth.test failed (%s); Slack stays on and it is asked again in the "
                "background",
                exc,
            )
            return
        self._apply(who)

    async def _keep_connecting(self) -> None:
        """Ask auth.test again until it names the workspace (woken early by requests)."""
        assert self._wake is not None
        delay = RECONNECT_FIRST
        while self.team_id is None or not self.connected:
            wait = delay if not self.connected else RECHECK_INCOMPLETE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
            try:
                await self._connect()
            except RunbookBotError as exc:
                log.error("Slack: %s", exc)
                return
            if not self.connected:
                delay = min(delay * 2, RECONNECT_MAX)
        log.info("connected to Slack workspace %s", self.team_id)


def _refused(code: str | None) -> str:
    return (
        f"Slack refused SLACK_BOT_TOKEN ({code}): check the token "
        "(the app's Bot User OAuth Token, xoxb-...)"
    )
