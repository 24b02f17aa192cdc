"""``POST /slack/events``: slack-bolt's AsyncApp behind its Starlette adapter.

Every request passes, in order:

1. the request verification — Slack's v0 signature over
   ``v0:<timestamp>:<body>`` with the signing secret, and a timestamp at
   most 5 minutes old, checked before anything reads the body (and again by
   bolt); anything else is answered 401 and does nothing;
2. retries — a request carrying ``X-Slack-Retry-Num`` (Slack sending again
   what it believes went unanswered) is acknowledged with an empty 200 and
   ignored entirely: no decision, no start, no reply, no audit record.
   Whether the original arrived cannot be told reliably (the body of a retry
   may differ, and the original may have come before a restart), and dropping
   a retry is always safe: the person still sees the buttons and clicks again,
   while acting on it could count a click twice or audit a refusal twice;
3. de-duplication — a request whose exact body was handled in the last ten
   minutes is acknowledged and ignored in the same way;
4. the workspace check — once ``auth.test`` has named our workspace,
   payloads from another workspace are refused with a private answer (and a
   click on a live gate is audited); until then the signature alone admits
   a request (see :mod:`bot.chat.slack.feature`);
5. the listeners, which acknowledge at once and leave slow work to
   background tasks (``process_before_response``: the listener returns
   right after ``ack()``; nothing slow runs before the answer is sent).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from slack_bolt import BoltResponse
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltRequest
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.chat.slack.ids import FIELDS_VIEW, ActionId
from bot.chat.slack.interactions import Interactions
from bot.chat.slack.slash import SlashCommands
from bot.web.bodies import BadRequest, read_body

log = logging.getLogger("runbook.slack")

MAX_BODY = 1024 * 1024
APPROVAL_ACTIONS = re.compile("^(" + "|".join(a.value for a in ActionId) + ")$")
FOREIGN = "This Runbook Bot belongs to another Slack workspace; nothing was done."
OOPS = ":boom: Something went wrong on Runbook Bot's side (see its log); nothing was started."


class RecentRequests:
    """Digests of request bodies seen recently (bounded, expiring)."""

    def __init__(
        self, ttl: float = 600.0, size: int = 20_000, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.size = size
        self._now = now
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, body: str) -> bool:
        """True the first time a body is seen (within ``ttl``), False for repeats."""
        key = hashlib.sha256(body.encode()).hexdigest()
        now = self._now()
        while self._seen:
            _oldest, when = next(iter(self._seen.items()))
            if when > now - self.ttl and len(self._seen) < self.size:
                break
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


class _TokenNoticeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "token" not in record.getMessage().lower()


def payload_team(body: Mapping[str, Any]) -> set[str]:
    """Every workspace id a payload names (its team, and its user's team)."""
    teams: set[str] = set()
    if isinstance(body.get("team_id"), str):
        teams.add(body["team_id"])
    team = body.get("team")
    if isinstance(team, dict) and isinstance(team.get("id"), str):
        teams.add(team["id"])
    user = body.get("user")
    if isinstance(user, dict) and isinstance(user.get("team_id"), str):
        teams.add(user["team_id"])
    return teams


def is_retry(request: AsyncBoltRequest) -> bool:
    """Slack says this is a retry (``X-Slack-Retry-Num``, any value)."""
    return bool(request.headers.get("x-slack-retry-num"))


def kind_of(body: Mapping[str, Any]) -> str:
    """What a request is, for logs: its payload type, or ``slash_command``."""
    if body.get("command"):
        return "slash_command"
    if body.get("ssl_check"):
        return "ssl_check"
    return str(body.get("type") or "request")


def build_bolt_app(
    *,
    signing_secret: str,
    api_url: str,
    team: Callable[[], str | None],
    authorize: Callable[[], AuthorizeResult],
    commands: SlashCommands,
    interactions: Interactions,
    spawn: Callable[[Any, str], None],
) -> AsyncApp:
    """The bolt app with our middleware and listeners (see the module docstring)."""

    recent = RecentRequests()

    async def screen(
        req: AsyncBoltRequest, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        """After the signature check: drop retries and repeats, refuse other workspaces."""
        kind = kind_of(req.body)
        if kind in ("url_verification", "ssl_check"):  # harmless, and answered every time
            return await next()
        if is_retry(req):
            log.info("ignored a Slack retry of a %s (X-Slack-Retry-Num)", kind)
            return BoltResponse(status=200, body="")
        if not recent.first_time(req.raw_body):
            log.info("ignored a repeated Slack %s", kind)
            return BoltResponse(status=200, body="")
        ours = team()
        if ours is None:  # the workspace is not known yet: the signature admits it
            return await next()
        teams = payload_team(req.body)
        foreign = sorted(teams - {ours})
        if not foreign:
            return await next()
        log.warning("refused a Slack request from another workspace (%s)", ", ".join(foreign))
        if req.body.get("type") == "block_actions":
            spawn(interactions.refuse_foreign(req.body, foreign[0]), "slack-foreign")
            return BoltResponse(status=200, body="")
        return BoltResponse(status=200, body=FOREIGN)

    async def authorize_fn() -> AuthorizeResult:
        return authorize()

    bolt_log = logging.getLogger("runbook.slack.bolt")
    # bolt reads SLACK_BOT_TOKEN from os.environ itself and warns that our `authorize`
    # makes it unused; that is the point (the token comes from our settings).
    quiet = _TokenNoticeFilter()
    bolt_log.addFilter(quiet)
    try:
        app = AsyncApp(
            logger=bolt_log,
            signing_secret=signing_secret,
            authorize=authorize_fn,
            client=AsyncWebClient(base_url=api_url),
            before_authorize=screen,
            process_before_response=True,
            ignoring_self_events_enabled=False,
        )
    finally:
        bolt_log.removeFilter(quiet)

    @app.command(re.compile(r"^/"))
    async def slash(ack: AsyncAck, body: dict[str, Any]) -> None:
        try:
            answer = commands.answer(body).ack_args()
        except Exception:  # a bug must not leave the person without an answer
            log.exception("slash command %r failed", body.get("text"))
            answer = {"text": OOPS, "response_type": "ephemeral"}
        await ack(**answer)

    @app.action(APPROVAL_ACTIONS)
    async def click(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        spawn(interactions.click(body), "slack-click")

    @app.view(FIELDS_VIEW)
    async def submitted(ack: AsyncAck, body: dict[str, Any]) -> None:
        try:
            errors = interactions.submission(body)
        except Exception:
            log.exception("approval form submission failed")
            errors = None
        if errors:
            await ack(response_action="errors", errors=errors)
        else:
            await ack()

    return app


def signed(verifier: SignatureVerifier, body: bytes, request: Request) -> bool:
    """Slack's v0 signature is right and its timestamp at most 5 minutes off."""
    try:
        return verifier.is_valid(
            body,
            request.headers.get("x-slack-request-timestamp", ""),
            request.headers.get("x-slack-signature", ""),
        )
    except (ValueError, TypeError):  # no or bad timestamp; a body that is not UTF-8
        return False


def events_route(app: AsyncApp, signing_secret: str) -> Route:
    """The Starlette route for ``POST /slack/events``.

    The signature is checked here first, before anything reads the body (bolt
    parses a body before its own check, and would answer a malformed unsigned
    one with a 500 instead of a 401); bolt then checks it again.
    """
    handler = AsyncSlackRequestHandler(app)
    verifier = SignatureVerifier(signing_secret)

    async def endpoint(request: Request) -> Response:
        try:  # bounded while reading: a chunked body is never buffered past the limit
            body = await read_body(request, MAX_BODY)
        except BadRequest as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        request._body = body  # Starlette's cache: bolt reads the same bytes
        if not signed(verifier, body, request):
            return JSONResponse({"error": "invalid request signature"}, status_code=401)
        try:
            return await handler.handle(request)
        except (UnicodeDecodeError, ValueError):
            log.warning("a signed Slack request with a body that cannot be read was refused")
            return JSONResponse({"error": "malformed request body"}, status_code=400)

    return Route("/slack/events", endpoint, methods=["POST"])
