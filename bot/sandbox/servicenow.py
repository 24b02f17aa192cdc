"""A fake ServiceNow Table API for incidents (``/api/now/table/incident``).

HTTP Basic ``username:password`` (401 ``User Not Authenticated`` otherwise).
``POST`` creates (201 ``{"result": {sys_id, number: "INC…", …}}``), ``GET``
with ``sysparm_query=field=value^field2=value2`` lists, ``PATCH …/{sys_id}``
updates (404 ``No Record found`` for an unknown one). Errors are
``{"error": {"message", "detail"}, "status": "failure"}``; 429 has
``Retry-After`` seconds. ``urgency``/``impact`` must be 1, 2 or 3.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute

from bot.sandbox.fake import FakeRequest, FakeVendor, json_response, new_secret

READ_ONLY = {"sys_id", "number", "sys_created_on", "sys_updated_on"}


class FakeServiceNow(FakeVendor):
    """Fake ServiceNow instance."""

    name = "servicenow"

    def default_credentials(self) -> dict[str, str]:
        return {"username": "runbook.bot", "password": new_secret("snow-pass-")}

    def seed(self) -> None:
        self.incidents: dict[str, dict[str, Any]] = {}
        self._number = 10000

    def env(self, base: str) -> dict[str, str]:
        return {
            "RUNBOOK_SERVICENOW_BASE_URL": base,
            "RUNBOOK_SERVICENOW_USERNAME": self.credentials["username"],
            "RUNBOOK_SERVICENOW_PASSWORD": self.credentials["password"],
        }

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        return json_response(
            {"error": {"message": message, "detail": code or ""}, "status": "failure"}, status
        )

    def token_expired(self) -> Response:
        return self.error(401, "User Not Authenticated", "Required to provide Auth information")

    async def authenticate(self, request: FakeRequest) -> Response | None:
        expected = base64.b64encode(
            f"{self.credentials['username']}:{self.credentials['password']}".encode()
        ).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return self.token_expired()
        return None

    def routes(self) -> list[BaseRoute]:
        return [
            self.route("/api/now/table/incident", self._collection, ["GET", "POST"]),
            self.route("/api/now/table/incident/{sys_id}", self._record, ["GET", "PATCH", "PUT"]),
        ]

    def _check(self, fields: dict[str, Any]) -> Response | None:
        for name in ("urgency", "impact"):
            if name in fields and str(fields[name]) not in ("1", "2", "3"):
                return self.error(400, f"Invalid value for {name}", "Value must be 1, 2 or 3")
        return None

    async def _collection(self, request: FakeRequest) -> Response:
        if request.method == "GET":
            return self._list(request)
        body = request.body
        if not isinstance(body, dict):
            return self.error(400, "Exception while reading request", "Invalid JSON body")
        if not body.get("short_description"):
            return self.error(400, "Mandatory field missing", "short_description is required")
        problem = self._check(body)
        if problem is not None:
            return problem
        with self._lock:
            self._number += 1
            record = {
                "urgency": "3",
                "impact": "3",
                "state": "1",
                "description": "",
                **{key: str(value) for key, value in body.items() if key not in READ_ONLY},
                "sys_id": uuid.uuid4().hex,
                "number": f"INC{self._number:07d}",
                "sys_created_on": "2026-11-22 10:00:00",
            }
            self.incidents[record["sys_id"]] = record
        return json_response({"result": record}, 201)

    def _list(self, request: FakeRequest) -> Response:
        query = request.param("sysparm_query", "") or ""
        wanted = [part.partition("=") for part in query.split("^") if part]
        limit = int(request.param("sysparm_limit", "1000") or 1000)
        fields = [f for f in (request.param("sysparm_fields", "") or "").split(",") if f]
        with self._lock:
            rows = [
                r
                for r in self.incidents.values()
                if all(str(r.get(name, "")) == value for name, _, value in wanted)
            ][:limit]
            if fields:
                rows = [{f: r.get(f, "") for f in fields} for r in rows]
        return json_response({"result": rows})

    async def _record(self, request: FakeRequest) -> Response:
        with self._lock:
            record = self.incidents.get(request.path_params["sys_id"])
            if record is None:
                return self.error(
                    404,
                    "No Record found",
                    "Record doesn't exist or ACL restricts the record retrieval",
                )
            if request.method == "GET":
                return json_response({"result": record})
            body = request.body
            if not isinstance(body, dict):
                return self.error(400, "Exception while reading request", "Invalid JSON body")
            problem = self._check(body)
            if problem is not None:
                return problem
            record.update({k: str(v) for k, v in body.items() if k not in READ_ONLY})
            return json_response({"result": record})
