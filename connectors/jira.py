"""Jira Cloud (REST v3): open an issue, comment on it, move it through its workflow.

Settings: ``RUNBOOK_JIRA_BASE_URL`` (``https://<site>.atlassian.net``),
``RUNBOOK_JIRA_EMAIL`` and ``RUNBOOK_JIRA_API_TOKEN`` (HTTP Basic).

Text (``description``, comment ``body``) is plain text turned into Atlassian
Document Format: blank lines separate paragraphs, single line breaks are kept.
``transition`` takes the transition's name *or* the target status's name
(case-insensitive); when the issue already is in that status it changes
nothing and says ``changed: false``. Creating an issue is not idempotent:
Jira has no idempotency key, so a step that creates one should not be retried
blindly after a timeout.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import Field, SecretStr

from bot.errors import ConnectorError
from connectors.base import ActionContext, ActionInput, ActionOutput, action
from connectors.http_auth import Auth, BasicAuth
from connectors.http_client import PlannedRequest
from connectors.vendor import HTTPConnector, HTTPSettings

ISSUE_KEY = r"^([A-Z][A-Z0-9_]*-[0-9]+|[0-9]+)$"
PROJECT_KEY = r"^[A-Z][A-Z0-9_]{0,19}$"


class JiraSettings(HTTPSettings):
    base_url: str
    email: str
    api_token: SecretStr


class CreateIssueInput(ActionInput):
    project: str = Field(pattern=PROJECT_KEY, description="project key, e.g. SEC")
    summary: str = Field(min_length=1, max_length=255)
    description: str | None = None
    issue_type: str = Field("Task", min_length=1)
    labels: list[str] = Field(default_factory=list)


class IssueOutput(ActionOutput):
    key: str
    id: str
    url: str


class CommentInput(ActionInput):
    issue: str = Field(pattern=ISSUE_KEY, description="issue key, e.g. SEC-42")
    body: str = Field(min_length=1)


class CommentOutput(ActionOutput):
    id: str
    issue: str


class TransitionInput(ActionInput):
    issue: str = Field(pattern=ISSUE_KEY)
    to: str = Field(min_length=1, description="transition name or target status name")


class TransitionOutput(ActionOutput):
    issue: str
    status: str
    changed: bool


def adf(text: str) -> dict[str, Any]:
    """Plain text as an Atlassian Document Format document."""
    paragraphs = [part for part in text.replace("\r\n", "\n").split("\n\n") if part.strip()]
    content = []
    for paragraph in paragraphs:
        nodes: list[dict[str, Any]] = []
        for number, line in enumerate(paragraph.strip("\n").split("\n")):
            if number:
                nodes.append({"type": "hardBreak"})
            if line:
                nodes.append({"type": "text", "text": line})
        content.append({"type": "paragraph", "content": nodes})
    return {"type": "doc", "version": 1, "content": content}


class Jira(HTTPConnector[JiraSettings]):
    """Jira Cloud issues."""

    name = "jira"
    title = "Jira Cloud"
    Settings = JiraSettings

    def make_auth(self) -> Auth:
        return BasicAuth(self.cfg.email, self.cfg.api_token)

    def plan_create_issue(
        self, args: CreateIssueInput, ctx: ActionContext | None
    ) -> PlannedRequest:
        fields: dict[str, Any] = {
            "project": {"key": args.project},
            "issuetype": {"name": args.issue_type},
            "summary": args.summary,
        }
        if args.description:
            fields["description"] = adf(args.description)
        if args.labels:
            fields["labels"] = args.labels
        return PlannedRequest("POST", "/rest/api/3/issue", json={"fields": fields})

    @action(input=CreateIssueInput, output=IssueOutput, mutating=True, idempotent=False)
    async def create_issue(self, ctx: ActionContext, args: CreateIssueInput) -> IssueOutput:
        """Open an issue; output {key, id, url}."""
        data = await self.send(self.plan_create_issue(args, ctx), ctx)
        with self.reading("POST /rest/api/3/issue"):
            key = str(data["key"])
            return IssueOutput(
                key=key, id=str(data["id"]), url=f"{self.cfg.base_url.rstrip('/')}/browse/{key}"
            )

    def plan_add_comment(self, args: CommentInput, ctx: ActionContext | None) -> PlannedRequest:
        return PlannedRequest(
            "POST", f"/rest/api/3/issue/{quote(args.issue)}/comment", json={"body": adf(args.body)}
        )

    @action(input=CommentInput, output=CommentOutput, mutating=True, idempotent=False)
    async def add_comment(self, ctx: ActionContext, args: CommentInput) -> CommentOutput:
        """Add a comment to an issue."""
        request = self.plan_add_comment(args, ctx)
        data = await self.send(request, ctx)
        with self.reading(f"POST {request.path}"):
            return CommentOutput(id=str(data["id"]), issue=args.issue)

    def plan_transition(self, args: TransitionInput, ctx: ActionContext | None) -> PlannedRequest:
        return PlannedRequest(
            "POST",
            f"/rest/api/3/issue/{quote(args.issue)}/transitions",
            json={"transition": {"id": f"<id of the transition to {args.to!r}>"}},
        )

    @action(input=TransitionInput, output=TransitionOutput, mutating=True, idempotent=True)
    async def transition(self, ctx: ActionContext, args: TransitionInput) -> TransitionOutput:
        """Move an issue by transition name (or target status name)."""
        path = f"/rest/api/3/issue/{quote(args.issue)}/transitions"
        data = await self.send(PlannedRequest("GET", path), ctx)
        wanted = args.to.casefold()
        with self.reading(f"GET {path}"):
            transitions: list[dict[str, Any]] = list(data["transitions"])
            match = next(
                (t for t in transitions if str(t.get("name", "")).casefold() == wanted), None
            ) or next(
                (
                    t
                    for t in transitions
                    if str((t.get("to") or {}).get("name", "")).casefold() == wanted
                ),
                None,
            )
        if match is not None:
            await self.send(
                PlannedRequest("POST", path, json={"transition": {"id": str(match["id"])}}), ctx
            )
            status = (match.get("to") or {}).get("name") or match.get("name") or args.to
            return TransitionOutput(issue=args.issue, status=str(status), changed=True)
        issue_path = f"/rest/api/3/issue/{quote(args.issue)}"
        issue = await self.send(PlannedRequest("GET", issue_path, params={"fields": "status"}), ctx)
        with self.reading(f"GET {issue_path}"):
            current = str(issue["fields"]["status"]["name"])
        if current.casefold() == wanted:
            return TransitionOutput(issue=args.issue, status=current, changed=False)
        names = ", ".join(str(t.get("name")) for t in transitions) or "none"
        raise ConnectorError(
            f"jira: issue {args.issue} (status {current!r}) has no transition {args.to!r} "
            f"(available: {names})",
            connector=self.name,
        )
