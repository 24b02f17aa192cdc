"""Microsoft Defender for Endpoint: find a machine, isolate it, collect evidence, scan.

Settings: ``RUNBOOK_DEFENDER_TENANT_ID``, ``RUNBOOK_DEFENDER_CLIENT_ID``,
``RUNBOOK_DEFENDER_CLIENT_SECRET`` (an Entra ID app with the WindowsDefenderATP
application permissions *Machine.Read.All*, *Machine.Isolate*,
*Machine.CollectForensics*, *Machine.Scan*), optionally
``RUNBOOK_DEFENDER_BASE_URL`` (default ``https://api.securitycenter.microsoft.com``),
``RUNBOOK_DEFENDER_LOGIN_URL`` (default ``https://login.microsoftonline.com``)
and ``RUNBOOK_DEFENDER_SCOPE``.

Machine actions (isolate, release, investigation package, AV scan) answer a
MachineAction whose status moves ``Pending`` → ``InProgress`` → ``Succeeded``
(or ``Failed``, ``TimeOut``, ``Cancelled``); watch one with
``defender.get_machine_action`` and ``until: output.done``. When Defender
refuses a second action of the same kind while one is running
(``ActiveRequestAlreadyExists``), the running action is returned instead, so
retrying a step never starts a duplicate.

``find_machine`` answers ``found: false`` when no machine has that name; a
short name without a dot also matches ``name.<any domain>``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr

from bot.errors import ConnectorError
from connectors.base import ActionContext, ActionInput, ActionOutput, action
from connectors.http_auth import Auth, ClientCredentials
from connectors.http_client import PlannedRequest
from connectors.vendor import HTTPConnector, HTTPSettings, run_note

MACHINE_ID = r"^[0-9a-fA-F]{40}$"
ACTION_ID = r"^[0-9a-fA-F-]{36}$"
ACTIVE = ("Pending", "InProgress")
DONE = frozenset({"Succeeded", "Failed", "TimeOut", "Cancelled", "Canceled"})


class DefenderSettings(HTTPSettings):
    base_url: str = "https://api.securitycenter.microsoft.com"
    tenant_id: str
    client_id: str
    client_secret: SecretStr
    login_url: str = "https://login.microsoftonline.com"
    scope: str = "https://api.securitycenter.microsoft.com/.default"


class FindMachineInput(ActionInput):
    hostname: str = Field(min_length=1, max_length=253, description="computer DNS name")


class MachineOutput(ActionOutput):
    found: bool
    machine_id: str | None = None
    hostname: str
    os_platform: str | None = None
    health_status: str | None = None
    risk_score: str | None = None
    last_ip_address: str | None = None
    matches: int = 0


class _MachineCall(ActionInput):
    machine_id: str = Field(pattern=MACHINE_ID, description="Defender machine id")
    comment: str | None = Field(None, max_length=1000, description="default: names the run")


class IsolateInput(_MachineCall):
    isolation_type: Literal["Full", "Selective"] = "Full"


class ReleaseInput(_MachineCall):
    pass


class CollectInput(_MachineCall):
    pass


class ScanInput(_MachineCall):
    scan_type: Literal["Quick", "Full"] = "Quick"


class MachineActionInput(ActionInput):
    action_id: str = Field(pattern=ACTION_ID, description="MachineAction id")
    require_success: bool = Field(
        False, description="fail the step when the action ends other than Succeeded"
    )


class MachineActionOutput(ActionOutput):
    action_id: str
    status: str = Field(description="Pending, InProgress, Succeeded, Failed, TimeOut, Cancelled")
    type: str | None = None
    machine_id: str | None = None
    done: bool = False
    succeeded: bool = False


def odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _action_output(item: dict[str, Any]) -> MachineActionOutput:
    status = str(item["status"])
    return MachineActionOutput(
        action_id=str(item["id"]),
        status=status,
        type=item.get("type"),
        machine_id=item.get("machineId"),
        done=status in DONE,
        succeeded=status == "Succeeded",
    )


class Defender(HTTPConnector[DefenderSettings]):
    """Microsoft Defender for Endpoint machines and machine actions."""

    name = "defender"
    title = "Microsoft Defender for Endpoint"
    Settings = DefenderSettings

    def make_auth(self) -> Auth:
        token_url = f"{self.cfg.login_url.rstrip('/')}/{self.cfg.tenant_id}/oauth2/v2.0/token"
        return ClientCredentials(
            token_url,
            {
                "client_id": self.cfg.client_id,
                "client_secret": self.cfg.client_secret,
                "grant_type": "client_credentials",
                "scope": self.cfg.scope,
            },
            success=frozenset({200}),
        )

    async def _machines(self, odata_filter: str, ctx: ActionContext) -> list[dict[str, Any]]:
        data = await self.send(
            PlannedRequest("GET", "/api/machines", params={"$filter": odata_filter}), ctx
        )
        with self.reading("GET /api/machines"):
            return list(data["value"])

    @action(input=FindMachineInput, output=MachineOutput)
    async def find_machine(self, ctx: ActionContext, args: FindMachineInput) -> MachineOutput:
        """Look a machine up by DNS name; found: false when Defender does not know it."""
        name = args.hostname.lower()
        machines = await self._machines(f"computerDnsName eq {odata_string(name)}", ctx)
        if not machines and "." not in name:
            machines = await self._machines(
                f"startswith(computerDnsName,{odata_string(name + '.')})", ctx
            )
        if not machines:
            return MachineOutput(found=False, hostname=args.hostname)
        with self.reading("GET /api/machines"):
            best = max(machines, key=lambda m: str(m.get("lastSeen") or ""))
            return MachineOutput(
                found=True,
                machine_id=best["id"],
                hostname=best.get("computerDnsName") or args.hostname,
                os_platform=best.get("osPlatform"),
                health_status=best.get("healthStatus"),
                risk_score=best.get("riskScore"),
                last_ip_address=best.get("lastIpAddress"),
                matches=len(machines),
            )

    # -- machine actions ---------------------------------------------------

    def plan_isolate_machine(self, args: IsolateInput, ctx: ActionContext | None) -> PlannedRequest:
        return PlannedRequest(
            "POST",
            f"/api/machines/{args.machine_id}/isolate",
            json={"Comment": args.comment or run_note(ctx), "IsolationType": args.isolation_type},
            accept=frozenset({400}),
        )

    def plan_release_machine(self, args: ReleaseInput, ctx: ActionContext | None) -> PlannedRequest:
        return PlannedRequest(
            "POST",
            f"/api/machines/{args.machine_id}/unisolate",
            json={"Comment": args.comment or run_note(ctx)},
            accept=frozenset({400}),
        )

    def plan_collect_investigation_package(
        self, args: CollectInput, ctx: ActionContext | None
    ) -> PlannedRequest:
        return PlannedRequest(
            "POST",
            f"/api/machines/{args.machine_id}/collectInvestigationPackage",
            json={"Comment": args.comment or run_note(ctx)},
            accept=frozenset({400}),
        )

    def plan_run_av_scan(self, args: ScanInput, ctx: ActionContext | None) -> PlannedRequest:
        return PlannedRequest(
            "POST",
            f"/api/machines/{args.machine_id}/runAntiVirusScan",
            json={"Comment": args.comment or run_note(ctx), "ScanType": args.scan_type},
            accept=frozenset({400}),
        )

    async def _start(
        self, request: PlannedRequest, kind: str, machine_id: str, ctx: ActionContext
    ) -> MachineActionOutput:
        answer = await self.http.send(request, ctx)
        data = answer.data or {}
        if answer.status == 400:
            error = data.get("error") if isinstance(data, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            if code == "ActiveRequestAlreadyExists":
                running = await self._running(kind, machine_id, ctx)
                if running is not None:
                    return running
            message = (error or {}).get("message") if isinstance(error, dict) else None
            raise ConnectorError(
                f"defender: HTTP 400 on {request.method} {self.http.path_of(request.path)}: "
                f"{code or 'BadRequest'}: {message or 'no message'}",
                connector=self.name,
                status=400,
            )
        with self.reading(f"{request.method} {self.http.path_of(request.path)}"):
            return _action_output(data)

    async def _running(
        self, kind: str, machine_id: str, ctx: ActionContext
    ) -> MachineActionOutput | None:
        odata = f"machineId eq {odata_string(machine_id)} and type eq {odata_string(kind)}"
        data = await self.send(
            PlannedRequest("GET", "/api/machineactions", params={"$filter": odata}), ctx
        )
        with self.reading("GET /api/machineactions"):
            active = [item for item in data["value"] if item.get("status") in ACTIVE]
            if not active:
                return None
            newest = max(active, key=lambda item: str(item.get("creationDateTimeUtc") or ""))
            return _action_output(newest)

    @action(input=IsolateInput, output=MachineActionOutput, mutating=True, idempotent=True)
    async def isolate_machine(self, ctx: ActionContext, args: IsolateInput) -> MachineActionOutput:
        """Isolate a machine from the network (Full or Selective)."""
        return await self._start(
            self.plan_isolate_machine(args, ctx), "Isolate", args.machine_id, ctx
        )

    @action(input=ReleaseInput, output=MachineActionOutput, mutating=True, idempotent=True)
    async def release_machine(self, ctx: ActionContext, args: ReleaseInput) -> MachineActionOutput:
        """Release a machine from isolation."""
        return await self._start(
            self.plan_release_machine(args, ctx), "Unisolate", args.machine_id, ctx
        )

    @action(input=CollectInput, output=MachineActionOutput, mutating=True, idempotent=True)
    async def collect_investigation_package(
        self, ctx: ActionContext, args: CollectInput
    ) -> MachineActionOutput:
        """Start collecting an investigation package (a running collection is returned as is)."""
        return await self._start(
            self.plan_collect_investigation_package(args, ctx),
            "CollectInvestigationPackage",
            args.machine_id,
            ctx,
        )

    @action(input=ScanInput, output=MachineActionOutput, mutating=True, idempotent=True)
    async def run_av_scan(self, ctx: ActionContext, args: ScanInput) -> MachineActionOutput:
        """Start a Microsoft Defender Antivirus scan (Quick or Full)."""
        return await self._start(
            self.plan_run_av_scan(args, ctx), "RunAntiVirusScan", args.machine_id, ctx
        )

    @action(input=MachineActionInput, output=MachineActionOutput)
    async def get_machine_action(
        self, ctx: ActionContext, args: MachineActionInput
    ) -> MachineActionOutput:
        """A machine action's status (for until: output.done)."""
        path = f"/api/machineactions/{args.action_id}"
        data = await self.send(PlannedRequest("GET", path), ctx)
        with self.reading(f"GET {path}"):
            result = _action_output(data)
        if args.require_success and result.done and not result.succeeded:
            raise ConnectorError(
                f"defender: machine action {result.action_id} ({result.type}) on "
                f"{data.get('computerDnsName') or result.machine_id} ended {result.status}",
                connector=self.name,
            )
        return result
