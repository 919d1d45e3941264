"""Soak benchmark (issue 20): does what the migration keeps stay flat as traffic goes on?

    .venv/bin/python bench/bench_soak.py [--saga-events 2000] [--shadow-events 10000] [--sagas 1000] [--skus 200]

The issue's sizes: ``--saga-events 10000 --shadow-events 100000 --sagas 10000`` (a quick default).
A private ``redis-server`` (no persistence) with ``slowlog-log-slower-than 10000`` (10 ms).

primary, one saga: the app (``bench/soak_app.py``, a warehouse whose saga state keeps an
  inventory) is promoted to ``primary`` and attached; ``--saga-events`` events of one saga are
  published one by one (the candidate serves them on the saga's thread, with Redis checkpoints;
  the legacy path shadows it), while one ``migration-kit worker`` compares.
shadow, many sagas: a fresh Redis; the same app in ``shadow``, ``--shadow-events`` events over
  ``--sagas`` sagas, two ``migration-kit worker`` processes comparing.

At 1% (primary only: the issue's "after 100 events"), 10%, 50% and 100% of each run, once the tap
has sent what was published, it prints Redis ``used_memory`` and key count (by kind), the size of
the stream's newest entry, this process's RSS and each worker's, and at the end every SLOWLOG entry
(each over 10 ms). Goals: memory after the saga's last event <= 2x after its 100th; the newest
entry at the last event <= 1.2x at the 100th; no SLOWLOG entry.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "bench"))
sys.path.append(str(ROOT / "tests"))

import redis  # noqa: E402
from servers import RedisServer  # noqa: E402

_ID = re.compile(r"[0-9a-f]{8,}(?:-[0-9a-f]{4,})*|\d+")


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process, MB (from /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def key_kinds(r: redis.Redis) -> Counter:
    """Keys grouped by their shape (ids and numbers replaced by #)."""
    kinds: Counter = Counter()
    for key in r.scan_iter(count=1000):
        kinds[_ID.sub("#", key.decode(errors="replace"))] += 1
    return kinds


def newest_entry_bytes(r: redis.Redis, stream: str) -> int:
    rows = r.xrevrange(stream, count=1)
    return sum(len(k) + len(v) for k, v in rows[0][1].items()) if rows else 0


class EntrySizes:
    """Reads the stream as entries arrive (XREAD, no group: nothing is consumed) and keeps the newest one's size.

    Workers delete an entry once recorded, so the stream alone cannot say how big the entries were.
    """

    def __init__(self, url: str, stream: str) -> None:
        import threading

        self.client = redis.Redis.from_url(url)
        self.stream = stream
        self.newest = 0
        self.seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = "$"
        while not self._stop.is_set():
            for _, rows in self.client.xread({self.stream: last}, count=1000, block=100) or []:
                for entry_id, fields in rows:
                    last = entry_id
                    self.newest = sum(len(k) + len(v) for k, v in fields.items())
                    self.seen += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def measure(label: str, r: redis.Redis, stream: str, workers: list[subprocess.Popen], sizes: EntrySizes | None = None) -> dict:
    info = r.info("memory")
    kinds = key_kinds(r)
    row = {
        "at": label,
        "used_memory_mb": round(info["used_memory"] / 2**20, 2),
        "keys": sum(kinds.values()),
        "stream_len": r.xlen(stream) if r.exists(stream) else 0,
        "stream_mb": round((r.memory_usage(stream) or 0) / 2**20, 2) if r.exists(stream) else 0.0,
        "entry_bytes": sizes.newest if sizes is not None and sizes.seen else newest_entry_bytes(r, stream),
        "checkpoint_kb": round(sum(r.memory_usage(k) or 0 for k in r.scan_iter("lgcp:*", count=1000)) / 1024, 1),
        "rss_mb": round(rss_mb(), 1),
        "worker_rss_mb": [round(rss_mb(w.pid), 1) for w in workers],
        "top_keys": kinds.most_common(6),
    }
    print(
        f"  {label:>5}: redis {row['used_memory_mb']:8.2f} MB, {row['keys']:>7,} keys, stream {row['stream_len']:>7,} entries "
        f"({row['stream_mb']:.2f} MB), checkpoints {row['checkpoint_kb']:,.0f} KB, newest entry {row['entry_bytes']:>6,} B, rss {row['rss_mb']:.0f} MB, "
        f"workers {row['worker_rss_mb']} MB",
        flush=True,
    )
    print("         keys: " + ", ".join(f"{k} x{n:,}" for k, n in row["top_keys"]), flush=True)
    return row


def start_workers(n: int, url: str, env: dict) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "migration_kit", "worker", "--app", "soak_app:migration", "--store", url, "--consumer", f"soak-{i}", "--trim"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]


def wait_compared(r: redis.Redis, counters: str, n: int, workers: list[subprocess.Popen], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done = int(r.hget(counters, "compared") or 0)
        if done >= n or time.monotonic() > deadline:
            return done
        for w in workers:
            if w.poll() is not None:
                raise SystemExit(f"a worker exited with {w.returncode}: {(w.stderr.read() if w.stderr else '')[-2000:]}")
        time.sleep(0.2)


def stop(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        if w.poll() is None:
            w.terminate()
    for w in workers:
        try:
            w.wait(timeout=20)
        except subprocess.TimeoutExpired:
            w.kill()


def slowlog(r: redis.Redis) -> list[dict]:
    out = []
    for e in r.slowlog_get(10_000):
        cmd = e.get("command", b"")
        cmd = cmd.decode(errors="replace") if isinstance(cmd, bytes) else str(cmd)
        out.append({"ms": round(e["duration"] / 1000, 1), "command": cmd[:120]})
    return out


def run(phase: str, events: int, sagas: int, workers_n: int, marks: list[float], skus: int) -> dict:
    server = RedisServer.start("--slowlog-log-slower-than", "10000", "--slowlog-max-len", "10000")
    try:
        url = server.url
        r = redis.Redis.from_url(url)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "bench"), os.environ.get("PYTHONPATH", "")]), "SOAK_SKUS": str(skus)}
        os.environ["SOAK_SKUS"] = str(skus)
        import soak_app

        from migration_kit.live.tap import ShadowKeys

        soak_app.SKUS = skus
        m = soak_app.migration(url)
        if phase == "primary":
            m.promote(to="primary")
        keys = ShadowKeys(m.name)
        workers = start_workers(workers_n, url, env)
        at = sorted({max(1, round(events * f)) for f in marks})
        rows = []
        t0 = time.perf_counter()
        r.slowlog_reset()
        sizes = EntrySizes(url, keys.stream)
        time.sleep(0.3)  # its first XREAD is waiting before anything is published
        with m.attach(queue_size=events + 10) as handle:
            for i in range(1, events + 1):
                soak_app.bus.publish(soak_app.event(i - 1, sagas))
                if i in at:
                    handle.flush(120)
                    deadline = time.monotonic() + 10
                    while sizes.seen < i and time.monotonic() < deadline:  # the reader has the newest entry
                        time.sleep(0.01)
                    rows.append(measure(f"{100 * i / events:g}%", r, keys.stream, workers, sizes))
            handle.flush(120)
            published_s = time.perf_counter() - t0
            stats = handle.stats()
        compared = wait_compared(r, keys.counters, events, workers, timeout=max(120.0, 2.0 * published_s))
        rows.append(measure("done", r, keys.stream, workers, sizes))
        sizes.stop()
        stop(workers)
        slow = slowlog(r)
        status = json.loads(json.dumps(m.shadow_status(), default=str))
        m.close()
        result = {
            "phase": phase,
            "events": events,
            "sagas": sagas,
            "workers": workers_n,
            "published_s": round(published_s, 1),
            "compared": compared,
            "divergent": status.get("divergent"),
            "shed": stats.get("shed"),
            "rows": rows,
            "slowlog_over_10ms": slow,
        }
        first, last = rows[0], rows[-2]
        result["memory_last_vs_first"] = round(last["used_memory_mb"] / max(first["used_memory_mb"], 1e-9), 2)
        result["entry_last_vs_first"] = round(last["entry_bytes"] / max(first["entry_bytes"], 1), 2)
        print(f"  {phase}: published {events:,} in {published_s:.1f}s, compared {compared:,}, divergent {result['divergent']}, shed {result['shed']}")
        print(f"  redis memory {rows[-2]['at']} / {rows[0]['at']}: {result['memory_last_vs_first']}x; newest entry: {result['entry_last_vs_first']}x")
        print(f"  SLOWLOG entries over 10 ms: {len(slow)}" + "".join(f"\n    {s['ms']} ms  {s['command']}" for s in slow[:20]), flush=True)
        return result
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--saga-events", type=int, default=2000, help="events of the one saga served in primary (issue: 10000)")
    ap.add_argument("--shadow-events", type=int, default=10_000, help="events shadowed over --sagas sagas (issue: 100000)")
    ap.add_argument("--sagas", type=int, default=1000, help="sagas of the shadow run (issue: 10000)")
    ap.add_argument("--skus", type=int, default=200, help="SKUs in a warehouse's inventory: bounds one saga's state")
    ap.add_argument("--only", choices=("primary", "shadow"), default=None)
    args = ap.parse_args()
    results = {}
    if args.only in (None, "primary"):
        print(f"== primary: {args.saga_events:,} events on one saga, one worker", flush=True)
        results["primary"] = run("primary", args.saga_events, 1, 1, [100 / args.saga_events, 0.1, 0.5, 1.0], args.skus)
    if args.only in (None, "shadow"):
        print(f"== shadow: {args.shadow_events:,} events over {args.sagas:,} sagas, two workers", flush=True)
        results["shadow"] = run("shadow", args.shadow_events, args.sagas, 2, [0.1, 0.5, 1.0], args.skus)
    print(json.dumps({k: {x: y for x, y in v.items() if x != "rows"} for k, v in results.items()}, indent=2, default=str))


if __name__ == "__main__":
    main()
