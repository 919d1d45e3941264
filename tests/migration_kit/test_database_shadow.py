"""Live shadow of a service whose state is in PostgreSQL: two shadow workers never write production data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from migration_kit.live.tap import GROUP, ShadowKeys

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import db_app  # noqa: E402

KEYS = ShadowKeys("allocation")
SKUS = ("LAMP", "TABLE", "CHAIR")


def setup(app: db_app.App) -> None:
    """Stock that exists before the migration is attached: two batches per SKU."""
    for sku in SKUS:
        app.create(f"{sku.lower()}-1", sku, 12)
        app.create(f"{sku.lower()}-2", sku, 30)


def traffic(app: db_app.App, n: int) -> list[str]:
    """``n`` Allocate commands over three SKUs, enough to run the first batches and some SKUs out."""
    kinds = []
    for i in range(n):
        d = app.allocate(f"order-{i}", SKUS[i % 3], 2 + i % 5)
        kinds.append(d.emitted[0].type)
    return kinds


def start_worker(redis_url: str, db_url: str, name: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DB_APP_URL": db_url}
    return subprocess.Popen(
        [sys.executable, "-m", "migration_kit", "worker", "--app", "db_app:migration", "--store", redis_url,
         "--consumer", name, "--block-ms", "200"],
        cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def compared(r: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in r.hgetall(KEYS.counters).items()}


def test_live_shadow_with_two_workers_leaves_the_production_tables_exactly_as_without_a_migration(
    postgres_server, redis_url
):
    n = 36
    plain_url = postgres_server.create_database("shadow_plain")
    shadowed_url = postgres_server.create_database("shadow_attached")
    plain = db_app.build(plain_url)
    setup(plain)
    plain_kinds = traffic(plain, n)
    expected = db_app.rows(plain.engine)

    app = db_app.build(shadowed_url)
    setup(app)
    migration = db_app.Migration("allocation", legacy=app.bus, candidate=db_app.flow_from_bus(app.bus), store=redis_url)
    with migration.attach() as handle:
        kinds = traffic(app, n)
        assert handle.flush(30) and handle.sent == n
    assert kinds == plain_kinds and {"Allocated", "OutOfStock"} <= set(kinds)
    assert db_app.rows(app.engine) == expected  # the tap changes nothing on the live path

    r = redis.Redis.from_url(redis_url)
    workers = [start_worker(redis_url, shadowed_url, f"w{i}") for i in range(2)]
    try:
        deadline = time.monotonic() + 120
        while compared(r).get("compared", 0) < n:
            for w in workers:
                assert w.poll() is None, w.stderr.read()[-3000:]
            assert time.monotonic() < deadline, f"timed out: {compared(r)}"
            time.sleep(0.05)
        # Both workers are running (each has read from the group, so its SIGTERM handler is in
        # place): one can do all the work while the other is still starting on a loaded machine.
        while {_text(c["name"]) for c in r.xinfo_consumers(KEYS.stream, GROUP)} != {"w0", "w1"}:
            for w in workers:
                assert w.poll() is None, w.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "a worker never started reading"
            time.sleep(0.05)
    finally:
        outs = []
        for w in workers:
            w.send_signal(signal.SIGTERM)
            outs.append(w.communicate(timeout=30))
    for w, (out, err) in zip(workers, outs):
        assert w.returncode == 0, err[-3000:]
    counts = compared(r)
    assert db_app.counts(app.engine) == db_app.counts(plain.engine)
    assert db_app.rows(app.engine) == expected  # row for row, column for column
    # Each candidate run started from the rows the live run read and wrote, as they were before its event.
    assert (counts["compared"], counts.get("divergent", 0), counts.get("errors", 0)) == (n, 0, 0), migration.shadow_status()
    plain.engine.dispose()
    app.engine.dispose()


def test_after_cutover_the_legacy_shadow_starts_from_before_the_candidates_real_writes(postgres_url, redis_url):

    app = db_app.build(postgres_url)
    setup(app)
    migration = db_app.Migration("allocation", legacy=app.bus, candidate=db_app.flow_from_bus(app.bus), store=redis_url)
    migration.promote(to="primary")
    with migration.attach() as handle:
        kinds = traffic(app, 9)  # the candidate serves: its writes are real
        assert handle.flush(30)
    assert "Allocated" in kinds
    served = db_app.rows(app.engine)
    assert len(served["allocations"]) == kinds.count("Allocated")
    stats = migration.worker(consumer="w-primary", block_ms=100, max_events=9).run()
    assert (stats.recorded, stats.divergent, stats.errors) == (9, 0, 0)  # legacy, sandboxed, saw what the candidate saw
    assert db_app.rows(app.engine) == served
    migration.close()
    app.engine.dispose()
