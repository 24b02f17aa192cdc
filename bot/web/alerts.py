"""Alert intake: ``POST /alerts/{source}`` starts the runbooks whose alert triggers match.

The request is checked in this order, cheapest refusal first:

1. the service is ready (else 503, so senders retry);
2. the source is named by some runbook trigger (else 404);
3. a secret is configured for it, ``RUNBOOK_ALERT_SECRET_<SOURCE>`` (else 401,
   always — and ``serve`` warns about it at start);
4. a bearer secret, if one is sent, before the body is read;
5. the body, read up to the size limit (413 without reading the rest);
6. an ``X-Runbook-Signature: sha256=<hex>`` HMAC of the raw body, if one is
   sent (at least one of the two must be, and every one sent must hold, else
   401); comparisons are constant-time;
7. the body is one JSON object nested at most 100 levels (else 400).

Then each alert (one, or each firing alert of an Alertmanager message) is
tried on every trigger of the source (:mod:`bot.triggers.alerts`), and each
trigger whose ``if`` holds starts a run through the engine, like every other
way in, with the actor ``alert:<source>``. A trigger that cannot be mapped
starts nothing: the answer and an ``alert.rejected`` audit record say why.
The 202 is sent only once every run it reports is durably recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.config import alert_secret_name
from bot.errors import (
    AuditError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDenied,
    StoreError,
)
from bot.redact import REDACTOR, WEAK_SECRET_LENGTH
from bot.triggers.alerts import (
    AlertRoute,
    Mapped,
    MappingFailure,
    alert_routes,
    map_alert,
    split_alerts,
)
from bot.web.bodies import (
    BadRequest,
    check_declared_length,
    json_errors,
    json_mount,
    parse_object,
    read_body,
)

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.engine.engine import Engine
    from bot.metrics import Counter
    from bot.service import Service

log = logging.getLogger("runbook.alerts")

SIGNATURE_HEADER = "x-runbook-signature"
UNKNOWN_SOURCE = "_unknown"


@dataclass(slots=True)
class IntakeResult:
    """What one request did (the 202 body, plus ``errors``)."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    deduplicated: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    matched: int = 0

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "runs": self.runs,
            "deduplicated": self.deduplicated,
            "matched": self.matched,
        }
        if self.errors:  # only then: the contract's three keys otherwise
            body["errors"] = self.errors
            body["error"] = _summary(self.errors)
        return body


def signature(secret: str, body: bytes) -> str:
    """The ``X-Runbook-Signature`` value for a body: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of two strings of any length or alphabet."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


class AlertMetrics:
    """The alert counters on the service's registry."""

    def __init__(self, service: Service) -> None:
        metrics = service.metrics
        self.received: Counter = metrics.counter(
            "runbook_alerts_received_total", "Alert requests received, by source"
        )
        self.accepted: Counter = metrics.counter(
            "runbook_alerts_accepted_total", "Alert requests accepted (202), by source"
        )
        self.rejected: Counter = metrics.counter(
            "runbook_alerts_rejected_total",
            "Alert requests refused, and triggers that could not be mapped, by source and reason",
        )
        self.runs: Counter = metrics.counter(
            "runbook_alert_runs_started_total", "Runs started by alerts, by source and runbook"
        )
        self.deduplicated: Counter = metrics.counter(
            "runbook_alerts_deduplicated_total",
            "Alerts that joined a run within its dedup window, by source and runbook",
        )


class AlertIntake:
    """The alert intake extension (``/alerts/{source}``)."""

    name = "alerts"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limit = settings.max_alert_bytes
        self.service: Service | None = None
        self.routes_by_source: dict[str, list[AlertRoute]] = {}
        self.secrets: dict[str, str] = {}
        self.metrics: AlertMetrics | None = None

    # -- extension ------------------------------------------------------------------------

    async def prepare(self, service: Service) -> None:
        self.service = service
        loaded = service.loaded
        runbooks = [lr.runbook for lr in loaded.runbooks.values()] if loaded else []
        self.routes_by_source = alert_routes(runbooks)
        self.secrets = {}
        for source in self.routes_by_source:
            secret = service.env.get(alert_secret_name(source), "")
            if secret:
                if len(secret) < WEAK_SECRET_LENGTH:
                    # only the name and numbers: secret masking rewrites any text it is in
                    log.warning(
                        "%s has %d characters (minimum %d): easy to guess; "
                        "use 32 or more random characters",
                        alert_secret_name(source),
                        len(secret),
                        WEAK_SECRET_LENGTH,
                    )
                REDACTOR.add(secret)
                self.secrets[source] = secret
            else:
                log.warning(
                    "alert source %r has no secret: set %s; until then POST /alerts/%s "
                    "answers 401 to every request",
                    source,
                    alert_secret_name(source),
                    source,
                )
        self.metrics = AlertMetrics(service)

    async def start(self, service: Service) -> None:
        return None

    async def stop(self) -> None:
        return None

    def routes(self) -> list[BaseRoute]:
        return [
            json_mount("/alerts", [Route("/{source}", json_errors(self.receive), methods=["POST"])])
        ]

    def health(self) -> dict[str, Any]:
        return {
            "sources": {
                source: "ok" if source in self.secrets else "no secret (every request gets 401)"
                for source in sorted(self.routes_by_source)
            }
        }

    # -- the endpoint ---------------------------------------------------------------------

    async def receive(self, request: Request) -> Response:
        source: str = request.path_params["source"]
        known = source in self.routes_by_source
        label = source if known else UNKNOWN_SOURCE
        metrics = self.metrics
        service = self.service
        if metrics is None or service is None or service.engine is None or not service.ready:
            return _unavailable()
        metrics.received.inc(source=label)
        try:
            if not known:
                raise BadRequest(404, f"unknown alert source {source!r}", "unknown_source")
            body = await self._authenticated_body(request, source)
            payload = parse_object(body)
        except BadRequest as exc:
            metrics.rejected.inc(source=label, reason=exc.reason)
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)
        try:
            result = await self.intake(service.engine, source, payload)
        except (StoreError, _ShuttingDown) as exc:
            log.error("alert from %s not taken: %s", source, exc)
            return _unavailable("cannot take alerts now; the service log says why")
        except AuditError as exc:
            metrics.rejected.inc(source=label, reason="unrecordable")
            return JSONResponse({"error": f"the alert cannot be recorded: {exc}"}, status_code=400)
        metrics.accepted.inc(source=label)
        return JSONResponse(result.body(), status_code=202)

    async def _authenticated_body(self, request: Request, source: str) -> bytes:
        check_declared_length(request, self.limit)  # 413 whoever sends it: nothing is read
        secret = self.secrets.get(source)
        if secret is None:
            raise BadRequest(
                401,
                f"alert source {source!r} has no secret configured "
                f"({alert_secret_name(source)}); every request is refused",
                "no_secret",
            )
        authorization = request.headers.get("authorization")
        sent_signature = request.headers.get(SIGNATURE_HEADER)
        scheme, _, token = (authorization or "").partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" else None
        if bearer is None and sent_signature is None:
            raise BadRequest(401, "missing alert signature or secret", "unauthorized")
        # Every credential presented must hold: a wrong signature next to a right
        # secret means the body is not the one that was signed.
        if bearer is not None and not _same(bearer, secret):
            raise BadRequest(401, "wrong alert signature or secret", "unauthorized")
        body = await read_body(request, self.limit)
        if sent_signature is not None and not _same(
            sent_signature.strip().lower(), signature(secret, body)
        ):
            raise BadRequest(401, "wrong alert signature or secret", "unauthorized")
        return body

    # -- alerts to runs -------------------------------------------------------------------

    async def intake(self, engine: Engine, source: str, payload: dict[str, Any]) -> IntakeResult:
        """Start the runs one alert body asks for (see the module docstring).

        Raises:
            StoreError: runs cannot be recorded (the caller answers 503).
        """
        result = IntakeResult()
        alerts, problems = split_alerts(payload)
        for problem in problems:
            result.errors.append({"runbook": None, "trigger": None, "error": problem})
        for alert in alerts:
            for route in self.routes_by_source.get(source, []):
                outcome = map_alert(route, alert)
                if outcome is None:
                    continue
                if isinstance(outcome, MappingFailure):
                    if outcome.matched:
                        result.matched += 1
                    self._refuse(
                        engine, source, route, outcome.error, outcome.input_name, alert, result
                    )
                    continue
                result.matched += 1
                await self._start(engine, source, outcome, alert, result)
        return result

    async def _start(
        self,
        engine: Engine,
        source: str,
        mapped: Mapped,
        alert: dict[str, Any],
        result: IntakeResult,
    ) -> None:
        route = mapped.route
        try:
            started = await engine.start_run(
                route.runbook,
                mapped.inputs,
                requester=None,
                trigger={"kind": "alert", "source": source, "trigger_index": route.index},
                alert=alert,
                dedup=mapped.dedup,
            )
        except InputError as exc:
            self._refuse(engine, source, route, str(exc), exc.input_name, alert, result)
            return
        except (NotFoundError, PermissionDenied, ConflictError) as exc:
            if isinstance(exc, ConflictError) and not (self.service and self.service.ready):
                raise _ShuttingDown(str(exc)) from None
            self._refuse(engine, source, route, str(exc), None, alert, result)
            return
        metrics = self.metrics
        if started.deduplicated:
            assert mapped.dedup is not None
            result.deduplicated.append(
                {"runbook": route.runbook, "dedup_key": mapped.dedup[0], "run_id": started.run.id}
            )
            if metrics is not None:
                metrics.deduplicated.inc(source=source, runbook=route.runbook)
            return
        result.runs.append({"id": started.run.id, "runbook": route.runbook})
        if metrics is not None:
            metrics.runs.inc(source=source, runbook=route.runbook)

    def _refuse(
        self,
        engine: Engine,
        source: str,
        route: AlertRoute,
        reason: str,
        input_name: str | None,
        alert: dict[str, Any],
        result: IntakeResult,
    ) -> None:
        """Say why a trigger started nothing: in the answer and, durably, in the audit log."""
        entry = {"runbook": route.runbook, "trigger": route.index, "error": reason}
        if input_name is not None:
            entry["input"] = input_name
        result.errors.append(entry)
        if self.metrics is not None:
            self.metrics.rejected.inc(source=source, reason="mapping")
        log.warning("alert from %s did not start %s: %s", source, route.runbook, reason)
        engine.record_now(
            None,
            "alert.rejected",
            actor=f"alert:{source}",
            runbook=route.runbook,
            data={
                "source": source,
                "trigger_index": route.index,
                "error": reason,
                "input": input_name,
                "alert": alert,
            },
        )


class _ShuttingDown(Exception):
    """The service stopped taking runs while a request was being handled."""


def _unavailable(message: str = "the service is not ready; try again shortly") -> Response:
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": "5"})


def _summary(errors: list[dict[str, Any]]) -> str:
    """The first trigger that failed, as ``<runbook> started nothing: <why>``."""
    first = errors[0]
    who = f"{first['runbook']} started nothing" if first.get("runbook") else "no run started"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{who}: {first['error']}{more}"
