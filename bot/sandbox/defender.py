"""A fake Microsoft Defender for Endpoint API and its Entra ID token endpoint.

Two fakes: :class:`FakeMicrosoftLogin` serves
``POST /{tenant}/oauth2/v2.0/token`` (form ``client_id``, ``client_secret``,
``grant_type=client_credentials``, ``scope=…/.default``; 400 ``invalid_client``
for a wrong secret) and :class:`FakeDefender` the API, which only accepts
tokens the login fake issued (401 otherwise).

Machines are found with a small OData ``$filter`` subset (``eq`` and
``startswith`` joined by ``and``). Machine actions take PascalCase bodies
(``Comment``, ``IsolationType``, ``ScanType``; a camelCase key is a 400 as
in the real API) and move ``Pending`` → ``InProgress`` → ``Succeeded`` by
one step per poll of ``GET /api/machineactions/{id}``
(``next_outcome = "Failed"`` ends the next ones in ``Failed``). A second
action of the same kind while one is running is refused with 400
``ActiveRequestAlreadyExists``. A 429 carries ``Retry-After`` seconds.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute

from bot.sandbox.fake import (
    FakeRequest,
    FakeVendor,
    Fault,
    TokenIssuer,
    bearer,
    json_response,
    new_secret,
)

SCOPE_SUFFIX = "/.default"
ACTION_KINDS = {
    "isolate": "Isolate",
    "unisolate": "Unisolate",
    "collectInvestigationPackage": "CollectInvestigationPackage",
    "runAntiVirusScan": "RunAntiVirusScan",
}
_CLAUSE = re.compile(
    r"^(?:(?P<field>\w+) eq '(?P<value>(?:[^']|'')*)'"
    r"|startswith\((?P<sfield>\w+),\s*'(?P<prefix>(?:[^']|'')*)'\))$"
)


def machine_id_for(hostname: str) -> str:
    return hashlib.sha1(f"defender:{hostname}".encode(), usedforsecurity=False).hexdigest()


@dataclass(slots=True)
class Machine:
    id: str
    computer_dns_name: str
    os_platform: str
    health_status: str = "Active"
    risk_score: str = "Medium"
    last_ip_address: str = "10.0.0.1"
    isolated: bool = False

    def as_entity(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "computerDnsName": self.computer_dns_name,
            "osPlatform": self.os_platform,
            "healthStatus": self.health_status,
            "riskScore": self.risk_score,
            "lastIpAddress": self.last_ip_address,
            "lastSeen": "2026-11-22T09:57:00Z",
        }


@dataclass(slots=True)
class MachineAction:
    id: str
    type: str
    machine: Machine
    comment: str
    status: str = "Pending"
    created: str = ""
    updated: str = ""
    outcome: str = "Succeeded"
    extra: str | None = None

    def as_entity(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "scope": self.extra,
            "requestor": "runbook-bot-sandbox",
            "requestorComment": self.comment,
            "status": self.status,
            "machineId": self.machine.id,
            "computerDnsName": self.machine.computer_dns_name,
            "creationDateTimeUtc": self.created,
            "lastUpdateDateTimeUtc": self.updated,
        }

    def advance(self) -> None:
        if self.status == "Pending":
            self.status = "InProgress"
        elif self.status == "InProgress":
            self.status = self.outcome
            if self.outcome == "Succeeded":
                if self.type == "Isolate":
                    self.machine.isolated = True
                elif self.type == "Unisolate":
                    self.machine.isolated = False
        self.updated = _now()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


SEED_MACHINES = [
    ("web-1.corp.example.com", "Linux", "10.0.1.11", "Low"),
    ("ws-042.corp.example.com", "Windows10", "10.0.5.42", "High"),
    ("laptop-7.corp.example.com", "macOS", "10.0.9.77", "Medium"),
]


def ms_error(status: int, code: str, message: str) -> Response:
    return json_response(
        {"error": {"code": code, "message": message, "target": str(uuid.uuid4())}}, status
    )


class FakeMicrosoftLogin(FakeVendor):
    """Fake ``login.microsoftonline.com`` token endpoint for one tenant."""

    name = "microsoft-login"

    def __init__(self, tokens: TokenIssuer, credentials: dict[str, str] | None = None) -> None:
        self.tokens = tokens
        super().__init__(credentials)

    def default_credentials(self) -> dict[str, str]:
        return {
            "tenant_id": "00000000-0000-4000-8000-00000000sbx1",
            "client_id": "11111111-2222-4333-8444-555555555555",
            "client_secret": new_secret("mde-secret-"),
        }

    def env(self, base: str) -> dict[str, str]:
        return {
            "RUNBOOK_DEFENDER_LOGIN_URL": base,
            "RUNBOOK_DEFENDER_TENANT_ID": self.credentials["tenant_id"],
            "RUNBOOK_DEFENDER_CLIENT_ID": self.credentials["client_id"],
            "RUNBOOK_DEFENDER_CLIENT_SECRET": self.credentials["client_secret"],
        }

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        return json_response(
            {"error": code or "server_error", "error_description": message, "error_codes": []},
            status,
        )

    def routes(self) -> list[BaseRoute]:
        return [self.route("/{tenant}/oauth2/v2.0/token", self._token, ["POST"], auth=False)]

    async def _token(self, request: FakeRequest) -> Response:
        form = request.body if isinstance(request.body, dict) else {}
        if request.path_params["tenant"] != self.credentials["tenant_id"]:
            return self.error(
                400,
                f"AADSTS90002: Tenant '{request.path_params['tenant']}' not found.",
                "invalid_request",
            )
        if form.get("grant_type") != "client_credentials":
            return self.error(400, "AADSTS900144: grant_type is missing.", "invalid_request")
        if not str(form.get("scope", "")).endswith(SCOPE_SUFFIX):
            return self.error(
                400, "AADSTS1002012: The provided value for scope is not valid.", "invalid_scope"
            )
        if form.get("client_id") != self.credentials["client_id"]:
            return self.error(
                400, "AADSTS700016: Application not found in the directory.", "unauthorized_client"
            )
        if form.get("client_secret") != self.credentials["client_secret"]:
            return self.error(
                400, "AADSTS7000215: Invalid client secret provided.", "invalid_client"
            )
        with self._lock:
            token = self.tokens.issue()
        return json_response(
            {
                "token_type": "Bearer",
                "expires_in": int(self.tokens.lifetime),
                "ext_expires_in": int(self.tokens.lifetime),
                "access_token": token,
            }
        )


class FakeDefender(FakeVendor):
    """Fake Defender for Endpoint API (see the module docstring)."""

    name = "defender"

    def __init__(self, tokens: TokenIssuer) -> None:
        self.tokens = tokens
        super().__init__()

    def seed(self) -> None:
        self.machines: dict[str, Machine] = {}
        for name, platform, ip, risk in SEED_MACHINES:
            machine = Machine(
                machine_id_for(name), name, platform, last_ip_address=ip, risk_score=risk
            )
            self.machines[machine.id] = machine
        self.actions: dict[str, MachineAction] = {}
        self.next_outcome = "Succeeded"
        self.tokens.expire_all()
        self.tokens.issued.clear()
        self.tokens.lifetime = 3599

    @property
    def token_lifetime(self) -> float:
        """``expires_in`` of the tokens the login fake issues next."""
        return self.tokens.lifetime

    @token_lifetime.setter
    def token_lifetime(self, seconds: float) -> None:
        self.tokens.lifetime = seconds

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (the next API call is a 401)."""
        with self._lock:
            self.tokens.expire_all()

    def machine(self, hostname: str) -> Machine:
        """The seeded machine whose DNS name starts with ``hostname`` (tests)."""
        return next(m for m in self.machines.values() if m.computer_dns_name.startswith(hostname))

    def secrets(self) -> list[str]:
        return [*self.tokens.issued, *super().secrets()]

    def env(self, base: str) -> dict[str, str]:
        return {"RUNBOOK_DEFENDER_BASE_URL": base}

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        return ms_error(status, code or "InternalServerError", message)

    def rate_limited(self, fault: Fault) -> Response:
        response = ms_error(429, "TooManyRequests", "Rate limit is exceeded. Try again later.")
        response.headers["Retry-After"] = str(int(fault.retry_after))
        return response

    def token_expired(self) -> Response:
        return ms_error(401, "Unauthorized", "Authorization has been denied for this request.")

    async def authenticate(self, request: FakeRequest) -> Response | None:
        token = bearer(request.headers)
        if token is None or not self.tokens.valid(token):
            return self.token_expired()
        return None

    def routes(self) -> list[BaseRoute]:
        return [
            self.route("/api/machines", self._machines, ["GET"]),
            self.route("/api/machines/{machine_id}/{verb}", self._machine_action, ["POST"]),
            self.route("/api/machineactions", self._list_actions, ["GET"]),
            self.route("/api/machineactions/{action_id}", self._get_action, ["GET"]),
        ]

    async def _machines(self, request: FakeRequest) -> Response:
        try:
            clauses = parse_odata(request.param("$filter", "") or "")
        except ValueError as exc:
            return ms_error(400, "InvalidRequestBody", str(exc))
        with self._lock:
            value = [
                m.as_entity() for m in self.machines.values() if odata_match(m.as_entity(), clauses)
            ]
        return json_response({"@odata.context": "$metadata#Machines", "value": value})

    async def _machine_action(self, request: FakeRequest) -> Response:
        verb = request.path_params["verb"]
        kind = ACTION_KINDS.get(verb)
        if kind is None:
            return ms_error(404, "ResourceNotFound", f"No route for {verb}")
        body = request.body
        if not isinstance(body, dict):
            return ms_error(400, "InvalidRequestBody", "Request body is missing or not JSON")
        allowed = {"Comment", "IsolationType", "ScanType"}
        unknown = [key for key in body if key not in allowed]
        if unknown or not isinstance(body.get("Comment"), str) or not body["Comment"]:
            return ms_error(400, "InvalidRequestBody", "Comment is required (keys are PascalCase)")
        if kind == "Isolate" and body.get("IsolationType", "Full") not in ("Full", "Selective"):
            return ms_error(400, "InvalidRequestBody", "IsolationType must be Full or Selective")
        if kind == "RunAntiVirusScan" and body.get("ScanType", "Quick") not in ("Quick", "Full"):
            return ms_error(400, "InvalidRequestBody", "ScanType must be Quick or Full")
        with self._lock:
            machine = self.machines.get(request.path_params["machine_id"])
            if machine is None:
                return ms_error(404, "ResourceNotFound", "Machine was not found")
            for existing in self.actions.values():
                if (
                    existing.machine is machine
                    and existing.type == kind
                    and existing.status in ("Pending", "InProgress")
                ):
                    return ms_error(
                        400, "ActiveRequestAlreadyExists", "Action is already in progress"
                    )
            now = _now()
            action = MachineAction(
                id=str(uuid.uuid4()),
                type=kind,
                machine=machine,
                comment=body["Comment"],
                created=now,
                updated=now,
                outcome=self.next_outcome,
                extra=body.get("IsolationType") or body.get("ScanType"),
            )
            self.actions[action.id] = action
            return json_response(action.as_entity(), 201)

    async def _list_actions(self, request: FakeRequest) -> Response:
        try:
            clauses = parse_odata(request.param("$filter", "") or "")
        except ValueError as exc:
            return ms_error(400, "InvalidRequestBody", str(exc))
        with self._lock:
            value = [
                a.as_entity() for a in self.actions.values() if odata_match(a.as_entity(), clauses)
            ]
        return json_response({"@odata.context": "$metadata#MachineActions", "value": value})

    async def _get_action(self, request: FakeRequest) -> Response:
        with self._lock:
            action = self.actions.get(request.path_params["action_id"])
            if action is None:
                return ms_error(404, "ResourceNotFound", "Machine action was not found")
            entity = action.as_entity()
            action.advance()
        return json_response(entity)


def parse_odata(text: str) -> list[tuple[str, str, str]]:
    """``field eq 'v'`` and ``startswith(field,'v')`` clauses joined by ``and``."""
    clauses = []
    for part in filter(None, (p.strip() for p in re.split(r"\s+and\s+", text.strip()))):
        match = _CLAUSE.match(part)
        if match is None:
            raise ValueError(f"Invalid filter clause: {part}")
        if match["field"]:
            clauses.append(("eq", match["field"], match["value"].replace("''", "'")))
        else:
            clauses.append(("startswith", match["sfield"], match["prefix"].replace("''", "'")))
    return clauses


def odata_match(entity: dict[str, Any], clauses: list[tuple[str, str, str]]) -> bool:
    for op, name, value in clauses:
        actual = str(entity.get(name, "")).lower()
        if op == "eq" and actual != value.lower():
            return False
        if op == "startswith" and not actual.startswith(value.lower()):
            return False
    return True
