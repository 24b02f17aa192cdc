"""A fake SentinelOne management API (``/web/api/v2.1``).

``Authorization: ApiToken <token>`` (401 ``Authentication Failed`` otherwise);
``GET /agents?computerName__like=`` is a case-insensitive substring search,
answered a page at a time like the real API: ``limit`` agents (default 10,
at most 1000) and ``pagination.nextCursor``, an opaque string to send back as
``cursor`` for the next page (null on the last page);
``POST /agents/actions/disconnect`` and ``…/connect`` take
``{"filter": {"ids": [...]}}`` and answer ``{"data": {"affected": n}}``.
Errors are ``{"errors": [{"code", "detail", "title"}]}``; 429 has ``Retry-After``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute

from bot.sandbox.fake import FakeRequest, FakeVendor, Fault, bearer, json_response, new_secret

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000

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

    def add_agent(self, name: str, os_type: str = "linux") -> Agent:
        """A new agent, listed after every existing one."""
        with self._lock:
            agent_id = str(max(int(a) for a in self.agents) + 1)
            self.agents[agent_id] = agent = Agent(agent_id, name, os_type)
        return agent

    def remove_agent(self, name: str) -> None:
        with self._lock:
            del self.agents[self.agent(name).id]

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
        try:
            limit = int(request.param("limit", str(DEFAULT_LIMIT)) or DEFAULT_LIMIT)
            start = _offset(request.param("cursor"))
        except ValueError:
            return self.error(400, "Invalid cursor or limit", "4000010")
        if not 1 <= limit <= MAX_LIMIT:
            return self.error(400, f"limit must be between 1 and {MAX_LIMIT}", "4000010")
        with self._lock:
            matching = [
                a.as_entity()
                for _id, a in sorted(self.agents.items(), key=lambda item: int(item[0]))
                if like in a.computer_name.lower()
            ]
        page = matching[start : start + limit]
        more = start + limit < len(matching)
        return json_response(
            {
                "data": page,
                "pagination": {
                    "nextCursor": _cursor(start + limit) if more else None,
                    "totalItems": len(matching),
                },
            }
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


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    text = base64.urlsafe_b64decode(cursor.encode()).decode()
    if not text.startswith("offset:"):
        raise ValueError(cursor)
    return int(text.removeprefix("offset:"))
