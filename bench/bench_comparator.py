"""Comparator throughput on the example app's outcomes (issue 4): goal >= 20,000 pairs/s.

    .venv/bin/python bench/bench_comparator.py [--events 400] [--rounds 5]

Outcome pairs come from real runs of the orders example: the legacy bus and
its wrapped graph (parity pairs) and the v2 graph (about 6% divergent pairs),
with the noise the migration learned applied. Each round times
``Comparator.compare`` over every pair; beside it, as a floor for reference,
the same pairs compared with plain ``==`` on their emitted payloads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def collect(n: int):
    from examples.orders import v2
    from examples.orders.app import bus
    from examples.orders.generate import generate
    from graph_flows import flow_from_bus
    from migration_kit import Migration

    events = list(generate(n))
    pairs = []
    for migration in (Migration("b1", legacy=bus, candidate=flow_from_bus(bus)), v2.migration()):
        def keep(c, _t):
            pairs.append((c.legacy, c.candidate))

        migration.replay(events, on_result=keep)
        noise = migration.noise
    return pairs, noise


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=400)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    from migration_kit import Comparator

    pairs, noise = collect(args.events)
    comparator = Comparator()
    divergent = sum(1 for a, b in pairs if comparator.compare(a, b, noise=noise).divergent)
    rates, floor = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for a, b in pairs:
            comparator.compare(a, b, noise=noise)
        rates.append(len(pairs) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for a, b in pairs:
            _ = [e.payload for e in a.emitted] == [e.payload for e in b.emitted]
        floor.append(len(pairs) / (time.perf_counter() - t0))
    out = {
        "pairs": len(pairs),
        "divergent_pairs": divergent,
        "compare_pairs_per_s_median": round(statistics.median(rates)),
        "plain_payload_equality_per_s_median": round(statistics.median(floor)),
        "goal": ">= 20000 pairs/s",
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
