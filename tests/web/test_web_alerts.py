"""Alert intake against a real ``runbook serve`` over real HTTP."""

from __future__ import annotations

import contextlib
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from web_harness import (
    ALERT_SECRET,
    API_TOKEN,
    ServeProcess,
    base_env,
    post_alert,
    sign,
    write_runbooks,
)

RUNBOOKS = {
    "contain": """
name: contain
inputs:
  host: {type: string}
  severity: {type: integer, default: 0}
triggers:
  - alert:
      source: edr
      if: alert.severity >= 70
      inputs: {host: "{{ alert.device.hostname }}", severity: "{{ alert.severity }}"}
      dedup_key: "{{ alert.device.hostname }}"
      dedup_window: 1h
steps:
  - id: find
    uses: core.echo
    with: {host: "{{ inputs.host }}"}
  - id: done
    uses: core.noop
""",
    "page": """
name: page
inputs:
  alertname: {type: string}
  instance: {type: string}
triggers:
  - alert:
      source: am
      if: alert.labels.severity == 'critical'
      inputs: {alertname: "{{ alert.labels.alertname }}", instance: "{{ alert.labels.instance }}"}
steps:
  - id: page
    uses: core.echo
    with: {what: "{{ inputs.alertname }} on {{ inputs.instance }}"}
""",
    "quiet": """
name: quiet
triggers:
  - alert: {source: quiet}
steps:
  - id: nothing
    uses: core.noop
""",
    "gated": """
name: gated
steps:
  - id: ask
    approval: {prompt: "go?", approvers: {users: [bob]}}
""",
    "short": """
name: short
triggers:
  - alert: {source: short}
steps:
  - id: nothing
    uses: core.noop
""",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("alerts")
    write_runbooks(tmp / "runbooks", RUNBOOKS)
    env = base_env(tmp)
    env["RUNBOOK_ALERT_SECRET_SHORT"] = "tooshort"  # guessable: refused like no secret
    with ServeProcess(tmp, env) as serve:
        yield serve


@pytest.fixture
def client(server: ServeProcess) -> Iterator[httpx.Client]:
    with server.client(token=None) as http:
        yield http


@pytest.fixture
def api(server: ServeProcess) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def host() -> str:
    return f"web-{uuid.uuid4().hex[:8]}"


def edr_alert(hostname: str, severity: Any = 80) -> dict[str, Any]:
    return {"severity": severity, "device": {"hostname": hostname}, "id": uuid.uuid4().hex}


def audit(server: ServeProcess) -> list[dict[str, Any]]:
    path = server.tmp / "data" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def metric(api: httpx.Client, name: str, **labels: str) -> float:
    text = api.get("/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


# -- authentication -------------------------------------------------------------------------


def test_signed_alert_starts_a_run_recorded_before_the_answer(
    server: ServeProcess, client: httpx.Client, api: httpx.Client
) -> None:
    name = host()
    answer = post_alert(client, "edr", edr_alert(name))
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["matched"] == 1 and body["deduplicated"] == [] and "errors" not in body
    [run] = body["runs"]
    assert run["runbook"] == "contain"
    started = [r for r in audit(server) if r["event"] == "run.started" and r["run_id"] == run["id"]]
    assert len(started) == 1, "the run is durably recorded before the 202"
    assert started[0]["actor"] == "alert:edr"
    assert started[0]["data"]["trigger"]["kind"] == "alert"
    assert server.wait_finished(run["id"]) == "succeeded"
    document = api.get(f"/api/runs/{run['id']}").json()
    assert document["inputs"] == {"host": name, "severity": 80}
    assert document["requester"] is None
    assert document["steps"]["find"]["output"] == {"host": name}


def test_bearer_secret_is_accepted(client: httpx.Client) -> None:
    answer = client.post(
        "/alerts/edr", json=edr_alert(host()), headers={"Authorization": f"Bearer {ALERT_SECRET}"}
    )
    assert answer.status_code == 202
    assert len(answer.json()["runs"]) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Runbook-Signature": "sha256=" + "0" * 64},
        {"X-Runbook-Signature": "SIGNED-WITH-OTHER-SECRET"},
        {"X-Runbook-Signature": "SIGNATURE-OF-OTHER-BODY"},
        {"X-Runbook-Signature": "BARE-HEX"},
        {"Authorization": "Bearer wrong-secret"},
        {"Authorization": f"Basic {ALERT_SECRET}"},
        {"Authorization": f"Bearer {API_TOKEN}"},
    ],
    ids=["none", "zeros", "other-secret", "other-body", "no-prefix", "bearer", "basic", "api"],
)
def test_wrong_or_missing_credentials_get_401_and_start_nothing(
    server: ServeProcess, client: httpx.Client, api: httpx.Client, headers: dict[str, str]
) -> None:
    payload = edr_alert(host())
    body = json.dumps(payload).encode()
    value = headers.get("X-Runbook-Signature")
    if value == "SIGNED-WITH-OTHER-SECRET":
        headers = {"X-Runbook-Signature": sign(body, "another-secret-of-someone")}
    elif value == "SIGNATURE-OF-OTHER-BODY":
        headers = {"X-Runbook-Signature": sign(body + b" ")}
    elif value == "BARE-HEX":
        headers = {"X-Runbook-Signature": sign(body).removeprefix("sha256=")}
    before = metric(api, "runbook_alerts_rejected_total", reason="unauthorized", source="edr")
    answer = client.post("/alerts/edr", content=body, headers=headers)
    assert answer.status_code == 401
    assert set(answer.json()) == {"error"}
    hostname = payload["device"]["hostname"]
    assert not any(
        r["event"] == "run.started" and r["data"]["inputs"].get("host") == hostname
        for r in audit(server)
    )
    after = metric(api, "runbook_alerts_rejected_total", reason="unauthorized", source="edr")
    assert after == before + 1


def test_unknown_source_is_404(client: httpx.Client) -> None:
    answer = post_alert(client, "nobody-uses-this", edr_alert(host()))
    assert answer.status_code == 404
    assert "unknown alert source" in answer.json()["error"]


def test_known_source_without_secret_always_401_and_serve_warned(
    server: ServeProcess, client: httpx.Client
) -> None:
    for secret in ("", ALERT_SECRET):
        answer = post_alert(client, "quiet", {"x": 1}, secret=secret)
        assert answer.status_code == 401
        assert "RUNBOOK_ALERT_SECRET_QUIET" in answer.json()["error"]
    assert server.logs is not None
    warning = server.logs.wait_for(lambda r: "RUNBOOK_ALERT_SECRET_QUIET" in str(r["message"]))
    assert warning["level"] == "warning"
    health = client.get("/healthz").json()
    assert health["alerts"]["sources"]["edr"] == "ok"
    assert "no secret" in health["alerts"]["sources"]["quiet"]


def test_a_secret_shorter_than_16_characters_works_with_a_warning(
    server: ServeProcess, client: httpx.Client
) -> None:
    answer = post_alert(client, "short", {"x": 1}, secret="tooshort")
    assert answer.status_code == 202, answer.text
    assert post_alert(client, "short", {"x": 1}, secret="tooshorT").status_code == 401
    assert server.logs is not None
    warning = server.logs.wait_for(
        lambda r: "RUNBOOK_ALERT_SECRET_SHORT has 8 characters (minimum 16)" in str(r["message"])
    )
    assert warning["level"] == "warning"
    assert "tooshort" not in str(warning)


# -- bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "must be an object"),
        (b'"text"', "must be an object"),
        (b'{"a": NaN}', "not JSON"),
        (b'{"a": "\xff"}', "not UTF-8"),
        (b'{"a":' + b"[" * 100 + b"]" * 100 + b"}", "deeper than 100"),
        (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deeper than 100"),
    ],
    ids=["text", "array", "string", "nan", "latin1", "depth-101", "depth-100001"],
)
def test_bad_bodies_are_400(client: httpx.Client, raw: bytes, fragment: str) -> None:
    answer = client.post("/alerts/edr", content=raw, headers={"X-Runbook-Signature": sign(raw)})
    assert answer.status_code == 400
    assert fragment in answer.json()["error"]


def test_nesting_of_exactly_100_levels_is_fine(client: httpx.Client) -> None:
    payload: dict[str, Any] = edr_alert(host())
    payload["deep"] = json.loads("[" * 99 + "]" * 99)
    answer = post_alert(client, "edr", payload)
    assert answer.status_code == 202


def _raw_request(url: str, head: bytes, chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send a request piece by piece; stop sending as soon as the server answers.

    Returns the answer and how many body bytes were sent before it came.
    """
    host_port = url.removeprefix("http://")
    address, port = host_port.split(":")
    sent = 0
    with socket.create_connection((address, int(port)), timeout=30) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        answer = b""
        for chunk in chunks:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.setblocking(True)
                sock.sendall(chunk)
                sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            finally:
                sock.setblocking(False)
        sock.setblocking(True)
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    return answer, sent


def test_declared_oversize_body_is_413_before_reading_it(server: ServeProcess) -> None:
    head = (
        b"POST /alerts/edr HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + ALERT_SECRET.encode() + b"\r\n"
        b"Content-Length: 50000000\r\n\r\n"
    )
    answer, sent = _raw_request(server.url, head, iter([b" " * 65536] * 800))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 50_000_000


def test_a_declared_oversize_body_is_413_even_unsigned(client: httpx.Client) -> None:
    big = b"{" + b" " * (1024 * 1024 + 1) + b"}"
    answer = client.post("/alerts/edr", content=big, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413


def test_streamed_oversize_body_is_cut_off_at_the_limit(server: ServeProcess) -> None:
    head = (
        b"POST /alerts/edr HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + ALERT_SECRET.encode() + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b" " * 65536
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    # 20 MiB offered, never terminated: the answer must come without the end of the body.
    answer, sent = _raw_request(server.url, head, iter([chunk] * 320))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 20 * 1024 * 1024


# -- mapping --------------------------------------------------------------------------------


def test_template_text_in_an_alert_is_never_rendered(
    server: ServeProcess, client: httpx.Client, api: httpx.Client
) -> None:
    sneaky = "{{ 7*7 }}-" + uuid.uuid4().hex[:6]
    answer = post_alert(client, "edr", edr_alert(sneaky))
    assert answer.status_code == 202
    [run] = answer.json()["runs"]
    assert server.wait_finished(run["id"]) == "succeeded"
    document = api.get(f"/api/runs/{run['id']}").json()
    assert document["inputs"]["host"] == sneaky
    assert document["steps"]["find"]["output"] == {"host": sneaky}


def test_if_false_starts_nothing(client: httpx.Client) -> None:
    answer = post_alert(client, "edr", edr_alert(host(), severity=10))
    assert answer.status_code == 202
    assert answer.json() == {"runs": [], "deduplicated": [], "matched": 0}


def test_an_alert_without_the_field_its_if_reads_does_not_match(client: httpx.Client) -> None:
    answer = post_alert(client, "edr", {"device": {"hostname": host()}})
    assert answer.status_code == 202
    assert answer.json() == {"runs": [], "deduplicated": [], "matched": 0}


def test_input_of_the_wrong_type_starts_nothing_says_why_and_is_audited(
    server: ServeProcess, client: httpx.Client
) -> None:
    payload = edr_alert(host(), severity=80.5)
    answer = post_alert(client, "edr", payload)
    assert answer.status_code == 202
    body = answer.json()
    assert body["runs"] == [] and body["matched"] == 1
    [problem] = body["errors"]
    assert problem["runbook"] == "contain" and problem["input"] == "severity"
    assert body["error"].startswith("contain started nothing: input 'severity'")
    [record] = [
        r for r in audit(server) if r["event"] == "alert.rejected" and r["data"]["alert"] == payload
    ]
    assert record["actor"] == "alert:edr"
    assert record["runbook"] == "contain" and record["data"]["input"] == "severity"


def test_if_that_cannot_be_evaluated_starts_nothing_and_says_why(client: httpx.Client) -> None:
    answer = post_alert(client, "edr", {"severity": "high", "device": {"hostname": host()}})
    assert answer.status_code == 202
    body = answer.json()
    assert body["matched"] == 0
    assert body["errors"][0]["error"].startswith("if:")


def test_missing_field_names_the_input(client: httpx.Client) -> None:
    answer = post_alert(client, "edr", {"severity": 90})
    assert answer.status_code == 202
    assert answer.json()["errors"][0]["input"] == "host"


# -- dedup ----------------------------------------------------------------------------------


def test_repeat_within_the_window_joins_the_run_and_is_counted(
    client: httpx.Client, api: httpx.Client
) -> None:
    name = host()
    before = metric(api, "runbook_alerts_deduplicated_total", runbook="contain", source="edr")
    first = post_alert(client, "edr", edr_alert(name)).json()
    [run] = first["runs"]
    for _ in range(3):
        again = post_alert(client, "edr", edr_alert(name))
        assert again.status_code == 202
        assert again.json() == {
            "runs": [],
            "deduplicated": [{"runbook": "contain", "dedup_key": name, "run_id": run["id"]}],
            "matched": 1,
        }
    other = post_alert(client, "edr", edr_alert(host())).json()
    assert len(other["runs"]) == 1, "another key is another window"
    after = metric(api, "runbook_alerts_deduplicated_total", runbook="contain", source="edr")
    assert after == before + 3


# -- Alertmanager ---------------------------------------------------------------------------


def test_alertmanager_message_is_taken_alert_by_alert(
    server: ServeProcess, client: httpx.Client
) -> None:
    tag = uuid.uuid4().hex[:6]

    def alert(status: str, severity: str, instance: str) -> dict[str, Any]:
        return {
            "status": status,
            "labels": {"alertname": f"HighLoad-{tag}", "severity": severity, "instance": instance},
            "annotations": {"summary": "load is high"},
            "startsAt": "2026-11-22T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
            "fingerprint": f"fp-{instance}",
        }

    alerts = [
        alert("firing", "critical", "web-1"),
        alert("resolved", "critical", "web-2"),
        alert("firing", "warning", "web-3"),
        alert("firing", "critical", "web-4"),
    ]
    message = {
        "version": "4",
        "groupKey": '{}:{alertname="HighLoad"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "runbook",
        "groupLabels": {"alertname": f"HighLoad-{tag}"},
        "commonLabels": {"alertname": f"HighLoad-{tag}"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }
    answer = post_alert(client, "am", message)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["matched"] == 2
    runs = body["runs"]
    assert [r["runbook"] for r in runs] == ["page", "page"]
    started = {
        r["run_id"]: r["data"]
        for r in audit(server)
        if r["event"] == "run.started" and r["run_id"] in {run["id"] for run in runs}
    }
    assert [started[r["id"]]["alert"] for r in runs] == [alerts[0], alerts[3]]
    assert [started[r["id"]]["inputs"]["instance"] for r in runs] == ["web-1", "web-4"]
    for run in runs:
        assert server.wait_finished(run["id"]) == "succeeded"


def test_alertmanager_with_only_resolved_alerts_starts_nothing(client: httpx.Client) -> None:
    message = {
        "version": "4",
        "status": "resolved",
        "alerts": [{"status": "resolved", "labels": {"severity": "critical"}}],
    }
    answer = post_alert(client, "am", message)
    assert answer.status_code == 202
    assert answer.json()["runs"] == [] and answer.json()["matched"] == 0


# -- operations -----------------------------------------------------------------------------


def test_alert_metrics_are_exposed(client: httpx.Client, api: httpx.Client) -> None:
    received = metric(api, "runbook_alerts_received_total", source="edr")
    accepted = metric(api, "runbook_alerts_accepted_total", source="edr")
    post_alert(client, "edr", edr_alert(host()))
    assert metric(api, "runbook_alerts_received_total", source="edr") == received + 1
    assert metric(api, "runbook_alerts_accepted_total", source="edr") == accepted + 1
    text = api.get("/metrics").text
    for name in (
        "runbook_alerts_rejected_total",
        "runbook_alert_runs_started_total",
        "runbook_runs_active",
        "runbook_queue_depth",
        "runbook_approvals_waiting",
        "runbook_step_duration_seconds_bucket",
    ):
        assert f"# TYPE {name.removesuffix('_bucket')}" in text


def test_log_lines_about_a_run_carry_its_id(server: ServeProcess, client: httpx.Client) -> None:
    [run] = post_alert(client, "edr", edr_alert(host())).json()["runs"]
    assert server.wait_finished(run["id"]) == "succeeded"
    assert server.logs is not None
    about = [r for r in server.logs.records if run["id"] in str(r.get("message", ""))]
    assert about, "the service logs the run"
    assert all(r["run_id"] == run["id"] for r in about)
    ready = server.logs.wait_for(lambda r: str(r["message"]).startswith("ready:"))
    assert ready["run_id"] is None, "a run's id does not leak into the service's own lines"


def test_a_line_about_a_gate_carries_its_step_id(server: ServeProcess, api: httpx.Client) -> None:
    answer = api.post("/api/runs", json={"runbook": "gated", "inputs": {}})
    assert answer.status_code == 201, answer.text
    run_id = answer.json()["id"]
    assert server.logs is not None
    line = server.logs.wait_for(lambda r: str(r["message"]).startswith(f"run {run_id} waits"))
    assert line["run_id"] == run_id and line["step_id"] == "ask"
    api.post(f"/api/runs/{run_id}/cancel")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nope", 404), ("POST", "/healthz", 405), ("GET", "/api/nope", 404)],
)
def test_every_unknown_path_or_method_answers_json(
    client: httpx.Client, method: str, path: str, status: int
) -> None:
    answer = client.request(method, path)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": "Not Found" if status == 404 else "Method Not Allowed"}
    if status == 405:
        assert answer.headers["allow"] == "GET, HEAD"


def test_healthz_reports_the_facts(client: httpx.Client) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    facts = health.json()
    assert facts["ok"] is True and facts["store"] == "ok"
    assert facts["checks"]["runbooks_loaded"] == len(RUNBOOKS)
    assert facts["checks"]["data_dir_writable"] is True


def test_run_documents_match_the_cli(
    server: ServeProcess, client: httpx.Client, api: httpx.Client
) -> None:
    import subprocess

    from web_harness import RUNBOOK

    [run] = post_alert(client, "edr", edr_alert(host())).json()["runs"]
    assert server.wait_finished(run["id"]) == "succeeded"
    cli = subprocess.run(
        [RUNBOOK, "status", run["id"], "--json"],
        env=server.env,
        cwd=server.tmp,
        capture_output=True,
        text=True,
        check=True,
    )
    assert api.get(f"/api/runs/{run['id']}").json() == json.loads(cli.stdout)


def test_the_api_lists_triggers_as_written(api: httpx.Client) -> None:
    rows = {row["name"]: row for row in api.get("/api/runbooks").json()}
    [alert] = [t["alert"] for t in rows["contain"]["triggers"] if "alert" in t]
    assert alert["dedup_window"] == "1h"
