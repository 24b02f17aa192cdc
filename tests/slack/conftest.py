"""Fixtures of the Slack tests (helpers are in ``slack_harness``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_harness import SlackApp, restore

from bot.sandbox import Sandbox
from bot.sandbox.slack import FakeSlack


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(sandbox_server: Sandbox) -> Iterator[Sandbox]:
    restore(sandbox_server.slack)
    sandbox_server.reset()
    yield sandbox_server
    restore(sandbox_server.slack)
    sandbox_server.reset()


@pytest.fixture
def fake(sandbox: Sandbox) -> FakeSlack:
    return sandbox.slack


@pytest.fixture
async def start_app(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    apps: list[SlackApp] = []

    async def start(runbooks: dict[str, str], **kwargs: Any) -> SlackApp:
        app = SlackApp(sandbox, tmp_path / f"app{len(apps)}", runbooks, **kwargs)
        apps.append(app)
        return await app.start()

    yield start
    for app in apps:
        await app.stop()
