"""A fake Jira Cloud REST v3 API: issues, comments, workflow transitions.

HTTP Basic ``email:api_token`` (a wrong one is a 401 with a plain-text body,
as Jira Cloud answers). Text fields must be Atlassian Document Format: a
plain string as ``description`` or comment ``body`` is a 400, as in Jira.
Projects ``SEC``, ``OPS`` and ``IT`` exist with issue types ``Task``,
``Bug``, ``Incident``. The workflow is To Do → In Progress → Done with the
transitions ``Start Progress`` (11), ``Done`` (31) and ``Reopen`` (41).
Errors are ``{"errorMessages": [...], "errors": {field: msg}}``; 429 has
``Retry-After`` seconds.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute

from bot.sandbox.fake import FakeRequest, FakeVendor, json_response, new_secret

PROJECTS = {"SEC": "10001", "OPS": "10002", "IT": "10003"}
ISSUE_TYPES = ("Task", "Bug", "Incident")
# transition id -> (name, from statuses, to status)
WORKFLOW = {
    "11": ("Start Progress", ("To Do",), "In Progress"),
    "31": ("Done", ("To Do", "In Progress"), "Done"),
    "41": ("Reopen", ("Done",), "To Do"),
}
STATUS_IDS = {"To Do": "10000", "In Progress": "3", "Done": "10001"}


@dataclass(slots=True)
class Issue:
    id: str
    key: str
    project: str
    issue_type: str
    summary: str
    description: Any
    labels: list[str]
    status: str = "To Do"
    comments: list[dict[str, Any]] = field(default_factory=list)


def adf_problem(doc: Any) -> str | None:
    """Why ``doc`` is not an Atlassian Document Format document (None if it is)."""
    if not isinstance(doc, dict) or doc.get("type") != "doc" or doc.get("version") != 1:
        return "Operation value must be an Atlassian Document (see the ADF format)."
    content = doc.get("content")
    if not isinstance(content, list):
        return "ADF document must have a content array."
    for block in content:
        if not isinstance(block, dict) or "type" not in block:
            return "ADF nodes must have a type."
        for inline in block.get("content", []):
            if inline.get("type") == "text" and not inline.get("text"):
                return "ADF text nodes must not be empty."
    return None


def adf_text(doc: Any) -> str:
    """The plain text of an ADF document (tests)."""
    if not isinstance(doc, dict):
        return ""
    paragraphs = []
    for block in doc.get("content", []):
        parts = []
        for inline in block.get("content", []):
            parts.append(inline.get("text", "") if inline.get("type") == "text" else "\n")
        paragraphs.append("".join(parts))
    return "\n\n".join(paragraphs)


class FakeJira(FakeVendor):
    """Fake Jira Cloud."""

    name = "jira"

    def default_credentials(self) -> dict[str, str]:
        return {"email": "runbook-bot@example.com", "api_token": new_secret("jira-token-", 32)}

    def seed(self) -> None:
        self.issues: dict[str, Issue] = {}
        self._next_id = 10100
        self._counters: dict[str, int] = {}

    def env(self, base: str) -> dict[str, str]:
        return {
            "RUNBOOK_JIRA_BASE_URL": base,
            "RUNBOOK_JIRA_EMAIL": self.credentials["email"],
            "RUNBOOK_JIRA_API_TOKEN": self.credentials["api_token"],
        }

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        return json_response({"errorMessages": [message], "errors": {}}, status)

    def token_expired(self) -> Response:
        return Response(
            "Client must be authenticated to access this resource.",
            status_code=401,
            media_type="text/plain",
            headers={"WWW-Authenticate": 'Basic realm="Jira"'},
        )

    async def authenticate(self, request: FakeRequest) -> Response | None:
        expected = base64.b64encode(
            f"{self.credentials['email']}:{self.credentials['api_token']}".encode()
        ).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return self.token_expired()
        return None

    def issue(self, key: str) -> Issue | None:
        with self._lock:
            return self.issues.get(key) or next(
                (i for i in self.issues.values() if i.id == key), None
            )

    def routes(self) -> list[BaseRoute]:
        return [
            self.route("/rest/api/3/issue", self._create, ["POST"]),
            self.route("/rest/api/3/issue/{key}", self._get, ["GET"]),
            self.route("/rest/api/3/issue/{key}/comment", self._comment, ["POST"]),
            self.route("/rest/api/3/issue/{key}/transitions", self._transitions, ["GET", "POST"]),
        ]

    def _not_found(self) -> Response:
        return json_response(
            {
                "errorMessages": ["Issue does not exist or you do not have permission to see it."],
                "errors": {},
            },
            404,
        )

    async def _create(self, request: FakeRequest) -> Response:
        body = request.body
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, dict):
            return self.error(400, "Request body must contain fields")
        errors: dict[str, str] = {}
        project = str((fields.get("project") or {}).get("key"))
        if project not in PROJECTS:
            errors["project"] = "valid project is required"
        issue_type = (fields.get("issuetype") or {}).get("name")
        if issue_type not in ISSUE_TYPES:
            errors["issuetype"] = "Specify a valid issue type"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        if "description" in fields:
            problem = adf_problem(fields["description"])
            if problem:
                errors["description"] = problem
        if errors:
            return json_response({"errorMessages": [], "errors": errors}, 400)
        with self._lock:
            number = self._counters.get(project, 0) + 1
            self._counters[project] = number
            self._next_id += 1
            issue = Issue(
                id=str(self._next_id),
                key=f"{project}-{number}",
                project=project,
                issue_type=str(issue_type),
                summary=str(summary),
                description=fields.get("description"),
                labels=list(fields.get("labels") or []),
            )
            self.issues[issue.key] = issue
        return json_response(
            {"id": issue.id, "key": issue.key, "self": f"/rest/api/3/issue/{issue.id}"}, 201
        )

    async def _get(self, request: FakeRequest) -> Response:
        issue = self.issue(request.path_params["key"])
        if issue is None:
            return self._not_found()
        return json_response(
            {
                "id": issue.id,
                "key": issue.key,
                "fields": {
                    "summary": issue.summary,
                    "status": {"name": issue.status, "id": STATUS_IDS[issue.status]},
                    "issuetype": {"name": issue.issue_type},
                    "labels": issue.labels,
                },
            }
        )

    async def _comment(self, request: FakeRequest) -> Response:
        issue = self.issue(request.path_params["key"])
        if issue is None:
            return self._not_found()
        body = request.body.get("body") if isinstance(request.body, dict) else None
        problem = adf_problem(body)
        if problem:
            return json_response({"errorMessages": [], "errors": {"comment": problem}}, 400)
        with self._lock:
            comment = {"id": str(20000 + len(issue.comments) + 1), "body": body}
            issue.comments.append(comment)
        return json_response({"id": comment["id"], "body": body}, 201)

    async def _transitions(self, request: FakeRequest) -> Response:
        issue = self.issue(request.path_params["key"])
        if issue is None:
            return self._not_found()
        available = {
            tid: (name, to)
            for tid, (name, sources, to) in WORKFLOW.items()
            if issue.status in sources
        }
        if request.method == "GET":
            return json_response(
                {
                    "transitions": [
                        {"id": tid, "name": name, "to": {"name": to, "id": STATUS_IDS[to]}}
                        for tid, (name, to) in available.items()
                    ]
                }
            )
        body = request.body if isinstance(request.body, dict) else {}
        transition_id = str((body.get("transition") or {}).get("id", ""))
        if transition_id not in available:
            return json_response(
                {
                    "errorMessages": [
                        "Transition id '" + transition_id + "' is not valid for this issue."
                    ],
                    "errors": {},
                },
                400,
            )
        with self._lock:
            issue.status = available[transition_id][1]
        return Response(status_code=204)
