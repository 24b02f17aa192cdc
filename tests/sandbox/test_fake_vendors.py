"""The fakes check credentials and request shapes and answer the way their vendors do."""

from __future__ import annotations

import base64
import time

import httpx

from bot.sandbox import Sandbox


def cs_token(sandbox: Sandbox) -> str:
    creds = sandbox.crowdstrike.credentials
    answer = httpx.post(
        sandbox.url + "/crowdstrike/oauth2/token",
        data={"client_id": creds["client_id"], "client_secret": creds["client_secret"]},
    )
    assert answer.status_code == 201
    assert answer.json()["expires_in"] == 1799
    return str(answer.json()["access_token"])


def test_crowdstrike_token_and_envelope(sandbox: Sandbox) -> None:
    base = sandbox.url + "/crowdstrike"
    wrong = httpx.post(base + "/oauth2/token", data={"client_id": "x", "client_secret": "y"})
    assert wrong.status_code == 403
    assert wrong.json()["errors"] == [
        {"code": 403, "message": "access denied, authorization failed"}
    ]
    as_json = httpx.post(base + "/oauth2/token", json={"client_id": "x"})
    assert as_json.status_code == 400
    no_token = httpx.get(base + "/devices/queries/devices/v1")
    assert no_token.status_code == 401
    token = cs_token(sandbox)
    answer = httpx.get(
        base + "/devices/queries/devices/v1",
        params={"filter": "platform_name:'Linux'"},
        headers={"Authorization": f"Bearer {token}"},
    )
    body = answer.json()
    assert set(body) == {"meta", "resources", "errors"}
    assert len(body["resources"]) == 3
    assert answer.headers["X-RateLimit-Limit"] == "6000"


def test_crowdstrike_rate_limit_header_is_an_epoch(sandbox: Sandbox) -> None:
    token = cs_token(sandbox)
    sandbox.crowdstrike.rate_limit(retry_after=20)
    answer = httpx.get(
        sandbox.url + "/crowdstrike/devices/queries/devices/v1",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 429
    assert abs(int(answer.headers["X-RateLimit-RetryAfter"]) - (time.time() + 20)) < 2
    sandbox.crowdstrike.epoch_ms = True
    sandbox.crowdstrike.rate_limit(retry_after=20)
    answer = httpx.get(
        sandbox.url + "/crowdstrike/devices/queries/devices/v1",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert int(answer.headers["X-RateLimit-RetryAfter"]) > 1e12


def test_crowdstrike_device_actions_check_the_body(sandbox: Sandbox) -> None:
    headers = {"Authorization": f"Bearer {cs_token(sandbox)}"}
    url = sandbox.url + "/crowdstrike/devices/entities/devices-actions/v2"
    bad_action = httpx.post(url, params={"action_name": "nuke"}, json={"ids": []}, headers=headers)
    assert bad_action.status_code == 400
    bad_body = httpx.post(url, params={"action_name": "contain"}, json={"id": "x"}, headers=headers)
    assert bad_body.status_code == 400


def test_defender_token_and_pascal_case(sandbox: Sandbox) -> None:
    login = sandbox.microsoft_login.credentials
    token_url = f"{sandbox.url}/microsoft-login/{login['tenant_id']}/oauth2/v2.0/token"
    form = {
        "client_id": login["client_id"],
        "client_secret": "nope",
        "grant_type": "client_credentials",
        "scope": "https://api.securitycenter.microsoft.com/.default",
    }
    refused = httpx.post(token_url, data=form)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_client"
    assert httpx.post(token_url, data={**form, "scope": "x"}).json()["error"] == "invalid_scope"
    granted = httpx.post(token_url, data={**form, "client_secret": login["client_secret"]})
    assert granted.json()["token_type"] == "Bearer"
    headers = {"Authorization": "Bearer " + granted.json()["access_token"]}
    machine = sandbox.defender.machine("web-1")
    camel = httpx.post(
        f"{sandbox.url}/defender/api/machines/{machine.id}/isolate",
        json={"comment": "x", "isolationType": "Full"},
        headers=headers,
    )
    assert camel.status_code == 400
    assert camel.json()["error"]["code"] == "InvalidRequestBody"


def test_pagerduty_checks_events(sandbox: Sandbox) -> None:
    url = sandbox.url + "/pagerduty/v2/enqueue"
    key = sandbox.pagerduty.credentials["routing_key"]
    short = httpx.post(url, json={"routing_key": "abc", "event_action": "trigger"})
    assert short.status_code == 400
    assert "should be 32 characters" in short.json()["errors"][0]
    unknown = httpx.post(url, json={"routing_key": "A" * 32, "event_action": "trigger"})
    assert unknown.json()["errors"] == ["Invalid routing key"]
    no_payload = httpx.post(url, json={"routing_key": key, "event_action": "trigger"})
    assert no_payload.json()["status"] == "invalid event"
    resolve = httpx.post(
        url, json={"routing_key": key, "event_action": "resolve", "dedup_key": "never-seen"}
    )
    assert resolve.status_code == 202


def jira_headers(sandbox: Sandbox) -> dict[str, str]:
    creds = sandbox.jira.credentials
    raw = f"{creds['email']}:{creds['api_token']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def test_jira_wants_adf_and_basic_auth(sandbox: Sandbox) -> None:
    url = sandbox.url + "/jira/rest/api/3/issue"
    body = {
        "fields": {
            "project": {"key": "SEC"},
            "issuetype": {"name": "Task"},
            "summary": "x",
            "description": "plain text is not ADF",
        }
    }
    refused = httpx.post(url, json=body)
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("text/plain")
    plain = httpx.post(url, json=body, headers=jira_headers(sandbox))
    assert plain.status_code == 400
    assert "Atlassian Document" in plain.json()["errors"]["description"]


def test_servicenow_mandatory_fields(sandbox: Sandbox) -> None:
    creds = sandbox.servicenow.credentials
    answer = httpx.post(
        sandbox.url + "/servicenow/api/now/table/incident",
        json={"description": "no short description"},
        auth=(creds["username"], creds["password"]),
    )
    assert answer.status_code == 400
    assert answer.json()["status"] == "failure"


def test_okta_rate_limit_headers_and_lifecycle(sandbox: Sandbox) -> None:
    headers = {"Authorization": "SSWS " + sandbox.okta.credentials["api_token"]}
    base = sandbox.url + "/okta/api/v1"
    sandbox.okta.rate_limit(retry_after=60)
    limited = httpx.get(base + "/users/alice@example.com", headers=headers)
    assert limited.status_code == 429
    assert limited.headers["X-Rate-Limit-Remaining"] == "0"
    assert abs(int(limited.headers["X-Rate-Limit-Reset"]) - (time.time() + 60)) < 2
    user = sandbox.okta.user("alice@example.com")
    assert httpx.post(f"{base}/users/{user.id}/lifecycle/suspend", headers=headers).json() == {}
    again = httpx.post(f"{base}/users/{user.id}/lifecycle/suspend", headers=headers)
    assert again.status_code == 400 and again.json()["errorCode"] == "E0000001"
    assert httpx.get(base + "/users/x", headers={"Authorization": "SSWS nope"}).status_code == 401


def test_awx_field_errors(sandbox: Sandbox) -> None:
    headers = {"Authorization": "Bearer " + sandbox.awx.credentials["token"]}
    url = sandbox.url + "/awx/api/v2/job_templates/7/launch/"
    bad = httpx.post(url, json={"extra_vars": "not a dict"}, headers=headers)
    assert bad.status_code == 400
    assert bad.json() == {"extra_vars": ["Must be a valid JSON or YAML dictionary."]}
    assert httpx.post(url, json={}).json() == {"detail": "Invalid token."}


def test_virustotal_and_sentinelone_refusals(sandbox: Sandbox) -> None:
    missing = httpx.get(sandbox.url + "/virustotal/api/v3/domains/example.com")
    assert missing.json()["error"]["code"] == "AuthenticationRequiredError"
    s1 = httpx.get(sandbox.url + "/sentinelone/web/api/v2.1/agents")
    assert s1.status_code == 401
    assert s1.json()["errors"][0]["code"] == 4010010


def test_state_survives_between_requests(sandbox: Sandbox) -> None:
    headers = {"Authorization": f"Bearer {cs_token(sandbox)}"}
    host = sandbox.crowdstrike.host("laptop-7")
    url = sandbox.url + "/crowdstrike/devices/entities/devices-actions/v2"
    httpx.post(
        url, params={"action_name": "contain"}, json={"ids": [host.device_id]}, headers=headers
    )
    details = sandbox.url + "/crowdstrike/devices/entities/devices/v2"
    statuses = [
        httpx.get(details, params={"ids": host.device_id}, headers=headers).json()["resources"][0][
            "status"
        ]
        for _ in range(4)
    ]
    assert statuses == ["containment_pending", "contained", "contained", "contained"]
