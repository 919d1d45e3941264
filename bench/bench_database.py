"""Live publish latency of a service on a declared database vs the same service on a plain sessionmaker.

The allocation service of ``tests/migration_kit/db_app.py`` (a unit of work on
a SQLite file: read the SKU's batches, insert an order line and an
allocation, update a batch, insert a read-model row) is built twice on two
copies of the same stock: once with ``bus.database("inventory", factory)``
(live dispatches record their reads and writes), once with the bare
sessionmaker. Blocks of ``Allocate`` publishes alternate between the two, so
drift on the machine hits both alike. Reports the ratio of median and p99
publish times (goal: median at most 1.10x).

    .venv/bin/python bench/bench_database.py [--blocks 20] [--per-block 50]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests" / "migration_kit"))

import db_app  # noqa: E402


def stock(app: db_app.App, skus: int) -> None:
    for i in range(skus):
        app.create(f"b{i}-1", f"SKU{i}", 10_000)
        app.create(f"b{i}-2", f"SKU{i}", 10_000)


def block(app: db_app.App, start: int, n: int, skus: int) -> list[float]:
    out = []
    for i in range(start, start + n):
        t = time.perf_counter()
        app.allocate(f"o{i}", f"SKU{i % skus}", 1)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--per-block", type=int, default=50)
    ap.add_argument("--skus", type=int, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-db-"))
    declared = db_app.build(f"sqlite:///{work / 'declared.db'}")
    plain = db_app.build(f"sqlite:///{work / 'plain.db'}", declare=False)
    for app in (declared, plain):
        stock(app, args.skus)
        block(app, 10**6, 20, args.skus)  # warm up
    times: dict[str, list[float]] = {"declared": [], "plain": []}
    gc.disable()
    try:
        for b in range(args.blocks):
            order = (("declared", declared), ("plain", plain)) if b % 2 == 0 else (("plain", plain), ("declared", declared))
            for name, app in order:
                times[name] += block(app, b * args.per_block, args.per_block, args.skus)
    finally:
        gc.enable()
    for app in (declared, plain):
        assert db_app.counts(app.engine)["allocations"] == args.blocks * args.per_block + 20
    med = {k: statistics.median(v) for k, v in times.items()}
    p99 = {k: statistics.quantiles(v, n=100)[98] for k, v in times.items()}
    print(f"publishes per side: {len(times['plain'])}")
    print(f"plain sessionmaker: median {med['plain'] * 1e3:.3f} ms, p99 {p99['plain'] * 1e3:.3f} ms")
    print(f"declared database:  median {med['declared'] * 1e3:.3f} ms, p99 {p99['declared'] * 1e3:.3f} ms")
    print(f"ratio declared/plain: median {med['declared'] / med['plain']:.3f}x, p99 {p99['declared'] / p99['plain']:.3f}x")


if __name__ == "__main__":
    main()
