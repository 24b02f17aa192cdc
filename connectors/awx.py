"""Ansible AWX / Automation Controller: launch a job template, watch the job.

Settings: ``RUNBOOK_AWX_BASE_URL`` (``https://<controller>``) and
``RUNBOOK_AWX_TOKEN`` (an OAuth2 personal access token, sent as a bearer
token). The template must allow ``extra_vars`` and ``limit`` on launch
("Prompt on launch") if a runbook passes them.

A job's status moves ``pending`` → ``waiting`` → ``running`` → ``successful``
(or ``failed``, ``error``, ``canceled``); watch it with ``awx.get_job`` and
``until: output.finished``, then branch on ``output.failed``. Launching is
not idempotent: each launch is a new job.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr

from bot.errors import ConnectorError
from connectors.base import ActionContext, ActionInput, ActionOutput, action
from connectors.http_auth import Auth, HeaderAuth
from connectors.http_client import PlannedRequest
from connectors.vendor import HTTPConnector, HTTPSettings

FINISHED = frozenset({"successful", "failed", "error", "canceled"})


class AWXSettings(HTTPSettings):
    base_url: str
    token: SecretStr


class LaunchInput(ActionInput):
    template_id: int = Field(ge=1, description="job template id")
    extra_vars: dict[str, Any] = Field(default_factory=dict)
    limit: str | None = Field(None, description="host pattern, e.g. web-1,web-2")


class LaunchOutput(ActionOutput):
    job_id: int
    status: str
    url: str


class JobInput(ActionInput):
    job_id: int = Field(ge=1)
    require_success: bool = Field(
        False, description="fail the step when the job finishes other than successful"
    )


class JobOutput(ActionOutput):
    job_id: int
    status: str = Field(
        description="pending, waiting, running, successful, failed, error, canceled"
    )
    failed: bool
    finished: bool
    elapsed: float | None = None


class AWX(HTTPConnector[AWXSettings]):
    """Ansible AWX / Automation Controller jobs."""

    name = "awx"
    title = "Ansible AWX / Automation Controller"
    Settings = AWXSettings

    def make_auth(self) -> Auth:
        return HeaderAuth("Authorization", self.cfg.token, prefix="Bearer ")

    def plan_launch_job(self, args: LaunchInput, ctx: ActionContext | None) -> PlannedRequest:
        body: dict[str, Any] = {}
        if args.extra_vars:
            body["extra_vars"] = args.extra_vars
        if args.limit:
            body["limit"] = args.limit
        return PlannedRequest(
            "POST", f"/api/v2/job_templates/{args.template_id}/launch/", json=body
        )

    @action(input=LaunchInput, output=LaunchOutput, mutating=True, idempotent=False)
    async def launch_job(self, ctx: ActionContext, args: LaunchInput) -> LaunchOutput:
        """Launch a job template; output {job_id}."""
        request = self.plan_launch_job(args, ctx)
        data = await self.send(request, ctx)
        with self.reading(f"POST {request.path}"):
            job_id = int(data.get("job") or data["id"])
            return LaunchOutput(
                job_id=job_id,
                status=str(data.get("status") or "pending"),
                url=f"{self.cfg.base_url.rstrip('/')}/#/jobs/playbook/{job_id}/output",
            )

    @action(input=JobInput, output=JobOutput)
    async def get_job(self, ctx: ActionContext, args: JobInput) -> JobOutput:
        """A job's status (for until: output.finished)."""
        path = f"/api/v2/jobs/{args.job_id}/"
        data = await self.send(PlannedRequest("GET", path), ctx)
        with self.reading(f"GET {path}"):
            status = str(data["status"])
            elapsed = data.get("elapsed")
            result = JobOutput(
                job_id=int(data["id"]),
                status=status,
                failed=bool(data.get("failed")) or status in ("failed", "error", "canceled"),
                finished=status in FINISHED,
                elapsed=None if elapsed is None else float(elapsed),
            )
        if args.require_success and result.finished and result.failed:
            raise ConnectorError(
                f"awx: job {result.job_id} ({data.get('name') or 'job'}) finished {result.status}",
                connector=self.name,
            )
        return result
