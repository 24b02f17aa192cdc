"""Serving the fake vendors: one Starlette app, one loopback port, a background thread.

:class:`LoopbackServer` serves any ASGI app on ``127.0.0.1`` (port 0 = a free
one, known as soon as ``start()`` returns) from a daemon thread with its own
event loop, so synchronous code, tests on any loop and ``runbook demo`` can
all use it. :class:`Sandbox` mounts every fake on one such server.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from bot.sandbox.awx import FakeAWX
from bot.sandbox.crowdstrike import FakeCrowdStrike
from bot.sandbox.defender import FakeDefender, FakeMicrosoftLogin
from bot.sandbox.echo import FakeEcho
from bot.sandbox.fake import FakeVendor, FaultKind, TokenIssuer
from bot.sandbox.jira import FakeJira
from bot.sandbox.okta import FakeOkta
from bot.sandbox.pagerduty import FakePagerDuty
from bot.sandbox.sentinelone import FakeSentinelOne
from bot.sandbox.servicenow import FakeServiceNow
from bot.sandbox.slack import FakeSlack
from bot.sandbox.virustotal import FakeVirusTotal

START_TIMEOUT = 15.0

# Where each fake is mounted; the connector's base URL is the server URL plus this.
MOUNTS: dict[str, str] = {
    "crowdstrike": "/crowdstrike",
    "defender": "/defender",
    "microsoft-login": "/microsoft-login",
    "sentinelone": "/sentinelone/web/api/v2.1",
    "pagerduty": "/pagerduty",
    "jira": "/jira",
    "servicenow": "/servicenow",
    "virustotal": "/virustotal/api/v3",
    "okta": "/okta/api/v1",
    "awx": "/awx",
    "slack": "/slack",
    "echo": "/echo",
}


class LoopbackServer:
    """An ASGI app served on loopback from a background thread.

    Args:
        app: the ASGI application.
        host: the address to bind (loopback unless you know why not).
        port: 0 for any free port.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._server: Any = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Bind, start serving, and return once requests are answered.

        Raises:
            RuntimeError: the server did not start.
        """
        if self._thread is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this; without it, delayed ACKs add ~40 ms per request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self._socket = sock
        self._thread = threading.Thread(
            target=self._run, name=f"loopback-server-{self.port}", daemon=True
        )
        self._thread.start()
        if not self._started.wait(START_TIMEOUT) or self._error is not None:
            self.stop()
            raise RuntimeError(f"the loopback server did not start: {self._error}")

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # SystemExit from uvicorn's startup, too
            self._error = exc
            self._started.set()

    async def _serve(self) -> None:
        import uvicorn

        started = self._started

        class _Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets=sockets)
                started.set()

        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = _Server(config)
        self._server = server
        assert self._socket is not None
        await server.serve(sockets=[self._socket])

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._thread = None
        self._server = None
        self._socket = None
        self._started.clear()

    def __enter__(self) -> LoopbackServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Sandbox:
    """Every fake vendor on one loopback server.

    Use it as a context manager, synchronously or in async code (the server
    runs on its own thread either way)::

        with Sandbox() as sandbox:
            pool = ConnectorPool(registry, os.environ, register_secret=REDACTOR.add,
                                 sandbox_env=sandbox.env)
            sandbox.crowdstrike.rate_limit(retry_after=5)

    Attributes:
        env: ``RUNBOOK_<CONNECTOR>_BASE_URL`` and fake credentials for every
            connector (and ``RUNBOOK_SLACK_API_URL``/``SLACK_BOT_TOKEN``).
        fakes: the fakes by name; each is also an attribute (``sandbox.okta``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        creds = dict(credentials or {})
        microsoft_tokens = TokenIssuer("mde-token-", 3599)
        self.crowdstrike = FakeCrowdStrike(dict(creds.get("crowdstrike", {})))
        self.microsoft_login = FakeMicrosoftLogin(microsoft_tokens, dict(creds.get("defender", {})))
        self.defender = FakeDefender(microsoft_tokens)
        self.sentinelone = FakeSentinelOne(creds.get("sentinelone"))
        self.pagerduty = FakePagerDuty(creds.get("pagerduty"))
        self.jira = FakeJira(creds.get("jira"))
        self.servicenow = FakeServiceNow(creds.get("servicenow"))
        self.virustotal = FakeVirusTotal(creds.get("virustotal"))
        self.okta = FakeOkta(creds.get("okta"))
        self.awx = FakeAWX(creds.get("awx"))
        self.slack = FakeSlack(creds.get("slack"))
        self.echo = FakeEcho(creds.get("echo"))
        self.fakes: dict[str, FakeVendor] = {
            "crowdstrike": self.crowdstrike,
            "defender": self.defender,
            "microsoft-login": self.microsoft_login,
            "sentinelone": self.sentinelone,
            "pagerduty": self.pagerduty,
            "jira": self.jira,
            "servicenow": self.servicenow,
            "virustotal": self.virustotal,
            "okta": self.okta,
            "awx": self.awx,
            "slack": self.slack,
            "echo": self.echo,
        }
        self.app = build_app(self.fakes, self.secrets)
        self.server = LoopbackServer(self.app, host=host, port=port)

    @property
    def url(self) -> str:
        """The server's root URL (``http://127.0.0.1:<port>``)."""
        return self.server.url

    def base_url(self, fake: str) -> str:
        """Where a fake is served: the connector's ``base_url`` in the sandbox."""
        return self.url + MOUNTS[fake]

    @property
    def env(self) -> dict[str, str]:
        """Connector settings that point every connector at its fake."""
        found: dict[str, str] = {}
        for name, fake in self.fakes.items():
            found.update(fake.env(self.base_url(name)))
        return found

    def secrets(self) -> list[str]:
        """Every fake credential and every token issued so far (redaction checks)."""
        return [secret for fake in self.fakes.values() for secret in fake.secrets()]

    def reset(self) -> None:
        """Every fake back to its seeded state, with no faults and no recorded calls."""
        for fake in self.fakes.values():
            fake.reset()

    def start(self) -> Sandbox:
        self.server.start()
        return self

    def stop(self) -> None:
        for fake in self.fakes.values():
            fake.clear_faults()
        self.server.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Sandbox:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)


def build_app(fakes: Mapping[str, FakeVendor], secrets: Any = list) -> Starlette:
    """One Starlette app: every fake under its mount, and ``/_control`` to steer them."""
    routes: list[BaseRoute] = [
        Mount(MOUNTS[name], routes=[*fake.routes(), *fake.fallback_routes()])
        for name, fake in fakes.items()
    ]
    routes.insert(0, Mount("/_control", routes=_control_routes(fakes, secrets)))
    return Starlette(routes=routes)


def _control_routes(fakes: Mapping[str, FakeVendor], secrets: Any) -> list[BaseRoute]:
    """``POST /_control/reset``; ``POST|DELETE /_control/{fake}/faults``; ``GET …/calls``."""

    def masked(data: Any) -> Response:
        text = json.dumps(data)
        for secret in sorted(secrets(), key=len, reverse=True):
            text = text.replace(secret, "***")
        return Response(text, media_type="application/json")

    async def reset(request: Request) -> Response:
        for fake in fakes.values():
            fake.reset()
        return JSONResponse({"reset": sorted(fakes)})

    async def faults(request: Request) -> Response:
        fake = fakes.get(request.path_params["fake"])
        if fake is None:
            return JSONResponse({"error": "unknown fake"}, status_code=404)
        if request.method == "DELETE":
            fake.clear_faults()
            return JSONResponse({"cleared": True})
        try:
            body = await request.json()
            fault = fake.inject(
                FaultKind(body["kind"]),
                times=body.get("times", 1),
                match=body.get("match"),
                retry_after=float(body.get("retry_after", 30)),
                delay=float(body.get("delay", 30)),
                status=body.get("status"),
                size=int(body.get("size", 0)),
                body=str(body.get("body", "")),
                headers=dict(body.get("headers") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            kinds = ", ".join(kind.value for kind in FaultKind)
            return JSONResponse(
                {"error": f"bad fault: {exc}; give kind ({kinds}), times, match, ..."},
                status_code=400,
            )
        return JSONResponse({"fault": {"kind": fault.kind.value, "times": fault.times}}, 201)

    async def calls(request: Request) -> Response:
        fake = fakes.get(request.path_params["fake"])
        if fake is None:
            return JSONResponse({"error": "unknown fake"}, status_code=404)
        with fake._lock:
            data = [
                {
                    "method": c.method,
                    "path": c.path,
                    "query": c.query,
                    "body": c.body if isinstance(c.body, (dict, list, str)) else None,
                    "status": c.status,
                }
                for c in fake.calls
            ]
        return masked(data)

    return [
        Route("/reset", reset, methods=["POST"]),
        Route("/{fake}/faults", faults, methods=["POST", "DELETE"]),
        Route("/{fake}/calls", calls, methods=["GET"]),
    ]
