"""A generic HTTP endpoint for the ``http`` connector: it answers what it was sent.

``ANY /echo/anything/...`` answers 200 with ``{method, path, query, headers,
json, text}``; ``/echo/status/{code}`` answers that status (JSON body);
``/echo/text`` answers plain text; ``/echo/protected/...`` wants
``Authorization: Bearer <bearer_token>`` (401 otherwise) and then echoes.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute

from bot.sandbox.fake import FakeRequest, FakeVendor, bearer, json_response, new_secret

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class FakeEcho(FakeVendor):
    """Echo server for generic HTTP calls."""

    name = "echo"

    def default_credentials(self) -> dict[str, str]:
        return {"bearer_token": new_secret("echo-token-", 32)}

    def env(self, base: str) -> dict[str, str]:
        return {}

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        return json_response({"error": message, "code": code}, status)

    async def authenticate(self, request: FakeRequest) -> Response | None:
        if request.path.startswith("/protected") and (
            bearer(request.headers) != self.credentials["bearer_token"]
        ):
            return json_response({"error": "unauthorized"}, 401)
        return None

    def routes(self) -> list[BaseRoute]:
        return [
            self.route("/status/{code:int}", self._status, METHODS),
            self.route("/text", self._text, ["GET"]),
            self.route("/{rest:path}", self._echo, METHODS),
        ]

    async def _status(self, request: FakeRequest) -> Response:
        code = int(request.path_params["code"])
        return json_response({"status": code, "message": f"you asked for {code}"}, code)

    async def _text(self, request: FakeRequest) -> Response:
        return PlainTextResponse("plain text, not JSON\n")

    async def _echo(self, request: FakeRequest) -> Response:
        return json_response(
            {
                "method": request.method,
                "path": request.path,
                "query": {k: v[0] if len(v) == 1 else v for k, v in request.query.items()},
                "headers": {k: v for k, v in request.headers.items() if k != "authorization"},
                "json": request.body if "json" in request.content_type else None,
                "text": request.raw.decode("utf-8", "replace"),
            }
        )
