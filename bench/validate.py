"""Benchmark: how fast `runbook validate` checks a large runbook folder.

Generates 500 realistic runbooks of 20 steps each (templates, `if` branches,
fan-out and fan-in through `needs`, loops, polling, approval gates,
compensations; a quarter of them in the Markdown form) into a temporary
folder, then times the whole `runbook validate DIR` process several times and
prints the median and the files per second.

    .venv/bin/python bench/validate.py [--files 500] [--steps 20] [--runs 5] [--keep]

Target: all 500 files in under 2 seconds on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

WORDS = [
    "host",
    "user",
    "mailbox",
    "alert",
    "ticket",
    "device",
    "token",
    "session",
    "bucket",
    "cluster",
    "node",
    "pod",
    "image",
    "domain",
    "hash",
    "url",
    "sender",
    "account",
    "key",
    "role",
    "group",
    "policy",
    "rule",
    "queue",
    "incident",
]
VERBS = [
    "find",
    "lookup",
    "enrich",
    "contain",
    "notify",
    "collect",
    "scan",
    "verify",
    "block",
    "disable",
    "rotate",
    "quarantine",
    "revoke",
    "patch",
    "drain",
    "restart",
    "tag",
    "snapshot",
    "escalate",
    "page",
    "close",
]
ENVS = ["prod", "staging", "dev", "dr"]
TEAMS = ["soc", "sre", "netops", "iam", "platform"]


def _step_id(rng: random.Random, index: int) -> str:
    return f"{rng.choice(VERBS)}_{rng.choice(WORDS)}_{index}"


def _template(rng: random.Random, file_no: int, step_no: int, ancestors: list[str]) -> str:
    """One of many template shapes, with per-file text so no two files share them all."""
    word = rng.choice(WORDS)
    choices = [
        lambda: "{{ inputs.host }}",
        lambda: f"{word}-{file_no}-{{{{ inputs.env }}}}",
        lambda: f"{{{{ inputs.host | lower }}}}.{word}.example.com",
        lambda: f"Step {step_no} of runbook {file_no} on {{{{ inputs.host }}}}",
        lambda: "{{ inputs.count * 2 + " + str(step_no) + " }}",
        lambda: "{{ run.id }}/" + word,
        lambda: f"{{{{ inputs.tags | join(',') }}}} #{file_no}",
        lambda: "{% if inputs.dry %}dry{% else %}live{% endif %}-" + f"{word}{step_no}",
    ]
    if ancestors:
        target = rng.choice(ancestors)
        choices += [
            lambda: f"{{{{ steps.{target}.output.{word} }}}}",
            lambda: f"{{{{ steps.{target}.output.{word} | default('none') }}}} ({file_no})",
            lambda: f"{{{{ steps.{target}.outcome }}}}",
        ]
    return rng.choice(choices)()


def generate(file_no: int, steps: int, rng: random.Random) -> dict[str, Any]:
    """One runbook as data: fan-out, fan-in, branches, loops, polling and a gate.

    Steps call ``core`` actions and, where connectors are installed, vendor
    actions (see :func:`vendor_actions`).
    """
    name = f"{rng.choice(VERBS)}-{rng.choice(WORDS)}-{file_no:04d}"
    header: dict[str, Any] = {
        "name": name,
        "title": f"{rng.choice(VERBS).title()} the {rng.choice(WORDS)} ({file_no})",
        "description": f"Generated runbook {file_no} for the validate benchmark.",
        "channel": f"#{rng.choice(TEAMS)}-incidents",
        "inputs": {
            "host": {
                "type": "string",
                "pattern": r"^[A-Za-z0-9.-]{1,253}$",
                "description": "Hostname",
            },
            "env": {"type": "string", "enum": ENVS, "default": rng.choice(ENVS)},
            "count": {"type": "integer", "default": rng.randint(1, 9)},
            "dry": {"type": "boolean", "default": False},
            "tags": {"type": "list", "default": [rng.choice(WORDS)]},
        },
        "triggers": [{"command": f"b{file_no}"}],
    }
    if file_no % 3 == 0:
        header["triggers"].append(
            {
                "alert": {
                    "source": rng.choice(["crowdstrike", "defender", "alertmanager"]),
                    "if": f"alert.severity >= {rng.randint(10, 90)}",
                    "inputs": {"host": "{{ alert.device.hostname }}"},
                    "dedup_key": "{{ alert.device.hostname }}",
                    "dedup_window": f"{rng.randint(1, 59)}m",
                }
            }
        )
    if file_no % 5 == 0:
        header["triggers"].append(
            {
                "schedule": {
                    "cron": f"{rng.randint(0, 59)} {rng.randint(0, 23)} * * {rng.randint(0, 6)}",
                    "timezone": "UTC",
                    "inputs": {"host": f"canary-{file_no}"},
                }
            }
        )
    ids = [_step_id(rng, i) for i in range(steps)]
    out: list[dict[str, Any]] = []
    ancestors: dict[str, set[str]] = {}
    for i, sid in enumerate(ids):
        step: dict[str, Any] = {"id": sid}
        # Shape: 0 starts; then groups of 4 (fan-out of 2, a branch pair, a fan-in).
        phase = (i - 1) % 4 if i else -1
        if i == 0:
            needs: list[str] = []
        elif phase == 0:
            needs = [ids[i - 1]]
        elif phase == 1:
            needs = [ids[i - 2]]  # second arm of the fan-out
        elif phase == 2:
            needs = [ids[i - 2], ids[i - 1]]  # fan-in
        else:
            needs = [ids[i - 1]]
        if i == steps - 1:
            needs = [ids[i - 1]]
        if i and not (phase == 0 and i % 7 == 0):
            step["needs"] = needs
        anc: set[str] = set()
        for need in needs:
            anc |= {need} | ancestors[need]
        ancestors[sid] = anc
        visible = sorted(anc)
        if phase == 1 and i % 2:
            step["if"] = rng.choice(
                [
                    "not inputs.dry",
                    f"inputs.count > {rng.randint(0, 5)}",
                    f"inputs.env == '{rng.choice(ENVS)}'",
                    "'x' in inputs.tags",
                ]
            )
        kind = i % 10
        if kind == 4 and i > 0:
            step["approval"] = {
                "prompt": f"Go ahead with {rng.choice(VERBS)} on *{{{{ inputs.host }}}}* "
                f"({{{{ steps.{rng.choice(visible)}.outcome }}}})?",
                "approvers": {"groups": [f"{rng.choice(TEAMS)}-leads"]},
                "min_approvals": 1,
                "timeout": f"{rng.randint(5, 90)}m",
                "escalate": {"after": "2m", "to": {"groups": ["managers"]}},
                "fields": {"reason": {"type": "string", "required": True}},
            }
        elif kind == 9:
            step["notify"] = {"text": _template(rng, file_no, i, visible)}
        else:
            step["uses"] = rng.choice(["core.echo", "core.echo", "core.echo", "core.noop"])
            if step["uses"] == "core.echo":
                step["with"] = {
                    rng.choice(WORDS) + str(k): _template(rng, file_no, i, visible)
                    for k in range(rng.randint(1, 4))
                }
            if kind in (0, 5, 8) and VENDOR_ACTIONS:
                ref, required = rng.choice(VENDOR_ACTIONS)
                step["uses"] = ref
                step["with"] = {
                    arg: "{{ inputs.count }}" if numeric else _template(rng, file_no, i, visible)
                    for arg, numeric in required
                }
            if kind == 2:
                step["retry"] = {"attempts": 3, "delay": "2s", "backoff": 2, "max_delay": "30s"}
                step["timeout"] = f"{rng.randint(5, 60)}s"
            if kind == 3:
                step["for_each"] = "inputs.tags"
                step["max_parallel"] = rng.randint(1, 8)
                step["uses"] = "core.echo"
                step["with"] = {"tag": "{{ item }}", "index": "{{ index }}"}
            if kind == 6:
                step["uses"] = "core.flaky"
                step["with"] = {"failures": 0}
                step["until"] = f"output.attempt >= {rng.randint(1, 3)}"
                step["poll"] = {"every": "10s", "timeout": "10m"}
            if kind == 7:
                step["compensate"] = {
                    "uses": "core.echo",
                    "with": {"undo": f"{{{{ steps.{sid}.output }}}}"},
                }
        if i == steps - 1:
            step["if"] = "failure()"
            step.pop("for_each", None)
        out.append(step)
    header["steps"] = out
    return header


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=100, allow_unicode=True)


def to_markdown(runbook: dict[str, Any], rng: random.Random) -> str:
    front = {k: v for k, v in runbook.items() if k != "steps"}
    title = front.pop("title")
    parts = ["---", _dump(front).rstrip(), "---", "", f"# {title}", ""]
    parts.append("This runbook is read by people during an incident; the steps run as written.")
    for step in runbook["steps"]:
        parts += [
            "",
            f"## {rng.choice(VERBS).title()} the {rng.choice(WORDS)}",
            "",
            f"Why we do {step['id']}: {' '.join(rng.choice(WORDS) for _ in range(12))}.",
            "",
            "```step",
            _dump(step).rstrip(),
            "```",
        ]
    return "\n".join(parts) + "\n"


VENDOR_ACTIONS: list[tuple[str, list[tuple[str, bool]]]] = []


def vendor_actions() -> list[tuple[str, list[tuple[str, bool]]]]:
    """Actions of the installed vendor connectors with their required arguments.

    Real runbooks call vendor connectors, so validating them imports and
    checks those connectors too. Arguments are filled with templates, which
    the loader checks for references (not for types).
    """
    from connectors.registry import ConnectorRegistry

    found = []
    for spec in ConnectorRegistry.discover(include_entry_points=False).specs():
        if spec.connector == "core":
            continue
        required = [
            (info.alias or name, info.annotation in (int, float))
            for name, info in spec.input_model.model_fields.items()
            if info.is_required()
        ]
        found.append((spec.ref, required))
    return found


def write_corpus(folder: Path, files: int, steps: int, seed: int = 7) -> None:
    VENDOR_ACTIONS[:] = vendor_actions()
    rng = random.Random(seed)
    for file_no in range(files):
        runbook = generate(file_no, steps, rng)
        sub = folder / rng.choice(TEAMS)
        sub.mkdir(exist_ok=True)
        if file_no % 4 == 3:
            (sub / f"{runbook['name']}.md").write_text(to_markdown(runbook, rng), encoding="utf-8")
        else:
            (sub / f"{runbook['name']}.yaml").write_text(_dump(runbook), encoding="utf-8")


def runbook_command() -> list[str]:
    script = Path(sys.executable).with_name("runbook")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the generated folder")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="runbook-bench-"))
    try:
        write_corpus(folder, args.files, args.steps)
        command = [*runbook_command(), "validate", str(folder)]
        load = os.getloadavg()  # other work on the machine makes the figures noisy
        first = subprocess.run(command, capture_output=True, text=True, check=False)
        if first.returncode != 0:
            print(first.stdout[-2000:], first.stderr[-4000:], sep="\n")
            print("validate failed on the generated corpus", file=sys.stderr)
            return 1
        print(first.stdout.strip().splitlines()[-1])
        timings, cpu = [], []
        for _ in range(args.runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            timings.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(
                after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            )  # the command and its worker processes
        median = statistics.median(timings)
        print(
            f"{args.files} files x {args.steps} steps: median {median:.3f}s over {args.runs} runs "
            f"(min {min(timings):.3f}s, max {max(timings):.3f}s); "
            f"{args.files / median:.0f} files/s"
        )
        print(
            f"CPU time per run (all processes): median {statistics.median(cpu):.3f}s on "
            f"{os.cpu_count()} cores; load average before: {load[0]:.2f}"
        )
        target = 2.0
        print(f"target {target:.1f}s: {'met' if median < target else 'MISSED'}")
        if args.keep:
            print(f"corpus kept in {folder}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
