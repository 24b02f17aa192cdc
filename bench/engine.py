"""Engine benchmarks (issue 3): per-step overhead, flat cost, concurrency.

1. A 1,000-step chain of ``core.noop``, fully durable, against a baseline loop
   in this same process that does the minimum durable work per step (await a
   no-op coroutine and append two fsynced JSON lines). Runs alternate
   (baseline, engine, baseline, ...) and the ratio is taken pair by pair;
   the median is printed. Target: ratio <= 2.0.
2. Flat cost: the same chain against a data directory that already holds
   10,000 finished runs. Target: <= 1.2x the empty-directory time.
3. Concurrency: 200 runs of 10 steps started together: steps/second and peak RSS.

Usage: python bench/engine.py [--steps 1000] [--pairs 5] [--history 10000] [--runs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bot.engine.catalog import RunbookCatalog
from bot.engine.engine import Engine
from bot.runbook.loader import load_text
from bot.store.store import DataStore
from connectors.registry import ConnectorPool, ConnectorRegistry

REGISTRY = ConnectorRegistry.discover()


def chain_source(name: str, steps: int) -> str:
    lines = [f"name: {name}", "steps:"]
    lines += [f"  - id: s{i}\n    uses: core.noop" for i in range(steps)]
    return "\n".join(lines) + "\n"


async def baseline(path: Path, steps: int) -> float:
    async def noop() -> None:
        return None

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    started = time.perf_counter()
    try:
        for i in range(steps):
            await noop()
            for event in ("step.started", "step.succeeded"):
                line = json.dumps({"seq": i, "event": event, "step": f"s{i}", "data": {}}) + "\n"
                os.write(fd, line.encode())
                os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - started


OPEN_CLOSE: list[tuple[str, float, float]] = []


async def engine_chain(data_dir: Path, steps: int, label: str = "") -> float:
    loaded = load_text(chain_source("chain", steps), "chain.yaml", REGISTRY).loaded
    assert loaded is not None
    store = DataStore(data_dir)
    opened = time.perf_counter()
    store.open({"command": "bench"})
    open_seconds = time.perf_counter() - opened
    catalog = RunbookCatalog({"chain": loaded}, REGISTRY, store.load_definition)
    engine = Engine(store, catalog, ConnectorPool(REGISTRY, {}, register_secret=lambda _s: None))
    await engine.start(resume=False)
    started = time.perf_counter()
    result = await engine.start_run("chain", {}, requester="cli:bench")
    run = await engine.wait_settled(result.run.id)
    elapsed = time.perf_counter() - started
    assert str(run.status) == "succeeded", run.status
    await engine.close()
    closing = time.perf_counter()
    await store.close()  # the checkpoint: archive the run, rewrite the snapshot
    OPEN_CLOSE.append((label, open_seconds, time.perf_counter() - closing))
    return elapsed


async def fill_history(data_dir: Path, runs: int) -> None:
    """Write ``runs`` finished 10-step runs (unsynced, for speed of set-up)."""
    loaded = load_text(chain_source("history", 10), "history.yaml", REGISTRY).loaded
    assert loaded is not None
    store = DataStore(data_dir, sync=False)
    store.open({"command": "bench-fill"})
    catalog = RunbookCatalog({"history": loaded}, REGISTRY, store.load_definition)
    engine = Engine(
        store,
        catalog,
        ConnectorPool(REGISTRY, {}, register_secret=lambda _s: None),
        max_concurrent_runs=200,
    )
    await engine.start(resume=False)
    batch = 200
    for start in range(0, runs, batch):
        started = [
            (await engine.start_run("history", {}, requester="cli:bench")).run.id
            for _ in range(min(batch, runs - start))
        ]
        for run_id in started:
            await engine.wait_settled(run_id)
        await store.checkpoint()
    await engine.close()
    await store.close()


async def concurrency(data_dir: Path, runs: int, steps: int) -> tuple[float, int]:
    loaded = load_text(chain_source("ten", steps), "ten.yaml", REGISTRY).loaded
    assert loaded is not None
    store = DataStore(data_dir)
    store.open({"command": "bench"})
    catalog = RunbookCatalog({"ten": loaded}, REGISTRY, store.load_definition)
    engine = Engine(
        store,
        catalog,
        ConnectorPool(REGISTRY, {}, register_secret=lambda _s: None),
        max_concurrent_runs=runs,
    )
    await engine.start(resume=False)
    started = time.perf_counter()
    results = await asyncio.gather(
        *(engine.start_run("ten", {}, requester="cli:bench") for _ in range(runs))
    )
    finals = await asyncio.gather(*(engine.wait_settled(r.run.id) for r in results))
    elapsed = time.perf_counter() - started
    assert all(str(run.status) == "succeeded" for run in finals)
    await engine.close()
    await store.close()
    return elapsed, runs * steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="runbook-bench-"))
    try:
        print(f"1. per-step overhead: {args.steps}-step chain of core.noop, {args.pairs} pairs")
        base_times, engine_times, ratios = [], [], []
        for pair in range(args.pairs + 1):  # the first pair warms up
            b = asyncio.run(baseline(root / f"baseline-{pair}.jsonl", args.steps))
            e = asyncio.run(engine_chain(root / f"empty-{pair}", args.steps))
            if pair:
                base_times.append(b)
                engine_times.append(e)
                ratios.append(e / b)
        print(
            f"   baseline (2 fsynced appends/step): median {statistics.median(base_times):.3f}s "
            f"({statistics.median(base_times) / args.steps * 1e6:.0f} us/step)"
        )
        print(
            f"   engine:                            median {statistics.median(engine_times):.3f}s "
            f"({statistics.median(engine_times) / args.steps * 1e6:.0f} us/step)"
        )
        print(
            f"   ratio engine/baseline: median {statistics.median(ratios):.2f} "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f}); target <= 2.0"
        )

        print(f"2. flat cost: the same chain with {args.history:,} finished runs already stored")
        full = root / "history"
        t0 = time.perf_counter()
        asyncio.run(fill_history(full, args.history))
        with open(full / "audit.jsonl", "rb") as handle:
            records = sum(1 for _ in handle)
        print(f"   (history written in {time.perf_counter() - t0:.1f}s: {records:,} audit records)")
        flat_ratios, empty_times, full_times = [], [], []
        for pair in range(args.pairs + 1):
            copy = root / f"flat-full-{pair}"
            shutil.copytree(full, copy)
            os.sync()  # let the copy reach the disk first: measure the run, not the copy
            empty = asyncio.run(engine_chain(root / f"flat-empty-{pair}", args.steps, "empty"))
            os.sync()
            with_history = asyncio.run(engine_chain(copy, args.steps, "history"))
            shutil.rmtree(copy)
            if pair:
                empty_times.append(empty)
                full_times.append(with_history)
                flat_ratios.append(with_history / empty)
        print(
            f"   empty directory: median {statistics.median(empty_times):.3f}s; with history: "
            f"median {statistics.median(full_times):.3f}s"
        )
        print(
            f"   ratio with-history/empty: median {statistics.median(flat_ratios):.2f} "
            f"(min {min(flat_ratios):.2f}, max {max(flat_ratios):.2f}); target <= 1.2"
        )
        for label in ("empty", "history"):
            opens = [o for lab, o, _ in OPEN_CLOSE if lab == label]
            closes = [c for lab, _, c in OPEN_CLOSE if lab == label]
            print(
                f"   once per process, {label}: open (snapshot + journal tail) "
                f"{statistics.median(opens) * 1000:.0f} ms, close (checkpoint) "
                f"{statistics.median(closes) * 1000:.0f} ms"
            )

        print(f"3. concurrency: {args.runs} runs of 10 steps started together")
        elapsed, steps = asyncio.run(concurrency(root / "concurrent", args.runs, 10))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"   {steps} steps in {elapsed:.2f}s: {steps / elapsed:,.0f} steps/s; "
            f"peak RSS of this process {peak:.0f} MiB"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
