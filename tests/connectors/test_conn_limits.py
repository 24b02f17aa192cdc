"""What bounds a vendor call and what odd answers become, for every connector.

A whole request ends by ``RUNBOOK_<C>_TOTAL_TIMEOUT`` however slowly the answer
trickles in; an answer past ``RUNBOOK_<C>_MAX_ANSWER_MIB`` is refused without
reading the rest; redirects, bad URLs, TLS misconfiguration, JSON nested too
deeply and null/list answers are permanent errors with the documented messages.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from bot.errors import ConnectorError, RetryableError
from bot.sandbox import Sandbox
from tests.connectors.test_conn_faults import IDS, PROBES, Probe, fake_of

MIB = 1024 * 1024


@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_a_trickling_answer_is_cut_at_the_total_timeout(
    vendor: Any, sandbox: Sandbox, probe: Probe
) -> None:
    # Each byte comes well within the read timeout; only the total deadline can end it.
    vendor.configure(**{probe.prefix + "READ_TIMEOUT": "30", probe.prefix + "TOTAL_TIMEOUT": "0.5"})
    fault = fake_of(sandbox, probe).trickle(0.02)
    with pytest.raises(RetryableError) as caught:
        await vendor.call(probe.ref, **probe.args)
    message = str(caught.value)
    assert "timed out after 0.5s" in message
    assert probe.prefix + "TOTAL_TIMEOUT" in message
    assert 0 < fault.sent < 1000  # the body had only begun


@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_a_huge_answer_is_refused_without_reading_the_rest(
    vendor: Any, sandbox: Sandbox, probe: Probe
) -> None:
    vendor.configure(**{probe.prefix + "MAX_ANSWER_MIB": "1"})
    fake_of(sandbox, probe).huge(4 * MIB)
    with pytest.raises(ConnectorError) as caught:
        await vendor.call(probe.ref, **probe.args)
    assert not caught.value.retryable
    assert "answered more than 1 MiB" in str(caught.value)
    assert probe.prefix + "MAX_ANSWER_MIB" in str(caught.value)


class Firehose:
    """A server on 127.0.0.1 that answers 200 and then sends JSON until the client goes.

    It waits for the client to take each chunk (``drain``), so ``sent`` is at
    most what the client read plus what the sockets' buffers hold.
    """

    def __init__(self, *, declare: bool) -> None:
        self.declare = declare
        self.sent = 0
        self.server: asyncio.Server | None = None

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            length = b"Content-Length: %d\r\n" % (1024 * MIB) if self.declare else b""
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + length
                + b"Connection: close\r\n\r\n"
                + b'{"data": "'
            )
            chunk = b"x" * (64 * 1024)
            while self.sent < 1024 * MIB:
                writer.write(chunk)
                await writer.drain()
                self.sent += len(chunk)
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client hung up: what we want
        finally:
            writer.close()


@pytest.mark.parametrize("declare", [False, True], ids=["streamed", "content-length"])
async def test_the_rest_of_a_huge_answer_is_never_read(vendor: Any, declare: bool) -> None:
    firehose = Firehose(declare=declare)
    server = await asyncio.start_server(firehose.answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        vendor.configure(
            RUNBOOK_VIRUSTOTAL_BASE_URL=f"http://127.0.0.1:{port}/api/v3",
            RUNBOOK_VIRUSTOTAL_MAX_ANSWER_MIB="2",
        )
        with pytest.raises(ConnectorError) as caught:
            await vendor.call("virustotal.ip_report", ip="8.8.8.8")
        assert not caught.value.retryable
        assert "answered more than 2 MiB (HTTP 200 on GET /api/v3/ip_addresses/8.8.8.8)" in str(
            caught.value
        )
        # 1 GiB was on offer; what left the server is the cap plus socket buffers.
        assert firehose.sent < 64 * MIB
        if declare:
            assert firehose.sent < 16 * MIB
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_an_answer_under_the_cap_is_read(vendor: Any, sandbox: Sandbox, probe: Probe) -> None:
    vendor.configure(**{probe.prefix + "MAX_ANSWER_MIB": "1"})
    assert await vendor.call(probe.ref, **probe.args)


@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_a_redirect_says_where_it_points_with_credentials_masked(
    vendor: Any, sandbox: Sandbox, probe: Probe
) -> None:
    location = "https://svc:hunter2-pass@eu.vendor.example/api?page=2&token=tok-SECRET-9"
    fake_of(sandbox, probe).answer(302, "", {"Location": location})
    with pytest.raises(ConnectorError) as caught:
        await vendor.call(probe.ref, **probe.args)
    message = str(caught.value)
    assert not caught.value.retryable
    assert "HTTP 302" in message
    assert (
        "redirected to https://***@eu.vendor.example/api?page=2&token=*** "
        "(redirects are not followed; check the base URL setting)"
    ) in message
    assert "hunter2" not in message and "tok-SECRET" not in message


@pytest.mark.parametrize("probe", PROBES, ids=IDS)
async def test_json_nested_too_deeply_is_malformed(
    vendor: Any, sandbox: Sandbox, probe: Probe
) -> None:
    fake_of(sandbox, probe).answer(200, "[" * 100_000)
    with pytest.raises(ConnectorError) as caught:
        await vendor.call(probe.ref, **probe.args)
    assert not caught.value.retryable
    assert "answered malformed JSON (nested too deeply)" in str(caught.value)


READERS = [p for p in PROBES if p.connector not in ("pagerduty",)]


@pytest.mark.parametrize(("body", "kind"), [("null", "null"), ("[]", "a list"), ("[{}]", "a list")])
@pytest.mark.parametrize("probe", READERS, ids=[p.connector for p in READERS])
async def test_null_or_a_list_where_an_object_belongs(
    vendor: Any, sandbox: Sandbox, probe: Probe, body: str, kind: str
) -> None:
    fake_of(sandbox, probe).answer(200, body, times=None)
    with pytest.raises(ConnectorError) as caught:
        await vendor.call(probe.ref, **probe.args)
    assert not caught.value.retryable
    assert "unexpected answer to " in str(caught.value)
    assert f"expected an object, got {kind}" in str(caught.value)


async def test_a_key_that_holds_null_is_named(vendor: Any, sandbox: Sandbox) -> None:
    sandbox.virustotal.answer(200, '{"data": null}')
    with pytest.raises(ConnectorError, match="expected an object, got null"):
        await vendor.call("virustotal.ip_report", ip="8.8.8.8")


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:99999/", "http://[::1/", "http://127.0.0.1:port/"],
    ids=["port-out-of-range", "broken-ipv6", "port-not-a-number"],
)
async def test_an_invalid_url_or_port_cannot_be_sent(vendor: Any, base_url: str) -> None:
    vendor.configure(RUNBOOK_VIRUSTOTAL_BASE_URL=base_url)
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("virustotal.ip_report", ip="8.8.8.8")
    message = str(caught.value)
    assert not caught.value.retryable
    assert message.startswith("virustotal: cannot send GET ")
    assert message.endswith("(check the base URL setting)")


async def test_https_to_a_plain_http_port_is_a_configuration_error(
    vendor: Any, sandbox: Sandbox
) -> None:
    plain = sandbox.base_url("virustotal")
    assert plain.startswith("http://")
    vendor.configure(RUNBOOK_VIRUSTOTAL_BASE_URL="https://" + plain.removeprefix("http://"))
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("virustotal.ip_report", ip="8.8.8.8")
    message = str(caught.value)
    assert not caught.value.retryable
    assert "TLS handshake failed" in message
    assert "RUNBOOK_VIRUSTOTAL_BASE_URL" in message
    assert not sandbox.virustotal.calls  # nothing reached the vendor as HTTP


async def test_slack_names_its_own_url_setting(vendor: Any, sandbox: Sandbox) -> None:
    plain = sandbox.env["RUNBOOK_SLACK_API_URL"]
    vendor.configure(RUNBOOK_SLACK_API_URL="https://" + plain.removeprefix("http://"))
    with pytest.raises(ConnectorError, match="RUNBOOK_SLACK_API_URL") as caught:
        await vendor.call("slack.post_message", channel="#soc-incidents", text="probe")
    assert not caught.value.retryable


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    """A certificate authority made for these tests: no key is kept in the repository."""
    return trustme.CA()


@pytest.fixture
def ca_bundle(authority: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def tls_server(authority: trustme.CA) -> AsyncIterator[str]:
    """An HTTPS server on 127.0.0.1 whose certificate no system store trusts; answers {"data": …}."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = (
                b'{"data": {"id": "8.8.8.8", "type": "ip_address", "attributes": '
                b'{"last_analysis_stats": {"malicious": 0, "suspicious": 0, '
                b'"undetected": 1, "harmless": 70}, "reputation": 5}}}'
            )
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                + body
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client refused our certificate
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}/api/v3"
    finally:
        server.close()
        await server.wait_closed()


async def test_an_untrusted_certificate_is_a_configuration_error(
    vendor: Any, tls_server: str
) -> None:
    vendor.configure(RUNBOOK_VIRUSTOTAL_BASE_URL=tls_server)
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("virustotal.ip_report", ip="8.8.8.8")
    message = str(caught.value)
    assert not caught.value.retryable
    assert "TLS certificate not trusted" in message
    assert "RUNBOOK_VIRUSTOTAL_CA_BUNDLE" in message
    assert "RUNBOOK_VIRUSTOTAL_VERIFY_TLS=false" in message


async def test_the_ca_bundle_the_hint_names_fixes_it(
    vendor: Any, tls_server: str, ca_bundle: Path
) -> None:
    vendor.configure(
        RUNBOOK_VIRUSTOTAL_BASE_URL=tls_server, RUNBOOK_VIRUSTOTAL_CA_BUNDLE=str(ca_bundle)
    )
    report = await vendor.call("virustotal.ip_report", ip="8.8.8.8")
    assert report["found"] is True
