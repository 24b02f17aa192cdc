"""What every fake vendor shares: call recording, faults on demand, tokens.

A :class:`FakeVendor` is a set of Starlette routes mounted under one path
prefix of the sandbox server. Each request is recorded as a :class:`Call`,
then, unless the fake was told otherwise, authenticated and answered from the
fake's state the way the vendor would. Faults are queued with
:meth:`FakeVendor.inject` (or the shortcuts :meth:`~FakeVendor.rate_limit`,
:meth:`~FakeVendor.server_error`, :meth:`~FakeVendor.slow`,
:meth:`~FakeVendor.html`, :meth:`~FakeVendor.malformed_json`,
:meth:`~FakeVendor.unauthorized`, :meth:`~FakeVendor.trickle`,
:meth:`~FakeVendor.huge`, :meth:`~FakeVendor.answer`) and answer the next
matching requests in the vendor's own format: its error envelope, its
rate-limit header.

Everything here may be called from any thread: the server runs on its own
event loop; tests and ``runbook demo`` talk to the fakes from theirs.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>"
)
MALFORMED_JSON = '{"resources": [{"device_id": "truncated'
CHUNK = 64 * 1024


class FaultKind(StrEnum):
    """How a fake can misbehave."""

    UNAUTHORIZED = "unauthorized"  # 401 as for an expired or revoked token
    RATE_LIMIT = "rate_limit"  # 429 with the vendor's retry header
    SERVER_ERROR = "server_error"  # 5xx in the vendor's error format
    SLOW = "slow"  # answer (normally) after `delay` seconds
    HTML = "html"  # an HTML page instead of JSON (a proxy or login page)
    MALFORMED_JSON = "malformed_json"  # a truncated JSON body with status 200
    TRICKLE = "trickle"  # a 200 JSON body that comes one byte every `delay` seconds
    HUGE = "huge"  # a 200 JSON body of `size` bytes, streamed (no Content-Length)
    ANSWER = "answer"  # exactly `status`, `body` and `headers` (a redirect, odd JSON)


@dataclass(slots=True)
class Fault:
    """One queued misbehaviour.

    Attributes:
        kind: what to do.
        times: how many matching requests it answers (None: until cleared).
        match: only requests whose path (under the fake's mount) contains this;
            None matches every request except the token endpoint.
        retry_after: seconds the 429 asks for.
        delay: seconds a slow answer takes (a trickling one: per byte).
        status: the status of a server error, HTML answer or given answer.
        size: bytes of a huge answer.
        body: the body of a given answer.
        headers: the headers of a given answer.
        sent: bytes of a trickling or huge body sent so far.
    """

    kind: FaultKind
    times: int | None = 1
    match: str | None = None
    retry_after: float = 30.0
    delay: float = 30.0
    status: int = 500
    size: int = 0
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    sent: int = 0


@dataclass(slots=True)
class Call:
    """One request a fake received.

    Attributes:
        method: HTTP method.
        path: the path under the fake's mount (``/devices/queries/devices/v1``).
        query: query parameters (lists for repeated ones).
        headers: request headers (lower-case names).
        body: parsed JSON or form body, or None.
        status: the status answered (0 until answered).
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int = 0

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass(slots=True)
class FakeRequest:
    """What a fake's handler gets: the parsed request."""

    method: str
    path: str
    path_params: dict[str, str]
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw: bytes
    content_type: str

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


Handler = Callable[[FakeRequest], Awaitable[Response]]


class TokenIssuer:
    """Bearer tokens an OAuth2 fake issued, with their expiry."""

    def __init__(self, prefix: str, lifetime: float) -> None:
        self.prefix = prefix
        self.lifetime = lifetime
        self.tokens: dict[str, float] = {}
        self.issued: list[str] = []

    def issue(self) -> str:
        token = f"{self.prefix}{secrets.token_hex(24)}"
        self.tokens[token] = time.time() + self.lifetime
        self.issued.append(token)
        return token

    def valid(self, token: str) -> bool:
        expires = self.tokens.get(token)
        return expires is not None and time.time() < expires

    def expire_all(self) -> None:
        self.tokens.clear()


def bearer(headers: Mapping[str, str], scheme: str = "Bearer") -> str | None:
    value = headers.get("authorization", "")
    prefix = scheme.lower() + " "
    if value.lower().startswith(prefix):
        return value[len(prefix) :].strip()
    return None


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return JSONResponse(data, status_code=status, headers=dict(headers or {}))


class FakeVendor:
    """Base of the fake vendor APIs; subclasses add state, routes and formats."""

    name: ClassVar[str] = ""
    token_paths: ClassVar[tuple[str, ...]] = ()

    def __init__(self, credentials: Mapping[str, str] | None = None) -> None:
        self._lock = threading.RLock()
        self.credentials: dict[str, str] = self.default_credentials()
        self.credentials.update(credentials or {})
        self.faults: list[Fault] = []
        self.calls: list[Call] = []
        self._sleepers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._call_added = threading.Condition(self._lock)
        self._generation = 0  # bumped by reset() and clear_faults(): trickles stop
        self.reset()

    # -- to override -----------------------------------------------------

    def default_credentials(self) -> dict[str, str]:
        return {}

    def seed(self) -> None:
        """(Re)build the fake's state."""

    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def env(self, base: str) -> dict[str, str]:
        """Settings that point the connector at this fake mounted at ``base``."""
        raise NotImplementedError

    def secrets(self) -> list[str]:
        """Every secret credential and token of this fake (for redaction checks).

        Identifiers (client ids, tenant ids, user names) are not secrets.
        """
        return [
            value
            for name, value in self.credentials.items()
            if any(word in name for word in ("secret", "token", "password", "key"))
        ]

    async def authenticate(self, request: FakeRequest) -> Response | None:
        """None when the request carries valid credentials, else the vendor's refusal."""
        return None

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        """An error in the vendor's envelope."""
        return json_response({"error": {"code": code or str(status), "message": message}}, status)

    def rate_limited(self, fault: Fault) -> Response:
        """A 429 with the vendor's retry header."""
        response = self.error(429, "Too many requests", "TooManyRequests")
        response.headers["Retry-After"] = str(int(fault.retry_after))
        return response

    def token_expired(self) -> Response:
        return self.error(401, "invalid or expired token", "Unauthorized")

    # -- state and faults (any thread) -----------------------------------

    def reset(self) -> None:
        """Forget calls and faults, wake slow answers, rebuild the state."""
        with self._lock:
            self.faults.clear()
            self.calls.clear()
            self._generation += 1
            self._wake_sleepers()
            self.seed()

    def inject(
        self,
        kind: FaultKind | str,
        *,
        times: int | None = 1,
        match: str | None = None,
        retry_after: float = 30.0,
        delay: float = 30.0,
        status: int | None = None,
        size: int = 0,
        body: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Queue a fault for the next ``times`` matching requests."""
        kind = FaultKind(kind)
        ok = (FaultKind.HTML, FaultKind.TRICKLE, FaultKind.HUGE, FaultKind.ANSWER)
        default_status = 200 if kind in ok else 500
        fault = Fault(
            kind,
            times,
            match,
            retry_after,
            delay,
            status or default_status,
            size,
            body,
            dict(headers or {}),
        )
        with self._lock:
            self.faults.append(fault)
        return fault

    def rate_limit(
        self, *, retry_after: float = 30.0, times: int | None = 1, match: str | None = None
    ) -> Fault:
        return self.inject(FaultKind.RATE_LIMIT, retry_after=retry_after, times=times, match=match)

    def server_error(
        self, *, status: int = 500, times: int | None = 1, match: str | None = None
    ) -> Fault:
        return self.inject(FaultKind.SERVER_ERROR, status=status, times=times, match=match)

    def slow(self, delay: float, *, times: int | None = 1, match: str | None = None) -> Fault:
        return self.inject(FaultKind.SLOW, delay=delay, times=times, match=match)

    def html(self, *, status: int = 200, times: int | None = 1, match: str | None = None) -> Fault:
        return self.inject(FaultKind.HTML, status=status, times=times, match=match)

    def malformed_json(self, *, times: int | None = 1, match: str | None = None) -> Fault:
        return self.inject(FaultKind.MALFORMED_JSON, times=times, match=match)

    def unauthorized(self, *, times: int | None = 1, match: str | None = None) -> Fault:
        return self.inject(FaultKind.UNAUTHORIZED, times=times, match=match)

    def trickle(self, delay: float, *, times: int | None = 1, match: str | None = None) -> Fault:
        """Answer 200 at once, then the body one byte every ``delay`` seconds."""
        return self.inject(FaultKind.TRICKLE, delay=delay, times=times, match=match)

    def huge(self, size: int, *, times: int | None = 1, match: str | None = None) -> Fault:
        """Answer 200 with a JSON body of ``size`` bytes, streamed without Content-Length."""
        return self.inject(FaultKind.HUGE, size=size, times=times, match=match)

    def answer(
        self,
        status: int,
        body: str = "",
        headers: Mapping[str, str] | None = None,
        *,
        times: int | None = 1,
        match: str | None = None,
    ) -> Fault:
        """Answer exactly this (``Content-Type`` is JSON unless ``headers`` says otherwise)."""
        return self.inject(
            FaultKind.ANSWER, status=status, body=body, headers=headers, times=times, match=match
        )

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()
            self._generation += 1
            self._wake_sleepers()

    def calls_to(self, path_part: str, method: str | None = None) -> list[Call]:
        """Recorded calls whose path contains ``path_part`` (and of ``method``)."""
        with self._lock:
            return [
                call
                for call in self.calls
                if path_part in call.path and (method is None or call.method == method)
            ]

    def wait_for_calls(self, path_part: str, count: int = 1, timeout: float = 10.0) -> list[Call]:
        """Block until ``count`` calls matching ``path_part`` arrived (or raise TimeoutError)."""
        with self._call_added:
            ok = self._call_added.wait_for(
                lambda: len([c for c in self.calls if path_part in c.path]) >= count, timeout
            )
            if not ok:
                raise TimeoutError(f"{self.name}: fewer than {count} calls to {path_part!r}")
            return [c for c in self.calls if path_part in c.path]

    def _wake_sleepers(self) -> None:
        for loop, event in list(self._sleepers):
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)
        self._sleepers.clear()

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.match is None:
                    if any(path.startswith(p) or p in path for p in self.token_paths):
                        continue
                elif fault.match not in path:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    # -- serving -----------------------------------------------------------

    def route(self, path: str, handler: Handler, methods: list[str], *, auth: bool = True) -> Route:
        """A Starlette route that records, applies faults, authenticates, then handles."""

        async def endpoint(request: Request) -> Response:
            fake_request = await _parse(request, path)
            call = Call(
                fake_request.method,
                fake_request.path,
                fake_request.query,
                fake_request.headers,
                fake_request.body,
            )
            with self._call_added:
                self.calls.append(call)
                self._call_added.notify_all()
            response = await self._answer(fake_request, handler, auth)
            call.status = response.status_code
            return response

        return Route(path, endpoint, methods=methods)

    async def _answer(self, request: FakeRequest, handler: Handler, auth: bool) -> Response:
        fault = self._take_fault(request.path)
        if fault is not None:
            if fault.kind is FaultKind.SLOW:
                await self._sleep(fault.delay)
            else:
                return self.fault_response(fault)
        if auth:
            refusal = await self.authenticate(request)
            if refusal is not None:
                return refusal
        return await handler(request)

    def fallback_routes(self) -> list[BaseRoute]:
        """A last route answering unknown paths with the vendor's own 404."""

        async def unknown(request: FakeRequest) -> Response:
            return self.error(404, f"no such resource: {request.method} {request.path}", "NotFound")

        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return [self.route("/{unknown_path:path}", unknown, methods, auth=False)]

    def fault_response(self, fault: Fault) -> Response:
        if fault.kind is FaultKind.RATE_LIMIT:
            return self.rate_limited(fault)
        if fault.kind is FaultKind.UNAUTHORIZED:
            return self.token_expired()
        if fault.kind is FaultKind.HTML:
            return Response(HTML_PAGE, status_code=fault.status, media_type="text/html")
        if fault.kind is FaultKind.MALFORMED_JSON:
            return Response(MALFORMED_JSON, status_code=200, media_type="application/json")
        if fault.kind is FaultKind.TRICKLE:
            return StreamingResponse(self._trickle(fault), media_type="application/json")
        if fault.kind is FaultKind.HUGE:
            return StreamingResponse(_huge(fault), media_type="application/json")
        if fault.kind is FaultKind.ANSWER:
            headers = {"Content-Type": "application/json", **fault.headers}
            return Response(fault.body, status_code=fault.status, headers=headers)
        return self.error(fault.status, "internal server error", "InternalServerError")

    async def _trickle(self, fault: Fault) -> AsyncIterator[bytes]:
        body = b'{"data": "' + b"x" * 100_000 + b'"}'
        generation = self._generation
        for index in range(len(body)):
            if index:
                await self._sleep(fault.delay)
            if self._generation != generation:
                return
            fault.sent += 1
            yield body[index : index + 1]

    async def _sleep(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        entry = (loop, event)
        with self._lock:
            self._sleepers.add(entry)
        try:
            await asyncio.wait_for(event.wait(), delay)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._sleepers.discard(entry)


async def _huge(fault: Fault) -> AsyncIterator[bytes]:
    head, tail = b'{"data": "', b'"}'
    yield head
    fault.sent = len(head)
    filler = fault.size - len(head) - len(tail)
    while filler > 0:
        chunk = b"x" * min(CHUNK, filler)
        filler -= len(chunk)
        fault.sent += len(chunk)
        yield chunk
    fault.sent += len(tail)
    yield tail


async def _parse(request: Request, route_path: str) -> FakeRequest:
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    body: Any = None
    if raw:
        if "json" in content_type:
            try:
                body = json.loads(raw)
            except ValueError:
                body = _Malformed(raw)
        elif "form" in content_type:
            body = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        else:
            body = raw.decode("utf-8", "replace")
    query: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        query.setdefault(key, []).append(value)
    root = request.scope.get("root_path", "")
    path = request.url.path
    if root and path.startswith(root):
        path = path[len(root) :]
    return FakeRequest(
        method=request.method,
        path=path or "/",
        path_params={k: str(v) for k, v in request.path_params.items()},
        query=query,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        raw=raw,
        content_type=content_type,
    )


@dataclass(frozen=True, slots=True)
class _Malformed:
    """A JSON body that did not parse (handlers answer the vendor's 400)."""

    raw: bytes = field(repr=False)


def is_malformed(body: Any) -> bool:
    return isinstance(body, _Malformed)


def new_secret(prefix: str, length: int = 24) -> str:
    """A distinctive random credential (easy to search for in redaction tests)."""
    return f"{prefix}{secrets.token_hex(length // 2)}"
