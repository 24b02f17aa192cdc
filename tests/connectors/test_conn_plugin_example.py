"""The connector package of docs/connectors.md (examples/runbook-bot-cmdb) really works.

The package is made discoverable the way ``pip install`` would: a
``*.dist-info`` folder with its ``entry_points.txt`` on ``sys.path``. The
commands run in a subprocess, so nothing leaks into this test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount

from bot.errors import AuthenticationError, ConnectorError
from bot.sandbox import LoopbackServer
from bot.sandbox.fake import FakeRequest, FakeVendor, json_response
from connectors.base import ActionContext, ConnectorRuntime

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "runbook-bot-cmdb"


def _entry_points() -> str:
    """The ``[project.entry-points]`` table of the example's pyproject, as entry_points.txt."""
    import tomllib

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    lines = []
    for group, entries in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in entries.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def installed(tmp_path: Path) -> dict[str, str]:
    """An environment in which the example package looks installed."""
    site = tmp_path / "site"
    dist = site / "runbook_bot_cmdb-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: runbook-bot-cmdb\nVersion: 0.1.0\n"
    )
    (dist / "entry_points.txt").write_text(_entry_points())
    paths = [str(site), str(EXAMPLE / "src"), str(ROOT)]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RUNBOOK_", "SLACK_"))
    }
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def runbook(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_runbook_connectors_lists_the_plugin(installed: dict[str, str], tmp_path: Path) -> None:
    done = runbook(installed, "connectors", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    connectors = {c["name"]: c for c in json.loads(done.stdout)}
    cmdb = connectors["cmdb"]
    assert cmdb["title"] == "Acme CMDB"
    assert cmdb["configured"] is False
    actions = {a["name"]: a for a in cmdb["actions"]}
    assert actions["find_asset"]["mutating"] is False
    assert actions["tag_asset"]["mutating"] is True and actions["tag_asset"]["idempotent"]
    assert [f["name"] for f in actions["tag_asset"]["inputs"]] == ["asset_id", "tag"]
    assert "owner" in [f["name"] for f in actions["find_asset"]["outputs"]]
    settings = {s["env"]: s for s in cmdb["settings"]}
    assert settings["RUNBOOK_CMDB_TOKEN"]["secret"] is True
    assert settings["RUNBOOK_CMDB_BASE_URL"]["required"] is True
    assert "crowdstrike" in connectors  # built-ins are still there


def test_the_plugins_runbook_validates(installed: dict[str, str], tmp_path: Path) -> None:
    path = str(EXAMPLE / "runbooks")
    done = runbook(installed, "validate", path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "connector 'cmdb' is not configured" in done.stdout
    configured = {
        **installed,
        "RUNBOOK_CMDB_BASE_URL": "https://cmdb.acme.example",
        "RUNBOOK_CMDB_TOKEN": "cmdb-token-for-the-test",
    }
    done = runbook(configured, "validate", path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "not configured" not in done.stdout
    assert "1 runbook valid" in done.stdout


def test_without_the_package_the_runbook_does_not_load(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = runbook(env, "validate", str(EXAMPLE / "runbooks"), cwd=tmp_path)
    assert done.returncode == 1
    assert "unknown connector 'cmdb'" in done.stderr


# -- the connector itself, against a fake CMDB ---------------------------------------


class FakeCMDB(FakeVendor):
    """How a plugin author fakes their vendor: the same base as the built-in fakes."""

    name = "cmdb"

    def default_credentials(self) -> dict[str, str]:
        return {"token": "cmdb-token-Z81KQ"}

    def seed(self) -> None:
        self.assets = {
            "A-100": {
                "id": "A-100",
                "hostname": "web-1",
                "owner": "team-web",
                "criticality": "high",
                "tags": [],
            }
        }

    def env(self, base: str) -> dict[str, str]:
        return {"RUNBOOK_CMDB_BASE_URL": base, "RUNBOOK_CMDB_TOKEN": self.credentials["token"]}

    def error(self, status: int, message: str, code: str | None = None) -> Response:
        return json_response({"error": message}, status)

    def token_expired(self) -> Response:
        return self.error(401, "invalid token")

    async def authenticate(self, request: FakeRequest) -> Response | None:
        if request.headers.get("authorization") != f"Token {self.credentials['token']}":
            return self.token_expired()
        return None

    def routes(self) -> list[BaseRoute]:
        return [
            self.route("/api/v1/assets", self._find, ["GET"]),
            self.route("/api/v1/assets/{asset}/tags", self._tag, ["POST"]),
        ]

    async def _find(self, request: FakeRequest) -> Response:
        name = request.param("hostname")
        found = [a for a in self.assets.values() if a["hostname"] == name]
        return json_response({"assets": found})

    async def _tag(self, request: FakeRequest) -> Response:
        asset = self.assets.get(request.path_params["asset"])
        if asset is None:
            return self.error(404, "no such asset")
        tag = request.body["tag"]
        if tag not in asset["tags"]:
            asset["tags"].append(tag)
        return json_response({"id": asset["id"], "tags": asset["tags"]})


@pytest.fixture(scope="module")
def fake_cmdb() -> Iterator[tuple[FakeCMDB, str]]:
    fake = FakeCMDB()
    app = Starlette(routes=[Mount("/cmdb", routes=fake.routes())])
    with LoopbackServer(app) as server:
        yield fake, server.url + "/cmdb"


@pytest.fixture
async def cmdb(
    fake_cmdb: tuple[FakeCMDB, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    from runbook_cmdb import CMDB

    fake, base = fake_cmdb
    fake.reset()
    connector = CMDB(
        CMDB.settings_from_env(fake.env(base)),
        context=ConnectorRuntime(register_secret=lambda _s: None),
    )
    yield connector
    await connector.aclose()


CTX = ActionContext(run_id="r-1", step_id="s", attempt=1, idempotency_key="r-1:s")


async def test_find_and_tag(cmdb: Any, fake_cmdb: tuple[FakeCMDB, str]) -> None:
    fake, _ = fake_cmdb
    found = await cmdb.find_asset(CTX, cmdb.actions()["find_asset"].input_model(hostname="web-1"))
    assert found.found and found.owner == "team-web" and found.asset_id == "A-100"
    missing = await cmdb.find_asset(CTX, cmdb.actions()["find_asset"].input_model(hostname="x"))
    assert missing.found is False
    tag_input = cmdb.actions()["tag_asset"].input_model(
        asset_id="A-100", tag="security:compromised"
    )
    for _ in range(2):
        tagged = await cmdb.tag_asset(CTX, tag_input)
    assert tagged.tags == ["security:compromised"]
    assert fake.assets["A-100"]["tags"] == ["security:compromised"]


async def test_the_framework_maps_its_errors(cmdb: Any, fake_cmdb: tuple[FakeCMDB, str]) -> None:
    fake, _ = fake_cmdb
    find = cmdb.actions()["find_asset"].input_model(hostname="web-1")
    fake.rate_limit(retry_after=12)
    with pytest.raises(ConnectorError) as caught:
        await cmdb.find_asset(CTX, find)
    assert caught.value.retryable and caught.value.retry_after == 12
    fake.unauthorized()
    with pytest.raises(AuthenticationError, match="authentication failed for cmdb: invalid token"):
        await cmdb.find_asset(CTX, find)
    shown = cmdb.describe_call(
        cmdb.actions()["tag_asset"],
        cmdb.actions()["tag_asset"].input_model(asset_id="A-100", tag="x"),
    )
    assert shown["url"].endswith("/cmdb/api/v1/assets/A-100/tags")
    assert shown["auth"] == "Authorization: Token ***"
