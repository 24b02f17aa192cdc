"""virustotal.* against the fake VirusTotal."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import ConnectorError
from bot.sandbox import Sandbox
from bot.sandbox.virustotal import CLEAN_SHA256, EICAR_MD5, EICAR_SHA256


async def test_a_malicious_file(vendor: Any, sandbox: Sandbox) -> None:
    out = await vendor.call("virustotal.file_report", hash=EICAR_SHA256.upper())
    assert out == {
        "found": True,
        "indicator": EICAR_SHA256,
        "type": "file",
        "malicious": 62,
        "suspicious": 1,
        "harmless": 0,
        "undetected": 8,
        "reputation": -95,
        "link": f"https://www.virustotal.com/gui/file/{EICAR_SHA256}",
    }
    (call,) = sandbox.virustotal.calls
    assert call.headers["x-apikey"] == sandbox.virustotal.credentials["api_key"]


async def test_md5_and_clean_files(vendor: Any) -> None:
    assert (await vendor.call("virustotal.file_report", hash=EICAR_MD5))["malicious"] == 62
    clean = await vendor.call("virustotal.file_report", hash=CLEAN_SHA256)
    assert clean["found"] is True and clean["malicious"] == 0 and clean["undetected"] == 71


async def test_an_unknown_hash_is_found_false(vendor: Any, sandbox: Sandbox) -> None:
    out = await vendor.call("virustotal.file_report", hash="1" * 64)
    assert out["found"] is False
    assert out["malicious"] == out["suspicious"] == out["harmless"] == out["undetected"] == 0
    assert sandbox.virustotal.calls[0].status == 404


async def test_domains_and_ips(vendor: Any) -> None:
    evil = await vendor.call("virustotal.domain_report", domain="Evil.Example.")
    assert evil["indicator"] == "evil.example" and evil["malicious"] == 14
    assert evil["link"].endswith("/gui/domain/evil.example")
    good = await vendor.call("virustotal.domain_report", domain="example.com")
    assert good["harmless"] == 70 and good["reputation"] == 18
    ip = await vendor.call("virustotal.ip_report", ip="203.0.113.66")
    assert ip["type"] == "ip_address" and ip["malicious"] == 9
    unknown = await vendor.call("virustotal.ip_report", ip="2001:db8::1")
    assert unknown["found"] is False


@pytest.mark.parametrize(
    ("ref", "args"),
    [
        ("virustotal.file_report", {"hash": "not-a-hash"}),
        ("virustotal.file_report", {"hash": "../../users"}),
        ("virustotal.ip_report", {"ip": "300.1.1.1"}),
        ("virustotal.domain_report", {"domain": "no_dots"}),
        ("virustotal.domain_report", {"domain": "a/b.example"}),
    ],
)
async def test_malformed_indicators_are_refused_before_any_request(
    vendor: Any, sandbox: Sandbox, ref: str, args: dict[str, str]
) -> None:
    with pytest.raises(ConnectorError, match="bad arguments"):
        await vendor.call(ref, **args)
    assert sandbox.virustotal.calls == []


async def test_quota_exceeded(vendor: Any, sandbox: Sandbox) -> None:
    sandbox.virustotal.rate_limit()
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("virustotal.ip_report", ip="203.0.113.66")
    assert caught.value.retryable
    assert "QuotaExceededError" in str(caught.value)
