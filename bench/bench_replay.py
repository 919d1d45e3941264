"""Replay benchmarks (issue 2): dual-path throughput against the graph alone, and flat memory.

    .venv/bin/python bench/bench_replay.py throughput [--events 600] [--rounds 3]
    .venv/bin/python bench/bench_replay.py memory [--sizes 10000 100000]

throughput: the same events, in the same process, in interleaved rounds:
  (a) the candidate graph alone: ``flow_from_bus(bus).compile(InMemorySaver())``
      invoked once per event on a new thread (sandboxed, like a replay);
  (b) ``Migration.replay``: legacy + candidate (on the same InMemorySaver kind,
      the ``memory://`` store) + comparison.
  The figure is (b)'s events/s divided by (a)'s; the goal is >= 0.8.
memory: each size replays a generated log in its own process (both at once)
  and reports peak RSS; flat means the 100k run peaks where the 10k run does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _events(n: int):
    from examples.orders.generate import generate

    return list(generate(n))


def throughput(n: int, rounds: int) -> dict:
    from langgraph.checkpoint.memory import InMemorySaver

    from examples.orders.app import bus
    from graph_flows import flow_from_bus
    from legacy_bus import Sandbox
    from migration_kit import Migration

    events = _events(n)
    graph = flow_from_bus(bus).compile(checkpointer=InMemorySaver())
    migration = Migration("bench", legacy=bus, candidate=flow_from_bus(bus), store="memory://")
    graph_rates, dual_rates, ratios = [], [], []
    # warm-up both paths once
    migration.replay(events[:50])
    with Sandbox():
        for e in events[:50]:
            graph.invoke({"event": e}, {"configurable": {"thread_id": f"warm-{e.id}"}})
    for r in range(rounds):
        t0 = time.perf_counter()
        for e in events:
            with Sandbox():
                graph.invoke({"event": e}, {"configurable": {"thread_id": f"{r}-{e.id}"}})
        a = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        report = migration.replay(events)
        b = n / (time.perf_counter() - t0)
        assert report.total == n
        graph_rates.append(a)
        dual_rates.append(b)
        ratios.append(b / a)
        print(f"  round {r + 1}: graph alone {a:7.1f} ev/s | dual-path replay {b:7.1f} ev/s | ratio {b / a:.3f}", flush=True)
    return {
        "events": n,
        "rounds": rounds,
        "graph_alone_eps": round(statistics.median(graph_rates), 1),
        "dual_path_eps": round(statistics.median(dual_rates), 1),
        "ratio_median": round(statistics.median(ratios), 3),
        "goal": ">= 0.8",
    }


def _memory_child(size: int) -> None:
    from examples.orders.app import bus
    from examples.orders.generate import generate
    from graph_flows import flow_from_bus
    from legacy_bus import EventLog
    from migration_kit import Migration

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.jsonl"
        EventLog(path).write(generate(size))
        migration = Migration("mem", legacy=bus, candidate=flow_from_bus(bus), store="memory://")
        marks: dict[str, float] = {}

        def on_result(_c, tally):
            if tally.total == 1000:
                marks["rss_after_1k_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        t0 = time.perf_counter()
        report = migration.replay(path, on_result=on_result)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"size": size, "total": report.total, "peak_rss_mb": round(peak, 1), **{k: round(v, 1) for k, v in marks.items()}, "seconds": round(time.perf_counter() - t0, 1)}))


def memory(sizes: list[int]) -> dict:
    procs = [
        subprocess.Popen([sys.executable, __file__, "_memory_child", str(s)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        for s in sizes
    ]
    results = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"memory child failed with {p.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    for r in results:
        print(f"  {r['size']:>7,} events: peak RSS {r['peak_rss_mb']:.1f} MB (after 1k events: {r.get('rss_after_1k_mb', 0):.1f} MB) in {r['seconds']}s", flush=True)
    small, large = results[0], results[-1]
    return {"runs": results, "peak_ratio_large_vs_small": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3), "goal": "flat (~1.0)"}


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--events", type=int, default=600)
    t.add_argument("--rounds", type=int, default=3)
    m = sub.add_parser("memory")
    m.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    c = sub.add_parser("_memory_child")
    c.add_argument("size", type=int)
    args = p.parse_args()
    if args.what == "_memory_child":
        _memory_child(args.size)
        return
    print(f"== replay {args.what} (pid {os.getpid()})")
    result = throughput(args.events, args.rounds) if args.what == "throughput" else memory(args.sizes)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
