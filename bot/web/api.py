"""The JSON API under ``/api`` (bearer tokens) and ``GET /openapi.json`` (no token).

Every route translates one request into one engine call — the same
``start_run``, ``cancel`` and ``decide`` that chat, the terminal, alerts and
schedules use — and the engine's errors into status codes:

=====================  ======
NotFoundError          404
PermissionDenied       403
ConflictError          409
InputError             422 (the message names the input)
StoreError             503
=====================  ======

Tokens come from ``RUNBOOK_API_TOKENS`` (``name:token`` pairs). A request's
token is compared with every configured token in constant time (as SHA-256
digests, so lengths leak nothing either); a missing or wrong token gets the
same 401 whatever tokens exist. The token's name is the person: runs it
starts have the requester ``api:<name>``, and at a gate it decides as
``api:<name>`` under the usual eligibility rules.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.engine.approvals import Verdict
from bot.errors import (
    AuditError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDenied,
    StoreError,
)
from bot.logs import run_id_var, step_id_var
from bot.redact import REDACTOR, WEAK_SECRET_LENGTH
from bot.runbook.model import trigger_document
from bot.web.bodies import (
    BadRequest,
    error,
    json_errors,
    json_mount,
    parse_object,
    read_body,
)
from bot.web.openapi import (
    RUN_ID_PATTERN,
    DecisionRequest,
    StartRunRequest,
    openapi_document,
)

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.engine.engine import Engine
    from bot.service import Service

log = logging.getLogger("runbook.api")

MAX_API_BODY = 1024 * 1024
DEFAULT_LIMIT = 50  # as `runbook runs`
MAX_LIMIT = 1000
CANCEL_WAIT = 5.0
RUN_STATUSES = ("pending", "running", "waiting", "succeeded", "failed", "rejected", "cancelled")
QUERY_PARAMETERS = {"list_runs": frozenset({"status", "limit"})}
_RUN_ID = re.compile(RUN_ID_PATTERN)
_STEP_ID = re.compile(r"^[a-z_][a-z0-9_]*$")

Endpoint = Callable[[Request, "Engine", str], Awaitable[Response]]
M = TypeVar("M", bound=BaseModel)


class Api:
    """The JSON API extension."""

    name = "api"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tokens = [
            (name, hashlib.sha256(token.get_secret_value().encode()).digest())
            for name, token in settings.api_tokens.items()
        ]
        self.service: Service | None = None
        self._cancels: set[asyncio.Task[Any]] = set()
        self._document: dict[str, Any] | None = None

    # -- extension ------------------------------------------------------------------------

    async def prepare(self, service: Service) -> None:
        self.service = service
        for name, token in self.settings.api_tokens.items():
            REDACTOR.add(token)
            length = len(token.get_secret_value())
            if length < WEAK_SECRET_LENGTH:
                # only the name and numbers: secret masking rewrites any text the token is in
                log.warning(
                    "the API token of %r has %d characters (minimum %d): easy to guess; "
                    "use 32 or more random characters",
                    name,
                    length,
                    WEAK_SECRET_LENGTH,
                )
        if not self._tokens:
            log.info("the API is off: set RUNBOOK_API_TOKENS (name:token pairs) to use /api")

    async def start(self, service: Service) -> None:
        return None

    async def stop(self) -> None:
        for task in list(self._cancels):
            if not task.done():
                task.cancel()

    def health(self) -> dict[str, Any]:
        return {"tokens": len(self._tokens)}

    def routes(self) -> list[BaseRoute]:
        def route(path: str, **endpoints: Endpoint) -> Route:
            handlers = {
                method: json_errors(self._authenticated(endpoint))
                for method, endpoint in endpoints.items()
            }

            async def dispatch(request: Request) -> Response:
                return await handlers[request.method](request)

            # One route per path, so a 405 lists every method the path has.
            return Route(path, dispatch, methods=list(handlers))

        api = [
            route("/runbooks", GET=self.list_runbooks),
            route("/runs", GET=self.list_runs, POST=self.start_run),
            route("/runs/{run_id}", GET=self.get_run),
            route("/runs/{run_id}/cancel", POST=self.cancel),
            route("/runs/{run_id}/steps/{step_id}/decision", POST=self.decide),
        ]
        return [
            Route("/openapi.json", json_errors(self.openapi), methods=["GET"]),
            json_mount("/api", api),
        ]

    # -- authentication -------------------------------------------------------------------

    def identify(self, request: Request) -> str | None:
        """The name of the token the request carries, or None."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        given = hashlib.sha256(token.strip().encode("utf-8", "replace")).digest()
        found = None
        for name, digest in self._tokens:  # no early exit: every token is compared
            if hmac.compare_digest(given, digest):
                found = name
        return found

    def _authenticated(self, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(endpoint)
        async def handler(request: Request) -> Response:
            name = self.identify(request)
            if name is None:
                return JSONResponse(
                    {"error": "missing or invalid bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="runbook"'},
                )
            service = self.service
            if service is None or service.engine is None or not service.ready:
                return _unavailable()
            allowed = QUERY_PARAMETERS.get(endpoint.__name__, frozenset())
            for key in request.query_params:
                if key not in allowed or len(request.query_params.getlist(key)) > 1:
                    known = ", ".join(sorted(allowed)) or "none"
                    return error(400, f"unknown or repeated query parameter {key!r} ({known})")
            try:
                return await endpoint(request, service.engine, name)
            except NotFoundError as exc:
                return error(404, str(exc))
            except PermissionDenied as exc:
                return error(403, str(exc))
            except InputError as exc:
                return error(422, str(exc))
            except ConflictError as exc:
                if not service.ready:
                    return _unavailable()
                return error(409, str(exc))
            except AuditError as exc:
                return error(400, f"cannot be recorded: {exc}")
            except StoreError as exc:
                log.error("%s %s: %s", request.method, request.url.path, exc)
                return _unavailable("the service cannot write its data directory; see its log")

        return handler

    # -- routes ---------------------------------------------------------------------------

    async def openapi(self, request: Request) -> Response:
        if self._document is None:
            from bot.triggers.alerts import alert_routes

            service = self.service
            loaded = service.loaded if service is not None else None
            runbooks = [lr.runbook for lr in loaded.runbooks.values()] if loaded else []
            self._document = openapi_document(runbooks, list(alert_routes(runbooks)))
        return JSONResponse(self._document)

    async def list_runbooks(self, request: Request, engine: Engine, name: str) -> Response:
        rows = []
        for loaded in sorted(engine.catalog.loaded.values(), key=lambda item: item.name):
            runbook = loaded.runbook
            rows.append(
                {
                    "name": runbook.name,
                    "title": runbook.display_title,
                    "description": runbook.description,
                    "path": loaded.path,
                    "triggers": [trigger_document(t) for t in runbook.triggers],
                    "inputs": {
                        key: spec.model_dump(mode="json", exclude_unset=True)
                        for key, spec in runbook.inputs.items()
                    },
                }
            )
        return JSONResponse(rows)

    async def list_runs(self, request: Request, engine: Engine, name: str) -> Response:
        status = request.query_params.get("status")
        if status is not None and status not in RUN_STATUSES:
            raise BadRequest(400, f"status must be one of {', '.join(RUN_STATUSES)}")
        limit = _limit(request.query_params.get("limit"))
        await engine.sync()  # answer only with durable state
        rows = engine.store.summaries()
        if status is not None:
            rows = [row for row in rows if row["status"] == status]
        return JSONResponse(REDACTOR.value(rows[:limit]))

    async def get_run(self, request: Request, engine: Engine, name: str) -> Response:
        run_id = _run_id(request)
        await engine.sync()  # answer only with durable state
        run = engine.store.get_run(run_id)
        if run is None:
            return error(404, f"unknown run {run_id}")
        return JSONResponse(REDACTOR.value(run.document()))

    async def start_run(self, request: Request, engine: Engine, name: str) -> Response:
        body = await _body(request, StartRunRequest)
        key = request.headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= 200:
            raise BadRequest(400, "Idempotency-Key must have 1 to 200 characters")
        result = await engine.start_run(
            body.runbook,
            body.inputs,
            requester=f"api:{name}",
            trigger={"kind": "api"},
            idempotency_key=f"api:{name}:{key}" if key is not None else None,
        )
        run = result.run
        return JSONResponse(
            {"id": run.id, "status": str(run.status)},
            status_code=200 if result.deduplicated else 201,
            headers={"Location": f"/api/runs/{run.id}"},
        )

    async def cancel(self, request: Request, engine: Engine, name: str) -> Response:
        run_id = _run_id(request)
        token = run_id_var.set(run_id)
        try:
            task = asyncio.create_task(engine.cancel(run_id, f"api:{name}"))
            self._cancels.add(task)
            task.add_done_callback(self._cancels.discard)
            # Compensations may take long: answer once they are done or after a while,
            # whichever comes first; the cancellation itself is recorded either way.
            done, _ = await asyncio.wait({task}, timeout=CANCEL_WAIT)
            if task in done:
                run = task.result()
                return JSONResponse({"id": run.id, "status": str(run.status)})
            current = engine.store.get_run(run_id)
            status = str(current.status) if current is not None else "running"
            return JSONResponse({"id": run_id, "status": status}, status_code=202)
        finally:
            run_id_var.reset(token)

    async def decide(self, request: Request, engine: Engine, name: str) -> Response:
        run_id = _run_id(request)
        step_id = request.path_params["step_id"]
        if not _STEP_ID.match(step_id):
            return error(404, f"run {run_id} has no step {step_id!r}")
        body = await _body(request, DecisionRequest)
        tokens = (run_id_var.set(run_id), step_id_var.set(step_id))
        try:
            result = await engine.decide(
                run_id,
                step_id,
                f"api:{name}",
                body.decision,
                comment=body.comment,
                fields=body.fields,
            )
        finally:
            step_id_var.reset(tokens[1])
            run_id_var.reset(tokens[0])
        if result.verdict is Verdict.REFUSED:
            return JSONResponse(
                {"error": result.reason, "verdict": "refused", "outcome": result.outcome},
                status_code=403,
            )
        if result.verdict is Verdict.NOT_WAITING:
            return JSONResponse(
                {"error": result.reason, "verdict": "not_waiting", "outcome": result.outcome},
                status_code=409,
            )
        return JSONResponse(
            {
                "verdict": "accepted",
                "gate_open": result.gate_open,
                "approvals": result.approvals,
                "required": result.required,
                "outcome": result.outcome,
                "run": {"id": result.run.id, "status": str(result.run.status)},
            }
        )


def _run_id(request: Request) -> str:
    run_id: str = request.path_params["run_id"]
    if not _RUN_ID.match(run_id):
        raise BadRequest(404, f"unknown run {run_id!r}")
    return run_id


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(400, f"limit must be an integer from 1 to {MAX_LIMIT}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequest(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
    return value


async def _body(request: Request, model: type[M]) -> M:
    payload = parse_object(await read_body(request, MAX_API_BODY))
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise BadRequest(422, _validation_message(exc)) from None


def _validation_message(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in err["loc"]) or "body"
        problems.append(f"{where}: {err['msg']}")
    return "; ".join(problems)


def _unavailable(message: str = "the service is not ready; try again shortly") -> Response:
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": "5"})
