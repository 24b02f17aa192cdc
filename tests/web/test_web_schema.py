"""Property-based tests of the whole HTTP API from its own OpenAPI document (schemathesis).

Every operation of ``GET /openapi.json`` is called with generated requests
(valid and invalid) against a real ``runbook serve``; answers must never be
5xx, and must match the document (status codes, content types, bodies).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection
from web_harness import ALERT_SECRET, API_TOKEN, ServeProcess, base_env, write_runbooks

from bot.runbook.loader import load_text
from bot.web.openapi import openapi_document
from connectors.registry import ConnectorRegistry

RUNBOOKS = {
    "echo": """
name: echo
inputs:
  host: {type: string}
  count: {type: integer, default: 1}
  tags: {type: list, default: []}
steps:
  - id: say
    uses: core.echo
    with: {host: "{{ inputs.host }}"}
""",
    "gated": """
name: gated
steps:
  - id: approve
    approval:
      prompt: "Go?"
      approvers: {users: [alice]}
  - id: act
    uses: core.noop
""",
    "contain": """
name: contain
inputs:
  host: {type: string}
triggers:
  - alert:
      source: edr
      if: alert.severity is defined and alert.severity is number and alert.severity >= 70
      inputs: {host: "{{ alert.host }}"}
      dedup_key: "{{ alert.host }}"
      dedup_window: 1h
steps:
  - id: find
    uses: core.echo
    with: {host: "{{ inputs.host }}"}
""",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("schema")
    write_runbooks(tmp / "runbooks", RUNBOOKS)
    with ServeProcess(tmp, base_env(tmp)) as serve:
        yield serve


def _loaded() -> list[Any]:
    registry = ConnectorRegistry.discover(include_entry_points=False)
    found = []
    for name, text in RUNBOOKS.items():
        result = load_text(text, f"{name}.yaml", registry)
        assert result.loaded is not None, result.diagnostics
        found.append(result.loaded.runbook)
    return found


# The document the server serves for these runbooks (checked below); schemathesis'
# lazy fixture loader does not work with this pytest, so the schema is built up front.
DOCUMENT = openapi_document(_loaded(), ["edr"])
schema = schemathesis.openapi.from_dict(DOCUMENT)

# Input values are coerced losslessly ("5" for an integer, as on the command line), so
# a start that is off the documented canonical types may still be accepted.
EXCLUDED = {
    "startRun": [negative_data_rejection],
}


def test_the_served_document_is_the_one_tested(server: ServeProcess) -> None:
    with server.client(token=None) as client:
        assert client.get("/openapi.json").json() == json.loads(json.dumps(DOCUMENT))


@schema.auth(refresh_interval=None, retry_on=[])
class Credentials:
    """The API token for /api, the source's secret for /alerts (as a bearer secret)."""

    def get(self, case: Any, context: Any) -> str:
        return ALERT_SECRET if context.operation.path.startswith("/alerts/") else API_TOKEN

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_fails_and_matches_its_document(case: Any, server: ServeProcess) -> None:
    case.call_and_validate(
        base_url=server.url,
        excluded_checks=EXCLUDED.get(case.operation.definition.raw.get("operationId", ""), []),
    )
