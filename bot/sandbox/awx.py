"""A fake Ansible AWX / Automation Controller API: launch templates, watch jobs.

``Authorization: Bearer <token>`` (401 ``{"detail": "Invalid token."}``
otherwise). ``POST /api/v2/job_templates/{id}/launch/`` answers 201 with
``job`` and ``id``; ``GET /api/v2/jobs/{id}/`` moves the job one step per poll:
``pending`` → ``waiting`` → ``running`` → ``successful``. A job ends
``failed`` when a host in its ``limit`` starts with ``fail``, when its
``extra_vars`` have ``simulate_failure: true``, or for the next jobs after
``next_outcome = "failed"``. Errors are DRF's (``{"detail": …}`` or field lists).

Templates: 7 "Patch Linux servers", 8 "Patch Windows servers", 9 "Restart services".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute

from bot.sandbox.fake import FakeRequest, FakeVendor, bearer, json_response, new_secret

TEMPLATES = {7: "Patch Linux servers", 8: "Patch Windows servers", 9: "Restart services"}
PROGRESSION = ("pending", "waiting", "running")


@dataclass(slots=True)
class Job:
    id: int
    template_id: int
    extra_vars: dict[str, Any]
    limit: str
    outcome: str
    status: str = "pending"
    polls: int = 0
    events: list[str] = field(default_factory=list)

    def as_entity(self) -> dict[str, Any]:
        finished = self.status not in PROGRESSION
        return {
            "id": self.id,
            "type": "job",
            "url": f"/api/v2/jobs/{self.id}/",
            "name": TEMPLATES[self.template_id],
            "job_template": self.template_id,
            "status": self.status,
            "failed": self.status in ("failed", "error"),
            "elapsed": float(self.polls) if finished else 0.0,
            "limit": self.limit,
            "extra_vars": self.extra_vars,
        }

    def advance(self) -> None:
        self.polls += 1
        index = PROGRESSION.index(self.status) if self.status in PROGRESSION else None
        if index is None:
            return
        self.status = PROGRESSION[index + 1] if index + 1 < len(PROGRESSION) else self.outcome


class FakeAWX(FakeVendor):
    """Fake AWX controller."""

    name = "awx"

    def default_credentials(self) -> dict[str, str]:
        return {"token": new_secret("awx-token-", 30)}

    def seed(self) -> None:
        self.jobs: dict[int, Job] = {}
        self._next_job = 1000
        self.next_outcome = "successful"

    def env(self, base: str) -> dict[str, str]:
        return {"RUNBOOK_AWX_BASE_URL": base, "RUNBOOK_AWX_TOKEN": self.credentials["token"]}

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        return json_response({"detail": message}, status)

    def token_expired(self) -> Response:
        return self.error(401, "Invalid token.")

    async def authenticate(self, request: FakeRequest) -> Response | None:
        if bearer(request.headers) != self.credentials["token"]:
            return self.token_expired()
        return None

    def routes(self) -> list[BaseRoute]:
        return [
            self.route("/api/v2/job_templates/{template_id:int}/launch/", self._launch, ["POST"]),
            self.route("/api/v2/jobs/{job_id:int}/", self._job, ["GET"]),
        ]

    async def _launch(self, request: FakeRequest) -> Response:
        template_id = int(request.path_params["template_id"])
        if template_id not in TEMPLATES:
            return self.error(404, "Not found.")
        body = request.body if request.body is not None else {}
        if not isinstance(body, dict):
            return json_response({"detail": "JSON parse error"}, 400)
        extra_vars = body.get("extra_vars", {})
        if not isinstance(extra_vars, dict):
            return json_response({"extra_vars": ["Must be a valid JSON or YAML dictionary."]}, 400)
        limit = body.get("limit", "")
        if not isinstance(limit, str):
            return json_response({"limit": ["Not a valid string."]}, 400)
        fails = extra_vars.get("simulate_failure") is True or any(
            host.strip().startswith("fail") for host in limit.split(",")
        )
        with self._lock:
            self._next_job += 1
            job = Job(
                id=self._next_job,
                template_id=template_id,
                extra_vars=extra_vars,
                limit=limit,
                outcome="failed" if fails else self.next_outcome,
            )
            self.jobs[job.id] = job
            entity = job.as_entity()
        return json_response({"job": job.id, "ignored_fields": {}, **entity}, 201)

    async def _job(self, request: FakeRequest) -> Response:
        with self._lock:
            job = self.jobs.get(int(request.path_params["job_id"]))
            if job is None:
                return self.error(404, "Not found.")
            entity = job.as_entity()
            job.advance()
        return json_response(entity)
