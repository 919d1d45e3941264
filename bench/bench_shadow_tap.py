"""Live publish latency with the shadow tap attached vs detached (alternating blocks, one run).

The legacy app is a three-handler cascade whose handlers each do 2 ms of
simulated I/O (``time.sleep(0.002)``) and one call of an effect port, with
saga state. Blocks of publishes alternate between the bus as it is and the
bus with ``Migration.attach()`` hooked in (its sender writing to a real
redis-server started here on a free loopback port), so drift on the machine
hits both sides alike. Goals: p50 at most 1.05x, p99 at most 1.10x.

``--full-rate``: the same cascade without the simulated I/O, one publisher as
fast as it can (the tap's worst case: its sender competes with the publisher
for the GIL all the time). Adds p99.9, the worst publish, the longest GC pause
on each side (``gc.callbacks``) and the share shed (goals: p99.9 at most 1.5x,
shed at most 1%). ``--sender``: how many entries per second one sender sustains
into the local Redis with nothing else running (its queue pre-filled).

    .venv/bin/python bench/bench_shadow_tap.py [--blocks 20] [--per-block 100] [--full-rate] [--sender]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))

from servers import RedisServer  # noqa: E402

from graph_flows import flow_from_bus  # noqa: E402
from legacy_bus import Event, EventBus  # noqa: E402
from migration_kit import Migration  # noqa: E402

IO = 0.002
PAUSES: dict[str, list[float]] = {"detached": [], "attached": []}
_gc = {"side": "detached", "t0": 0.0}


def _on_gc(phase: str, info: dict) -> None:
    if phase == "start":
        _gc["t0"] = time.perf_counter()
    else:
        PAUSES[_gc["side"]].append(time.perf_counter() - _gc["t0"])


def app() -> EventBus:
    bus = EventBus("checkout")

    def io() -> None:
        if IO:
            time.sleep(IO)

    @bus.effect("inventory.reserve")
    def reserve(sku: str, qty: int) -> dict:
        io()  # the warehouse API
        return {"reserved": qty, "sku": sku}

    @bus.on("OrderPlaced")
    def validate(e, ctx):
        io()  # the customer database
        ctx.state["total"] = e.payload["amount"]
        ctx.publish("OrderValidated", {"order": e.payload["order"], "sku": e.payload["sku"]})

    @bus.on("OrderValidated")
    def reserve_stock(e, ctx):
        r = reserve(e.payload["sku"], 1)
        return Event(type="StockReserved", payload={"order": e.payload["order"], **r})

    @bus.on("StockReserved")
    def notify(e, ctx):
        io()  # the mailer
        ctx.state["status"] = "reserved"

    return bus


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=20, help="blocks per side (default 20)")
    ap.add_argument("--per-block", type=int, default=100, help="publishes per block (default 100)")
    ap.add_argument("--full-rate", action="store_true", help="no simulated I/O: one publisher as fast as it can")
    ap.add_argument("--sender", action="store_true", help="measure one sender's sustained entries/s")
    args = ap.parse_args()
    global IO
    if args.full_rate:
        IO = 0.0
    if args.sender:
        sender_rate()
        return
    gc.callbacks.append(_on_gc)

    server = RedisServer.start()
    try:
        bus = app()
        migration = Migration("bench-tap", legacy=bus, candidate=flow_from_bus(bus), store=server.url)
        times: dict[str, list[float]] = {"detached": [], "attached": []}
        sent = shed = 0
        n = 0
        for _ in range(20):  # warm up both sides
            bus.publish("OrderPlaced", {"order": "w", "amount": 1, "sku": "s"}, correlation_id="warm")
        gc.collect()
        for block in range(2 * args.blocks):
            side = "attached" if block % 2 else "detached"
            _gc["side"] = side
            handle = migration.attach() if side == "attached" else None
            out = times[side]
            for _ in range(args.per_block):
                n += 1
                ev = Event(type="OrderPlaced", payload={"order": f"o{n}", "amount": n % 100, "sku": f"sku-{n % 7}"}, correlation_id=f"c{n % 200}")
                t0 = time.perf_counter()
                bus.publish(ev)
                out.append(time.perf_counter() - t0)
            if handle is not None:
                handle.flush(10)
                sent += handle.sent
                shed += handle.shed
                handle.close()
        d, a = times["detached"], times["attached"]
        p50d, p50a = statistics.median(d), statistics.median(a)
        p99d, p99a = quantile(d, 0.99), quantile(a, 0.99)
        print(f"publishes per side: {len(d):,} (3 handlers x {IO * 1e3:g} ms simulated I/O, alternating blocks of {args.per_block})")
        print(f"detached: p50 {p50d * 1e3:.3f} ms  p99 {p99d * 1e3:.3f} ms  mean {statistics.fmean(d) * 1e3:.3f} ms")
        print(f"attached: p50 {p50a * 1e3:.3f} ms  p99 {p99a * 1e3:.3f} ms  mean {statistics.fmean(a) * 1e3:.3f} ms")
        print(f"ratio:    p50 {p50a / p50d:.3f}x (goal <= 1.05)  p99 {p99a / p99d:.3f}x (goal <= 1.10)")
        print(f"tap: {sent:,} entries sent to the stream, {shed:,} shed ({shed / max(1, sent + shed):.2%}; goal <= 1%)")
        p999d, p999a = quantile(d, 0.999), quantile(a, 0.999)
        print(f"p99.9:    detached {p999d * 1e3:.3f} ms  attached {p999a * 1e3:.3f} ms  ratio {p999a / p999d:.3f}x (goal <= 1.5)")
        print(f"worst:    detached {max(d) * 1e3:.3f} ms  attached {max(a) * 1e3:.3f} ms")
        print(
            f"longest GC pause: detached {max(PAUSES['detached'], default=0) * 1e3:.2f} ms, "
            f"attached {max(PAUSES['attached'], default=0) * 1e3:.2f} ms"
        )
    finally:
        server.stop()


def sender_rate(n: int = 20_000) -> None:
    """Entries per second one sender sustains into a local Redis (queue pre-filled, no publisher running)."""
    server = RedisServer.start()
    try:
        bus = app()
        migration = Migration("bench-sender", legacy=bus, candidate=flow_from_bus(bus), store=server.url)
        items = []
        for i in range(n):
            ev = Event(type="OrderPlaced", payload={"order": f"o{i}", "amount": i % 100, "sku": f"sku-{i % 7}"}, correlation_id=f"c{i % 200}")
            items.append((bus.dispatch(ev, capture=True), {"total": i % 100}, None, time.time()))
        handle = migration.attach(queue_size=n + 1)
        t0 = time.perf_counter()
        for item in items:
            handle._queue.put_nowait(item)
        handle._count(tapped=n)
        handle.flush(120)
        took = time.perf_counter() - t0
        print(f"one sender: {handle.sent:,} entries in {took:.2f} s = {handle.sent / took:,.0f} entries/s ({handle.shed} shed)")
        handle.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
