"""ServiceNow Table API: open and update incidents.

Settings: ``RUNBOOK_SERVICENOW_BASE_URL`` (``https://<instance>.service-now.com``),
``RUNBOOK_SERVICENOW_USERNAME`` and ``RUNBOOK_SERVICENOW_PASSWORD`` (HTTP Basic).

``create_incident`` stores the step's idempotency key in the incident's
``correlation_id`` (the field ServiceNow keeps for the id an external system
gives a record) and looks for it before creating: a retried or resumed step
finds the incident it opened instead of opening a second one.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import Field, SecretStr

from connectors.base import ActionContext, ActionInput, ActionOutput, action
from connectors.http_auth import Auth, BasicAuth
from connectors.http_client import PlannedRequest
from connectors.vendor import HTTPConnector, HTTPSettings, idempotency_key

TABLE = "/api/now/table/incident"
SYS_ID = r"^[0-9a-f]{32}$"


class ServiceNowSettings(HTTPSettings):
    base_url: str
    username: str
    password: SecretStr


class CreateIncidentInput(ActionInput):
    short_description: str = Field(min_length=1, max_length=160)
    description: str = ""
    urgency: int = Field(3, ge=1, le=3, description="1 high, 2 medium, 3 low")
    impact: int = Field(3, ge=1, le=3, description="1 high, 2 medium, 3 low")
    fields: dict[str, Any] = Field(
        default_factory=dict, description="more incident fields (assignment_group, category ...)"
    )


class UpdateIncidentInput(ActionInput):
    sys_id: str = Field(pattern=SYS_ID)
    fields: dict[str, Any] = Field(min_length=1, description="fields to set, e.g. {state: 6}")


class IncidentOutput(ActionOutput):
    sys_id: str
    number: str
    state: str | None = None
    url: str | None = None


def correlation_id(ctx: ActionContext | None) -> str:
    """The step's idempotency key as it fits ``correlation_id`` (100 chars, no ``^``)."""
    key = idempotency_key(ctx)
    if ctx is None or (len(key) <= 100 and "^" not in key):
        return key
    return "rb-" + hashlib.sha256(key.encode()).hexdigest()


class ServiceNow(HTTPConnector[ServiceNowSettings]):
    """ServiceNow incidents."""

    name = "servicenow"
    title = "ServiceNow"
    Settings = ServiceNowSettings

    def make_auth(self) -> Auth:
        return BasicAuth(self.cfg.username, self.cfg.password)

    def _output(self, record: dict[str, Any]) -> IncidentOutput:
        sys_id = str(record["sys_id"])
        return IncidentOutput(
            sys_id=sys_id,
            number=str(record["number"]),
            state=None if record.get("state") is None else str(record["state"]),
            url=f"{self.cfg.base_url.rstrip('/')}/nav_to.do?uri=incident.do?sys_id={sys_id}",
        )

    def plan_create_incident(
        self, args: CreateIncidentInput, ctx: ActionContext | None
    ) -> PlannedRequest:
        body: dict[str, Any] = {
            **args.fields,
            "short_description": args.short_description,
            "description": args.description,
            "urgency": str(args.urgency),
            "impact": str(args.impact),
            "correlation_id": correlation_id(ctx),
            "correlation_display": "Runbook Bot",
        }
        return PlannedRequest("POST", TABLE, json=body)

    @action(input=CreateIncidentInput, output=IncidentOutput, mutating=True, idempotent=True)
    async def create_incident(
        self, ctx: ActionContext, args: CreateIncidentInput
    ) -> IncidentOutput:
        """Open an incident (once per step: a retry finds the one it opened)."""
        key = correlation_id(ctx)
        found = await self.send(
            PlannedRequest(
                "GET",
                TABLE,
                params={
                    "sysparm_query": f"correlation_id={key}",
                    "sysparm_limit": 1,
                    "sysparm_fields": "sys_id,number,state",
                },
            ),
            ctx,
        )
        with self.reading(f"GET {TABLE}"):
            if found["result"]:
                return self._output(found["result"][0])
        data = await self.send(self.plan_create_incident(args, ctx), ctx)
        with self.reading(f"POST {TABLE}"):
            return self._output(data["result"])

    def plan_update_incident(
        self, args: UpdateIncidentInput, ctx: ActionContext | None
    ) -> PlannedRequest:
        return PlannedRequest("PATCH", f"{TABLE}/{args.sys_id}", json=dict(args.fields))

    @action(input=UpdateIncidentInput, output=IncidentOutput, mutating=True, idempotent=True)
    async def update_incident(
        self, ctx: ActionContext, args: UpdateIncidentInput
    ) -> IncidentOutput:
        """Set fields of an incident."""
        request = self.plan_update_incident(args, ctx)
        data = await self.send(request, ctx)
        with self.reading(f"PATCH {request.path}"):
            return self._output(data["result"])
