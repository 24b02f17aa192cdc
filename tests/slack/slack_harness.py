"""Helpers for the Slack tests: the real service (Slack extension + engine), real HTTP, fake Slack.

``SlackApp`` starts the service in-process on 127.0.0.1 (port 0) under
uvicorn, on the test's own event loop, with the fake Slack Web API of the
sandbox behind ``RUNBOOK_SLACK_API_URL``. Requests are signed with Slack's v0
algorithm (``FakeSlack.sign``) and posted over HTTP. Waiting is always on
something: a condition over the fake's recorded calls (re-checked after each
call it handles) or an engine record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn

from bot.chat.slack.feature import SlackExtension
from bot.config import load_settings
from bot.engine.ports import Clock, Timers
from bot.engine.state import RunState
from bot.sandbox import Sandbox
from bot.sandbox.slack import TEAM_ID, FakeSlack, SlackCall
from bot.sandbox.slack_workspace import SlackError
from bot.service import Service
from bot.web.app import create_app

ALICE, BOB, CAROL, DAVE = "U024BE7LH", "U0BOB", "U0CAROL", "U0DAVE"
SOC = "C0SOCINC"


def write_runbooks(folder: Path, runbooks: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in runbooks.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def slack_env(sandbox: Sandbox, runbooks: Path, data: Path) -> dict[str, str]:
    return {
        **sandbox.slack.app_env(sandbox.base_url("slack")),
        "RUNBOOK_RUNBOOKS_DIR": str(runbooks),
        "RUNBOOK_DATA_DIR": str(data),
    }


# -- a fake Slack that offers less (as a minimal stand-in of the Web API might) ----------
#
# The sandbox's FakeSlack looks a method's handler up on the instance (``m_<method>``), so a
# test can take one away or replace it; ``restore`` (called by the fixtures) undoes that.


def _handler_name(method: str) -> str:
    return "m_" + method.replace(".", "_")


def without_method(fake: FakeSlack, method: str, *, http404: bool = False) -> None:
    """``method`` answers ``unknown_method`` (HTTP 200), or with ``http404`` a bare HTTP 404."""
    if http404:
        fake.inject("server_error", status=404, times=None, match=f"/api/{method}")
    else:
        setattr(fake, _handler_name(method), None)


def answer_with(fake: FakeSlack, method: str, handler: Callable[[dict[str, Any]], Any]) -> None:
    """``method`` answers ``{"ok": true, **handler(args)}`` (raise SlackError to fail)."""
    setattr(fake, _handler_name(method), handler)


def minimal_auth_test(fake: FakeSlack, answer: dict[str, Any] | None = None) -> None:
    """``auth.test`` answers ok with only ``answer`` (default: no team, no user)."""
    answer_with(fake, "auth.test", lambda args: dict(answer or {"url": "https://x.slack.com/"}))


def groups_by_handle(fake: FakeSlack) -> None:
    """``usergroups.users.list`` takes a handle as well as an id (as some stand-ins do)."""

    def users_list(args: dict[str, Any]) -> dict[str, Any]:
        wanted = str(args.get("usergroup", ""))
        for gid, group in fake.usergroups.items():
            if wanted in (gid, group["handle"]):
                return {"users": list(group["users"])}
        raise SlackError("no_such_subteam")

    answer_with(fake, "usergroups.users.list", users_list)


def restore(fake: FakeSlack) -> None:
    """Undo ``without_method``/``answer_with``: every method as the sandbox serves it."""
    for name in [n for n in vars(fake) if n.startswith("m_")]:
        delattr(fake, name)
    fake.clear_faults()


# -- payloads, as Slack sends them -------------------------------------------------------


def command_body(
    sandbox: Sandbox,
    text: str,
    *,
    user: str = ALICE,
    channel: str = SOC,
    team: str = TEAM_ID,
    key: str | None = None,
) -> tuple[bytes, str]:
    """A slash command's form body, and the key its response_url records under."""
    key = key or uuid.uuid4().hex[:12]
    form = {
        "token": "deprecated-verification-token",
        "team_id": team,
        "team_domain": "runbook-sandbox",
        "channel_id": channel,
        "channel_name": "soc-incidents",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/runbook",
        "text": text,
        "api_app_id": "A0RUNBOOK",
        "is_enterprise_install": "false",
        "response_url": f"{sandbox.base_url('slack')}/response/{key}",
        "trigger_id": f"{int(time.time())}.{uuid.uuid4().hex}",
    }
    return urlencode(form).encode(), key


def click_body(
    sandbox: Sandbox,
    action_id: str,
    value: str,
    *,
    user: str,
    channel: str = SOC,
    message_ts: str = "1.0",
    team: str = TEAM_ID,
    trigger_id: str | None = None,
) -> bytes:
    payload = {
        "type": "block_actions",
        "team": {"id": team, "domain": "runbook-sandbox"},
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
        "api_app_id": "A0RUNBOOK",
        "token": "deprecated-verification-token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id or f"{int(time.time())}.{uuid.uuid4().hex}",
        "channel": {"id": channel, "name": "soc-incidents"},
        "response_url": f"{sandbox.base_url('slack')}/response/{uuid.uuid4().hex[:12]}",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "gate",
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def submission_body(
    view: dict[str, Any], values: dict[str, dict[str, Any]], *, user: str, team: str = TEAM_ID
) -> bytes:
    payload = {
        "type": "view_submission",
        "team": {"id": team, "domain": "runbook-sandbox"},
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "api_app_id": "A0RUNBOOK",
        "token": "deprecated-verification-token",
        "trigger_id": f"{int(time.time())}.{uuid.uuid4().hex}",
        "view": {**view, "state": {"values": values}},
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


# -- reading what the bot sent ----------------------------------------------------------------


def actions_of(blocks: Any) -> list[dict[str, Any]]:
    """The buttons in a message's blocks."""
    found = []
    for block in blocks or []:
        if block.get("type") == "actions":
            found.extend(block.get("elements", []))
    return found


def text_of(blocks: Any) -> str:
    """Every bit of text in blocks, joined (for assertions)."""
    return json.dumps(blocks, ensure_ascii=False)


def approval_posts(fake: FakeSlack) -> list[SlackCall]:
    return [
        c
        for c in fake.api_calls("chat.postMessage")
        if c.ok
        and any(a.get("action_id") == "approval_approve" for a in actions_of(c.args.get("blocks")))
    ]


def ephemerals(fake: FakeSlack, user: str) -> list[str]:
    return [
        str(c.args.get("text"))
        for c in fake.api_calls("chat.postEphemeral")
        if c.args.get("user") == user and c.ok
    ]


class SlackApp:
    """The service with the Slack extension, served in-process (see the module docstring)."""

    def __init__(
        self,
        sandbox: Sandbox,
        root: Path,
        runbooks: dict[str, str],
        *,
        clock: Clock | None = None,
        timers: Timers | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.fake = sandbox.slack
        self.env = {
            **slack_env(sandbox, write_runbooks(root / "runbooks", runbooks), root / "data"),
            **(extra_env or {}),
        }
        self.settings = load_settings(self.env)
        self.extension = SlackExtension(self.settings, status_interval=0)
        self.service = Service(
            self.settings, self.env, clock=clock, timers=timers, extensions=[self.extension]
        )
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.http = httpx.AsyncClient(timeout=10.0)

    async def start(self) -> SlackApp:
        # The harness drives the service's life cycle itself (create_app would SIGTERM the
        # process if starting failed); `runbook serve` itself is tested in test_restart.py.
        self.service.open()
        app = create_app(self.service, manage_lifecycle=False)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, lifespan="off", log_config=None, access_log=False
        )
        server = uvicorn.Server(config)
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
        self._server = server
        self._task = asyncio.create_task(server.serve())
        async with asyncio.timeout(20):
            while not server.started:  # uvicorn has no event for it; bounded poll
                if self._task.done():
                    self._task.result()
                    raise RuntimeError("uvicorn stopped while starting")
                await asyncio.sleep(0.005)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self.service.set_url(self.url)
        await self.service.start()
        return self

    async def stop(self) -> None:
        await self.http.aclose()
        await self.service.stop(grace=5.0)
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def engine(self) -> Any:
        assert self.service.engine is not None
        return self.service.engine

    # -- requests -----------------------------------------------------------------------

    async def post(
        self,
        body: bytes,
        *,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
        signed: bool = True,
    ) -> httpx.Response:
        sent = {"Content-Type": "application/x-www-form-urlencoded"}
        if signed:
            sent.update(self.fake.sign(body, timestamp))
        sent.update(headers or {})
        return await self.http.post(self.url + "/slack/events", content=body, headers=sent)

    async def command(self, text: str, **kwargs: Any) -> tuple[httpx.Response, str]:
        body, key = command_body(self.sandbox, text, **kwargs)
        return await self.post(body), key

    async def click(
        self, action_id: str, value: str, *, user: str, **kwargs: Any
    ) -> httpx.Response:
        return await self.post(click_body(self.sandbox, action_id, value, user=user, **kwargs))

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        """A message as the channel shows it now (an empty one if it is not there)."""
        return next((m for m in self.fake.messages(channel) if m["ts"] == ts), {})

    # -- waiting --------------------------------------------------------------------------

    async def until(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        """Wait for a condition over the fake Slack's handled calls."""
        await asyncio.to_thread(self.fake.wait_until, predicate, timeout)

    async def run_until(
        self, run_id: str, predicate: Callable[[RunState], bool], timeout: float = 15.0
    ) -> RunState:
        """Wait for the run to satisfy ``predicate`` (checked at each engine record)."""
        engine = self.engine
        reached = asyncio.Event()

        def check(*_: Any) -> None:
            run = engine.store.get_run(run_id)
            if run is not None and predicate(run):
                reached.set()

        engine.listeners.append(check)
        try:
            check()
            async with asyncio.timeout(timeout):
                await reached.wait()
        finally:
            engine.listeners.remove(check)
        run = engine.store.get_run(run_id)
        assert run is not None
        return run

    async def settle(self) -> None:
        """Background work (decisions, replies) and status updates done."""
        await self.extension.drain()
        await self.extension.chat.idle()


def audit_records(data_dir: Path, event: str | None = None) -> list[dict[str, Any]]:
    lines = (data_dir / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if event is None or r["event"] == event]
