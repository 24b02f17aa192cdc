"""SentinelOne: find an agent, disconnect it from the network, reconnect it.

Settings: ``RUNBOOK_SENTINELONE_BASE_URL`` (``https://<tenant>.sentinelone.net/web/api/v2.1``)
and ``RUNBOOK_SENTINELONE_API_TOKEN`` (sent as ``Authorization: ApiToken <token>``).

``find_agent`` searches with ``computerName__like`` (a substring match, so
``web-1`` also finds ``web-10`` … ``prod-web-1``) and keeps only agents whose
computer name is exactly the one asked (case-insensitive); none is
``found: false``. It follows ``pagination.nextCursor`` through every page of
the search, up to :data:`MAX_PAGES` pages of :data:`PAGE_SIZE`: when the
search matches more agents than that, an exact match found is answered with
``complete: false``, and no match is an error rather than ``found: false``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr

from bot.errors import ConnectorError
from connectors.base import ActionContext, ActionInput, ActionOutput, action
from connectors.http_auth import Auth, HeaderAuth
from connectors.http_client import PlannedRequest
from connectors.vendor import HTTPConnector, HTTPSettings

AGENT_ID = r"^[0-9]{1,24}$"
PAGE_SIZE = 200
MAX_PAGES = 25


class SentinelOneSettings(HTTPSettings):
    base_url: str
    api_token: SecretStr


class FindAgentInput(ActionInput):
    hostname: str = Field(min_length=1, max_length=253, description="the agent's computer name")


class AgentInput(ActionInput):
    agent_id: str = Field(pattern=AGENT_ID, description="SentinelOne agent id")


class AgentOutput(ActionOutput):
    found: bool
    agent_id: str | None = None
    computer_name: str
    network_status: str | None = Field(
        None, description="connected, disconnected, connecting, disconnecting"
    )
    os_name: str | None = None
    is_active: bool | None = None
    matches: int = 0
    complete: bool = Field(
        True, description="false when the search matched more agents than were read"
    )


class AgentActionOutput(ActionOutput):
    agent_id: str
    affected: int


class SentinelOne(HTTPConnector[SentinelOneSettings]):
    """SentinelOne agents: network quarantine."""

    name = "sentinelone"
    title = "SentinelOne"
    Settings = SentinelOneSettings

    def make_auth(self) -> Auth:
        return HeaderAuth("Authorization", self.cfg.api_token, prefix="ApiToken ")

    async def _search(
        self, hostname: str, ctx: ActionContext
    ) -> tuple[list[dict[str, Any]], bool, int]:
        """(agents named exactly ``hostname``, whether every page was read, agents read)."""
        exact: list[dict[str, Any]] = []
        cursor: str | None = None
        seen_cursors: set[str] = set()
        read = 0
        for _page in range(MAX_PAGES):
            params: dict[str, Any] = {"computerName__like": hostname, "limit": PAGE_SIZE}
            if cursor is not None:
                params["cursor"] = cursor
            data = await self.send(PlannedRequest("GET", "/agents", params=params), ctx)
            with self.reading("GET /agents"):
                agents: list[dict[str, Any]] = list(data["data"])
                read += len(agents)
                exact += [
                    agent
                    for agent in agents
                    if str(agent.get("computerName", "")).casefold() == hostname.casefold()
                ]
                cursor = (data.get("pagination") or {}).get("nextCursor")
            if not cursor or cursor in seen_cursors:
                return exact, True, read
            seen_cursors.add(str(cursor))
        return exact, False, read

    @action(input=FindAgentInput, output=AgentOutput)
    async def find_agent(self, ctx: ActionContext, args: FindAgentInput) -> AgentOutput:
        """Look an agent up by computer name; found: false when there is none."""
        exact, complete, read = await self._search(args.hostname, ctx)
        if not exact:
            if not complete:
                raise ConnectorError(
                    f"sentinelone: more than {read} agents' names contain {args.hostname!r} "
                    f"and none of the {read} read ({MAX_PAGES} pages, the most read) is "
                    "exactly it; not answering found: false for an agent that may exist",
                    connector=self.name,
                )
            return AgentOutput(found=False, computer_name=args.hostname)
        with self.reading("GET /agents"):
            agent = max(exact, key=lambda a: str(a.get("lastActiveDate") or ""))
            return AgentOutput(
                found=True,
                agent_id=str(agent["id"]),
                computer_name=agent.get("computerName") or args.hostname,
                network_status=agent.get("networkStatus"),
                os_name=agent.get("osName"),
                is_active=agent.get("isActive"),
                matches=len(exact),
                complete=complete,
            )

    def plan_disconnect_agent(self, args: AgentInput, ctx: ActionContext | None) -> PlannedRequest:
        return PlannedRequest(
            "POST", "/agents/actions/disconnect", json={"filter": {"ids": [args.agent_id]}}
        )

    def plan_reconnect_agent(self, args: AgentInput, ctx: ActionContext | None) -> PlannedRequest:
        return PlannedRequest(
            "POST", "/agents/actions/connect", json={"filter": {"ids": [args.agent_id]}}
        )

    async def _act(
        self, request: PlannedRequest, args: AgentInput, ctx: ActionContext
    ) -> AgentActionOutput:
        data = await self.send(request, ctx)
        with self.reading(f"POST {request.path}"):
            return AgentActionOutput(agent_id=args.agent_id, affected=int(data["data"]["affected"]))

    @action(input=AgentInput, output=AgentActionOutput, mutating=True, idempotent=True)
    async def disconnect_agent(self, ctx: ActionContext, args: AgentInput) -> AgentActionOutput:
        """Disconnect an agent's machine from the network (network quarantine)."""
        return await self._act(self.plan_disconnect_agent(args, ctx), args, ctx)

    @action(input=AgentInput, output=AgentActionOutput, mutating=True, idempotent=True)
    async def reconnect_agent(self, ctx: ActionContext, args: AgentInput) -> AgentActionOutput:
        """Reconnect an agent's machine to the network."""
        return await self._act(self.plan_reconnect_agent(args, ctx), args, ctx)
