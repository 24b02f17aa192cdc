"""A fake PagerDuty Events API v2 (``POST /v2/enqueue``).

The 32-character ``routing_key`` in the body is the credential: a key of the
wrong shape is a 400 ``Length of 'routing_key' is incorrect``, an unknown
one 400 ``Invalid routing key``. Events are checked like PagerDuty does
(``event_action``, ``payload.summary``/``source``/``severity`` for
triggers, ``dedup_key`` for acknowledge/resolve) and answered 202
``{"status": "success", "message": "Event processed", "dedup_key"}``.

State: alerts by dedup key (``triggered``, ``acknowledged``, ``resolved``)
with every event received; a trigger with the dedup key of an open alert
adds to it instead of opening another.
"""

from __future__ import annotations

import re
import secrets
import string
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute

from bot.sandbox.fake import FakeRequest, FakeVendor, Fault, is_malformed, json_response

SEVERITIES = ("critical", "error", "warning", "info")
_KEY = re.compile(r"^[A-Za-z0-9]{32}$")


@dataclass(slots=True)
class PagerDutyAlert:
    dedup_key: str
    summary: str
    source: str
    severity: str
    status: str = "triggered"
    events: list[dict[str, Any]] = field(default_factory=list)


class FakePagerDuty(FakeVendor):
    """Fake Events API v2."""

    name = "pagerduty"

    def default_credentials(self) -> dict[str, str]:
        alphabet = string.ascii_letters + string.digits
        return {"routing_key": "R0" + "".join(secrets.choice(alphabet) for _ in range(30))}

    def seed(self) -> None:
        self.alerts: dict[str, PagerDutyAlert] = {}

    def env(self, base: str) -> dict[str, str]:
        return {
            "RUNBOOK_PAGERDUTY_BASE_URL": base,
            "RUNBOOK_PAGERDUTY_ROUTING_KEY": self.credentials["routing_key"],
        }

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        return json_response({"status": "unrecognized object", "message": message}, status)

    def rate_limited(self, fault: Fault) -> Response:
        # PagerDuty's 429 carries no retry header: clients back off on their own.
        return json_response(
            {
                "status": "throttle event",
                "message": "Requests for this service are arriving too quickly. "
                "Please retry later.",
            },
            429,
        )

    def invalid(self, *errors: str) -> Response:
        return json_response(
            {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": list(errors),
            },
            400,
        )

    def routes(self) -> list[BaseRoute]:
        return [self.route("/v2/enqueue", self._enqueue, ["POST"], auth=False)]

    async def _enqueue(self, request: FakeRequest) -> Response:
        event = request.body
        if is_malformed(event) or not isinstance(event, dict):
            return self.invalid("Event object is not valid JSON")
        key = event.get("routing_key")
        if not isinstance(key, str) or not _KEY.match(key):
            return self.invalid("Length of 'routing_key' is incorrect (should be 32 characters)")
        if key != self.credentials["routing_key"]:
            return self.invalid("Invalid routing key")
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            return self.invalid("'event_action' is invalid (must be trigger, acknowledge, resolve)")
        dedup_key = event.get("dedup_key")
        if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > 255):
            return self.invalid("'dedup_key' must be a string of at most 255 characters")
        with self._lock:
            if action == "trigger":
                payload = event.get("payload")
                problems = _payload_problems(payload)
                if problems:
                    return self.invalid(*problems)
                assert isinstance(payload, dict)
                dedup_key = dedup_key or uuid.uuid4().hex
                alert = self.alerts.get(dedup_key)
                if alert is None or alert.status == "resolved":
                    alert = PagerDutyAlert(
                        dedup_key, payload["summary"], payload["source"], payload["severity"]
                    )
                    self.alerts[dedup_key] = alert
                alert.events.append(event)
            else:
                if not dedup_key:
                    return self.invalid("'dedup_key' is required for " + str(action))
                alert = self.alerts.get(dedup_key)
                if alert is not None and alert.status != "resolved":
                    alert.status = "acknowledged" if action == "acknowledge" else "resolved"
                    alert.events.append(event)
        return json_response(
            {"status": "success", "message": "Event processed", "dedup_key": dedup_key}, 202
        )


def _payload_problems(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    problems = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary:
        problems.append("'payload.summary' is missing or blank")
    elif len(summary) > 1024:
        problems.append("'payload.summary' must be at most 1024 characters")
    if not isinstance(payload.get("source"), str) or not payload.get("source"):
        problems.append("'payload.source' is missing or blank")
    if payload.get("severity") not in SEVERITIES:
        problems.append("'payload.severity' is invalid (must be critical, error, warning, info)")
    return problems
