"""Request bodies and JSON answers shared by alert intake and the API.

Bodies are read with their size limit enforced while reading: a declared
``Content-Length`` over the limit is refused before a byte is read, and a
streamed body is abandoned as soon as it passes the limit. JSON must be one
object, nested at most :data:`MAX_DEPTH` levels, without ``NaN``/``Infinity``
(which the audit log could not store).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount

log = logging.getLogger("runbook.web")

MAX_DEPTH = 100
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class BadRequest(Exception):
    """A request the client must change: answered with ``status`` and ``{"error": message}``.

    Attributes:
        status: the HTTP status to answer with.
        reason: a short machine-readable reason (metrics label).
    """

    def __init__(self, status: int, message: str, reason: str = "bad_request") -> None:
        self.status = status
        self.message = message
        self.reason = reason
        super().__init__(message)


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    """``{"error": message, ...}`` with ``status``."""
    return JSONResponse({"error": message, **extra}, status_code=status)


def check_declared_length(request: Request, limit: int) -> None:
    """Refuse a body whose declared ``Content-Length`` is over ``limit``, before reading it.

    Raises:
        BadRequest: 413 over the limit, 400 for a length that is not a number.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise BadRequest(400, "bad Content-Length header", "bad_length") from None
        if length > limit:
            raise BadRequest(413, f"body too large (limit {limit} bytes)", "too_large")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes.

    Raises:
        BadRequest: 413 over the limit (the rest is never read), 400 when the
            client went away or declared a bad length.
    """
    check_declared_length(request, limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(413, f"body too large (limit {limit} bytes)", "too_large")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest(400, "the client went away while sending the body", "disconnect") from None
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_object(raw: bytes, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse a JSON object.

    Raises:
        BadRequest: 400 for text that is not JSON (or not UTF-8), JSON that is
            not an object, or nesting deeper than ``max_depth``.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, "body is not UTF-8 text", "bad_json") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise BadRequest(400, f"JSON nested deeper than {max_depth} levels", "too_deep") from None
    except ValueError as exc:
        raise BadRequest(400, f"body is not JSON: {exc}", "bad_json") from None
    if not isinstance(value, dict):
        raise BadRequest(400, f"JSON body must be an object, not {_kind(value)}", "not_object")
    if depth_exceeds(value, max_depth):
        raise BadRequest(400, f"JSON nested deeper than {max_depth} levels", "too_deep")
    if _SURROGATE_ESCAPE.search(text) is not None:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(400, "JSON string with a lone UTF-16 surrogate", "bad_json") from None
    return value


def depth_exceeds(value: Any, max_depth: int) -> bool:
    """Whether containers nest deeper than ``max_depth`` (the top level is depth 1)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return True
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


Handler = Callable[[Request], Awaitable[Response]]


def json_errors(handler: Handler) -> Handler:
    """Answer :class:`BadRequest` as JSON, and anything unexpected as a JSON 500 (logged)."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except BadRequest as exc:
            return error(exc.status, exc.message)
        except Exception:
            log.exception("%s %s: internal error", request.method, request.url.path)
            return error(500, "internal error (see the service log)")

    return wrapped


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 answers, as JSON."""
    if isinstance(exc, HTTPException):
        headers = dict(exc.headers or {})
        if "Allow" in headers:  # Starlette joins a set: the same answer on every start
            methods = sorted(m.strip() for m in headers["Allow"].split(","))
            headers["Allow"] = ", ".join(methods)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=headers)
    return error(500, "internal error")


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    HTTPException: http_exception,
}


def json_mount(path: str, routes: Sequence[BaseRoute]) -> Mount:
    """Mount ``routes`` under ``path`` in an app whose own 404/405 answers are JSON.

    Starlette's mount pattern stops at a newline (``.*``); this one does not,
    so every path under ``path`` reaches the JSON answers.
    """
    mounted = Mount(path, app=Starlette(routes=list(routes), exception_handlers=EXCEPTION_HANDLERS))
    mounted.path_regex = re.compile(mounted.path_regex.pattern, re.DOTALL)
    return mounted
