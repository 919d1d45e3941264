"""Replay benchmarks (issue 2): dual-path throughput against the graph alone, and flat memory.

    .venv/bin/python bench/bench_replay.py throughput [--events 600] [--rounds 3]
    .venv/bin/python bench/bench_replay.py memory [--sizes 10000 100000]
    .venv/bin/python bench/bench_replay.py rss [--events 60000] [--sagas 60000]

throughput: the same events, in the same process, in interleaved rounds:
  (a) the candidate graph alone: ``flow_from_bus(bus).compile()`` with no
      checkpointer, invoked once per event (sandboxed, like a replay);
  (b) ``Migration.replay`` of the same events as a log file: legacy +
      candidate + comparison + evidence + progress saves, on each of
      ``memory://``, the default SQLite file and a private redis-server.
  Figures: (b)'s events/s divided by (a)'s per store (goal >= 0.9), and the
  default store's divided by memory://'s (goal >= 0.8).
memory: each size replays a generated log in its own process (both at once)
  and reports peak RSS; flat means the 100k run peaks where the 10k run does.
rss: one replay of a tiny two-handler saga app (fast, so long logs fit in minutes), its
  current RSS (after a gc) at 10%, 50% and 100% of the log; goal: 100% <= 1.1x 10%.
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


def _redis() -> tuple[subprocess.Popen, str]:
    """A private redis-server on a free port (no persistence), ready when it answers PING."""
    import socket

    import redis

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("redis-server did not start") from None
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def throughput(n: int, rounds: int) -> dict:
    from examples.orders.app import bus
    from graph_flows import flow_from_bus
    from legacy_bus import EventLog, Sandbox
    from migration_kit import Migration

    events = _events(n)
    tmp = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    log = tmp / "events.jsonl"
    EventLog(log).write(events)
    server, redis_url = _redis()
    stores = {"memory://": "memory://", "sqlite (default)": f"sqlite:///{tmp}/migration-kit.sqlite", "redis": redis_url}
    graph = flow_from_bus(bus).compile()  # the baseline: the candidate graph alone, no checkpointer
    # Wall-clock rates, and rates per CPU-second of this process: on a shared machine other
    # processes' load moves the first between rounds, hardly the second.
    wall: dict[str, list[float]] = {"graph alone": [], **{k: [] for k in stores}}
    cpu: dict[str, list[float]] = {"graph alone": [], **{k: [] for k in stores}}
    ratios: dict[str, list[float]] = {k: [] for k in stores}
    cpu_ratios: dict[str, list[float]] = {k: [] for k in stores}
    vs_memory: list[float] = []

    def timed(fn) -> tuple[float, float]:  # noqa: ANN001
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        return n / (time.perf_counter() - t0), n / max(1e-9, time.process_time() - c0)

    def alone() -> None:
        for e in events:
            with Sandbox():
                graph.invoke({"event": e})

    try:
        migrations = {k: Migration("bench", legacy=bus, candidate=flow_from_bus(bus), store=u) for k, u in stores.items()}
        for m in migrations.values():  # warm-up every path once
            m.replay(events[:50])
        with Sandbox():
            for e in events[:50]:
                graph.invoke({"event": e})
        for r in range(rounds):
            a, ac = timed(alone)
            wall["graph alone"].append(a)
            cpu["graph alone"].append(ac)
            row = [f"graph alone {a:6.1f} ev/s"]
            for name, m in migrations.items():
                # A log file: progress saves and evidence saves are included.
                b, bc = timed(lambda m=m: m.replay(log))
                wall[name].append(b)
                cpu[name].append(bc)
                ratios[name].append(b / a)
                cpu_ratios[name].append(bc / ac)
                row.append(f"{name} {b:6.1f} ev/s ({b / a:.2f}x wall, {bc / ac:.2f}x cpu)")
            vs_memory.append(wall["sqlite (default)"][-1] / wall["memory://"][-1])
            print(f"  round {r + 1}: " + " | ".join(row) + f" | sqlite/memory {vs_memory[-1]:.2f}", flush=True)
        for m in migrations.values():
            m.close()
    finally:
        server.kill()
        server.wait()

    def med(d: dict[str, list[float]], k: int = 3) -> dict[str, float]:
        return {name: round(statistics.median(v), k) for name, v in d.items()}

    cpu_vs_memory = [s / m for s, m in zip(cpu["sqlite (default)"], cpu["memory://"], strict=True)]
    return {
        "events": n,
        "rounds": rounds,
        "events_per_second": med(wall, 1),
        "events_per_cpu_second": med(cpu, 1),
        "dual_path_vs_graph_alone": med(ratios),
        "dual_path_vs_graph_alone_cpu": med(cpu_ratios),
        "default_store_vs_memory": round(statistics.median(vs_memory), 3),
        "default_store_vs_memory_cpu": round(statistics.median(cpu_vs_memory), 3),
        "goal": "dual path >= 0.9x the graph alone (no checkpointer) on every store; default store >= 0.8x memory://",
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


def _rss_now_mb() -> float:
    import gc

    gc.collect()
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss(events: int, sagas: int) -> dict:
    from graph_flows import flow_from_bus
    from legacy_bus import Event, EventBus, EventLog
    from migration_kit import Migration

    bus = EventBus("tiny")

    @bus.on("Ping")
    def ping(e, ctx):
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        ctx.publish("Pong", {"n": e.payload["n"]})

    @bus.on("Pong")
    def pong(e):
        return None

    marks: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tiny.jsonl"
        EventLog(path).write(Event(type="Ping", payload={"n": i}, correlation_id=f"s{i % sagas}") for i in range(events))
        at = {max(1, events // 10), events // 2, events}
        t0 = time.perf_counter()

        def on_result(_c, tally):
            if tally.total in at:
                marks[tally.total] = round(_rss_now_mb(), 1)
                print(f"  {tally.total:>9,} events: RSS {marks[tally.total]:.1f} MB ({time.perf_counter() - t0:.0f}s)", flush=True)

        Migration("tiny", legacy=bus, candidate=flow_from_bus(bus), store="memory://").replay(path, on_result=on_result)
    first, last = marks[min(marks)], marks[max(marks)]
    return {"events": events, "sagas": sagas, "rss_mb": marks, "end_vs_10pct": round(last / first, 3), "goal": "<= 1.1"}


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--events", type=int, default=600)
    t.add_argument("--rounds", type=int, default=3)
    m = sub.add_parser("memory")
    m.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    q = sub.add_parser("rss")
    q.add_argument("--events", type=int, default=60_000)
    q.add_argument("--sagas", type=int, default=60_000)
    c = sub.add_parser("_memory_child")
    c.add_argument("size", type=int)
    args = p.parse_args()
    if args.what == "_memory_child":
        _memory_child(args.size)
        return
    print(f"== replay {args.what} (pid {os.getpid()})")
    if args.what == "rss":
        result = rss(args.events, args.sagas)
    else:
        result = throughput(args.events, args.rounds) if args.what == "throughput" else memory(args.sizes)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
