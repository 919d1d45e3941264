"""Benchmark: a 5-node chain graph through three checkpointers, side by side.

    .venv/bin/python bench/bench_checkpointer.py [--invocations N] [--rounds R]

Each invocation uses a new thread id and the sync API (``graph.invoke``), under
LangGraph's default ``durability="async"`` and then under ``"sync"``. Rounds
are interleaved in one process (memory, ours, peer, memory, ours, peer, ...)
so drift hits all three alike.
Compared:

- ``InMemorySaver`` (LangGraph; no I/O: the ceiling),
- ``checkpoints.RedisSaver`` (this project),
- ``langgraph_checkpoint_plainredis.RedisSaver`` (the plain-Redis peer).

Both Redis savers use their own key prefix on one ``redis-server`` that the
script starts on a free loopback port (no persistence) and stops at the end.
Round trips of ours are counted three ways: scripts run by the server (``INFO
commandstats``), requests written to the socket (a counting redis-py
connection class), and the times a call blocked for replies (the saver's
pipeline counts them: each is one round trip on some call's path).

Goals (issue 22): under ``"async"`` ours >= 0.8x InMemorySaver and >= 2.2x the
peer; under ``"sync"`` the figure and the round trips per step that bound it.
"""

from __future__ import annotations

import argparse
import importlib.util
import operator
import os
import sys
import threading
import time
import uuid
from collections import defaultdict
from typing import Annotated, Any, TypedDict

import redis
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from checkpoints import RedisSaver


def _load_test_servers() -> Any:
    # tests/servers.py by path: putting tests/ on sys.path would let the
    # tests/checkpoints folder shadow the checkpoints package.
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "servers.py")
    spec = importlib.util.spec_from_file_location("_bench_test_servers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


RedisServer = _load_test_servers().RedisServer

try:
    from langgraph_checkpoint_plainredis import RedisSaver as PeerRedisSaver
except ImportError:  # pragma: no cover - the peer is a dev dependency
    PeerRedisSaver = None

NODES = 5


class State(TypedDict):
    value: int
    trail: Annotated[list[str], operator.add]


def build_graph():
    """``START -> n1 -> ... -> n5 -> END``; each node bumps ``value`` and appends to ``trail``."""
    builder = StateGraph(State)
    prev = START
    for i in range(1, NODES + 1):
        name = f"n{i}"

        def node(state: State, _name: str = name) -> dict[str, Any]:
            return {"value": state["value"] + 1, "trail": [_name]}

        builder.add_node(name, node)
        builder.add_edge(prev, name)
        prev = name
    builder.add_edge(prev, END)
    return builder


# -- round-trip counting --------------------------------------------------------

_COUNTS = {"requests": 0}
_PER_THREAD = threading.local()


def _thread_requests() -> int:
    return getattr(_PER_THREAD, "n", 0)


class CountingConnection(redis.Connection):
    """A redis-py connection that counts requests written to the socket (in total and per thread)."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        _COUNTS["requests"] += 1
        _PER_THREAD.n = _thread_requests() + 1
        super().send_packed_command(command, check_health)


def counting_client(url: str) -> redis.Redis:
    pool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection)
    return redis.Redis(connection_pool=pool)


class MethodCounter:
    """Wraps a saver's methods to count their calls."""

    METHODS = ("get_tuple", "put", "put_writes", "list")

    def __init__(self, saver: Any) -> None:
        self.calls: dict[str, int] = defaultdict(int)
        self.trips: dict[str, int] = defaultdict(int)
        for name in self.METHODS:
            original = getattr(saver, name)

            def wrapped(*args: Any, _name: str = name, _orig: Any = original, **kwargs: Any) -> Any:
                # Counted per thread: LangGraph runs puts in worker threads, concurrently.
                before = _thread_requests()
                try:
                    return _orig(*args, **kwargs)
                finally:
                    self.calls[_name] += 1
                    self.trips[_name] += _thread_requests() - before

            setattr(saver, name, wrapped)


# -- benchmark ------------------------------------------------------------------


def run_once(graph: Any, invocations: int, durability: str = "async") -> float:
    """Invoke ``graph`` ``invocations`` times with fresh threads; return ops/s."""
    start = time.perf_counter()
    for _ in range(invocations):
        config = {"configurable": {"thread_id": str(uuid.uuid4())}}
        out = graph.invoke({"value": 0, "trail": []}, config, durability=durability)
        assert out["value"] == NODES, out
    return invocations / (time.perf_counter() - start)


def commandstats(client: redis.Redis) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}


def count_round_trips(url: str, builder: StateGraph, durability: str, invocations: int = 50) -> dict[str, Any]:
    """Round trips of our saver under ``durability``: scripts, requests and blocking waits per invoke."""
    admin = redis.Redis.from_url(url)
    saver = RedisSaver(counting_client(url), key_prefix=f"bench-count-{durability}")
    counter = MethodCounter(saver)
    graph = builder.compile(checkpointer=saver)
    graph.invoke({"value": 0, "trail": []}, {"configurable": {"thread_id": "warm"}}, durability=durability)
    counter.calls.clear()
    admin.config_resetstat()
    requests_before, waits_before = _COUNTS["requests"], saver._pipe.waits
    for _ in range(invocations):
        graph.invoke({"value": 0, "trail": []}, {"configurable": {"thread_id": str(uuid.uuid4())}}, durability=durability)
    stats = commandstats(admin)
    out = {
        "calls": {m: counter.calls[m] / invocations for m in counter.METHODS if counter.calls[m]},
        "requests": (_COUNTS["requests"] - requests_before) / invocations,
        "scripts": (stats.get("evalsha", 0) + stats.get("eval", 0)) / invocations,
        "waits": (saver._pipe.waits - waits_before) / invocations,
    }
    saver.close()
    return out


def measure(graphs: dict[str, Any], rounds: int, invocations: int, durability: str) -> dict[str, float]:
    """Interleaved rounds of every graph under ``durability``; mean ops/s per checkpointer."""
    for graph in graphs.values():  # warm up imports, scripts, connections
        run_once(graph, 20, durability)
    results: dict[str, list[float]] = defaultdict(list)
    for r in range(rounds):
        for name, graph in graphs.items():
            results[name].append(run_once(graph, invocations, durability))
        print(f"{durability} round {r + 1}: " + ", ".join(f"{n} {results[n][-1]:,.0f}/s" for n in graphs), flush=True)
    return {name: sum(v) / len(v) for name, v in results.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invocations", type=int, default=400, help="invocations per saver per round")
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()

    server = RedisServer.start()
    try:
        url = server.url
        builder = build_graph()
        contenders: dict[str, Any] = {
            "InMemorySaver": InMemorySaver(),
            "checkpoints.RedisSaver": RedisSaver.from_url(url, key_prefix="bench-ours"),
        }
        if PeerRedisSaver is not None:
            contenders["plainredis.RedisSaver"] = PeerRedisSaver(url=url, prefix="bench-peer")
        graphs = {name: builder.compile(checkpointer=saver) for name, saver in contenders.items()}
        ours, mem, peer = "checkpoints.RedisSaver", "InMemorySaver", "plainredis.RedisSaver"
        means = {d: measure(graphs, opts.rounds, opts.invocations, d) for d in ("async", "sync")}
        trips = {d: count_round_trips(url, builder, d) for d in ("async", "sync", "exit")}

        print()
        print(
            f"5-node chain, new thread per invoke, sync invoke; "
            f"{opts.rounds} interleaved rounds x {opts.invocations} invocations per durability"
        )
        print(f"{'durability':<12}{'checkpointer':<26}{'mean ops/s':>12}{'vs memory':>11}{'vs peer':>9}")
        for d, mean in means.items():
            for name in graphs:
                vs_peer = f"{mean[name] / mean[peer]:.2f}x" if peer in mean else "-"
                print(f"{d:<12}{name:<26}{mean[name]:>12,.0f}{mean[name] / mean[mem]:>10.2f}x{vs_peer:>9}")
        mean = means["async"]
        print()
        print(f"goals (async): ours >= 0.80x InMemorySaver -> {mean[ours] / mean[mem]:.2f}x", end="")
        if peer in mean:
            print(f";  ours >= 2.20x plainredis -> {mean[ours] / mean[peer]:.2f}x")
        else:
            print("  (plainredis not installed)")
        print()
        print("round trips of checkpoints.RedisSaver per invoke (5 steps; INFO commandstats / socket / blocking waits)")
        for d, t in trips.items():
            calls = ", ".join(f"{m} {n:.0f}" for m, n in t["calls"].items())
            print(
                f"  {d:<6} {t['scripts']:.1f} scripts, {t['requests']:.1f} requests, {t['waits']:.1f} waits "
                f"({t['waits'] / NODES:.2f} per step); calls: {calls}"
            )
        for saver in contenders.values():
            close = getattr(saver, "close", None)
            if callable(close):
                close()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
