"""A vendor message that quotes our credential is masked before it is shortened."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import SecretStr

from bot.errors import AuthenticationError, ConnectorError
from connectors.http_auth import HeaderAuth
from connectors.http_client import PlannedRequest, VendorHTTP

TOKEN = "okta-SSWS-TOKEN-0123456789abcdefghijklmnopqrstuvwxyz"


class Quoting(BaseHTTPRequestHandler):
    """Answers ``/<status>/<pad>/<json|text>`` with N filler characters, then our header."""

    def log_message(self, *args: object) -> None:
        return

    def do_GET(self) -> None:
        _, status, pad, kind = self.path.split("/")
        echo = "x" * int(pad) + " invalid credentials: " + str(self.headers["Authorization"])
        if kind == "json":
            body, content_type = json.dumps({"errorSummary": echo}), "application/json"
        else:
            body, content_type = echo, "text/plain"
        raw = body.encode()
        self.send_response(int(status))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture(scope="module")
def quoting_vendor() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Quoting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("kind", ["json", "text"])
@pytest.mark.parametrize(("status", "pad"), [(401, 220), (401, 250), (400, 150), (400, 120)])
async def test_a_quoted_secret_cut_by_shortening_leaves_no_piece(
    quoting_vendor: str, kind: str, status: int, pad: int
) -> None:
    http = VendorHTTP(
        "okta",
        quoting_vendor,
        auth=HeaderAuth("Authorization", SecretStr(TOKEN), prefix="SSWS "),
        secrets={TOKEN},
    )
    try:
        with pytest.raises(ConnectorError) as info:
            await http.send(PlannedRequest("GET", f"/{status}/{pad}/{kind}"))
    finally:
        await http.aclose()
    message = str(info.value)
    assert isinstance(info.value, AuthenticationError) is (status == 401)
    assert "SSWS ***" in message or "SSWS" not in message
    for start in range(len(TOKEN) - 8):
        assert TOKEN[start : start + 8] not in message, message
