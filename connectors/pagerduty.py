"""PagerDuty Events API v2: trigger, acknowledge and resolve alerts.

Settings: ``RUNBOOK_PAGERDUTY_ROUTING_KEY`` (the 32-character integration key
of an *Events API v2* integration; it travels in the body, there is no auth
header) and optionally ``RUNBOOK_PAGERDUTY_BASE_URL`` (default
``https://events.pagerduty.com``).

``trigger`` sends the step's idempotency key as ``dedup_key`` unless the
runbook gives one: a retried or resumed step updates the same alert instead
of paging twice. Give your own ``dedup_key`` (a host name, an alert id) to
fold several runs into one incident, and to acknowledge or resolve it later.
A routing key PagerDuty does not accept is reported as
"authentication failed for pagerduty".
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr

from bot.errors import AuthenticationError, ConnectorError
from connectors.base import ActionContext, ActionInput, ActionOutput, action
from connectors.http_client import PlannedRequest
from connectors.http_errors import vendor_message
from connectors.vendor import HTTPConnector, HTTPSettings, idempotency_key

ENQUEUE = "/v2/enqueue"
MAX_SUMMARY = 1024


class PagerDutySettings(HTTPSettings):
    base_url: str = "https://events.pagerduty.com"
    routing_key: SecretStr


class TriggerInput(ActionInput):
    summary: str = Field(min_length=1, description="shown as the alert title (cut at 1024)")
    source: str = Field(min_length=1, max_length=255, description="the affected system")
    severity: Literal["critical", "error", "warning", "info"]
    dedup_key: str | None = Field(None, max_length=255, description="default: the step's key")
    details: dict[str, Any] | None = Field(None, description="custom_details")
    component: str | None = None
    group: str | None = None
    link: str | None = Field(None, description="a URL shown with the alert")


class EventInput(ActionInput):
    dedup_key: str = Field(min_length=1, max_length=255)


class EventOutput(ActionOutput):
    dedup_key: str
    status: str
    message: str | None = None


class PagerDuty(HTTPConnector[PagerDutySettings]):
    """PagerDuty Events API v2."""

    name = "pagerduty"
    title = "PagerDuty"
    Settings = PagerDutySettings

    def _event(self, action_name: str, dedup_key: str, **extra: Any) -> PlannedRequest:
        body: dict[str, Any] = {
            "routing_key": self.cfg.routing_key.get_secret_value(),
            "event_action": action_name,
            "dedup_key": dedup_key,
            **extra,
        }
        return PlannedRequest("POST", ENQUEUE, json=body, auth=False, accept=frozenset({400}))

    def plan_trigger(self, args: TriggerInput, ctx: ActionContext | None) -> PlannedRequest:
        summary = args.summary
        if len(summary) > MAX_SUMMARY:
            summary = summary[: MAX_SUMMARY - 1] + "…"
        payload: dict[str, Any] = {
            "summary": summary,
            "source": args.source,
            "severity": args.severity,
        }
        if args.details:
            payload["custom_details"] = args.details
        if args.component:
            payload["component"] = args.component
        if args.group:
            payload["group"] = args.group
        extra: dict[str, Any] = {"payload": payload}
        if args.link:
            extra["links"] = [{"href": args.link, "text": "Runbook Bot"}]
        return self._event("trigger", args.dedup_key or idempotency_key(ctx), **extra)

    def plan_acknowledge(self, args: EventInput, ctx: ActionContext | None) -> PlannedRequest:
        return self._event("acknowledge", args.dedup_key)

    def plan_resolve(self, args: EventInput, ctx: ActionContext | None) -> PlannedRequest:
        return self._event("resolve", args.dedup_key)

    async def _enqueue(self, request: PlannedRequest, ctx: ActionContext) -> EventOutput:
        answer = await self.http.send(request, ctx)
        if answer.status == 400:
            detail = vendor_message(answer.data, self.http.mask) or "invalid event"
            if "routing" in detail.lower():
                raise AuthenticationError(
                    f"authentication failed for pagerduty: the routing key was refused "
                    f"({self.http.mask(detail)})",
                    connector=self.name,
                    status=400,
                )
            raise ConnectorError(
                f"pagerduty: HTTP 400 on POST {ENQUEUE}: {self.http.mask(detail)}",
                connector=self.name,
                status=400,
            )
        with self.reading(f"POST {ENQUEUE}"):
            data = answer.data or {}
            return EventOutput(
                dedup_key=data.get("dedup_key") or request.json["dedup_key"],
                status=data.get("status", "success"),
                message=data.get("message"),
            )

    @action(input=TriggerInput, output=EventOutput, mutating=True, idempotent=True)
    async def trigger(self, ctx: ActionContext, args: TriggerInput) -> EventOutput:
        """Open (or update, same dedup_key) an alert."""
        return await self._enqueue(self.plan_trigger(args, ctx), ctx)

    @action(input=EventInput, output=EventOutput, mutating=True, idempotent=True)
    async def acknowledge(self, ctx: ActionContext, args: EventInput) -> EventOutput:
        """Acknowledge the alert with this dedup_key."""
        return await self._enqueue(self.plan_acknowledge(args, ctx), ctx)

    @action(input=EventInput, output=EventOutput, mutating=True, idempotent=True)
    async def resolve(self, ctx: ActionContext, args: EventInput) -> EventOutput:
        """Resolve the alert with this dedup_key."""
        return await self._enqueue(self.plan_resolve(args, ctx), ctx)
