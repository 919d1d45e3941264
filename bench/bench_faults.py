"""Worst added publish latency under each Redis fault, shadow phase, against the same publishes detached.

For each fault a fresh redis-server is started; the same sequence of
publishes runs twice in the same run, first on the bus as it is (detached),
then with ``Migration.attach()`` hooked in while the fault is injected. The
figure is the worst attached publish minus the worst detached one (goal: at
most 20 ms for every fault). The legacy app is a three-handler cascade with
``--io`` seconds of simulated I/O per handler (so the publisher leaves the
GIL to the tap's sender as a real service does).

    .venv/bin/python bench/bench_faults.py [--events 2000] [--rounds 3] [--io 0.0002]
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))

from servers import RedisServer, free_port, redis_binary  # noqa: E402

from graph_flows import flow_from_bus  # noqa: E402
from legacy_bus import Event, EventBus  # noqa: E402
from migration_kit import Migration  # noqa: E402


def app(io: float) -> EventBus:
    bus = EventBus("faults-bench")

    @bus.effect("inventory.reserve")
    def reserve(sku: str, qty: int) -> dict:
        time.sleep(io)
        return {"reserved": qty, "sku": sku}

    @bus.on("OrderPlaced")
    def validate(e, ctx):
        time.sleep(io)
        ctx.state["total"] = e.payload["amount"]
        ctx.publish("OrderValidated", {"order": e.payload["order"], "sku": e.payload["sku"]})

    @bus.on("OrderValidated")
    def reserve_stock(e, ctx):
        r = reserve(e.payload["sku"], 1)
        return Event(type="StockReserved", payload={"order": e.payload["order"], **r})

    @bus.on("StockReserved")
    def notify(e, ctx):
        time.sleep(io)
        ctx.state["status"] = "reserved"

    return bus


def events(n: int, tag: str) -> list[Event]:
    return [
        Event(type="OrderPlaced", payload={"order": f"{tag}{i}", "amount": i % 100, "sku": f"sku-{i % 7}"}, correlation_id=f"c{i % 200}")
        for i in range(n)
    ]


PAUSES: list[float] = []
_gc_started = [0.0]


def _gc(phase: str, info: dict) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        PAUSES.append(time.perf_counter() - _gc_started[0])


def run(bus: EventBus, evs: list[Event], during: threading.Event | None = None) -> list[float]:
    out = []
    for i, e in enumerate(evs):
        if during is not None and i == len(evs) // 4:
            during.set()  # the fault starts a quarter of the way in
        t0 = time.perf_counter()
        bus.publish(e)
        out.append(time.perf_counter() - t0)
    return out


def inject(name: str, server: RedisServer, start: threading.Event, stop: threading.Event) -> None:
    start.wait()
    if name == "killed, restarted without AOF" or name == "killed, restarted with AOF":
        server.kill()
        stop.wait(1.0)
        server.restart()
    elif name == "CLIENT PAUSE 1000":
        server.cli("CLIENT", "PAUSE", "1000", "ALL")
    elif name == "DEBUG SLEEP 1":
        subprocess.run([redis_binary("redis-cli"), "-p", str(server.port), "DEBUG", "SLEEP", "1"], stdout=subprocess.DEVNULL, check=False)
    elif name == "SIGSTOP 2 s, SIGCONT":
        os.kill(server.process.pid, signal.SIGSTOP)
        stop.wait(2.0)
        os.kill(server.process.pid, signal.SIGCONT)
    elif name == "down before attach, up later":
        stop.wait(1.0)
        server.restart()


FAULTS = {
    "down before attach, up later": (),
    "killed, restarted without AOF": (),
    "killed, restarted with AOF": ("--appendonly", "yes"),
    "CLIENT PAUSE 1000": (),
    "DEBUG SLEEP 1": ("--enable-debug-command", "yes"),
    "SIGSTOP 2 s, SIGCONT": (),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2000, help="publishes per side, round and fault (default 2000)")
    ap.add_argument("--only", default="", help="run only the faults whose name contains this")
    ap.add_argument("--rounds", type=int, default=3, help="detached/attached rounds per fault (default 3)")
    ap.add_argument("--io", type=float, default=0.0002, help="simulated I/O per handler, seconds (default 0.0002)")
    args = ap.parse_args()
    gc.callbacks.append(_gc)
    rows = []
    for name, extra in FAULTS.items():
        if args.only and args.only.lower() not in name.lower():
            continue
        server = RedisServer.start(*extra, port=free_port())
        try:
            bus = app(args.io)
            m = Migration("bench-faults", legacy=bus, candidate=flow_from_bus(bus), store=server.url)
            _ = m.graph
            run(bus, events(200, "warm"))  # warm up
            added, gcs, sent, shed = [], [0.0, 0.0], 0, 0
            for r in range(args.rounds):
                PAUSES.clear()
                detached = run(bus, events(args.events, f"d{r}-"))
                gcs[0] = max(gcs[0], max(PAUSES, default=0.0))
                PAUSES.clear()
                start, stop = threading.Event(), threading.Event()
                if name.startswith("down before attach"):
                    server.kill()
                    start.set()
                t = threading.Thread(target=inject, args=(name, server, start, stop), daemon=True)
                t.start()
                handle = m.attach()
                attached = run(bus, events(args.events, f"a{r}-"), None if start.is_set() else start)
                gcs[1] = max(gcs[1], max(PAUSES, default=0.0))
                stop.set()
                t.join(30)
                handle.flush(5)
                stats = handle.stats()
                handle.close(timeout=1.0)
                sent, shed = sent + stats["sent"], shed + stats["shed"]
                added.append((max(attached) - max(detached), max(detached), max(attached)))
            added.sort()
            med = added[len(added) // 2]
            m.close()
            rows.append((name, med[0]))
            print(
                f"{name:32s} worst added {med[0] * 1e3:7.2f} ms (median of {args.rounds} rounds; worst detached "
                f"{med[1] * 1e3:.2f}, attached {med[2] * 1e3:.2f}; goal <= 20)  sent {sent:,} shed {shed:,}  "
                f"longest GC pause detached {gcs[0] * 1e3:.1f} / attached {gcs[1] * 1e3:.1f} ms",
                flush=True,
            )
        finally:
            try:
                os.kill(server.process.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            server.stop()
    worst = max(d for _, d in rows)
    print(f"worst added latency over all faults: {worst * 1e3:.2f} ms (goal <= 20 ms)")


if __name__ == "__main__":
    main()
