"""Alert intake benchmark (issue 5): throughput, accept latency, time to finish, dedup under load.

Starts ``runbook serve`` on a free loopback port with a runbook of three ``core``
steps, then:

1. posts N signed alerts (distinct hosts) at concurrency C and prints accepted
   alerts per second (target >= 300/s; every 202 is sent only after the run's
   ``run.started`` record is fsynced), accept latency p50/p99 (target p99 <
   100 ms), and the time until every run has finished;
2. posts N copies of one alert at concurrency C: exactly one run must start.

Usage: python bench/alerts.py [--alerts 2000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

SECRET = "bench-alert-secret-0123456789"
TOKEN = "bench-api-token-0123456789"
RUNBOOK = """
name: triage
inputs:
  host: {type: string}
  severity: {type: integer}
triggers:
  - alert:
      source: bench
      if: alert.severity >= 50
      inputs: {host: "{{ alert.device.hostname }}", severity: "{{ alert.severity }}"}
      dedup_key: "{{ alert.device.hostname }}"
      dedup_window: 1h
steps:
  - id: find
    uses: core.echo
    with: {host: "{{ inputs.host }}"}
  - id: check
    uses: core.noop
  - id: note
    uses: core.echo
    with: {summary: "{{ inputs.host }} severity {{ inputs.severity }}"}
"""


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def start_server(tmp: Path) -> tuple[subprocess.Popen[str], str]:
    (tmp / "runbooks").mkdir()
    (tmp / "runbooks" / "triage.yaml").write_text(RUNBOOK)
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update(
        {
            "RUNBOOK_RUNBOOKS_DIR": str(tmp / "runbooks"),
            "RUNBOOK_DATA_DIR": str(tmp / "data"),
            "RUNBOOK_ALERT_SECRET_BENCH": SECRET,
            "RUNBOOK_API_TOKENS": f"bench:{TOKEN}",
            "RUNBOOK_LOG_FORMAT": "json",
        }
    )
    runbook = Path(sys.executable).parent / "runbook"
    proc = subprocess.Popen(
        [str(runbook), "serve", "--port", "0"],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    url = None
    ready = False
    for line in proc.stderr:
        try:
            message = str(json.loads(line).get("message", ""))
        except ValueError:
            continue
        if message.startswith("listening on"):
            url = message.rsplit(maxsplit=1)[-1]
        if message.startswith("ready:"):
            ready = True
        if url and ready:
            break
    if not (url and ready):
        raise SystemExit("the server did not start")
    # keep draining its log (into a file) so it never blocks on a full pipe
    threading.Thread(target=_drain, args=(proc, tmp / "serve.log"), daemon=True).start()
    return proc, url


def _drain(proc: subprocess.Popen[str], path: Path) -> None:
    assert proc.stderr is not None
    with path.open("w") as log:
        for line in proc.stderr:
            log.write(line)


class Connection:
    """A minimal HTTP/1.1 keep-alive client connection.

    httpx's async pool tops out near 150-300 requests/s on this machine and
    gets slower with more connections, so it would measure itself, not the
    service; this speaks just enough HTTP for the benchmark.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
            try:
                self.writer.write(head.encode() + body)
                await self.writer.drain()
                status_line = await self.reader.readuntil(b"\r\n")
                length = 0
                close = False
                while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "connection" and value.strip().lower() == "close":
                        close = True
                data = await self.reader.readexactly(length)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt == 2:
                    raise
                continue
            if close:
                self.close()
            return int(status_line.split()[1]), data
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def post_all(
    url: str, bodies: list[bytes], concurrency: int
) -> tuple[list[float], list[Any], float]:
    latencies: list[float] = []
    answers: list[Any] = []
    pending = list(reversed(bodies))
    host, port = url.removeprefix("http://").split(":")

    async def worker() -> None:
        connection = Connection(host, int(port))
        try:
            while pending:
                body = pending.pop()
                headers = {"X-Runbook-Signature": sign(body), "Content-Type": "application/json"}
                began = time.perf_counter()
                status, data = await connection.post("/alerts/bench", body, headers)
                latencies.append(time.perf_counter() - began)
                if status != 202:
                    raise SystemExit(f"unexpected {status}: {data[:300]!r}")
                answers.append(json.loads(data))
        finally:
            connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, answers, time.perf_counter() - began


async def wait_all_finished(url: str, expected: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client:
        while True:
            health = (await client.get("/healthz")).json()
            metrics = (await client.get("/metrics")).text
            finished = sum(
                float(line.split()[-1])
                for line in metrics.splitlines()
                if line.startswith("runbook_runs_finished_total")
            )
            if finished >= expected and health["active_runs"] == 0 and health["queue"] == 0:
                return
            await asyncio.sleep(0.05)


def peak_rss_mib(pid: int) -> str:
    """The process's peak resident set (Linux), for the record."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return f"{int(line.split()[1]) / 1024:.0f} MiB"
    except OSError:
        pass
    return "unknown"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def alert(host: str, number: int) -> bytes:
    return json.dumps(
        {
            "id": f"ldt:{number:08d}",
            "severity": 70,
            "device": {"hostname": host, "platform": "Linux"},
            "tactic": "Execution",
            "description": "suspicious process tree",
        }
    ).encode()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as folder:
        tmp = Path(folder)
        proc, url = start_server(tmp)
        try:
            bodies = [alert(f"host-{i:05d}", i) for i in range(args.alerts)]
            began = time.perf_counter()
            latencies, answers, elapsed = await post_all(url, bodies, args.concurrency)
            runs = [run["id"] for answer in answers for run in answer["runs"]]
            assert len(set(runs)) == args.alerts, f"{len(set(runs))} runs for {args.alerts} alerts"
            await wait_all_finished(url, args.alerts)
            finished = time.perf_counter() - began
            started = sum(
                1
                for line in (tmp / "data" / "audit.jsonl").read_text().splitlines()
                if '"event":"run.started"' in line
            )
            print(f"{args.alerts} distinct alerts at concurrency {args.concurrency}:")
            print(f"  accepted:          {args.alerts / elapsed:8.0f} alerts/s  (target >= 300/s)")
            print(
                f"  accept latency:    p50 {percentile(latencies, 0.5) * 1000:6.1f} ms   "
                f"p99 {percentile(latencies, 0.99) * 1000:6.1f} ms  (target p99 < 100 ms)"
            )
            print(
                f"  all runs finished: {finished:8.2f} s after the first alert "
                f"({started} run.started records)"
            )

            duplicate = alert("dup-host", 0)
            latencies, answers, elapsed = await post_all(
                url, [duplicate] * args.alerts, args.concurrency
            )
            new = [run["id"] for answer in answers for run in answer["runs"]]
            joined = [d["run_id"] for answer in answers for d in answer["deduplicated"]]
            ok = len(new) == 1 and len(joined) == args.alerts - 1 and set(joined) == set(new)
            print(f"{args.alerts} duplicates of one alert at concurrency {args.concurrency}:")
            print(
                f"  runs started: {len(new)}, deduplicated: {len(joined)} "
                f"({'OK' if ok else 'WRONG'}); {args.alerts / elapsed:.0f} alerts/s, "
                f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
            )
            print(f"server peak RSS: {peak_rss_mib(proc.pid)}")
            return 0 if ok else 1
        except BaseException:
            print("server log (last lines):", file=sys.stderr)
            lines = (tmp / "serve.log").read_text().splitlines()
            print("\n".join(lines[-20:]), file=sys.stderr)
            raise
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
