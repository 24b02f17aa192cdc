"""A fake Okta users API (``/api/v1``).

``Authorization: SSWS <token>`` (401 ``E0000011 Invalid token provided``
otherwise). ``GET /users/{login or id}`` (404 ``E0000007``),
``POST /users/{id}/lifecycle/suspend`` (200 ``{}``; 400 ``E0000001`` unless the
user is ``ACTIVE``), ``DELETE /users/{id}/sessions`` (204). A 429 carries
``X-Rate-Limit-Reset`` (epoch seconds) with ``X-Rate-Limit-Limit`` and
``X-Rate-Limit-Remaining``, like Okta.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute

from bot.sandbox.fake import FakeRequest, FakeVendor, Fault, bearer, json_response, new_secret

SEED_USERS = [
    ("00u1alice0000000001", "alice@example.com", "Alice", "Analyst"),
    ("00u1bob000000000002", "bob@example.com", "Bob", "Builder"),
    ("00u1carol00000000003", "carol@example.com", "Carol", "Chief"),
]


@dataclass(slots=True)
class User:
    id: str
    login: str
    first_name: str
    last_name: str
    status: str = "ACTIVE"
    sessions: int = 2

    def as_entity(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "created": "2024-01-01T00:00:00.000Z",
            "profile": {
                "login": self.login,
                "email": self.login,
                "firstName": self.first_name,
                "lastName": self.last_name,
            },
        }


class FakeOkta(FakeVendor):
    """Fake Okta org."""

    name = "okta"

    def default_credentials(self) -> dict[str, str]:
        return {"api_token": new_secret("00okta-", 40)}

    def seed(self) -> None:
        self.users = {uid: User(uid, login, first, last) for uid, login, first, last in SEED_USERS}

    def user(self, login: str) -> User:
        return next(u for u in self.users.values() if login in (u.login, u.id))

    def env(self, base: str) -> dict[str, str]:
        return {
            "RUNBOOK_OKTA_BASE_URL": base,
            "RUNBOOK_OKTA_API_TOKEN": self.credentials["api_token"],
        }

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        return json_response(
            {
                "errorCode": code or "E0000009",
                "errorSummary": message,
                "errorLink": code or "E0000009",
                "errorId": "oae" + uuid.uuid4().hex[:20],
                "errorCauses": [],
            },
            status,
        )

    def rate_limited(self, fault: Fault) -> Response:
        response = self.error(
            429, "API call exceeded rate limit due to too many requests.", "E0000047"
        )
        response.headers["X-Rate-Limit-Limit"] = "600"
        response.headers["X-Rate-Limit-Remaining"] = "0"
        response.headers["X-Rate-Limit-Reset"] = str(int(time.time() + fault.retry_after))
        return response

    def token_expired(self) -> Response:
        return self.error(401, "Invalid token provided", "E0000011")

    async def authenticate(self, request: FakeRequest) -> Response | None:
        if bearer(request.headers, "SSWS") != self.credentials["api_token"]:
            return self.token_expired()
        return None

    def routes(self) -> list[BaseRoute]:
        return [
            self.route("/users/{user}", self._get, ["GET"]),
            self.route("/users/{user}/lifecycle/suspend", self._suspend, ["POST"]),
            self.route("/users/{user}/lifecycle/unsuspend", self._unsuspend, ["POST"]),
            self.route("/users/{user}/sessions", self._sessions, ["DELETE"]),
        ]

    def _find(self, key: str) -> User | None:
        with self._lock:
            return self.users.get(key) or next(
                (u for u in self.users.values() if u.login.lower() == key.lower()), None
            )

    def _not_found(self, key: str) -> Response:
        return self.error(404, f"Not found: Resource not found: {key} (User)", "E0000007")

    async def _get(self, request: FakeRequest) -> Response:
        user = self._find(request.path_params["user"])
        if user is None:
            return self._not_found(request.path_params["user"])
        return json_response(user.as_entity())

    async def _suspend(self, request: FakeRequest) -> Response:
        user = self.users.get(request.path_params["user"])
        if user is None:
            return self._not_found(request.path_params["user"])
        with self._lock:
            if user.status != "ACTIVE":
                return self.error(
                    400,
                    "Api validation failed: Cannot suspend a user that is not active",
                    "E0000001",
                )
            user.status = "SUSPENDED"
        return json_response({})

    async def _unsuspend(self, request: FakeRequest) -> Response:
        user = self.users.get(request.path_params["user"])
        if user is None:
            return self._not_found(request.path_params["user"])
        with self._lock:
            if user.status != "SUSPENDED":
                return self.error(400, "Api validation failed: user is not suspended", "E0000001")
            user.status = "ACTIVE"
        return json_response({})

    async def _sessions(self, request: FakeRequest) -> Response:
        user = self.users.get(request.path_params["user"])
        if user is None:
            return self._not_found(request.path_params["user"])
        with self._lock:
            user.sessions = 0
        return Response(status_code=204)
