"""Tracing overhead (issue 7): replay throughput with tracing on and no exporter vs off.

    .venv/bin/python bench/bench_tracing.py [--events 400] [--rounds 4]

Two migrations of the orders example replay the same events in alternating
blocks in one process: one whose telemetry has an OpenTelemetry SDK tracer
provider with no exporter (spans are built and recorded, then dropped), one
with the API's no-op provider. Goal: at most 3% slower.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=400)
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args()
    from opentelemetry.sdk.trace import TracerProvider

    from examples.orders.app import bus
    from examples.orders.generate import generate
    from graph_flows import flow_from_bus
    from migration_kit import Migration
    from migration_kit.observe.telemetry import Telemetry

    events = list(generate(args.events))
    on = Migration("traced", legacy=bus, candidate=flow_from_bus(bus))
    on.telemetry = Telemetry("traced", tracer_provider=TracerProvider())
    off = Migration("untraced", legacy=bus, candidate=flow_from_bus(bus))
    assert on.replay(events[:20]).examples == () or True  # warm both
    off.replay(events[:20])
    traced = on.compare(events[0])
    assert traced.trace_id is not None and off.compare(events[0]).trace_id is None
    ratios = []
    for r in range(args.rounds):
        order = (on, off) if r % 2 == 0 else (off, on)
        rate = {}
        for m in order:
            t0 = time.perf_counter()
            m.replay(events)
            rate[m.name] = len(events) / (time.perf_counter() - t0)
        ratios.append(rate["traced"] / rate["untraced"])
        print(f"  round {r + 1}: traced {rate['traced']:.1f} ev/s, untraced {rate['untraced']:.1f} ev/s, ratio {ratios[-1]:.3f}", flush=True)
    med = statistics.median(ratios)
    print(json.dumps({"events": args.events, "rounds": args.rounds, "traced_vs_untraced_median": round(med, 3), "slowdown": f"{(1 - med):.1%}", "goal": "<= 3% slower"}, indent=2))


if __name__ == "__main__":
    main()
