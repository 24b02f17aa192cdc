"""One HTTP client per connector instance, with the vendor's errors mapped once.

:class:`VendorHTTP` owns a single ``httpx.AsyncClient`` (explicit connect and
read timeouts, created on first use, closed by ``aclose()``), adds the
connector's credentials (:mod:`connectors.http_auth`), retries a request once
with a fresh OAuth2 token when the vendor answers 401, and turns every answer
into an :class:`~connectors.http_errors.Answer` or one of our errors through
:func:`~connectors.http_errors.check_response`.

httpx is imported inside the functions that send, never at module import:
loading and validating runbooks imports connector modules and must stay fast.
"""

from __future__ import annotations

import ipaddress
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from connectors.http_errors import (
    RETRY_AFTER,
    Answer,
    Exchange,
    RetryHint,
    check_response,
    transport_error,
)

if TYPE_CHECKING:
    import httpx

    from connectors.base import ActionContext
    from connectors.http_auth import Auth

MASK = "***"
MIN_SECRET = 4


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
    """Seconds to wait for a connection and for each read of the answer."""

    connect: float = 5.0
    read: float = 30.0


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
        timeouts: connect and read timeouts.
        hints: rate-limit headers to read on 429/5xx, in order.
        register_secret: called with every secret and token (process-wide redaction).
        clock: epoch seconds; tests inject their own.
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
        return urlsplit(self.url(path)).path or "/"

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
        try:
            response = await self.client().request(
                request.method,
                self.url(request.path),
                params=_params(request.params),
                json=request.json,
                data=dict(request.form) if request.form is not None else None,
                headers=headers,
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = transport_error(self.connector, request.method, path, exc)
            error.args = (self.mask(str(error)),)
            raise error from None
        return Exchange(
            connector=self.connector,
            method=request.method,
            path=path,
            status=response.status_code,
            headers=dict(response.headers.items()),
            text=response.text,
            credentialed=credentialed,
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
