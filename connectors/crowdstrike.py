"""CrowdStrike Falcon: find a host, contain it, lift containment, read alerts.

Settings: ``RUNBOOK_CROWDSTRIKE_CLIENT_ID``, ``RUNBOOK_CROWDSTRIKE_CLIENT_SECRET``
(an API client with *Hosts: read/write* and *Alerts: read*), optionally
``RUNBOOK_CROWDSTRIKE_BASE_URL`` (default ``https://api.crowdstrike.com``;
``https://api.us-2.crowdstrike.com``, ``https://api.eu-1.crowdstrike.com`` ...)
and ``RUNBOOK_CROWDSTRIKE_MEMBER_CID`` for a child CID.

Authentication is OAuth2 client credentials (``POST /oauth2/token``, 201); the
token lives 30 minutes and is refreshed before it expires, or once when the
API answers 401. Rate limits answer 429 with ``X-RateLimit-RetryAfter`` (an
epoch time, seconds or milliseconds), which becomes the retry delay.

``find_host`` answers ``found: false`` (and null ids) when no host has that
name: a runbook branches on ``steps.find.output.found``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr

from connectors.base import ActionContext, ActionInput, ActionOutput, action
from connectors.http_auth import Auth, ClientCredentials
from connectors.http_client import PlannedRequest
from connectors.http_errors import CROWDSTRIKE_RETRY_AFTER, RETRY_AFTER
from connectors.vendor import HTTPConnector, HTTPSettings

DEVICE_ID = r"^[0-9a-fA-F]{32}$"
QUERY_DEVICES = "/devices/queries/devices/v1"
DEVICE_DETAILS = "/devices/entities/devices/v2"
DEVICE_ACTIONS = "/devices/entities/devices-actions/v2"
QUERY_ALERTS = "/alerts/queries/alerts/v2"
ALERT_DETAILS = "/alerts/entities/alerts/v2"


class CrowdStrikeSettings(HTTPSettings):
    base_url: str = "https://api.crowdstrike.com"
    client_id: str
    client_secret: SecretStr
    member_cid: str | None = None


class FindHostInput(ActionInput):
    hostname: str = Field(min_length=1, max_length=253, description="host name as Falcon sees it")


class DeviceInput(ActionInput):
    device_id: str = Field(pattern=DEVICE_ID, description="Falcon device id (aid)")


class HostOutput(ActionOutput):
    found: bool
    device_id: str | None = None
    hostname: str
    platform: str | None = None
    status: str | None = Field(
        None, description="normal, containment_pending, contained, lift_containment_pending"
    )
    local_ip: str | None = None
    last_seen: str | None = None
    matches: int = 0


class ContainmentOutput(ActionOutput):
    device_id: str
    status: str | None = None


class AlertsInput(ActionInput):
    filter: str = Field("", max_length=2000, description="FQL, e.g. status:'new'+severity:>=50")
    limit: int = Field(100, ge=1, le=1000)


class AlertsOutput(ActionOutput):
    total: int
    alerts: list[dict[str, Any]]


def fql_string(value: str) -> str:
    """A value quoted for FQL (``hostname:'web-1'``)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class CrowdStrike(HTTPConnector[CrowdStrikeSettings]):
    """CrowdStrike Falcon hosts and alerts."""

    name = "crowdstrike"
    title = "CrowdStrike Falcon"
    Settings = CrowdStrikeSettings
    retry_hints = (CROWDSTRIKE_RETRY_AFTER, RETRY_AFTER)

    def make_auth(self) -> Auth:
        form: dict[str, str | SecretStr] = {
            "client_id": self.cfg.client_id,
            "client_secret": self.cfg.client_secret,
        }
        if self.cfg.member_cid:
            form["member_cid"] = self.cfg.member_cid
        return ClientCredentials("/oauth2/token", form, success=frozenset({200, 201}))

    async def _devices(self, ids: list[str], ctx: ActionContext) -> list[dict[str, Any]]:
        data = await self.send(
            PlannedRequest("GET", DEVICE_DETAILS, params={"ids": ids}, accept=frozenset({404})),
            ctx,
        )
        with self.reading(f"GET {DEVICE_DETAILS}"):
            return list(data.get("resources") or []) if data else []

    @staticmethod
    def _host(device: dict[str, Any], matches: int) -> HostOutput:
        return HostOutput(
            found=True,
            device_id=device["device_id"],
            hostname=device.get("hostname") or "",
            platform=device.get("platform_name"),
            status=device.get("status"),
            local_ip=device.get("local_ip"),
            last_seen=device.get("last_seen"),
            matches=matches,
        )

    @action(input=FindHostInput, output=HostOutput)
    async def find_host(self, ctx: ActionContext, args: FindHostInput) -> HostOutput:
        """Look a host up by name; found: false when Falcon does not know it."""
        data = await self.send(
            PlannedRequest(
                "GET",
                QUERY_DEVICES,
                params={"filter": f"hostname:{fql_string(args.hostname)}", "limit": 10},
            ),
            ctx,
        )
        with self.reading(f"GET {QUERY_DEVICES}"):
            ids = [str(i) for i in data.get("resources") or []]
        if not ids:
            return HostOutput(found=False, hostname=args.hostname)
        devices = await self._devices(ids, ctx)
        if not devices:
            return HostOutput(found=False, hostname=args.hostname)
        with self.reading(f"GET {DEVICE_DETAILS}"):
            newest = max(devices, key=lambda d: str(d.get("last_seen") or ""))
            return self._host(newest, len(ids))

    @action(input=DeviceInput, output=HostOutput)
    async def get_host(self, ctx: ActionContext, args: DeviceInput) -> HostOutput:
        """A host's details by device id (to watch containment with until/poll)."""
        devices = await self._devices([args.device_id], ctx)
        if not devices:
            return HostOutput(found=False, device_id=args.device_id, hostname="")
        with self.reading(f"GET {DEVICE_DETAILS}"):
            return self._host(devices[0], 1)

    def plan_contain_host(self, args: DeviceInput, ctx: ActionContext | None) -> PlannedRequest:
        return PlannedRequest(
            "POST",
            DEVICE_ACTIONS,
            params={"action_name": "contain"},
            json={"ids": [args.device_id]},
        )

    def plan_lift_containment(self, args: DeviceInput, ctx: ActionContext | None) -> PlannedRequest:
        return PlannedRequest(
            "POST",
            DEVICE_ACTIONS,
            params={"action_name": "lift_containment"},
            json={"ids": [args.device_id]},
        )

    async def _device_action(self, request: PlannedRequest, ctx: ActionContext) -> str | None:
        await self.send(request, ctx)
        devices = await self._devices([str(request.json["ids"][0])], ctx)
        with self.reading(f"GET {DEVICE_DETAILS}"):
            return str(devices[0].get("status")) if devices else None

    @action(input=DeviceInput, output=ContainmentOutput, mutating=True, idempotent=True)
    async def contain_host(self, ctx: ActionContext, args: DeviceInput) -> ContainmentOutput:
        """Network-contain a host (containing a contained host changes nothing)."""
        status = await self._device_action(self.plan_contain_host(args, ctx), ctx)
        return ContainmentOutput(device_id=args.device_id, status=status)

    @action(input=DeviceInput, output=ContainmentOutput, mutating=True, idempotent=True)
    async def lift_containment(self, ctx: ActionContext, args: DeviceInput) -> ContainmentOutput:
        """Lift a host's network containment."""
        status = await self._device_action(self.plan_lift_containment(args, ctx), ctx)
        return ContainmentOutput(device_id=args.device_id, status=status)

    @action(input=AlertsInput, output=AlertsOutput)
    async def get_alerts(self, ctx: ActionContext, args: AlertsInput) -> AlertsOutput:
        """Alerts matching an FQL filter, newest first."""
        params: dict[str, Any] = {"limit": args.limit, "sort": "created_timestamp.desc"}
        if args.filter:
            params["filter"] = args.filter
        data = await self.send(PlannedRequest("GET", QUERY_ALERTS, params=params), ctx)
        with self.reading(f"GET {QUERY_ALERTS}"):
            ids = [str(i) for i in data.get("resources") or []]
            total = int((data.get("meta") or {}).get("pagination", {}).get("total", len(ids)))
        if not ids:
            return AlertsOutput(total=total, alerts=[])
        details = await self.send(
            PlannedRequest("POST", ALERT_DETAILS, json={"composite_ids": ids}), ctx
        )
        with self.reading(f"POST {ALERT_DETAILS}"):
            alerts = [_alert_summary(item) for item in details.get("resources") or []]
        return AlertsOutput(total=total, alerts=alerts)


def _alert_summary(alert: dict[str, Any]) -> dict[str, Any]:
    device = alert.get("device") or {}
    return {
        "composite_id": alert["composite_id"],
        "severity": alert.get("severity"),
        "status": alert.get("status"),
        "name": alert.get("display_name") or alert.get("name"),
        "description": alert.get("description"),
        "tactic": alert.get("tactic"),
        "technique": alert.get("technique"),
        "hostname": device.get("hostname"),
        "device_id": device.get("device_id"),
        "created_timestamp": alert.get("created_timestamp"),
    }
