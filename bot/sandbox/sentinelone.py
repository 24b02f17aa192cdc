"""A fake SentinelOne management API (``/web/api/v2.1``).

``Authorization: ApiToken <token>`` (401 ``Authentication Failed`` otherwise);
``GET /agents?computerName__like=`` is a case-insensitive substring search;
``POST /agents/actions/disconnect`` and ``…/connect`` take
``{"filter": {"ids": [...]}}`` and answer ``{"data": {"affected": n}}``.
Errors are ``{"errors": [{"code", "detail", "title"}]}``; 429 has ``Retry-After``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute

from bot.sandbox.fake import FakeRequest, FakeVendor, Fault, bearer, json_response, new_secret

SEED_AGENTS = [
    ("225494730938493804", "web-1", "linux"),
    ("225494730938493805", "web-10", "linux"),
    ("225494730938493806", "ws-042", "windows"),
    ("225494730938493807", "laptop-7", "macos"),
]


@dataclass(slots=True)
class Agent:
    id: str
    computer_name: str
    os_type: str
    network_status: str = "connected"

    def as_entity(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "computerName": self.computer_name,
            "networkStatus": self.network_status,
            "osType": self.os_type,
            "osName": {"linux": "Linux", "windows": "Windows 11", "macos": "macOS"}[self.os_type],
            "isActive": True,
            "lastActiveDate": "2026-11-22T09:58:00.000000Z",
        }


class FakeSentinelOne(FakeVendor):
    """Fake SentinelOne agents API."""

    name = "sentinelone"

    def default_credentials(self) -> dict[str, str]:
        return {"api_token": new_secret("s1-token-", 40)}

    def seed(self) -> None:
        self.agents = {a: Agent(a, name, os_type) for a, name, os_type in SEED_AGENTS}

    def agent(self, name: str) -> Agent:
        return next(a for a in self.agents.values() if a.computer_name == name)

    def env(self, base: str) -> dict[str, str]:
        return {
            "RUNBOOK_SENTINELONE_BASE_URL": base,
            "RUNBOOK_SENTINELONE_API_TOKEN": self.credentials["api_token"],
        }

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        return json_response(
            {
                "errors": [
                    {
                        "code": int(code) if code and code.isdigit() else status * 10000,
                        "detail": message,
                        "title": message,
                    }
                ]
            },
            status,
        )

    def rate_limited(self, fault: Fault) -> Response:
        response = self.error(429, "Too Many Requests")
        response.headers["Retry-After"] = str(int(fault.retry_after))
        return response

    def token_expired(self) -> Response:
        return json_response(
            {"errors": [{"code": 4010010, "detail": None, "title": "Authentication Failed"}]}, 401
        )

    async def authenticate(self, request: FakeRequest) -> Response | None:
        if bearer(request.headers, "ApiToken") != self.credentials["api_token"]:
            return self.token_expired()
        return None

    def routes(self) -> list[BaseRoute]:
        return [
            self.route("/agents", self._agents, ["GET"]),
            self.route("/agents/actions/{verb}", self._action, ["POST"]),
        ]

    async def _agents(self, request: FakeRequest) -> Response:
        like = (request.param("computerName__like", "") or "").lower()
        with self._lock:
            data = [a.as_entity() for a in self.agents.values() if like in a.computer_name.lower()]
        return json_response(
            {"data": data, "pagination": {"nextCursor": None, "totalItems": len(data)}}
        )

    async def _action(self, request: FakeRequest) -> Response:
        verb = request.path_params["verb"]
        if verb not in ("disconnect", "connect"):
            return self.error(404, f"Unknown action {verb}")
        body = request.body
        ids = body.get("filter", {}).get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids:
            return self.error(400, "filter.ids is required", "4000010")
        affected = 0
        with self._lock:
            for agent_id in ids:
                agent = self.agents.get(str(agent_id))
                if agent is None:
                    continue
                agent.network_status = "disconnected" if verb == "disconnect" else "connected"
                affected += 1
        return json_response({"data": {"affected": affected}})
