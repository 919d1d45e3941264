"""What shadow workers leave in Redis is bounded: recorded entries leave the stream, markers expire, idle consumers go."""

from __future__ import annotations

import sys
from pathlib import Path

import redis

from migration_kit.live import worker as worker_module
from migration_kit.live.tap import GROUP, ShadowKeys

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import shadow_app  # noqa: E402

KEYS = ShadowKeys("shop")


def tap(url: str, n: int) -> None:
    m = shadow_app.migration(store=url)
    with m.attach(queue_size=n + 10) as handle:
        for i in range(n):
            shadow_app.bus.publish(shadow_app.order(i))
        assert handle.flush(30) and handle.sent == n


def test_entries_stay_for_record_unless_the_worker_trims(redis_url):
    r = redis.Redis.from_url(redis_url)
    tap(redis_url, 4)
    shadow_app.migration(store=redis_url).worker(max_events=4, block_ms=100, evidence_every=0.0).run()
    assert r.xlen(KEYS.stream) == 4 and r.xpending(KEYS.stream, GROUP)["pending"] == 0


def test_with_trim_recorded_entries_leave_the_stream_and_their_done_markers_expire_within_an_hour(redis_url):
    r = redis.Redis.from_url(redis_url)
    tap(redis_url, 12)
    assert r.xlen(KEYS.stream) == 12
    w = shadow_app.migration(store=redis_url).worker(max_events=12, block_ms=100, evidence_every=0.0, trim=True)
    w.run()
    assert (w.stats.recorded, r.hget(KEYS.counters, "compared")) == (12, b"12")
    assert r.xlen(KEYS.stream) == 0 and r.xpending(KEYS.stream, GROUP)["pending"] == 0
    markers = list(r.scan_iter(KEYS.done_pattern, count=1000))
    assert len(markers) == 12 and all(0 < r.ttl(k) <= worker_module.DONE_TTL <= 3600 for k in markers)
    # the report still has every count and group: deleting entries takes nothing recorded
    status = shadow_app.migration(store=redis_url).shadow_status()
    assert status["compared"] == 12


def test_a_redelivered_entry_still_counts_once_after_its_twin_was_recorded_and_deleted(redis_url):
    r = redis.Redis.from_url(redis_url)
    tap(redis_url, 3)
    first = r.xrange(KEYS.stream)[0][1]
    w = shadow_app.migration(store=redis_url).worker(max_events=3, block_ms=100, evidence_every=0.0, trim=True)
    w.run()
    r.xadd(KEYS.stream, first)  # the same event delivered again (a reclaim racing its first reader)
    again = shadow_app.migration(store=redis_url).worker(max_events=1, block_ms=100, evidence_every=0.0, trim=True)
    again.run()
    assert (again.stats.duplicates, r.hget(KEYS.counters, "compared")) == (1, b"3")
    assert r.xlen(KEYS.stream) == 0


def test_a_starting_worker_removes_idle_consumers_with_nothing_pending_and_keeps_the_others(redis_url, monkeypatch):
    r = redis.Redis.from_url(redis_url)
    tap(redis_url, 2)
    r.xgroup_create(KEYS.stream, GROUP, id="0")
    r.xreadgroup(GROUP, "busy-1", {KEYS.stream: ">"}, count=1)  # holds one entry, pending
    r.xgroup_createconsumer(KEYS.stream, GROUP, "gone-1")  # restarted long ago, nothing pending
    monkeypatch.setattr(worker_module, "IDLE_CONSUMER_MS", 0)  # "long ago": any idle time
    w = shadow_app.migration(store=redis_url).worker(consumer="new-1", max_events=1, block_ms=100, evidence_every=0.0)
    w.run()
    names = {c["name"].decode() if isinstance(c["name"], bytes) else c["name"] for c in r.xinfo_consumers(KEYS.stream, GROUP)}
    assert "gone-1" not in names and "busy-1" in names
