"""How HTTP connectors prove who they are: a fixed header, HTTP Basic, or OAuth2.

:class:`ClientCredentials` is the OAuth2 client-credentials flow used by
CrowdStrike and Microsoft Defender: the token is fetched on first use, kept
in memory only (never written anywhere), registered for redaction, reused
until shortly before it expires, and fetched again when the vendor answers
401 to a token it had accepted (once per request; see ``VendorHTTP.send``).

Nothing here imports httpx; requests go through the connector's
:class:`~connectors.http_client.VendorHTTP`.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pydantic import SecretStr

from bot.errors import AuthenticationError
from connectors.http_errors import expect_shape, vendor_message

if TYPE_CHECKING:
    from connectors.http_client import VendorHTTP

DEFAULT_TOKEN_LIFETIME = 1799.0
MAX_REFRESH_MARGIN = 300.0


class Auth(Protocol):
    """Adds credentials to a request."""

    refreshable: bool

    async def headers(self, http: VendorHTTP) -> dict[str, str]:
        """Headers that authenticate one request."""
        ...

    def invalidate(self, used: Mapping[str, str]) -> None:
        """Forget a credential the vendor refused (no-op for static credentials)."""
        ...

    def describe(self) -> str:
        """How requests are authenticated, without the secret (for dry runs)."""
        ...


@dataclass(slots=True)
class HeaderAuth:
    """A fixed header: ``x-apikey: <key>``, ``Authorization: SSWS <token>`` ..."""

    header: str
    secret: SecretStr
    prefix: str = ""
    refreshable: bool = False

    async def headers(self, http: VendorHTTP) -> dict[str, str]:
        return {self.header: self.prefix + self.secret.get_secret_value()}

    def invalidate(self, used: Mapping[str, str]) -> None:
        return

    def describe(self) -> str:
        return f"{self.header}: {self.prefix}***"


@dataclass(slots=True)
class BasicAuth:
    """HTTP Basic with a user name (or e-mail) and a password or API token."""

    user: str
    secret: SecretStr
    refreshable: bool = False
    _encoded: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        self._encoded = base64.b64encode(
            f"{self.user}:{self.secret.get_secret_value()}".encode()
        ).decode()

    async def headers(self, http: VendorHTTP) -> dict[str, str]:
        http.remember_secret(self._encoded)
        return {"Authorization": f"Basic {self._encoded}"}

    def invalidate(self, used: Mapping[str, str]) -> None:
        return

    def describe(self) -> str:
        return f"Authorization: Basic {self.user}:***"


class ClientCredentials:
    """OAuth2 client credentials: a bearer token fetched, cached and refreshed.

    Args:
        token_url: absolute URL, or a path under the connector's base URL.
        form: the token request's form fields (client id, secret, scope, ...).
        success: statuses that carry a token (CrowdStrike answers 201).
        clock: epoch seconds (injected by tests).
    """

    refreshable = True

    def __init__(
        self,
        token_url: str,
        form: Mapping[str, str | SecretStr],
        *,
        success: frozenset[int] = frozenset({200, 201}),
    ) -> None:
        self.token_url = token_url
        self._form = dict(form)
        self._success = success
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock: asyncio.Lock | None = None
        self.fetched = 0

    def _fresh(self, now: float) -> bool:
        return self._token is not None and now < self._expires_at

    async def token(self, http: VendorHTTP) -> str:
        """The current token, fetching a new one when there is none or it is about to expire."""
        if self._token is not None and self._fresh(http.clock()):
            return self._token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._token is not None and self._fresh(http.clock()):
                return self._token
            return await self._fetch(http)

    async def _fetch(self, http: VendorHTTP) -> str:
        from connectors.http_client import PlannedRequest

        form = {
            key: value.get_secret_value() if isinstance(value, SecretStr) else value
            for key, value in self._form.items()
        }
        answer = await http.send(
            PlannedRequest(
                "POST",
                self.token_url,
                form=form,
                accept=frozenset({400, 401, 403}),
                auth=False,
            )
        )
        what = f"POST {http.path_of(self.token_url)}"
        if answer.status not in self._success:
            detail = vendor_message(answer.data, http.mask) or f"HTTP {answer.status}"
            raise AuthenticationError(
                f"authentication failed for {http.connector}: {http.mask(detail)} "
                f"(HTTP {answer.status} on {what})",
                connector=http.connector,
                status=answer.status,
            )
        try:
            token = answer.data["access_token"]
            lifetime = float(answer.data.get("expires_in", DEFAULT_TOKEN_LIFETIME))
            if not isinstance(token, str) or not token:
                raise ValueError("access_token is empty")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise expect_shape(http.connector, what, exc) from None
        http.remember_secret(token)
        margin = min(MAX_REFRESH_MARGIN, lifetime * 0.1)
        self._token = token
        self._expires_at = http.clock() + lifetime - margin
        self.fetched += 1
        return token

    async def headers(self, http: VendorHTTP) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(http)}"}

    def invalidate(self, used: Mapping[str, str]) -> None:
        # Only forget the token this request used: a concurrent request may
        # already have fetched a newer one.
        if used.get("Authorization") == f"Bearer {self._token}":
            self._token = None
            self._expires_at = 0.0

    @property
    def expires_at(self) -> float:
        """When the cached token will be refreshed (epoch seconds; 0 without a token)."""
        return self._expires_at

    def describe(self) -> str:
        return "Authorization: Bearer *** (OAuth2 client credentials)"
