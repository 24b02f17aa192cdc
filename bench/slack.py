"""Slack benchmarks (issue 4): acknowledgement latency and click-to-next-step latency.

Three processes, as in production (Slack is not inside the bot, nor inside
the people clicking): the fake Slack Web API (the sandbox's), ``runbook serve
--port 0`` with Slack on and pointed at the fake, and this one, which plays
Slack's side of ``/slack/events``:

1. N concurrent signed ``/runbook run bench`` slash commands, sent at the
   same instant over connections opened beforehand; each acknowledgement is
   timed from the request's first byte to the answer's last byte. (The
   client is a few lines of raw HTTP/1.1 on purpose: a client library under
   this burst costs more CPU than the service and would be what is measured.)
   Target: p99 < 300 ms.
2. Once every run waits at its approval gate (and the service has finished
   talking to Slack about phase 1): approval clicks, half of them all at once,
   then (once that settled) the other half one at a time; for each, the time
   from sending the click to the ``step.started`` record of the step after
   the gate (read from the audit log; same machine, same clock).
   Target: p99 < 200 ms.

Usage: python bench/slack.py [--commands 50] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from bot.sandbox import Sandbox

RUNBOOK = """
name: bench
channel: "#soc-incidents"
steps:
  - id: first
    uses: core.noop
  - id: ask
    approval:
      prompt: "Go?"
      approvers: {users: [U0BOB]}
  - id: next
    uses: core.noop
"""


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def report(name: str, values: list[float], target: float) -> bool:
    p50, p99 = percentile(values, 50), percentile(values, 99)
    ok = p99 < target
    print(
        f"   {name}: n={len(values)} p50={p50 * 1000:.1f} ms p99={p99 * 1000:.1f} ms "
        f"max={max(values) * 1000:.1f} ms mean={statistics.mean(values) * 1000:.1f} ms "
        f"(target p99 < {target * 1000:.0f} ms: {'OK' if ok else 'MISSED'})"
    )
    return ok


class Process:
    """A child process whose stderr is read line by line on a thread."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            found = re.search(pattern, line)
            if found:
                return found
        raise RuntimeError(f"{self.proc.args!r} never logged {pattern!r}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def serve_fake(token: str, secret: str) -> int:
    """Child mode: the fake Slack on loopback until stdin closes."""
    creds = {"slack": {"bot_token": token, "signing_secret": secret}}
    with Sandbox(credentials=creds) as sandbox:
        print(f"fake slack at {sandbox.url}", file=sys.stderr, flush=True)
        sys.stdin.read()
    return 0


class FakeSlackClient:
    """The fake Slack in the other process, read through its /_control routes."""

    def __init__(self, url: str, token: str, secret: str) -> None:
        self.url, self.token, self.secret = url, token, secret

    def sign(self, body: bytes) -> dict[str, str]:
        import hashlib
        import hmac

        stamp = str(int(time.time()))
        base = b"v0:" + stamp.encode() + b":" + body
        digest = hmac.new(self.secret.encode(), base, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}

    async def calls(self, client: httpx.AsyncClient) -> list[dict[str, Any]]:
        return list((await client.get(self.url + "/_control/slack/calls")).json())

    async def until(
        self,
        client: httpx.AsyncClient,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float,
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(await self.calls(client)):
            if time.monotonic() > deadline:
                raise TimeoutError("the fake Slack never saw what we waited for")
            await asyncio.sleep(0.05)

    async def quiet(self, client: httpx.AsyncClient, for_seconds: float = 1.5) -> None:
        """Wait until the service has made no Slack call for a while."""
        seen = -1
        while (count := len(await self.calls(client))) != seen:
            seen = count
            await asyncio.sleep(for_seconds)


def gate_values(calls: list[dict[str, Any]]) -> list[str]:
    values = []
    for call in calls:
        if not call["path"].endswith("/chat.postMessage") or call["status"] != 200:
            continue
        for block in (call.get("body") or {}).get("blocks") or []:
            for element in block.get("elements", []) if block.get("type") == "actions" else []:
                if element.get("action_id") == "approval_approve":
                    values.append(element["value"])
    return values


def summaries(calls: list[dict[str, Any]]) -> int:
    return sum(
        1
        for c in calls
        if c["path"].endswith("/chat.postMessage")
        and "succeeded in" in str((c.get("body") or {}).get("text"))
    )


def command(fake_url: str, n: int) -> bytes:
    return urlencode(
        {
            "team_id": "T0SANDBOX",
            "channel_id": "C0SOCINC",
            "user_id": "U024BE7LH",
            "command": "/runbook",
            "text": "run bench",
            "api_app_id": "A0RUNBOOK",
            "response_url": f"{fake_url}/slack/response/bench-{n}",
            "trigger_id": f"bench.{n}.{time.time_ns()}",
        }
    ).encode()


def click(value: str, n: int) -> bytes:
    payload = {
        "type": "block_actions",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": "U0BOB", "team_id": "T0SANDBOX"},
        "container": {"type": "message", "channel_id": "C0SOCINC", "message_ts": "1.0"},
        "channel": {"id": "C0SOCINC"},
        "trigger_id": f"click.{n}.{time.time_ns()}",
        "actions": [
            {
                "action_id": "approval_approve",
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


async def post(
    client: httpx.AsyncClient, url: str, fake: FakeSlackClient, body: bytes
) -> tuple[float, float]:
    """Send one signed request; (wall-clock send time, seconds to the answer)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", **fake.sign(body)}
    sent_wall, began = time.time(), time.perf_counter()
    response = await client.post(url + "/slack/events", content=body, headers=headers)
    took = time.perf_counter() - began
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text}")
    return sent_wall, took


async def burst(url: str, fake: FakeSlackClient, bodies: list[bytes]) -> list[tuple[float, float]]:
    """Send signed requests all at once over connections opened beforehand (raw HTTP/1.1).

    A light client on purpose: what is timed is the service, from the first byte
    of a request to the last byte of its answer, not a client library's overhead
    or TCP connection set-up. Returns (wall-clock send time, seconds) per request.
    """
    host, port = url.removeprefix("http://").split(":")
    connected = 0
    everyone = asyncio.Event()
    go = asyncio.Event()

    async def one(body: bytes) -> tuple[float, float]:
        nonlocal connected
        reader, writer = await asyncio.open_connection(host, int(port))
        headers = {
            "Host": f"{host}:{port}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Length": str(len(body)),
            "Connection": "close",
            **fake.sign(body),
        }
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = f"POST /slack/events HTTP/1.1\r\n{head}\r\n".encode() + body
        connected += 1
        if connected == len(bodies):
            everyone.set()
        await go.wait()
        sent_wall, began = time.time(), time.perf_counter()
        writer.write(request)
        await writer.drain()
        answer = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", answer)
        await reader.readexactly(int(length.group(1)) if length else 0)
        took = time.perf_counter() - began
        writer.close()
        await writer.wait_closed()
        if not answer.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(answer.decode(errors="replace"))
        return sent_wall, took

    tasks = [asyncio.create_task(one(body)) for body in bodies]
    await everyone.wait()
    go.set()
    return list(await asyncio.gather(*tasks))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def next_started(data: Path) -> dict[str, float]:
    """Run id → wall-clock time of the ``next`` step's start, from the audit log."""
    found = {}
    for line in (data / "audit.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["event"] == "step.started" and record["step"] == "next":
            when = datetime.fromisoformat(record["ts"].replace("Z", "+00:00"))
            found[record["run_id"]] = when.timestamp()
    return found


async def bench(count: int, root: Path) -> bool:
    (root / "runbooks").mkdir()
    (root / "runbooks" / "bench.yaml").write_text(RUNBOOK, encoding="utf-8")
    token = "xoxb-bench-" + secrets.token_hex(16)
    secret = "bench-signing-" + secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOK_", "SLACK_"))}
    fake_proc = Process([sys.executable, __file__, "--serve-fake", token, secret], env, root)
    fake_url = fake_proc.wait_for(r"fake slack at (http://\S+)").group(1)
    fake = FakeSlackClient(fake_url, token, secret)
    env.update(
        {
            "SLACK_BOT_TOKEN": token,
            "SLACK_SIGNING_SECRET": secret,
            "RUNBOOK_SLACK_API_URL": fake_url + "/slack/api/",
            "RUNBOOK_RUNBOOKS_DIR": str(root / "runbooks"),
            "RUNBOOK_DATA_DIR": str(root / "data"),
        }
    )
    server = Process([sys.executable, "-m", "bot", "serve", "--port", "0"], env, root)
    ok = True
    try:
        url = server.wait_for(r"listening on (http://\S+)").group(1)
        limits = httpx.Limits(max_connections=count * 2, max_keepalive_connections=count * 2)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            for _ in range(400):  # /healthz is 503 until the service is restored
                if (await client.get(url + "/healthz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            # warm up: one whole run (first-request costs are not what we measure)
            await post(client, url, fake, command(fake_url, -1))
            await fake.until(client, lambda c: len(gate_values(c)) == 1, 30)
            await post(client, url, fake, click(gate_values(await fake.calls(client))[0], -1))
            await fake.until(client, lambda c: summaries(c) == 1, 30)
            await fake.quiet(client)

            print(f"1. {count} concurrent signed slash commands (`/runbook run bench`)")
            cpu = cpu_seconds(server.proc.pid)
            began = time.perf_counter()
            results = await burst(url, fake, [command(fake_url, n) for n in range(count)])
            ok &= report("acknowledgement", [took for _, took in results], 0.300)
            print(
                f"   (the burst took {time.perf_counter() - began:.3f}s; the service used "
                f"{cpu_seconds(server.proc.pid) - cpu:.3f}s of CPU meanwhile)"
            )
            await fake.until(client, lambda c: len(gate_values(c)) == count + 1, 60)
            values = gate_values(await fake.calls(client))[1:]
            await fake.quiet(client)  # measure the clicks, not the tail of phase 1

            print(f"2. approval click → next step started ({count} runs at their gate)")
            half = count // 2
            sent = await burst(url, fake, [click(v, n) for n, v in enumerate(values[:half])])
            at_once = {
                v.split(":")[1]: wall for v, (wall, _) in zip(values[:half], sent, strict=True)
            }
            await fake.quiet(client)  # the one-by-one clicks after the burst has settled
            one_by_one: dict[str, float] = {}
            for n, value in enumerate(values[half:]):
                wall, _ = await post(client, url, fake, click(value, n))
                one_by_one[value.split(":")[1]] = wall
                await asyncio.sleep(0.05)  # one click at a time
            await fake.until(client, lambda c: summaries(c) >= count + 1, 120)
            started = next_started(root / "data")
            ok &= report(
                f"click → next step, {half} clicks at once",
                [started[r] - t for r, t in at_once.items()],
                0.200,
            )
            ok &= report(
                f"click → next step, {count - half} clicks one by one",
                [started[r] - t for r, t in one_by_one.items()],
                0.200,
            )
            calls = await fake.calls(client)
            updates = sum(1 for c in calls if c["path"].endswith("/chat.update"))
            print(f"   (the fake Slack saw {len(calls)} Web API calls, {updates} chat.update)")
    finally:
        server.stop()
        assert fake_proc.proc.stdin is not None
        fake_proc.proc.stdin.close()
        fake_proc.stop()
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument(
        "--serve-fake", nargs=2, metavar=("TOKEN", "SECRET"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_fake:
        return serve_fake(*args.serve_fake)
    root = Path(tempfile.mkdtemp(prefix="bench-slack-"))
    ok = asyncio.run(bench(args.commands, root))
    if args.keep:
        print(f"data: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
