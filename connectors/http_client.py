"""One HTTP client per connector instance, with the vendor's errors mapped once.

:class:`VendorHTTP` owns a single ``httpx.AsyncClient`` (explicit connect and
read timeouts, created on first use, closed by ``aclose()``), adds the
connector's credentials (:mod:`connectors.http_auth`), retries a request once
with a fresh OAuth2 token when the vendor answers 401, and turns every answer
into an :class:`~connectors.http_errors.Answer` or one of our errors through
:func:`~connectors.http_errors.check_response`.

Two bounds hold whatever the vendor does: a whole request (connecting,
sending, every byte of the answer) ends by ``Timeouts.total``, since a read
timeout alone never trips on an answer that trickles in a byte at a time; and
an answer is streamed and given up past ``max_answer_bytes`` without reading
the rest, so a huge body cannot take the process's memory.

httpx is imported inside the functions that send, never at module import:
loading and validating runbooks imports connector modules and must stay fast.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bot.errors import ConnectorError, RetryableError
from connectors.http_errors import (
    RETRY_AFTER,
    Answer,
    Exchange,
    RetryHint,
    cannot_send,
    check_response,
    default_setting,
    describe_request,
    transport_error,
)

if TYPE_CHECKING:
    import httpx

    from connectors.base import ActionContext
    from connectors.http_auth import Auth

MASK = "***"
MIN_SECRET = 4
MIB = 1024 * 1024
DEFAULT_MAX_ANSWER_BYTES = 16 * MIB


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """A request to a vendor, before it is sent (also what a dry run shows).

    Attributes:
        method: HTTP method.
        path: appended to the base URL; an absolute ``http(s)://`` URL is used as is.
        params: query parameters.
        json: JSON body.
        form: form body (``application/x-www-form-urlencoded``).
        headers: extra headers (never secrets: credentials come from ``auth``).
        accept: statuses besides 2xx returned as an answer instead of raised
            (404 for look-ups whose "not found" is an outcome).
        auth: whether to add the connector's credentials.
        want_json: whether a body that is not JSON is an error.
    """

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    form: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None
    accept: frozenset[int] = frozenset()
    auth: bool = True
    want_json: bool = True


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait for a connection, for each read of the answer, and for all of it."""

    connect: float = 5.0
    read: float = 30.0
    total: float = 60.0


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class VendorHTTP:
    """A connector's HTTP client: base URL, credentials, timeouts, error mapping.

    Attributes:
        connector: the connector's name, used in every error message.
        base_url: what request paths are appended to.
        auth: how requests are authenticated (None: the body carries the credential).
        timeouts: connect, read and whole-request timeouts.
        hints: rate-limit headers to read on 429/5xx, in order.
        register_secret: called with every secret and token (process-wide redaction).
        clock: epoch seconds; tests inject their own.
        max_answer_bytes: the largest answer body read (after decompression).
        setting: a setting's field name → its environment variable, for hints
            in messages (``"verify_tls"`` → ``RUNBOOK_<C>_VERIFY_TLS``).
    """

    connector: str
    base_url: str
    auth: Auth | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    hints: Sequence[RetryHint] = (RETRY_AFTER,)
    register_secret: Callable[[str], None] = lambda _value: None
    user_agent: str = "runbook-bot"
    verify_tls: bool = True
    ca_bundle: str | None = None
    clock: Callable[[], float] = time.time
    secrets: set[str] = field(default_factory=set)
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    setting: Callable[[str], str] | None = None
    _client: httpx.AsyncClient | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for value in list(self.secrets):
            self.remember_secret(value)

    # -- secrets ---------------------------------------------------------

    def remember_secret(self, value: str) -> None:
        """Mask ``value`` in our messages and register it for process-wide redaction."""
        if len(value) < MIN_SECRET:
            return
        self.secrets.add(value)
        self.register_secret(value)

    def mask(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def mask_value(self, value: Any) -> Any:
        """``value`` with every known secret masked, inside dicts and lists too."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, Mapping):
            return {key: self.mask_value(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.mask_value(item) for item in value]
        return value

    # -- URLs ------------------------------------------------------------

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def path_of(self, path: str) -> str:
        """The path part of a request target, for messages (no host, no query)."""
        try:
            return urlsplit(self.url(path)).path or "/"
        except ValueError:  # not a URL at all ("http://[::1"): said when sending
            return path

    def setting_name(self, field_name: str) -> str:
        """The environment variable of one of our settings, for hints in messages."""
        return (self.setting or default_setting(self.connector))(field_name)

    # -- sending ---------------------------------------------------------

    def client(self) -> httpx.AsyncClient:
        """The shared client, created on first use."""
        if self._client is None:
            import httpx

            verify: ssl.SSLContext | bool = self.verify_tls
            if self.verify_tls and self.ca_bundle:
                verify = ssl.create_default_context(cafile=self.ca_bundle)
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(
                    connect=self.timeouts.connect,
                    read=self.timeouts.read,
                    write=self.timeouts.read,
                    pool=self.timeouts.connect,
                ),
                headers={"User-Agent": self.user_agent, "Accept": "application/json"},
                verify=verify,
                follow_redirects=False,
                # Loopback fakes must never be reached through a proxy from the environment.
                trust_env=not is_loopback(self.base_url),
            )
        return self._client

    async def send(self, request: PlannedRequest, ctx: ActionContext | None = None) -> Answer:
        """Send ``request`` and return the accepted answer.

        A 401 to a request carrying an OAuth2 token fetches a new token and
        sends the request once more.

        Raises:
            RetryableError: timeouts, connection errors, 429 and 5xx.
            AuthenticationError: the vendor refused our credentials.
            ConnectorError: any other refusal, or an answer we cannot read.
        """
        credentialed = request.auth and self.auth is not None
        for attempt in (1, 2):
            headers = dict(request.headers or {})
            auth_headers: dict[str, str] = {}
            if credentialed and self.auth is not None:
                auth_headers = await self.auth.headers(self)
                headers.update(auth_headers)
                if ctx is not None:
                    for value in auth_headers.values():
                        ctx.register_secret(value.split(" ")[-1])
            exchange = await self._exchange(request, headers, credentialed)
            if (
                exchange.status == 401
                and credentialed
                and self.auth is not None
                and self.auth.refreshable
                and attempt == 1
            ):
                self.auth.invalidate(auth_headers)
                continue
            return check_response(
                exchange,
                accept=request.accept,
                hints=self.hints,
                now=self.clock(),
                mask=self.mask,
                want_json=request.want_json,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exchange(
        self, request: PlannedRequest, headers: dict[str, str], credentialed: bool
    ) -> Exchange:
        import httpx

        path = self.path_of(request.path)
        where = describe_request(request.method, path)
        url = self._checked_url(request.path, where)
        total = self.timeouts.total
        try:
            async with asyncio.timeout(total):
                async with self.client().stream(
                    request.method,
                    url,
                    params=_params(request.params),
                    json=request.json,
                    data=dict(request.form) if request.form is not None else None,
                    headers=headers,
                ) as response:
                    text = await self._read_text(response, where)
        except TimeoutError:
            raise RetryableError(
                f"{self.connector}: timed out after {total:g}s on {where} "
                f"(the whole request, however slowly the answer came; "
                f"{self.setting_name('total_timeout')})",
                connector=self.connector,
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = transport_error(
                self.connector, request.method, path, exc, setting=self.setting_name
            )
            error.args = (self.mask(str(error)),)
            raise error from None
        except ExceptionGroup as group:
            # anyio's connect raises a group for what it cannot even try (a port
            # past 65535); a group of OS errors is a connection that failed.
            if group.subgroup(OSError) is not None:
                raise RetryableError(
                    self.mask(
                        f"{self.connector}: connection failed on {where}: {_leaves(group)[0]}"
                    ),
                    connector=self.connector,
                    no_effect=True,  # raised while connecting: nothing was sent
                ) from None
            error = cannot_send(self.connector, where, _leaves(group)[0])
            error.args = (self.mask(str(error)),)
            raise error from None
        return Exchange(
            connector=self.connector,
            method=request.method,
            path=path,
            status=response.status_code,
            headers=dict(response.headers.items()),
            text=text,
            credentialed=credentialed,
        )

    def _checked_url(self, path: str, where: str) -> str:
        """The absolute URL of ``path``, or a clear error when it cannot be one."""
        import httpx

        url = self.url(path)
        try:
            parts = urlsplit(url)
            _ = parts.port  # "Port out of range 0-65535", "Port could not be cast ..."
            httpx.URL(url)
        except (ValueError, httpx.InvalidURL) as exc:
            error = cannot_send(self.connector, where, exc)
            error.args = (self.mask(str(error)),)
            raise error from None
        return url

    async def _read_text(self, response: httpx.Response, where: str) -> str:
        """The answer's body as text, read in chunks up to ``max_answer_bytes``."""
        limit = self.max_answer_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(response.status_code, where)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                # Leaving the stream closes the connection: the rest is never read.
                raise self._too_large(response.status_code, where)
            chunks.append(chunk)
        body = b"".join(chunks)
        try:
            return body.decode(response.encoding or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return body.decode("utf-8", errors="replace")

    def _too_large(self, status: int, where: str) -> ConnectorError:
        return ConnectorError(
            f"{self.connector}: answered more than {_mib(self.max_answer_bytes)} MiB "
            f"(HTTP {status} on {where}); the rest was not read "
            f"(the limit is {self.setting_name('max_answer_mib')})",
            connector=self.connector,
            status=status,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- dry runs --------------------------------------------------------

    def describe(self, request: PlannedRequest) -> dict[str, Any]:
        """``{method, url, params?, body?, auth?}`` with every secret masked."""
        shown: dict[str, Any] = {"method": request.method, "url": self.url(request.path)}
        if request.params:
            shown["params"] = self.mask_value(dict(request.params))
        if request.json is not None:
            shown["body"] = self.mask_value(request.json)
        elif request.form is not None:
            shown["body"] = self.mask_value(dict(request.form))
        if request.auth and self.auth is not None:
            shown["auth"] = self.auth.describe()
        return shown


def _params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {key: value for key, value in params.items() if value is not None}


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found or [group]


def _mib(size: int) -> str:
    return f"{size / MIB:g}"
