"""Shadow worker throughput: one worker process vs two, on the same stream, in one run.

Starts a redis-server on a free loopback port, taps N live events of the
test app (``tests/migration_kit/shadow_app.py``, whose handlers burn a little
CPU each, as real handlers do) into the shadow stream, then times real
``migration-kit worker`` subprocesses comparing them all: first one worker,
then (on a fresh copy of the stream's entries) two. Startup is excluded:
the clock starts when every worker has registered in the consumer group
and stops when the group's counters say all N were compared. Goal: two
workers at least 1.7x the events per second of one (this is a 2-core box).

    .venv/bin/python bench/bench_shadow_workers.py [--events 1500] [--work 300]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = ROOT / "tests" / "migration_kit"
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(APP_DIR))
sys.path.append(str(ROOT / "tests"))

import redis  # noqa: E402
from servers import RedisServer  # noqa: E402


def tap(url: str, n: int) -> list[dict]:
    import shadow_app

    m = shadow_app.migration(store=url)
    with m.attach(queue_size=n + 10, maxlen=10 * n) as handle:
        for i in range(n):
            shadow_app.bus.publish(shadow_app.order(i))
        handle.flush(60)
    r = redis.Redis.from_url(url)
    from migration_kit.shadow import ShadowKeys

    return [fields for _, fields in r.xrange(ShadowKeys("shop").stream)]


def timed_run(url: str, entries: list[dict], workers: int, work: int) -> float:
    from migration_kit.shadow import GROUP, ShadowKeys

    keys = ShadowKeys("shop")
    r = redis.Redis.from_url(url)
    r.flushall()
    pipe = r.pipeline(transaction=False)
    for fields in entries:
        pipe.xadd(keys.stream, fields)
    pipe.execute()
    r.xgroup_create(keys.stream, GROUP, id="0")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHADOW_APP_WORK": str(work)}
    # The workers wait, ready, until the group is created... so that startup is not timed,
    # they start on an empty group position past the end, and are moved back when all are up.
    last = r.xinfo_stream(keys.stream)["last-generated-id"]
    r.xgroup_setid(keys.stream, GROUP, id=last)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "migration_kit", "worker", "--app", "shadow_app:migration", "--store", url,
             "--consumer", f"bench-{i}", "--block-ms", "50"],
            cwd=APP_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for i in range(workers)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(r.xinfo_consumers(keys.stream, GROUP)) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.05)
        time.sleep(0.5)  # every worker is past its start-up and blocked on XREADGROUP
        r.xgroup_setid(keys.stream, GROUP, id="0")
        t0 = time.perf_counter()
        while int(r.hget(keys.counters, "compared") or 0) < len(entries):
            time.sleep(0.005)
        elapsed = time.perf_counter() - t0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            if p.wait(30) != 0:
                raise RuntimeError(f"a worker exited with {p.returncode}")
    return len(entries) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1500)
    ap.add_argument("--work", type=int, default=300, help="sha256 rounds per handler run (simulated handler CPU)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating 1-worker / 2-worker rounds")
    args = ap.parse_args()
    server = RedisServer.start()
    try:
        entries = tap(server.url, args.events)
        one, two = [], []
        for _ in range(args.rounds):
            one.append(timed_run(server.url, entries, 1, args.work))
            two.append(timed_run(server.url, entries, 2, args.work))
        best1, best2 = max(one), max(two)
        print(f"events: {len(entries):,}; handler work: {args.work} sha256 rounds per node run; cores: {os.cpu_count()}")
        print("1 worker:  " + ", ".join(f"{x:,.0f}" for x in one) + " events/s")
        print("2 workers: " + ", ".join(f"{x:,.0f}" for x in two) + " events/s")
        print(f"ratio (best of each): {best2 / best1:.2f}x (goal >= 1.7)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
