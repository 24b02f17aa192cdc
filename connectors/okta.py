"""Okta: find a user, suspend them, end their sessions.

Settings: ``RUNBOOK_OKTA_BASE_URL`` (``https://<org>.okta.com/api/v1``) and
``RUNBOOK_OKTA_API_TOKEN`` (sent as ``Authorization: SSWS <token>``).

Okta answers 429 with ``X-Rate-Limit-Reset`` (epoch seconds), which becomes
the retry delay. ``find_user`` takes a login (or an id) and answers
``found: false`` for an unknown one. ``suspend_user`` on a user who already
is suspended changes nothing (``changed: false``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import Field, SecretStr

from bot.errors import ConnectorError
from connectors.base import ActionContext, ActionInput, ActionOutput, action
from connectors.http_auth import Auth, HeaderAuth
from connectors.http_client import PlannedRequest
from connectors.http_errors import (
    OKTA_RATE_LIMIT_RESET,
    RETRY_AFTER,
    json_kind,
    vendor_message,
)
from connectors.vendor import HTTPConnector, HTTPSettings

USER_ID = r"^[A-Za-z0-9]{1,64}$"


class OktaSettings(HTTPSettings):
    base_url: str
    api_token: SecretStr


class FindUserInput(ActionInput):
    login: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[^/?#\s]+$",
        description="login (usually an e-mail) or id",
    )


class UserOutput(ActionOutput):
    found: bool
    user_id: str | None = None
    login: str
    email: str | None = None
    status: str | None = Field(None, description="ACTIVE, SUSPENDED, DEPROVISIONED, ...")


class UserInput(ActionInput):
    user_id: str = Field(pattern=USER_ID, description="Okta user id (00u...)")


class SuspendOutput(ActionOutput):
    user_id: str
    status: str
    changed: bool


class ClearSessionsInput(UserInput):
    revoke_oauth_tokens: bool = Field(False, description="also revoke OAuth/OIDC tokens")


class ClearSessionsOutput(ActionOutput):
    user_id: str
    cleared: bool


class Okta(HTTPConnector[OktaSettings]):
    """Okta users."""

    name = "okta"
    title = "Okta"
    Settings = OktaSettings
    retry_hints = (OKTA_RATE_LIMIT_RESET, RETRY_AFTER)

    def make_auth(self) -> Auth:
        return HeaderAuth("Authorization", self.cfg.api_token, prefix="SSWS ")

    async def _user(self, login: str, ctx: ActionContext) -> dict[str, Any] | None:
        path = f"/users/{quote(login, safe='@')}"
        answer = await self.http.send(PlannedRequest("GET", path, accept=frozenset({404})), ctx)
        if answer.status == 404:
            return None
        if not isinstance(answer.data, dict):  # null must not read as "no such user"
            raise ConnectorError(
                f"okta: unexpected answer to GET /users/{{login}}: "
                f"expected an object, got {json_kind(answer.data)}",
                connector=self.name,
            )
        result: dict[str, Any] = answer.data
        return result

    @action(input=FindUserInput, output=UserOutput)
    async def find_user(self, ctx: ActionContext, args: FindUserInput) -> UserOutput:
        """Look a user up by login or id; found: false when Okta has no such user."""
        user = await self._user(args.login, ctx)
        if user is None:
            return UserOutput(found=False, login=args.login)
        with self.reading("GET /users/{login}"):
            profile = user.get("profile") or {}
            return UserOutput(
                found=True,
                user_id=str(user["id"]),
                login=profile.get("login") or args.login,
                email=profile.get("email"),
                status=user.get("status"),
            )

    def plan_suspend_user(self, args: UserInput, ctx: ActionContext | None) -> PlannedRequest:
        return PlannedRequest(
            "POST", f"/users/{args.user_id}/lifecycle/suspend", accept=frozenset({400})
        )

    @action(input=UserInput, output=SuspendOutput, mutating=True, idempotent=True)
    async def suspend_user(self, ctx: ActionContext, args: UserInput) -> SuspendOutput:
        """Suspend a user: they cannot sign in until unsuspended."""
        request = self.plan_suspend_user(args, ctx)
        answer = await self.http.send(request, ctx)
        if answer.status != 400:
            return SuspendOutput(user_id=args.user_id, status="SUSPENDED", changed=True)
        user = await self._user(args.user_id, ctx)
        if user is not None and user.get("status") == "SUSPENDED":
            return SuspendOutput(user_id=args.user_id, status="SUSPENDED", changed=False)
        detail = vendor_message(answer.data, self.http.mask) or "user cannot be suspended"
        raise ConnectorError(
            f"okta: HTTP 400 on POST {request.path}: {self.http.mask(detail)}",
            connector=self.name,
            status=400,
        )

    def plan_clear_sessions(
        self, args: ClearSessionsInput, ctx: ActionContext | None
    ) -> PlannedRequest:
        params = {"oauthTokens": "true"} if args.revoke_oauth_tokens else None
        return PlannedRequest("DELETE", f"/users/{args.user_id}/sessions", params=params)

    @action(input=ClearSessionsInput, output=ClearSessionsOutput, mutating=True, idempotent=True)
    async def clear_sessions(
        self, ctx: ActionContext, args: ClearSessionsInput
    ) -> ClearSessionsOutput:
        """End all of a user's sessions (and optionally revoke their OAuth tokens)."""
        await self.send(self.plan_clear_sessions(args, ctx), ctx)
        return ClearSessionsOutput(user_id=args.user_id, cleared=True)
