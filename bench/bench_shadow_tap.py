"""Live publish latency with the shadow tap attached vs detached (alternating blocks, one run).

The legacy app is a three-handler cascade whose handlers each do 2 ms of
simulated I/O (``time.sleep(0.002)``) and one call of an effect port, with
saga state. Blocks of publishes alternate between the bus as it is and the
bus with ``Migration.attach()`` hooked in (its sender writing to a real
redis-server started here on a free loopback port), so drift on the machine
hits both sides alike. Goals: p50 at most 1.05x, p99 at most 1.10x.

    .venv/bin/python bench/bench_shadow_tap.py [--blocks 20] [--per-block 100]
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


def app() -> EventBus:
    bus = EventBus("checkout")

    @bus.effect("inventory.reserve")
    def reserve(sku: str, qty: int) -> dict:
        time.sleep(IO)  # the warehouse API
        return {"reserved": qty, "sku": sku}

    @bus.on("OrderPlaced")
    def validate(e, ctx):
        time.sleep(IO)  # the customer database
        ctx.state["total"] = e.payload["amount"]
        ctx.publish("OrderValidated", {"order": e.payload["order"], "sku": e.payload["sku"]})

    @bus.on("OrderValidated")
    def reserve_stock(e, ctx):
        r = reserve(e.payload["sku"], 1)
        return Event(type="StockReserved", payload={"order": e.payload["order"], **r})

    @bus.on("StockReserved")
    def notify(e, ctx):
        time.sleep(IO)  # the mailer
        ctx.state["status"] = "reserved"

    return bus


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=20, help="blocks per side (default 20)")
    ap.add_argument("--per-block", type=int, default=100, help="publishes per block (default 100)")
    args = ap.parse_args()

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
        print(f"publishes per side: {len(d):,} (3 handlers x 2 ms simulated I/O, alternating blocks of {args.per_block})")
        print(f"detached: p50 {p50d * 1e3:.3f} ms  p99 {p99d * 1e3:.3f} ms  mean {statistics.fmean(d) * 1e3:.3f} ms")
        print(f"attached: p50 {p50a * 1e3:.3f} ms  p99 {p99a * 1e3:.3f} ms  mean {statistics.fmean(a) * 1e3:.3f} ms")
        print(f"ratio:    p50 {p50a / p50d:.3f}x (goal <= 1.05)  p99 {p99a / p99d:.3f}x (goal <= 1.10)")
        print(f"tap: {sent:,} entries sent to the stream, {shed:,} shed")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
