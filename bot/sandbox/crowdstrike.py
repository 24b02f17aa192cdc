"""A fake CrowdStrike Falcon API: OAuth2 tokens, hosts, containment, alerts.

Behaves like Falcon where the connector can tell: ``POST /oauth2/token``
answers 201 (403 ``access denied, authorization failed`` for wrong client
credentials), API calls need a live bearer token (401 otherwise), every body
is the ``{meta, resources, errors}`` envelope, and a 429 carries
``X-RateLimit-RetryAfter`` as epoch seconds (``epoch_ms = True``: milliseconds).

State: hosts by device id. Containing a host makes it
``containment_pending``, then ``contained`` from the next read on; it stays
contained until lifted (``lift_containment_pending`` → ``normal``).
Containing a contained host changes nothing.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute

from bot.sandbox.fake import (
    FakeRequest,
    FakeVendor,
    Fault,
    TokenIssuer,
    bearer,
    is_malformed,
    json_response,
    new_secret,
)

_FQL_CLAUSE = re.compile(
    r"^(?P<field>[\w.]+):(?P<op>>=|<=|>|<|!)?(?P<value>'(?:[^'\\]|\\.)*'|\S+)$"
)


@dataclass(slots=True)
class Host:
    device_id: str
    hostname: str
    platform_name: str
    local_ip: str
    status: str = "normal"
    last_seen: str = "2026-11-22T09:58:00Z"
    reads_until_settled: int = 0

    def as_resource(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "hostname": self.hostname,
            "platform_name": self.platform_name,
            "local_ip": self.local_ip,
            "status": self.status,
            "last_seen": self.last_seen,
            "cid": "0123456789abcdef0123456789abcdef",
        }


@dataclass(slots=True)
class Alert:
    composite_id: str
    severity: int
    status: str
    display_name: str
    description: str
    device: Host
    tactic: str = "Execution"
    technique: str = "PowerShell"
    created_timestamp: str = "2026-11-22T09:55:00Z"
    extra: dict[str, Any] = field(default_factory=dict)

    def as_resource(self) -> dict[str, Any]:
        return {
            "composite_id": self.composite_id,
            "severity": self.severity,
            "status": self.status,
            "display_name": self.display_name,
            "description": self.description,
            "tactic": self.tactic,
            "technique": self.technique,
            "created_timestamp": self.created_timestamp,
            "device": {"device_id": self.device.device_id, "hostname": self.device.hostname},
            **self.extra,
        }


def device_id_for(hostname: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_DNS, f"crowdstrike:{hostname}").hex


SEED_HOSTS = [
    ("web-1", "Linux", "10.0.1.11"),
    ("web-2", "Linux", "10.0.1.12"),
    ("db-1", "Linux", "10.0.2.21"),
    ("laptop-7", "Mac", "10.0.9.77"),
    ("ws-042", "Windows", "10.0.5.42"),
]


class FakeCrowdStrike(FakeVendor):
    """Fake Falcon API (see the module docstring)."""

    name = "crowdstrike"
    token_paths = ("/oauth2/token",)

    def __init__(self, credentials: dict[str, str] | None = None) -> None:
        self.tokens = TokenIssuer("cs-token-", 1799)
        super().__init__(credentials)

    def default_credentials(self) -> dict[str, str]:
        return {
            "client_id": "sandbox-crowdstrike-client",
            "client_secret": new_secret("cs-secret-"),
        }

    def seed(self) -> None:
        self.hosts: dict[str, Host] = {}
        for hostname, platform, ip in SEED_HOSTS:
            host = Host(device_id_for(hostname), hostname, platform, ip)
            self.hosts[host.device_id] = host
        self.tokens.expire_all()
        self.tokens.issued.clear()
        self.token_lifetime = 1799
        self.epoch_ms = False  # True: X-RateLimit-RetryAfter in epoch milliseconds
        web1 = self.host("web-1")
        ws = self.host("ws-042")
        self.alerts = [
            Alert(
                f"0123456789abcdef:ind:{web1.device_id}:1001",
                90,
                "new",
                "Suspicious reverse shell",
                "A process opened a reverse shell to 203.0.113.66",
                web1,
            ),
            Alert(
                f"0123456789abcdef:ind:{ws.device_id}:1002",
                50,
                "new",
                "Credential dumping",
                "lsass.exe memory read by an unsigned binary",
                ws,
                tactic="Credential Access",
                technique="OS Credential Dumping",
            ),
            Alert(
                f"0123456789abcdef:ind:{web1.device_id}:1003",
                30,
                "closed",
                "Adware",
                "Known adware bundle",
                web1,
                tactic="Persistence",
                technique="Browser Extensions",
            ),
        ]

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (the next API call is a 401)."""
        with self._lock:
            self.tokens.expire_all()

    def host(self, hostname: str) -> Host:
        """The seeded host with this name (tests)."""
        return next(h for h in self.hosts.values() if h.hostname == hostname)

    def add_host(self, hostname: str, platform: str = "Linux", ip: str = "10.0.0.1") -> Host:
        with self._lock:
            host = Host(device_id_for(hostname), hostname, platform, ip)
            self.hosts[host.device_id] = host
            return host

    def secrets(self) -> list[str]:
        return [self.credentials["client_secret"], *self.tokens.issued]

    def env(self, base: str) -> dict[str, str]:
        return {
            "RUNBOOK_CROWDSTRIKE_BASE_URL": base,
            "RUNBOOK_CROWDSTRIKE_CLIENT_ID": self.credentials["client_id"],
            "RUNBOOK_CROWDSTRIKE_CLIENT_SECRET": self.credentials["client_secret"],
        }

    # -- formats -----------------------------------------------------------

    @staticmethod
    def envelope(
        resources: list[Any] | None = None,
        errors: list[dict[str, Any]] | None = None,
        **meta: Any,
    ) -> dict[str, Any]:
        return {
            "meta": {"query_time": 0.004, "trace_id": str(uuid.uuid4()), **meta},
            "resources": resources if resources is not None else [],
            "errors": errors or [],
        }

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        return json_response(
            self.envelope(errors=[{"code": status, "message": message}]), status, _limits()
        )

    def rate_limited(self, fault: Fault) -> Response:
        response = self.error(429, "API rate limit exceeded.")
        when = time.time() + fault.retry_after
        response.headers["X-RateLimit-RetryAfter"] = (
            str(int(when * 1000)) if self.epoch_ms else str(int(when))
        )
        response.headers["X-RateLimit-Remaining"] = "0"
        return response

    def token_expired(self) -> Response:
        return self.error(401, "access denied, invalid bearer token")

    async def authenticate(self, request: FakeRequest) -> Response | None:
        token = bearer(request.headers)
        if token is None or not self.tokens.valid(token):
            return self.token_expired()
        return None

    def ok(self, resources: list[Any], status: int = 200, **meta: Any) -> Response:
        return json_response(self.envelope(resources, **meta), status, _limits())

    # -- routes ------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            self.route("/oauth2/token", self._token, ["POST"], auth=False),
            self.route("/devices/queries/devices/v1", self._query_devices, ["GET"]),
            self.route("/devices/entities/devices/v2", self._devices, ["GET"]),
            self.route("/devices/entities/devices-actions/v2", self._device_action, ["POST"]),
            self.route("/alerts/queries/alerts/v2", self._query_alerts, ["GET"]),
            self.route("/alerts/entities/alerts/v2", self._alerts, ["POST"]),
        ]

    async def _token(self, request: FakeRequest) -> Response:
        form = request.body if isinstance(request.body, dict) else {}
        if "form" not in request.content_type:
            return self.error(400, "Content-Type must be application/x-www-form-urlencoded")
        if (
            form.get("client_id") != self.credentials["client_id"]
            or form.get("client_secret") != self.credentials["client_secret"]
        ):
            return self.error(403, "access denied, authorization failed")
        with self._lock:
            self.tokens.lifetime = self.token_lifetime
            token = self.tokens.issue()
        return json_response(
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "bearer"},
            201,
            _limits(),
        )

    async def _query_devices(self, request: FakeRequest) -> Response:
        try:
            clauses = parse_fql(request.param("filter", "") or "")
        except ValueError as exc:
            return self.error(400, str(exc))
        limit = int(request.param("limit", "100") or 100)
        with self._lock:
            matches = [
                h.device_id for h in self.hosts.values() if fql_match(h.as_resource(), clauses)
            ]
        return self.ok(
            matches[:limit],
            pagination={"offset": 0, "limit": limit, "total": len(matches)},
        )

    async def _devices(self, request: FakeRequest) -> Response:
        ids = request.query.get("ids", [])
        if not ids:
            return self.error(400, "ids is required")
        found = []
        with self._lock:
            for device_id in ids:
                host = self.hosts.get(device_id)
                if host is None:
                    continue
                _settle(host)
                found.append(host.as_resource())
        if not found:
            return json_response(
                self.envelope(errors=[{"code": 404, "message": "No devices found"}]), 404
            )
        return self.ok(found)

    async def _device_action(self, request: FakeRequest) -> Response:
        action_name = request.param("action_name")
        if action_name not in ("contain", "lift_containment", "hide_host", "unhide_host"):
            return self.error(400, f"invalid action_name {action_name!r}")
        body = request.body
        if (
            is_malformed(body)
            or not isinstance(body, dict)
            or not isinstance(body.get("ids"), list)
        ):
            return self.error(400, 'Body must be {"ids": [...]}')
        resources = []
        with self._lock:
            for device_id in body["ids"]:
                host = self.hosts.get(str(device_id))
                if host is None:
                    return self.error(404, f"Device {device_id} not found")
                if action_name == "contain" and host.status in (
                    "normal",
                    "lift_containment_pending",
                ):
                    host.status = "containment_pending"
                    host.reads_until_settled = 1
                elif action_name == "lift_containment" and host.status in (
                    "contained",
                    "containment_pending",
                ):
                    host.status = "lift_containment_pending"
                    host.reads_until_settled = 1
                resources.append({"id": host.device_id, "path": ""})
        return self.ok(resources, status=202)

    async def _query_alerts(self, request: FakeRequest) -> Response:
        try:
            clauses = parse_fql(request.param("filter", "") or "")
        except ValueError as exc:
            return self.error(400, str(exc))
        limit = int(request.param("limit", "100") or 100)
        with self._lock:
            matches = [a.composite_id for a in self.alerts if fql_match(a.as_resource(), clauses)]
        return self.ok(
            matches[:limit], pagination={"offset": 0, "limit": limit, "total": len(matches)}
        )

    async def _alerts(self, request: FakeRequest) -> Response:
        body = request.body
        if not isinstance(body, dict) or not isinstance(body.get("composite_ids"), list):
            return self.error(400, 'Body must be {"composite_ids": [...]}')
        wanted = set(map(str, body["composite_ids"]))
        with self._lock:
            found = [a.as_resource() for a in self.alerts if a.composite_id in wanted]
        return self.ok(found)


def _settle(host: Host) -> None:
    """A pending state is shown on one read, and is final from the next one on."""
    if host.reads_until_settled > 0:
        host.reads_until_settled -= 1
        return
    if host.status == "containment_pending":
        host.status = "contained"
    elif host.status == "lift_containment_pending":
        host.status = "normal"


def _limits() -> dict[str, str]:
    return {"X-RateLimit-Limit": "6000", "X-RateLimit-Remaining": "5999"}


def parse_fql(text: str) -> list[tuple[str, str, str]]:
    """A small FQL subset: ``field:'value'``, ``field:>=N`` clauses joined by ``+``."""
    clauses = []
    for part in filter(None, (p.strip() for p in text.split("+"))):
        match = _FQL_CLAUSE.match(part)
        if match is None:
            raise ValueError(f"invalid filter expression: {part!r}")
        value = match["value"]
        if value.startswith("'"):
            value = value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
        clauses.append((match["field"], match["op"] or "", value))
    return clauses


def _field(resource: dict[str, Any], dotted: str) -> Any:
    value: Any = resource
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def fql_match(resource: dict[str, Any], clauses: list[tuple[str, str, str]]) -> bool:
    for name, op, value in clauses:
        actual = _field(resource, name)
        if op in (">=", "<=", ">", "<"):
            try:
                left, right = float(actual), float(value)
            except (TypeError, ValueError):
                return False
            ok = {
                ">=": left >= right,
                "<=": left <= right,
                ">": left > right,
                "<": left < right,
            }[op]
            if not ok:
                return False
        elif op == "!":
            if str(actual).lower() == value.lower():
                return False
        elif str(actual).lower() != value.lower():
            return False
    return True
