"""Generic HTTP: call an API no built-in connector speaks.

``http.request`` sends any method and is declared mutating (a dry run shows
it instead of sending it); ``http.get`` is the read-only variant that a dry
run calls for real. Both answer ``{status, headers, json, text}``; ``json``
is null when the body is not JSON.

Optional settings: ``RUNBOOK_HTTP_BASE_URL`` (relative ``url`` values are
joined to it) and ``RUNBOOK_HTTP_BEARER_TOKEN``, sent as
``Authorization: Bearer …`` *only* to URLs under the base URL, so a runbook
can reach one internal API without ever seeing its token. Without them the
connector is configured and calls absolute URLs unauthenticated.

By default any 2xx is success; ``expected_status`` lists the statuses that
are (others fail: 429 and 5xx retryably). ``idempotency_header`` names a
header (``Idempotency-Key``) that carries the step's idempotency key, for
APIs that deduplicate on one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr

from bot.errors import ConnectorError
from connectors.base import ActionContext, ActionInput, ActionOutput, action
from connectors.http_client import PlannedRequest
from connectors.http_errors import Exchange, check_response
from connectors.vendor import HTTPConnector, HTTPSettings, idempotency_key

MAX_TEXT = 256 * 1024


class HTTPConnectorSettings(HTTPSettings):
    base_url: str = ""
    bearer_token: SecretStr | None = None


class GetInput(ActionInput):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    url: str = Field(min_length=1, description="absolute, or relative to RUNBOOK_HTTP_BASE_URL")
    headers: dict[str, str] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    expected_status: list[int] | None = Field(None, description="default: any 2xx")


class RequestInput(GetInput):
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    json_body: Any = Field(None, alias="json", description="JSON body")
    idempotency_header: str | None = Field(
        None, description="header that carries the step's idempotency key"
    )


class ResponseOutput(ActionOutput):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    status: int
    headers: dict[str, str]
    json_body: Any = Field(None, alias="json")
    text: str


class HTTP(HTTPConnector[HTTPConnectorSettings]):
    """Any HTTP API."""

    name = "http"
    title = "HTTP"
    Settings = HTTPConnectorSettings

    def _target(self, url: str) -> tuple[str, bool]:
        """(absolute URL, whether it is under the base URL)."""
        base = self.cfg.base_url.rstrip("/")
        if url.startswith(("http://", "https://")):
            return url, bool(base) and (url == base or url.startswith(base + "/"))
        if not base:
            raise ConnectorError(
                f"http: relative url {url!r} needs RUNBOOK_HTTP_BASE_URL", connector=self.name
            )
        return base + "/" + url.lstrip("/"), True

    def _request(self, args: RequestInput, ctx: ActionContext | None) -> PlannedRequest:
        url, internal = self._target(args.url)
        headers = dict(args.headers)
        if args.idempotency_header:
            headers[args.idempotency_header] = idempotency_key(ctx)
        credentialed = internal and self.cfg.bearer_token is not None
        if credentialed and self.cfg.bearer_token is not None:
            headers["Authorization"] = "Bearer " + self.cfg.bearer_token.get_secret_value()
        accept = frozenset(args.expected_status or ()) | frozenset(range(100, 600))
        return PlannedRequest(
            args.method,
            url,
            params=dict(args.params) or None,
            json=args.json_body,
            headers=headers,
            accept=accept,
            auth=False,
            want_json=False,
        )

    def plan_request(self, args: RequestInput, ctx: ActionContext | None) -> PlannedRequest:
        return self._request(args, ctx)

    def describe_call(self, spec: Any, args: Any) -> dict[str, Any] | None:
        if not isinstance(args, RequestInput):
            args = RequestInput.model_validate(args.model_dump())
        request = self._request(args, None)
        shown = self.http.describe(request)
        if request.headers:
            shown["headers"] = self.http.mask_value(dict(request.headers))
        return shown

    async def _call(self, args: RequestInput, ctx: ActionContext) -> ResponseOutput:
        request = self._request(args, ctx)
        answer = await self.http.send(request, ctx)
        expected = args.expected_status
        if not (answer.status in expected if expected else 200 <= answer.status < 300):
            where = f"{request.method} {self.http.path_of(request.path)}"
            if 200 <= answer.status < 300:
                wanted = ", ".join(str(code) for code in expected or [])
                raise ConnectorError(
                    f"http: expected HTTP {wanted}, got {answer.status} on {where}",
                    connector=self.name,
                    status=answer.status,
                )
            check_response(
                Exchange(
                    connector=self.name,
                    method=request.method,
                    path=self.http.path_of(request.path),
                    status=answer.status,
                    headers=answer.headers,
                    text=answer.text,
                    credentialed="Authorization" in (request.headers or {}),
                ),
                hints=self.http.hints,
                now=self.http.clock(),
                mask=self.http.mask,
                want_json=False,
            )
        return ResponseOutput(
            status=answer.status,
            headers=dict(answer.headers),
            json=answer.data,
            text=answer.text[:MAX_TEXT],
        )

    @action(input=RequestInput, output=ResponseOutput, mutating=True, idempotent=False)
    async def request(self, ctx: ActionContext, args: RequestInput) -> ResponseOutput:
        """Send an HTTP request; output {status, headers, json, text}."""
        return await self._call(args, ctx)

    @action(input=GetInput, output=ResponseOutput)
    async def get(self, ctx: ActionContext, args: GetInput) -> ResponseOutput:
        """GET a URL (read-only: a dry run calls it for real)."""
        return await self._call(RequestInput.model_validate(args.model_dump()), ctx)
