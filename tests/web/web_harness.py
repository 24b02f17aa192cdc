"""The real service over real HTTP, for tests.

- :class:`ServeProcess` runs ``runbook serve --port 0`` as a subprocess, with
  JSON logs; tests wait on its log lines (no sleeping, no polling).
- :class:`ServerThread` runs the same app (``Service`` + ``create_app`` +
  uvicorn) in a thread with an injected :class:`FakeClock`, for tests that
  move time (dedup windows, schedules).
- :class:`Barrier` is a fake vendor API on loopback that holds every request
  until the test releases it, and records arrival order and concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx

VENV_BIN = Path(sys.executable).parent
RUNBOOK = str(VENV_BIN / "runbook")
ALERT_SECRET = "alert-secret-0123456789"
API_TOKEN = "tok-alice-0123456789abcdef"
OTHER_TOKEN = "tok-bob-0123456789abcdefgh"
WAIT = 30.0
FINAL = ("succeeded", "failed", "rejected", "cancelled")
T = TypeVar("T")


def sign(body: bytes, secret: str = ALERT_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def write_runbooks(folder: Path, runbooks: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in runbooks.items():
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return folder


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no proxies, no Slack, secrets for the ``edr`` and ``am`` sources."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().endswith("_PROXY") and not key.startswith(("RUNBOOK_", "SLACK_"))
    }
    env.update(
        {
            "RUNBOOK_RUNBOOKS_DIR": str(tmp / "runbooks"),
            "RUNBOOK_DATA_DIR": str(tmp / "data"),
            "RUNBOOK_LOG_FORMAT": "json",
            "RUNBOOK_ALERT_SECRET_EDR": ALERT_SECRET,
            "RUNBOOK_ALERT_SECRET_AM": ALERT_SECRET,
            "RUNBOOK_API_TOKENS": f"alice:{API_TOKEN},bob:{OTHER_TOKEN}",
            "RUNBOOK_GROUPS": "leads=alice",
        }
    )
    env.update(extra)
    return env


class LogWatcher:
    """Reads JSON log lines from a stream in a thread; tests wait for the line they need."""

    def __init__(self, stream: Any) -> None:
        self.records: list[dict[str, Any]] = []
        self.text: list[str] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for raw in iter(stream.readline, ""):
            line = raw.rstrip("\n")
            with self._cond:
                self.text.append(line)
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        self.records.append(record)
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT
    ) -> dict[str, Any]:
        """The first record (already seen or still to come) that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for record in self.records[seen:]:
                    if predicate(record):
                        return record
                seen = len(self.records)
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    tail = "\n".join(self.text[-30:])
                    raise AssertionError(f"log line not seen (closed={self._closed}):\n{tail}")
                self._cond.wait(left)

    def join(self) -> None:
        self._thread.join(WAIT)

    def messages(self) -> list[str]:
        with self._cond:
            return [str(r.get("message", "")) for r in self.records]


class ServeProcess:
    """``runbook serve --port 0`` in a subprocess."""

    def __init__(self, tmp: Path, env: dict[str, str], *args: str) -> None:
        self.tmp = tmp
        self.env = env
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.logs: LogWatcher | None = None
        self.url = ""

    def start(self) -> ServeProcess:
        self.proc = subprocess.Popen(
            [RUNBOOK, "serve", "--port", "0", *self.args],
            env=self.env,
            cwd=self.tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.logs = LogWatcher(self.proc.stderr)
        listening = self.logs.wait_for(lambda r: str(r.get("message", "")).startswith("listening"))
        self.url = str(listening["message"]).split()[-1]
        self.logs.wait_for(lambda r: str(r.get("message", "")).startswith("ready:"))
        return self

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self._close()
        return code

    def _close(self) -> None:
        assert self.proc is not None
        if self.logs is not None:
            self.logs.join()
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None and not self.proc.stderr.closed:
            self._close()

    def client(self, token: str | None = API_TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=WAIT, trust_env=False)

    def wait_finished(self, run_id: str) -> str:
        """Wait for the service to log that the run ended; its final status."""
        assert self.logs is not None

        def ended(record: dict[str, Any]) -> bool:
            message = str(record.get("message", ""))
            return message.startswith(f"run {run_id} (") and message.endswith(FINAL)

        return str(self.logs.wait_for(ended)["message"]).rsplit(" ", 1)[-1]


def post_alert(
    client: httpx.Client, source: str, payload: Any, *, secret: str = ALERT_SECRET
) -> httpx.Response:
    """Post a signed alert (without the client's API token: every credential sent must hold)."""
    body = json.dumps(payload).encode()
    request = client.build_request(
        "POST",
        f"/alerts/{source}",
        content=body,
        headers={"X-Runbook-Signature": sign(body, secret), "Content-Type": "application/json"},
    )
    request.headers.pop("Authorization", None)
    return client.send(request)


class ServerThread:
    """The real app in a thread of this process, with an injected clock."""

    def __init__(self, tmp: Path, env: dict[str, str], clock: Any) -> None:
        import uvicorn

        from bot.config import load_settings
        from bot.service import Service
        from bot.web.app import create_app

        self.settings = load_settings(env)
        self.clock = clock
        self.service = Service(self.settings, env, clock=clock)
        self.service.open()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        app = create_app(self.service, manage_lifecycle=False)
        self.server = uvicorn.Server(
            uvicorn.Config(app, lifespan="off", log_config=None, access_log=False)
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready: queue.Queue[BaseException | None] = queue.Queue()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            await self.service.start()
        except BaseException as exc:
            self._ready.put(exc)
            await self.service.stop()
            return
        self._ready.put(None)
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            await self.service.stop(grace=5)

    def start(self) -> ServerThread:
        self.thread.start()
        problem = self._ready.get(timeout=WAIT)
        if problem is not None:
            raise problem
        return self

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def advance(self, seconds: float) -> None:
        self.call(self.clock.advance(seconds))

    def wait_settled(self, run_id: str) -> Any:
        engine = self.service.engine
        assert engine is not None
        return self.call(engine.wait_settled(run_id))

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT)
        assert not self.thread.is_alive()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.thread.is_alive():
            self.stop()
        else:
            with contextlib.suppress(OSError):
                self.sock.close()

    def client(self, token: str | None = API_TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=WAIT, trust_env=False)


class Barrier:
    """A loopback HTTP API that holds each request until released.

    Requests are recorded in arrival order with the number in flight at the
    time; ``wait_arrivals(n)`` blocks until ``n`` have arrived.
    """

    def __init__(self) -> None:
        self.arrivals: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._released: dict[str, threading.Event] = {}
        self._release_all = False
        self._cond = threading.Condition()
        barrier = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                key = self.path.strip("/").split("?")[0]
                gate = barrier._arrive(key)
                gate.wait(WAIT)
                barrier._leave()
                body = json.dumps({"key": key}).encode()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(200)  # the caller may have been killed meanwhile
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _arrive(self, key: str) -> threading.Event:
        with self._cond:
            gate = self._released.setdefault(key, threading.Event())
            if self._release_all:
                gate.set()
            self.arrivals.append(key)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._cond.notify_all()
            return gate

    def _leave(self) -> None:
        with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    def wait_arrivals(self, count: int, timeout: float = WAIT) -> list[str]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.arrivals) >= count, timeout):
                raise AssertionError(f"only {len(self.arrivals)} of {count} requests arrived")
            return list(self.arrivals)

    def release(self, key: str) -> None:
        with self._cond:
            self._released.setdefault(key, threading.Event()).set()

    def release_all(self) -> None:
        with self._cond:
            self._release_all = True
            for gate in self._released.values():
                gate.set()

    def __enter__(self) -> Barrier:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release_all()
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def serving(tmp: Path, runbooks: dict[str, str], **env: str) -> Iterator[ServeProcess]:
    write_runbooks(tmp / "runbooks", runbooks)
    with ServeProcess(tmp, base_env(tmp, **env)) as server:
        yield server
