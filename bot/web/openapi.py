"""The HTTP API's request and response models, and the OpenAPI document built from them.

Request bodies are validated with these models (unknown keys are errors, as
everywhere in Runbook Bot), so the document and the behaviour cannot drift
apart. ``GET /openapi.json`` serves :func:`openapi_document`; the names of
the loaded runbooks and alert sources appear in it as enums.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from bot import __version__ as VERSION
from bot.runbook.inputs import MAX_TEXT
from bot.runbook.model import InputSpec, Runbook

RUN_ID_PATTERN = r"^r-[0-9a-z]{16}$"
STEP_ID_PATTERN = r"^[a-z_][a-z0-9_]*$"
RunStatusName = Literal[
    "pending", "running", "waiting", "succeeded", "failed", "rejected", "cancelled"
]
StepOutcomeName = Literal[
    "succeeded", "failed", "skipped", "approved", "rejected", "expired", "cancelled"
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ---------------------------------------------------------------------------


class StartRunRequest(_Model):
    """Start a run of a runbook."""

    runbook: str = Field(min_length=1, description="the runbook's name")
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="input values; coerced to the declared types"
    )


class DecisionRequest(_Model):
    """One person's decision at an approval gate (the token's name is the person)."""

    decision: Literal["approve", "reject", "skip"] = Field(
        description="`skip` only at a recovery gate"
    )
    comment: str | None = None
    fields: dict[str, Any] = Field(
        default_factory=dict, description="values of the fields the gate asks for"
    )


# -- responses --------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Every error answer: what was wrong."""

    error: str


class StartedRun(BaseModel):
    """A run that was started (or found again by its ``Idempotency-Key``)."""

    id: str
    status: RunStatusName


class RunSummary(BaseModel):
    """One row of ``runbook runs --json``."""

    id: str
    runbook: str
    status: RunStatusName
    started_at: str
    ended_at: str | None
    requester: str | None


class WaitingGate(BaseModel):
    """A gate that waits for people."""

    approvals: int
    required: int
    deadline: str | None
    recovery: bool


class StepDocument(BaseModel):
    """One step of a run."""

    outcome: StepOutcomeName | None
    attempts: int
    output: Any = None
    error: str | None
    started_at: str | None
    ended_at: str | None
    waiting: WaitingGate | None = None


class RunDocument(BaseModel):
    """The document of ``runbook status --json``: the run with every step, in order."""

    id: str
    runbook: str
    status: RunStatusName
    inputs: dict[str, Any]
    requester: str | None
    trigger: dict[str, Any]
    started_at: str
    ended_at: str | None
    sandbox: bool
    steps: dict[str, StepDocument]


class RunbookInfo(BaseModel):
    """A runbook that can be started."""

    name: str
    title: str
    description: str | None
    path: str
    triggers: list[dict[str, Any]]
    inputs: dict[str, dict[str, Any]]


class DecisionAnswer(BaseModel):
    """An accepted decision, and the state of the gate after it."""

    verdict: Literal["accepted"]
    gate_open: bool = Field(description="true while the quorum is not reached")
    approvals: int
    required: int
    outcome: StepOutcomeName | None = Field(description="the gate's outcome once it ended")
    run: StartedRun


class DecisionRefused(BaseModel):
    """A decision that changed nothing (audited when the gate still waits)."""

    error: str
    verdict: Literal["refused", "not_waiting"]
    outcome: StepOutcomeName | None = None


class StartedByAlert(BaseModel):
    id: str
    runbook: str


class JoinedByAlert(BaseModel):
    runbook: str
    dedup_key: str
    run_id: str


class AlertProblem(BaseModel):
    """A trigger (or an alert of an Alertmanager message) that started nothing, and why."""

    runbook: str | None
    trigger: int | None
    error: str
    input: str | None = None


class AlertAnswer(BaseModel):
    """What an alert started."""

    runs: list[StartedByAlert]
    deduplicated: list[JoinedByAlert]
    matched: int = Field(description="triggers whose `if` held, deduplicated ones included")
    errors: list[AlertProblem] | None = Field(
        None, description="only when a trigger could not be evaluated or mapped: what and why"
    )
    error: str | None = Field(None, description="only with `errors`: the first reason")


MODELS: tuple[type[BaseModel], ...] = (
    StartRunRequest,
    DecisionRequest,
    ErrorBody,
    StartedRun,
    RunSummary,
    RunDocument,
    RunbookInfo,
    DecisionAnswer,
    DecisionRefused,
    AlertAnswer,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref(ErrorBody), description)


UNAUTHORIZED = _error("missing or wrong bearer token")
UNAVAILABLE = _error("the service is starting or stopping; try again")
BAD_REQUEST = _error("the body is not a JSON object, or an unknown query parameter")
NO_QUERY = _error("an unknown query parameter (this operation takes none)")
TOO_LARGE = _error("the body is larger than the limit")


def _run_id_param() -> dict[str, Any]:
    return {
        "name": "run_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": RUN_ID_PATTERN},
        "description": "a run id (`r-` and 16 characters)",
    }


def _paths(runbooks: Sequence[Runbook], sources: list[str]) -> dict[str, Any]:
    api: list[dict[str, list[str]]] = [{"bearer": []}]
    run_id = _run_id_param()
    step_id = {
        "name": "step_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": STEP_ID_PATTERN},
    }
    source_schema: dict[str, Any] = {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]{0,62}$"}
    if sources:
        source_schema = {"type": "string", "enum": sources}
    return {
        "/api/runbooks": {
            "get": {
                "operationId": "listRunbooks",
                "summary": "The runbooks that are loaded",
                "security": api,
                "responses": {
                    "200": _json({"type": "array", "items": _ref(RunbookInfo)}, "runbooks"),
                    "400": NO_QUERY,
                    "401": UNAUTHORIZED,
                    "503": UNAVAILABLE,
                },
            }
        },
        "/api/runs": {
            "get": {
                "operationId": "listRuns",
                "summary": "Recent runs, newest first (as `runbook runs --json`)",
                "security": api,
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": list(get_args(RunStatusName))},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 1000,
                            "default": 50,
                        },
                    },
                ],
                "responses": {
                    "200": _json({"type": "array", "items": _ref(RunSummary)}, "run summaries"),
                    "400": _error("a bad, unknown or repeated query parameter"),
                    "401": UNAUTHORIZED,
                    "503": UNAVAILABLE,
                },
            },
            "post": {
                "operationId": "startRun",
                "summary": "Start a run; the token's name is its requester (`api:<name>`)",
                "security": api,
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                        "description": "a retry with the same key answers the same run (200)",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _start_schema(runbooks)}},
                },
                "responses": {
                    "201": _json(_ref(StartedRun), "the run started (durably recorded)"),
                    "200": _json(_ref(StartedRun), "the run started earlier with this key"),
                    "400": BAD_REQUEST,
                    "401": UNAUTHORIZED,
                    "403": _error("the runbook's `run_by` does not include this token"),
                    "404": _error("unknown runbook"),
                    "413": TOO_LARGE,
                    "422": _error("inputs that do not fit (the message names the input)"),
                    "503": UNAVAILABLE,
                },
            },
        },
        "/api/runs/{run_id}": {
            "get": {
                "operationId": "getRun",
                "summary": "One run with its steps (as `runbook status --json`)",
                "security": api,
                "parameters": [run_id],
                "responses": {
                    "200": _json(_ref(RunDocument), "the run"),
                    "400": NO_QUERY,
                    "401": UNAUTHORIZED,
                    "404": _error("unknown run"),
                    "503": UNAVAILABLE,
                },
            }
        },
        "/api/runs/{run_id}/cancel": {
            "post": {
                "operationId": "cancelRun",
                "summary": "Cancel a run (its requester, people in `run_by`, its approvers)",
                "security": api,
                "parameters": [run_id],
                "responses": {
                    "200": _json(_ref(StartedRun), "cancelled; compensations have run"),
                    "202": _json(_ref(StartedRun), "cancelled; compensations still running"),
                    "400": NO_QUERY,
                    "401": UNAUTHORIZED,
                    "403": _error("this token may not cancel the run"),
                    "404": _error("unknown run"),
                    "409": _error("the run already ended"),
                    "503": UNAVAILABLE,
                },
            }
        },
        "/api/runs/{run_id}/steps/{step_id}/decision": {
            "post": {
                "operationId": "decide",
                "summary": "Approve, reject (or at a recovery gate, skip) a waiting gate",
                "security": api,
                "parameters": [run_id, step_id],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(DecisionRequest)}},
                },
                "responses": {
                    "200": _json(_ref(DecisionAnswer), "accepted"),
                    "400": BAD_REQUEST,
                    "401": UNAUTHORIZED,
                    "403": _json(_ref(DecisionRefused), "refused: not eligible, or a repeat"),
                    "404": _error("unknown run or step"),
                    "409": _json(_ref(DecisionRefused), "the step is not waiting"),
                    "413": TOO_LARGE,
                    "422": _error("a bad decision body, or fields that do not fit"),
                    "503": UNAVAILABLE,
                },
            }
        },
        "/alerts/{source}": {
            "post": {
                "operationId": "postAlert",
                "summary": "Alert intake: start the runbooks whose alert triggers match",
                "description": (
                    "Authenticated with the source's secret `RUNBOOK_ALERT_SECRET_<SOURCE>`: "
                    "`X-Runbook-Signature: sha256=<hex HMAC-SHA256 of the raw body>` or "
                    "`Authorization: Bearer <secret>`. An Alertmanager webhook body is taken "
                    "alert by alert; resolved alerts start nothing."
                ),
                "security": [{"alertSignature": []}, {"alertBearer": []}],
                "parameters": [
                    {"name": "source", "in": "path", "required": True, "schema": source_schema}
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"type": "object", "additionalProperties": True}
                        }
                    },
                },
                "responses": {
                    "202": _json(_ref(AlertAnswer), "taken; every run reported is recorded"),
                    "400": _error("not JSON, not an object, or nested deeper than 100 levels"),
                    "401": _error("missing or wrong signature or secret, or none configured"),
                    "404": _error("no runbook trigger names this source"),
                    "413": TOO_LARGE,
                    "503": UNAVAILABLE,
                },
            }
        },
    }


def _start_schema(runbooks: Sequence[Runbook]) -> dict[str, Any]:
    """One body schema per runbook, with its inputs' canonical types.

    The server also accepts values it can coerce losslessly (``"5"`` for an
    integer, as from the command line); the document shows what to send.
    """
    if not runbooks:
        return _ref(StartRunRequest)
    variants = []
    for runbook in sorted(runbooks, key=lambda rb: rb.name):
        required = [name for name, spec in runbook.inputs.items() if spec.is_required]
        inputs: dict[str, Any] = {
            "type": "object",
            "properties": {name: input_schema(spec) for name, spec in runbook.inputs.items()},
            "additionalProperties": False,
        }
        if required:
            inputs["required"] = required
        variant: dict[str, Any] = {
            "type": "object",
            "title": runbook.name,
            "properties": {"runbook": {"const": runbook.name}, "inputs": inputs},
            "required": ["runbook", "inputs"] if required else ["runbook"],
            "additionalProperties": False,
        }
        variants.append(variant)
    return {"oneOf": variants}


def input_schema(spec: InputSpec) -> dict[str, Any]:
    """The JSON Schema of one declared input."""
    schema: dict[str, Any] = dict(_INPUT_TYPES[spec.type.value])
    if spec.description:
        schema["description"] = spec.description
    if spec.enum is not None:
        schema["enum"] = list(spec.enum)
    if spec.pattern is not None:
        schema["pattern"] = spec.pattern
    if spec.has_default:
        schema["default"] = spec.default
    return schema


_INPUT_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string", "maxLength": MAX_TEXT},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "list": {"type": "array"},
    "object": {"type": "object"},
}


def openapi_document(runbooks: Sequence[Runbook], sources: Sequence[str]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API and alert intake."""
    _, definitions = models_json_schema(
        [
            (
                model,
                "validation" if model in (StartRunRequest, DecisionRequest) else "serialization",
            )
            for model in MODELS
        ],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Runbook Bot",
            "version": VERSION,
            "description": (
                "Start, follow, cancel and decide runbook runs; post alerts. Errors are JSON "
                '`{"error": "..."}`. `/healthz`, `/metrics` and this document need no token.'
            ),
        },
        "paths": _paths(runbooks, sorted(sources)),
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token of RUNBOOK_API_TOKENS (`name:token` pairs)",
                },
                "alertSignature": {"type": "apiKey", "in": "header", "name": "X-Runbook-Signature"},
                "alertBearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
