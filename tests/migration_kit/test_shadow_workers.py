"""Shadow workers as real processes (SIGKILL mid-way, a Redis restart, SIGTERM draining), and the worker's batching."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from migration_kit import Migration
from migration_kit.live.tap import GROUP, ShadowKeys, decode_entry

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import shadow_app  # noqa: E402

from servers import _spawn, _terminate, _wait_ping, free_port  # noqa: E402

KEYS = ShadowKeys("shop")


def start_worker(url: str, name: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "migration_kit", "worker", "--app", "shadow_app:migration", "--store", url,
         "--consumer", name, "--block-ms", "200", "--claim-idle-ms", "1000", *extra],
        cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def counters(r: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in r.hgetall(KEYS.counters).items()}


def wait_for(predicate, timeout: float, what: str, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for p in procs:
            if p.poll() is not None and p.returncode != -signal.SIGKILL:
                raise AssertionError(f"worker exited early ({p.returncode}): {p.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stats_of(out: str) -> dict[str, int]:
    """The counts a worker prints when it stops: ``... stopped: handled 10, recorded 9, ...``."""
    line = [x for x in out.splitlines() if " stopped: " in x][-1]
    return {k: int(v.replace(",", "")) for k, v in (part.rsplit(" ", 1) for part in line.split(" stopped: ")[1].split(", "))}


def stop(proc: subprocess.Popen) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    return proc.returncode, out, err


def tap(url: str, n: int, start: int = 0) -> None:
    m = shadow_app.migration(store=url)
    with m.attach(queue_size=n + 10) as handle:
        for i in range(start, start + n):
            shadow_app.bus.publish(shadow_app.order(i))
        assert handle.flush(30) and handle.sent == n


def done_markers(r: redis.Redis) -> int:
    return sum(1 for _ in r.scan_iter(KEYS.done_pattern, count=1000))


def checkpoint_keys(r: redis.Redis) -> list[bytes]:
    return list(r.scan_iter("lgcp:*", count=1000))


def test_two_workers_one_killed_mid_way_compare_all_1000_events_exactly_once(redis_url):
    r = redis.Redis.from_url(redis_url)
    tap(redis_url, 1000)
    a = start_worker(redis_url, "w-a", "--concurrency", "2")
    b = start_worker(redis_url, "w-b")
    try:
        wait_for(lambda: counters(r).get("compared", 0) >= 250, 60, "250 compared", [a, b])
        a.kill()  # SIGKILL: whatever it had read stays pending, maybe mid-graph
        a.wait(10)
        orphaned = len(r.xpending_range(KEYS.stream, "mk-workers", "-", "+", 1000, consumername="w-a"))
        wait_for(
            lambda: counters(r).get("compared", 0) >= 1000 and r.xpending(KEYS.stream, "mk-workers")["pending"] == 0,
            60, "all 1000 compared and acknowledged", [b],
        )  # fmt: skip
        code, out, err = stop(b)
        assert code == 0, err[-2000:]
        assert stats_of(out)["reclaimed"] >= orphaned  # the dead worker's pending entries were taken over
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    c = counters(r)
    assert (c["compared"], c.get("divergent", 0), c.get("errors", 0)) == (1000, 0, 0)
    assert done_markers(r) == 1000
    assert r.xinfo_groups(KEYS.stream)[0]["lag"] == 0
    assert checkpoint_keys(r) == []  # every compared event's graph thread was dropped, the killed run's too
    # The evidence is recorded with the results: the killed worker's counts neither lost nor doubled.
    m = shadow_app.migration(store=redis_url)
    assert m.status()["compared"] == m.evidence().compared == 1000
    assert m.evidence().latency["candidate"].count == 1000
    m.close()


def test_sigterm_drains_in_flight_work_and_exits_0(redis_url):
    r = redis.Redis.from_url(redis_url)
    tap(redis_url, 200)
    w = start_worker(redis_url, "w-term", "--concurrency", "4")
    try:
        wait_for(lambda: counters(r).get("compared", 0) >= 20, 60, "20 compared", [w])
        code, out, err = stop(w)
    finally:
        if w.poll() is None:
            w.kill()
    assert code == 0, err[-2000:]
    # Everything it read was recorded and acknowledged before it exited: nothing is left pending.
    assert r.xpending(KEYS.stream, "mk-workers")["pending"] == 0
    assert counters(r)["compared"] == done_markers(r) >= 20


@pytest.fixture
def aof_redis():
    """A redis-server with AOF on in its own directory, restartable on the same port."""
    workdir = tempfile.mkdtemp(prefix="redis-aof-")
    port = free_port()
    args = ("--appendonly", "yes", "--appendfsync", "always")

    class Server:
        url = f"redis://127.0.0.1:{port}/0"

        def start(self) -> None:
            self.proc = _spawn(port, workdir, *args)
            _wait_ping(self.proc, port, workdir)

        def stop(self) -> None:
            _terminate(self.proc)  # SIGTERM: redis-server shuts down cleanly

    server = Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_worker_that_outlives_a_redis_restart_continues_where_it_left_off(aof_redis):
    url = aof_redis.url
    tap(url, 400)
    w = start_worker(url, "w-restart")
    try:
        r = redis.Redis.from_url(url)
        wait_for(lambda: counters(r).get("compared", 0) >= 60, 60, "60 compared", [w])
        aof_redis.stop()
        time.sleep(1.0)  # the worker is cut off mid-stream
        assert w.poll() is None
        aof_redis.start()
        r = redis.Redis.from_url(url)
        resumed_at = counters(r)["compared"]
        assert 60 <= resumed_at < 400  # the AOF kept the results so far
        wait_for(lambda: counters(r).get("compared", 0) >= 400, 60, "all 400 compared after the restart", [w])
        wait_for(lambda: r.xpending(KEYS.stream, "mk-workers")["pending"] == 0, 20, "nothing pending", [w])
        code, out, err = stop(w)
        assert code == 0, err[-2000:]
    finally:
        if w.poll() is None:
            w.kill()
    assert counters(r)["compared"] == 400 == done_markers(r)
    stats = stats_of(out)
    assert stats["reconnects"] + stats["retried"] > 0  # it did see the outage, and rode it out


# -- in one process: the batch a worker reads is recorded and acknowledged together ------------------


def test_an_event_twice_in_one_read_batch_is_counted_once_and_both_entries_are_acknowledged(redis_url):
    r = redis.Redis.from_url(redis_url)
    tap(redis_url, 3)
    first = r.xrange(KEYS.stream)[0][1]
    r.xadd(KEYS.stream, first)  # the same event again, in the same batch
    m = shadow_app.migration(store=redis_url)
    w = m.worker(max_events=4, block_ms=100, evidence_every=0.0)
    w.run()
    assert (w.stats.handled, w.stats.recorded, w.stats.duplicates) == (4, 3, 1)
    assert counters(r)["compared"] == 3 == done_markers(r)
    assert r.xpending(KEYS.stream, GROUP)["pending"] == 0
    # The worker leaves the migration as it found it, and no graph thread behind.
    assert not m.candidate_graph.compiled and not m.store.checkpointer_opened
    assert checkpoint_keys(r) == []


def test_a_reclaimed_entry_resumes_its_graph_thread_through_the_worker(redis_url):
    bus, runs = shadow_app.two_step_bus()

    def migration() -> Migration:
        return Migration("resume", legacy=bus, candidate=flow_from_bus(bus), store=redis_url)

    r = redis.Redis.from_url(redis_url)
    keys = ShadowKeys("resume")
    with migration() as m0, m0.attach() as handle:
        bus.publish(Event(type="A", payload={"x": 1}))
        assert handle.flush(10)
        # A worker read the entry and died after the first node: its checkpoint has the second one pending.
        r.xgroup_create(keys.stream, GROUP, id="0")
        [(_, [(eid, fields)])] = r.xreadgroup(GROUP, "dead", {keys.stream: ">"}, count=1)
        event = decode_entry(fields[b"d"], eid.decode()).event
        config = {"configurable": {"thread_id": f"resume:{event.id}"}}
        m0.graph.invoke({"event": event}, config, interrupt_before=["second"])
        assert m0.graph.get_state(config).next == ("second",)
    runs.clear()
    m = migration()
    w = m.worker(max_events=1, block_ms=100, claim_idle_ms=1, evidence_every=0.0)
    w.run()
    assert runs == ["second"]  # resumed from the checkpoint: the first node did not run again
    assert (w.stats.reclaimed, w.stats.recorded, w.stats.divergent) == (1, 1, 0)
    assert r.xpending(keys.stream, GROUP)["pending"] == 0
    assert checkpoint_keys(r) == []
