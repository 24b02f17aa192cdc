"""The JSON API against a real ``runbook serve`` over real HTTP."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from web_harness import OTHER_TOKEN, RUNBOOK, ServeProcess, base_env, write_runbooks

RUNBOOKS = {
    "echo": """
name: echo
title: Echo things
description: Says what it is given.
inputs:
  host: {type: string, pattern: '^[a-z0-9-]+$'}
  count: {type: integer, default: 1}
steps:
  - id: say
    uses: core.echo
    with: {host: "{{ inputs.host }}", count: "{{ inputs.count }}"}
""",
    "gated": """
name: gated
inputs:
  host: {type: string}
steps:
  - id: approve
    approval:
      prompt: "Contain {{ inputs.host }}?"
      approvers: {users: [alice]}
      fields:
        ticket: {type: string, required: true}
  - id: act
    uses: core.echo
    with: {host: "{{ inputs.host }}"}
""",
    "leads-only": """
name: leads-only
run_by: {groups: [leads]}
steps:
  - id: approve
    approval:
      prompt: "Go?"
      approvers: {users: [alice]}
  - id: act
    uses: core.noop
""",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("api")
    write_runbooks(tmp / "runbooks", RUNBOOKS)
    with ServeProcess(tmp, base_env(tmp)) as serve:
        yield serve


@pytest.fixture
def alice(server: ServeProcess) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture
def bob(server: ServeProcess) -> Iterator[httpx.Client]:
    with server.client(OTHER_TOKEN) as http:
        yield http


@pytest.fixture
def anonymous(server: ServeProcess) -> Iterator[httpx.Client]:
    with server.client(token=None) as http:
        yield http


def start(client: httpx.Client, runbook: str, **inputs: Any) -> str:
    answer = client.post("/api/runs", json={"runbook": runbook, "inputs": inputs})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def wait_gate(server: ServeProcess, client: httpx.Client, run_id: str, step: str) -> None:
    """Wait for the service to log that the gate waits; then it is durable."""
    assert server.logs is not None
    server.logs.wait_for(
        lambda r: str(r.get("message", "")).startswith(f"run {run_id} waits for approval at {step}")
    )
    assert client.get(f"/api/runs/{run_id}").json()["status"] == "waiting"


# -- tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer nope-not-a-token-at-all", "Bearer", "Basic dG9rOg==", "tok-alice"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/runbooks"),
        ("GET", "/api/runs"),
        ("POST", "/api/runs"),
        ("GET", "/api/runs/r-0000000000000000"),
        ("POST", "/api/runs/r-0000000000000000/cancel"),
        ("POST", "/api/runs/r-0000000000000000/steps/approve/decision"),
    ],
)
def test_missing_or_wrong_token_is_401_and_says_nothing_about_tokens(
    anonymous: httpx.Client, authorization: str | None, method: str, path: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = anonymous.request(method, path, headers=headers, json={"runbook": "echo"})
    assert answer.status_code == 401
    assert answer.json() == {"error": "missing or invalid bearer token"}
    assert "alice" not in answer.text and "bob" not in answer.text


def test_health_metrics_and_openapi_need_no_token(anonymous: httpx.Client) -> None:
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/metrics").status_code == 200
    document = anonymous.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/api/runbooks",
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/cancel",
        "/api/runs/{run_id}/steps/{step_id}/decision",
        "/alerts/{source}",
    }


# -- runbooks and runs ----------------------------------------------------------------------


def test_list_runbooks(alice: httpx.Client) -> None:
    rows = alice.get("/api/runbooks").json()
    assert [row["name"] for row in rows] == ["echo", "gated", "leads-only"]
    echo = rows[0]
    assert echo["title"] == "Echo things" and echo["description"] == "Says what it is given."
    assert echo["inputs"]["count"] == {"type": "integer", "default": 1}


def test_start_run_and_read_it_back_as_the_cli_does(
    server: ServeProcess, alice: httpx.Client
) -> None:
    answer = alice.post("/api/runs", json={"runbook": "echo", "inputs": {"host": "web-1"}})
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"id", "status"} and body["status"] in ("pending", "running")
    assert answer.headers["location"] == f"/api/runs/{body['id']}"
    assert server.wait_finished(body["id"]) == "succeeded"
    document = alice.get(f"/api/runs/{body['id']}").json()
    assert document["requester"] == "api:alice"
    assert document["inputs"] == {"host": "web-1", "count": 1}
    assert document["steps"]["say"]["output"] == {"host": "web-1", "count": 1}
    cli = subprocess.run(
        [RUNBOOK, "status", body["id"], "--json"],
        env=server.env,
        cwd=server.tmp,
        capture_output=True,
        text=True,
        check=True,
    )
    assert document == json.loads(cli.stdout)
    runs = subprocess.run(
        [RUNBOOK, "runs", "--json"],
        env=server.env,
        cwd=server.tmp,
        capture_output=True,
        text=True,
        check=True,
    )
    listed = alice.get("/api/runs", params={"limit": 1000}).json()
    cli_rows = json.loads(runs.stdout)
    assert listed[: len(cli_rows)] == cli_rows
    assert body["id"] in {row["id"] for row in listed}


@pytest.mark.parametrize(
    ("payload", "status", "fragment"),
    [
        ({"runbook": "echo", "inputs": {"host": "Not A Host"}}, 422, "host"),
        ({"runbook": "echo", "inputs": {"host": "a", "count": "many"}}, 422, "count"),
        ({"runbook": "echo", "inputs": {}}, 422, "host"),
        ({"runbook": "echo", "inputs": {"host": "a", "hots": "b"}}, 422, "hots"),
        ({"runbook": "echo", "inputs": "host=a"}, 422, "inputs"),
        ({"runbook": "echo", "input": {}}, 422, "input"),
        ({"inputs": {}}, 422, "runbook"),
        ({"runbook": "nope"}, 404, "nope"),
        ({"runbook": "leads-only"}, 403, "run_by"),
    ],
)
def test_bad_starts_say_what_is_wrong(
    bob: httpx.Client, payload: dict[str, Any], status: int, fragment: str
) -> None:
    answer = bob.post("/api/runs", json=payload)
    assert answer.status_code == status
    body = answer.json()
    assert set(body) == {"error"} and fragment in body["error"]


@pytest.mark.parametrize("raw", [b"", b"nope", b"[]", b'{"a":' + b"[" * 200 + b"]" * 200 + b"}"])
def test_bodies_that_are_not_json_objects_are_400(alice: httpx.Client, raw: bytes) -> None:
    answer = alice.post("/api/runs", content=raw, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert set(answer.json()) == {"error"}


def test_idempotency_key_starts_once(alice: httpx.Client) -> None:
    key = uuid.uuid4().hex
    payload = {"runbook": "echo", "inputs": {"host": "web-2"}}
    first = alice.post("/api/runs", json=payload, headers={"Idempotency-Key": key})
    again = alice.post("/api/runs", json=payload, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]


def test_list_runs_filters_and_limits(server: ServeProcess, alice: httpx.Client) -> None:
    run_id = start(alice, "echo", host="web-3")
    assert server.wait_finished(run_id) == "succeeded"
    rows = alice.get("/api/runs", params={"status": "succeeded", "limit": 2}).json()
    assert 1 <= len(rows) <= 2 and all(row["status"] == "succeeded" for row in rows)
    assert set(rows[0]) == {"id", "runbook", "status", "started_at", "ended_at", "requester"}
    starts = [row["started_at"] for row in alice.get("/api/runs").json()]
    assert starts == sorted(starts, reverse=True), "newest first"
    for bad in ({"status": "done"}, {"limit": "0"}, {"limit": "x"}, {"limit": "1001"}):
        answer = alice.get("/api/runs", params=bad)
        assert answer.status_code == 400 and "error" in answer.json()


def test_unknown_runs_and_paths_are_json_404(alice: httpx.Client) -> None:
    for path in ("/api/runs/r-0000000000000000", "/api/runs/..%2F..%2Fetc", "/api/nothing"):
        answer = alice.get(path)
        assert answer.status_code == 404
        assert "error" in answer.json()
    assert alice.delete("/api/runs").status_code == 405


# -- decisions ------------------------------------------------------------------------------


def test_decisions_follow_the_eligibility_rules(
    server: ServeProcess, alice: httpx.Client, bob: httpx.Client
) -> None:
    run_id = start(bob, "gated", host="web-4")
    wait_gate(server, alice, run_id, "approve")
    path = f"/api/runs/{run_id}/steps/approve/decision"

    refused = bob.post(path, json={"decision": "approve"})
    assert refused.status_code == 403
    assert refused.json()["verdict"] == "refused"
    assert "not an approver" in refused.json()["error"]

    missing_field = alice.post(path, json={"decision": "approve"})
    assert missing_field.status_code == 422 and "ticket" in missing_field.json()["error"]

    for body in ({"decision": "maybe"}, {"decision": "approve", "why": 1}, {}):
        assert alice.post(path, json=body).status_code == 422
    assert alice.post(path, json={"decision": "skip"}).status_code == 403  # not a recovery gate

    accepted = alice.post(
        path, json={"decision": "approve", "comment": "ok", "fields": {"ticket": "SEC-1"}}
    )
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["verdict"] == "accepted" and body["gate_open"] is False
    assert body["outcome"] == "approved" and (body["approvals"], body["required"]) == (1, 1)
    assert body["run"]["id"] == run_id

    late = alice.post(path, json={"decision": "reject"})
    assert late.status_code == 409 and late.json()["verdict"] == "not_waiting"
    assert server.wait_finished(run_id) == "succeeded"
    document = alice.get(f"/api/runs/{run_id}").json()
    assert document["steps"]["approve"]["output"]["decided_by"] == ["api:alice"]
    assert document["steps"]["approve"]["output"]["fields"] == {"ticket": "SEC-1"}

    assert alice.post(f"/api/runs/{run_id}/steps/nope/decision", json=body).status_code in (
        404,
        422,
    )
    unknown = alice.post(f"/api/runs/{run_id}/steps/nope/decision", json={"decision": "approve"})
    assert unknown.status_code == 404
    unknown_run = alice.post(
        "/api/runs/r-0000000000000000/steps/approve/decision", json={"decision": "approve"}
    )
    assert unknown_run.status_code == 404


def test_reject_ends_the_run_rejected(
    server: ServeProcess, alice: httpx.Client, bob: httpx.Client
) -> None:
    run_id = start(bob, "gated", host="web-5")
    wait_gate(server, alice, run_id, "approve")
    answer = alice.post(
        f"/api/runs/{run_id}/steps/approve/decision", json={"decision": "reject", "comment": "no"}
    )
    assert answer.status_code == 200 and answer.json()["outcome"] == "rejected"
    assert server.wait_finished(run_id) == "rejected"


# -- cancelling -----------------------------------------------------------------------------


def test_cancel_rules(server: ServeProcess, alice: httpx.Client, bob: httpx.Client) -> None:
    run_id = start(alice, "leads-only")
    wait_gate(server, alice, run_id, "approve")
    denied = bob.post(f"/api/runs/{run_id}/cancel")
    assert denied.status_code == 403 and "may not cancel" in denied.json()["error"]
    cancelled = alice.post(f"/api/runs/{run_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json() == {"id": run_id, "status": "cancelled"}
    again = alice.post(f"/api/runs/{run_id}/cancel")
    assert again.status_code == 409 and "already ended" in again.json()["error"]
    assert alice.post("/api/runs/r-0000000000000000/cancel").status_code == 404
