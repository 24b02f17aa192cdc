"""http.request / http.get against the sandbox's echo endpoint."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Any

import pytest

from bot.errors import AuthenticationError, ConnectorError, RetryableError
from bot.sandbox import Sandbox


async def test_request_sends_json_params_and_headers(vendor: Any, sandbox: Sandbox) -> None:
    out = await vendor.call(
        "http.request",
        method="POST",
        url=sandbox.url + "/echo/anything/tickets",
        json={"title": "web-1"},
        params={"dry": "1"},
        headers={"X-Team": "soc"},
    )
    assert out["status"] == 200
    assert out["json"]["method"] == "POST"
    assert out["json"]["path"] == "/anything/tickets"
    assert out["json"]["query"] == {"dry": "1"}
    assert out["json"]["json"] == {"title": "web-1"}
    assert out["json"]["headers"]["x-team"] == "soc"
    assert out["headers"]["content-type"] == "application/json"
    assert '"title":"web-1"' in out["text"]


async def test_plain_text_answers_have_null_json(vendor: Any, sandbox: Sandbox) -> None:
    out = await vendor.call("http.get", url=sandbox.url + "/echo/text")
    assert out["json"] is None
    assert out["text"] == "plain text, not JSON\n"


async def test_expected_status(vendor: Any, sandbox: Sandbox) -> None:
    out = await vendor.call(
        "http.get", url=sandbox.url + "/echo/status/404", expected_status=[200, 404]
    )
    assert out["status"] == 404
    with pytest.raises(ConnectorError, match="expected HTTP 201, got 200"):
        await vendor.call("http.get", url=sandbox.url + "/echo/x", expected_status=[201])


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (404, False), (500, True)])
async def test_unexpected_statuses(
    vendor: Any, sandbox: Sandbox, status: int, retryable: bool
) -> None:
    with pytest.raises(ConnectorError) as caught:
        await vendor.call("http.request", method="PUT", url=f"{sandbox.url}/echo/status/{status}")
    assert caught.value.retryable is retryable
    assert f"you asked for {status}" in str(caught.value)


async def test_a_429_honours_retry_after(vendor: Any, sandbox: Sandbox) -> None:
    sandbox.echo.rate_limit(retry_after=17)
    with pytest.raises(RetryableError) as caught:
        await vendor.call("http.get", url=sandbox.url + "/echo/x")
    assert caught.value.retry_after == 17


async def test_the_bearer_token_goes_only_to_the_base_url(vendor: Any, sandbox: Sandbox) -> None:
    token = sandbox.echo.credentials["bearer_token"]
    vendor.configure(
        RUNBOOK_HTTP_BASE_URL=sandbox.url + "/echo/protected", RUNBOOK_HTTP_BEARER_TOKEN=token
    )
    out = await vendor.call("http.get", url="/incidents")
    assert out["json"]["path"] == "/protected/incidents"
    elsewhere = await vendor.call("http.get", url=sandbox.url + "/echo/public")
    assert elsewhere["status"] == 200
    calls = sandbox.echo.calls
    assert calls[0].headers["authorization"] == f"Bearer {token}"
    assert "authorization" not in calls[1].headers


async def test_a_refused_token_is_an_authentication_failure(vendor: Any, sandbox: Sandbox) -> None:
    vendor.configure(
        RUNBOOK_HTTP_BASE_URL=sandbox.url + "/echo/protected",
        RUNBOOK_HTTP_BEARER_TOKEN="wrong-bearer-token-123",
    )
    with pytest.raises(AuthenticationError) as caught:
        await vendor.call("http.get", url="/x")
    assert "wrong-bearer-token-123" not in str(caught.value)


async def test_a_relative_url_needs_a_base_url(vendor: Any) -> None:
    with pytest.raises(ConnectorError, match="RUNBOOK_HTTP_BASE_URL"):
        await vendor.call("http.get", url="/x")


async def test_the_idempotency_header(vendor: Any, sandbox: Sandbox) -> None:
    vendor.idempotency_key = "r-9:notify"
    out = await vendor.call(
        "http.request",
        method="POST",
        url=sandbox.url + "/echo/x",
        idempotency_header="Idempotency-Key",
    )
    assert out["json"]["headers"]["idempotency-key"] == "r-9:notify"


async def test_html_is_just_text_for_http(vendor: Any, sandbox: Sandbox) -> None:
    sandbox.echo.html()
    out = await vendor.call("http.get", url=sandbox.url + "/echo/x")
    assert out["json"] is None and "<html>" in out["text"]


async def test_dry_run_masks_the_bearer_token(vendor: Any, sandbox: Sandbox) -> None:
    vendor.configure(
        RUNBOOK_HTTP_BASE_URL=sandbox.url + "/echo", RUNBOOK_HTTP_BEARER_TOKEN="tok-secret-1234"
    )
    shown = vendor.describe("http.request", method="DELETE", url="/hosts/web-1")
    assert shown["method"] == "DELETE"
    assert shown["url"] == sandbox.url + "/echo/hosts/web-1"
    assert shown["headers"] == {"Authorization": "Bearer ***"}
    assert "tok-secret-1234" not in repr(shown)


class HangUpServer:
    """A raw server on 127.0.0.1 that reads each request whole, then resets the connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = int(self.sock.getsockname()[1])
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + body)
                # the request arrived whole; answer with an RST instead of a response
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.sock.close()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


async def test_a_reset_after_the_request_was_sent_may_have_had_an_effect(vendor: Any) -> None:
    server = HangUpServer()
    try:
        with pytest.raises(RetryableError) as caught:
            await vendor.call(
                "http.request",
                method="POST",
                url=f"http://127.0.0.1:{server.port}/payments",
                json={"amount": 100},
            )
    finally:
        server.close()
    assert "connection failed on POST /payments" in str(caught.value)
    assert len(server.requests) == 1 and b'"amount"' in server.requests[0]
    assert not caught.value.no_effect  # the server had the whole request: it may have acted
