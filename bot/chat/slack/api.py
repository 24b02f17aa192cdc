"""The Slack Web API as the chat adapter uses it: one shared session, rate limits honoured.

Every call goes through :meth:`SlackAPI.call`, which translates Slack's
answers once, here, into :class:`~bot.errors.ChatError` (with Slack's error
code in ``code``). A 429 sets a per-method "not before" time from its
``Retry-After`` that every caller of that method respects, then the call is
tried again; these waits happen in background tasks, never while Slack waits
for an acknowledgement. Connection errors and 5xx answers are retried a few
times with backoff.

The HTTP client is aiohttp (which slack-bolt's AsyncApp requires anyway): one
``ClientSession`` per process, created on first use. Under load it costs a
fraction of the CPU per call that httpx does, and every Slack call shares the
event loop with the acknowledgements Slack is waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.errors import ChatError

log = logging.getLogger("runbook.slack.api")

JSON_PREFIXES = ("chat.", "views.")
RETRYABLE_CODES = frozenset({"ratelimited", "service_unavailable", "internal_error", "fatal_error"})
AUTH_CODES = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
HINTS = {
    "channel_not_found": "the channel does not exist or the bot cannot see it "
    "(check the runbook's channel, and invite the bot if it is private)",
    "not_in_channel": "the bot is not a member of the channel (invite it: /invite @Runbook Bot)",
    "is_archived": "the channel is archived",
    "missing_scope": "the Slack app lacks a permission scope (see slack-app-manifest.yaml)",
    "invalid_auth": "Slack refused the bot token (check SLACK_BOT_TOKEN)",
    "not_authed": "no bot token was sent (check SLACK_BOT_TOKEN)",
    "token_revoked": "the bot token was revoked (reinstall the app, update SLACK_BOT_TOKEN)",
    "msg_too_long": "the message is too long for Slack",
    "expired_trigger_id": "the click is more than 3 seconds old (Slack's limit for a modal)",
    "ratelimited": "Slack kept rate-limiting the call",
}

Sleep = Callable[[float], Awaitable[None]]


class SlackAPI:
    """A small async Slack Web API client (aiohttp).

    Args:
        token: the bot token (``xoxb-…``).
        base_url: the Web API base (``https://slack.com/api/``; a fake in tests).
        max_rate_limit_retries: 429 answers tolerated per call.
        max_retry_after: the longest single wait honoured (seconds).
        sleep: how to wait (tests may pass a fast one).
    """

    def __init__(
        self,
        token: str,
        base_url: str,
        *,
        max_rate_limit_retries: int = 6,
        max_retry_after: float = 120.0,
        max_transport_retries: int = 2,
        timeout: float = 15.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.max_rate_limit_retries = max_rate_limit_retries
        self.max_retry_after = max_retry_after
        self.max_transport_retries = max_transport_retries
        self._sleep = sleep
        self._token = token
        self._not_before: dict[str, float] = {}
        self.rate_limited = 0  # 429 answers seen, for health and tests
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=5.0)
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self, grace: float = 5.0) -> None:
        """Close the client once calls in flight are done (or ``grace`` seconds passed)."""
        self._closed = True
        if self._inflight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=50),
                headers={"User-Agent": "runbook-bot"},
            )
        return self._session

    async def call(
        self, method: str, args: Mapping[str, Any] | None = None, *, patient: bool = True
    ) -> dict[str, Any]:
        """Call a Web API method; the answer's fields on success.

        ``patient=False`` tries once: a 429, a 5xx or a connection error is
        raised at once instead of waited out (for questions whose answer may
        come later, such as ``auth.test`` at start).

        Raises:
            ChatError: Slack said ``ok: false`` (``code`` is its error), kept
                rate-limiting, or could not be reached (``retryable``).
        """
        async with self._tracked(method):
            return await self._call(method, args, patient)

    @contextlib.asynccontextmanager
    async def _tracked(self, what: str) -> AsyncIterator[None]:
        if self._closed:
            raise ChatError(f"Slack {what}: the Slack client is shut down", code="closed")
        self._inflight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    async def _call(
        self, method: str, args: Mapping[str, Any] | None, patient: bool = True
    ) -> dict[str, Any]:
        payload = {k: v for k, v in (args or {}).items() if v is not None}
        limited = transport_failures = 0
        max_limited = self.max_rate_limit_retries if patient else 0
        max_transport = self.max_transport_retries if patient else 0
        while True:
            await self._respect_limit(method)
            try:
                response = await self._send(method, payload)
            except (aiohttp.ClientError, TimeoutError) as exc:
                transport_failures += 1
                if transport_failures > max_transport:
                    raise ChatError(
                        f"Slack {method}: cannot reach Slack ({type(exc).__name__}: {exc})",
                        code="unreachable",
                        retryable=True,
                    ) from exc
                await self._sleep(0.5 * 2 ** (transport_failures - 1))
                continue
            if response.status == 429:
                limited += 1
                self.rate_limited += 1
                wait = _retry_after(response.retry_after)
                wait = min(wait, self.max_retry_after)
                if limited > max_limited:
                    raise ChatError(
                        describe(method, "ratelimited"), code="ratelimited", retryable=True
                    )
                log.warning("Slack %s rate-limited; retrying in %.0fs", method, wait)
                loop = asyncio.get_running_loop()
                self._not_before[method] = max(
                    self._not_before.get(method, 0.0), loop.time() + wait
                )
                continue
            if response.status >= 500:
                transport_failures += 1
                if transport_failures > max_transport:
                    raise ChatError(
                        f"Slack {method}: HTTP {response.status}",
                        code="service_unavailable",
                        retryable=True,
                    )
                await self._sleep(0.5 * 2 ** (transport_failures - 1))
                continue
            return _answer(method, response)

    async def post_response(self, url: str, body: Mapping[str, Any]) -> None:
        """Post to a ``response_url`` (a private answer to a slash command or click).

        Raises:
            ChatError: the URL is not Slack's, or the post failed.
        """
        if not self.trusts_response_url(url):
            raise ChatError(
                f"refusing to post to an unexpected response_url {url!r}", code="bad_response_url"
            )
        try:
            async with (
                self._tracked("response_url"),
                self._http().post(url, json=dict(body)) as response,
            ):
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChatError(
                f"Slack response_url: {exc}", code="unreachable", retryable=True
            ) from exc
        if status >= 400:
            raise ChatError(f"Slack response_url: HTTP {status}", code=f"http_{status}")

    def trusts_response_url(self, url: str) -> bool:
        """Slack's hooks host, or the host of the configured API (a fake in tests)."""
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname == "hooks.slack.com":
            return True
        api = urlsplit(self.base_url)
        return (parts.scheme, parts.netloc) == (api.scheme, api.netloc) and api.hostname not in (
            "slack.com",
            "www.slack.com",
        )

    async def _respect_limit(self, method: str) -> None:
        until = self._not_before.get(method)
        if until is None:
            return
        wait = until - asyncio.get_running_loop().time()
        if wait > 0:
            await self._sleep(wait)

    async def _send(self, method: str, payload: dict[str, Any]) -> Reply:
        url = self.base_url + method
        headers = {"Authorization": f"Bearer {self._token}"}
        if method.startswith(JSON_PREFIXES):
            sending = self._http().post(url, json=payload, headers=headers)
        else:
            form = {k: v if isinstance(v, str) else _form_value(v) for k, v in payload.items()}
            sending = self._http().post(url, data=form, headers=headers)
        async with sending as response:
            return Reply(
                response.status, response.headers.get("Retry-After"), await response.read()
            )


@dataclass(frozen=True, slots=True)
class Reply:
    """What Slack answered, read in full."""

    status: int
    retry_after: str | None
    body: bytes


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _retry_after(header: str | None) -> float:
    try:
        return max(0.0, float(header)) if header is not None else 1.0
    except ValueError:
        return 1.0


def _answer(method: str, response: Reply) -> dict[str, Any]:
    if response.status == 404:  # no such endpoint: Slack's own answer is unknown_method
        raise ChatError(f"Slack {method}: HTTP 404 (no such method)", code="unknown_method")
    try:
        data = json.loads(response.body)
    except ValueError:
        raise ChatError(
            f"Slack {method}: HTTP {response.status} with a body that is not JSON",
            code="invalid_response",
            retryable=True,
        ) from None
    if not isinstance(data, dict):
        raise ChatError(f"Slack {method}: unexpected answer", code="invalid_response")
    if not data.get("ok"):
        error = str(data.get("error") or f"http_{response.status}")
        raise ChatError(describe(method, error), code=error, retryable=error in RETRYABLE_CODES)
    return data


def describe(method: str, error: str, where: str | None = None) -> str:
    """A one-line explanation of a Slack error code."""
    place = f" ({where})" if where else ""
    hint = HINTS.get(error)
    return f"Slack {method}{place}: {error}" + (f" — {hint}" if hint else "")
