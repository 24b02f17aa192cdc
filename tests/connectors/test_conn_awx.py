"""awx.* against the fake AWX controller."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import ConnectorError
from bot.sandbox import Sandbox


async def test_launch_and_watch_a_job_to_success(vendor: Any, sandbox: Sandbox) -> None:
    launched = await vendor.call(
        "awx.launch_job", template_id=7, extra_vars={"kb": "KB5034441"}, limit="web-1,web-2"
    )
    assert launched["status"] == "pending"
    job_id = launched["job_id"]
    (call,) = sandbox.awx.calls_to("/launch/")
    assert call.path == "/api/v2/job_templates/7/launch/"
    assert call.body == {"extra_vars": {"kb": "KB5034441"}, "limit": "web-1,web-2"}
    seen = []
    for _ in range(4):
        job = await vendor.call("awx.get_job", job_id=job_id)
        seen.append((job["status"], job["finished"], job["failed"]))
    assert seen == [
        ("pending", False, False),
        ("waiting", False, False),
        ("running", False, False),
        ("successful", True, False),
    ]


async def test_a_failing_job(vendor: Any) -> None:
    launched = await vendor.call("awx.launch_job", template_id=8, limit="fail-ws-1")
    for _ in range(4):
        job = await vendor.call("awx.get_job", job_id=launched["job_id"])
    assert job == {
        "job_id": launched["job_id"],
        "status": "failed",
        "failed": True,
        "finished": True,
        "elapsed": 3.0,
    }


async def test_an_unknown_template(vendor: Any) -> None:
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("awx.launch_job", template_id=999)
    assert caught.value.status == 404
    assert "Not found." in str(caught.value)


async def test_an_unknown_job(vendor: Any) -> None:
    with pytest.raises(ConnectorError, match="HTTP 404"):
        await vendor.call("awx.get_job", job_id=1)


async def test_dry_run_shows_the_launch(vendor: Any, sandbox: Sandbox) -> None:
    shown = vendor.describe("awx.launch_job", template_id=7, extra_vars={"a": 1}, limit="web-1")
    assert shown == {
        "method": "POST",
        "url": sandbox.base_url("awx") + "/api/v2/job_templates/7/launch/",
        "body": {"extra_vars": {"a": 1}, "limit": "web-1"},
        "auth": "Authorization: Bearer ***",
    }


async def test_require_success_fails_a_failed_job(vendor: Any, sandbox: Sandbox) -> None:
    sandbox.awx.next_outcome = "failed"
    launched = await vendor.call("awx.launch_job", template_id=9)
    for _ in range(3):
        job = await vendor.call("awx.get_job", job_id=launched["job_id"], require_success=True)
        assert not job["finished"]
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("awx.get_job", job_id=launched["job_id"], require_success=True)
    assert not caught.value.retryable
    assert str(caught.value) == (
        f"awx: job {launched['job_id']} (Restart services) finished failed"
    )
