"""Shadow workers: compare live traffic from the Redis Stream, exactly once per event.

A worker is one consumer of the group ``mk-workers`` on the migration's
shadow stream (key scheme in ``migration_kit.live.tap``). For each entry it
runs the candidate sandboxed, its effect calls answered with the responses
the live legacy path recorded and its saga state seeded with the state from
before the event (the legacy side effects are never run again), and compares
it with the recorded legacy outcome. The results of one read batch are recorded
and the batch's entries acknowledged in one Lua script: per event a ``SET NX``
on its done marker decides whether the counters move, so an entry delivered
twice (a worker died after comparing, a reclaim raced a slow worker, the same
event twice in one batch) is counted once.

Hot path: when the candidate would use the store's Redis checkpointer, the
worker runs it on ``_BatchingSaver``: the checkpoints LangGraph writes under
``durability="async"`` go out pipelined on one ordered connection (acknowledged
before the run returns), and dropping a finished event's thread is queued
behind them; the queue is flushed before a batch is recorded, so an
acknowledged entry leaves no thread behind. The run of an entry delivered for
the first time skips LangGraph's opening checkpoint lookup (it has none).

Crashes: entries a dead worker had read stay pending in the group; every
worker reclaims entries idle for longer than ``claim_idle_ms`` with
``XAUTOCLAIM`` and processes them. The candidate's graph thread for an event
is ``<migration>:<event id>`` in the store's checkpointer, so a reclaimed
event whose run was cut off mid-graph resumes from its last checkpoint (a
kill loses at most the writes still queued, milliseconds' worth: the run
resumes from the last checkpoint that reached Redis, or runs whole). A batch
cut off before it was recorded is compared again by whoever reclaims it.

Outages: when Redis goes away the worker keeps what it computed, backs off,
reconnects, and carries on where it left off (the group's position and the
pending entries are Redis's own state; with AOF on they survive a restart).
A comparison that failed because the store was unreachable is retried, not
counted as a candidate error.

Evidence (counts and latency sketches per path and node) accumulates per
worker and is saved as the evidence source ``shadow:<consumer>`` every
``evidence_every`` seconds and when the worker stops; after each save the
policy is evaluated over all sources, and a ``rollback`` decision flips the
phase at once, recorded as ``automatic`` with its reasons.

SIGTERM (``Worker.stop``) stops reading, finishes and records what is in
flight, saves the evidence and returns.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from checkpoints import RedisSaver
from migration_errors import ConfigurationError, StoreUnavailable
from redis_connect.connection import connect, missing_group

from migration_kit.decide.evidence import Evidence
from migration_kit.observe.faults import Faults
from migration_kit.report.report import signature
from migration_kit.live.tap import FIELD, GROUP, BadShadowEntry, ShadowKeys, Tapped, decode_entry

if TYPE_CHECKING:
    from migration_kit.compare.comparator import Comparison
    from migration_kit.compare.noise import NoiseBook
    from migration_kit.decide.decision import Decision
    from migration_kit.decide.evidence import EvidenceStore
    from migration_kit.decide.phases import PhaseControl
    from migration_kit.decide.policy import Policy
    from migration_kit.observe.redaction import Redactor
    from migration_kit.run.candidate import CandidateGraph
    from migration_kit.run.executor import Executor
    from migration_kit.store import Store

__all__ = ["Worker", "WorkerStats"]

log = logging.getLogger(__name__)

# Seconds a done marker is kept. It only has to outlive two consumers holding one entry at once
# (a reclaimed entry still being compared by its first reader): a recorded entry is acknowledged
# (and deleted) in the same step, so it is never delivered again. An hour, not a week, so a month
# of traffic keeps one hour of markers.
DONE_TTL = 3600
# A consumer of the group with nothing pending and idle this long (ms) is removed when a worker
# starts: restarted workers named <host>-<pid> would otherwise pile up in the group.
IDLE_CONSUMER_MS = 3600 * 1000
MAX_GROUPS = 1000
STOP_GRACE = 30.0  # seconds a stopping worker keeps trying to record what it computed while Redis is away
MAX_DEAD = 1000
FLUSH_TIMEOUT = 10.0  # seconds to wait for queued checkpoint writes before recording a batch

# Record the compared events of one read batch, each once, with the worker's evidence,
# and acknowledge them, atomically. First every done marker is looked at (an event
# twice in the batch counts at its first place): when that is not what the worker
# assumed when it computed the evidence (ARGV[7], one 0/1 per event), nothing is
# written and the actual flags come back (as {-1, flags...}) for the worker to
# recompute and call again. Otherwise a SET NX per first-time event moves the
# counters and the divergence groups, the worker's evidence (ARGV[6], when not
# empty) replaces its field ARGV[5] of the evidence hash, and one XACK takes every
# entry of the batch: a worker killed at any point has recorded a batch's counts,
# groups and evidence all, or none.
# KEYS: counters, groups, examples, stream, evidence hash, then one done marker per event
# ARGV: consumer, ttl, group, max groups, evidence field, evidence JSON, expected flags,
#       then per event (in KEYS order): entry id, divergent, errored, n, then n (signature, example) pairs
# Returns one 1 (first time) or 0 (already counted) per event.
_RECORD = """
local ttl, cap = tonumber(ARGV[2]), tonumber(ARGV[4])
local flags, seen = {}, {}
local mismatch = false
for k = 6, #KEYS do
  local first = 0
  if not seen[KEYS[k]] and redis.call('EXISTS', KEYS[k]) == 0 then first = 1 end
  seen[KEYS[k]] = true
  flags[#flags + 1] = first
  if tostring(first) ~= string.sub(ARGV[7], k - 5, k - 5) then mismatch = true end
end
if mismatch then
  local out = {-1}
  for i = 1, #flags do out[#out + 1] = flags[i] end
  return out
end
local compared, divergent, errors = 0, 0, 0
local out, ids = {}, {}
local a = 8
for k = 6, #KEYS do
  local n = tonumber(ARGV[a + 3])
  ids[#ids + 1] = ARGV[a]
  if flags[k - 5] == 1 then
    redis.call('SET', KEYS[k], ARGV[1], 'EX', ttl)
    compared = compared + 1
    if ARGV[a + 1] == '1' then divergent = divergent + 1 end
    if ARGV[a + 2] == '1' then errors = errors + 1 end
    for i = a + 4, a + 3 + 2 * n, 2 do
      if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 or redis.call('HLEN', KEYS[2]) < cap then
        redis.call('HINCRBY', KEYS[2], ARGV[i], 1)
        redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[i + 1])
      end
    end
  end
  out[#out + 1] = flags[k - 5]
  a = a + 4 + 2 * n
end
if compared > 0 then redis.call('HINCRBY', KEYS[1], 'compared', compared) end
if divergent > 0 then redis.call('HINCRBY', KEYS[1], 'divergent', divergent) end
if errors > 0 then redis.call('HINCRBY', KEYS[1], 'errors', errors) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[5], ARGV[5], ARGV[6]) end
if #ids > 0 then redis.call('XACK', KEYS[4], ARGV[3], unpack(ids)) end
return out
"""
RECORD_CHUNK = 200  # events per record call (well under Lua's unpack limit)

# Dead-letter one malformed entry once. KEYS: mark, counters, dead list, stream
# ARGV: ttl, entry id, group, record (JSON), max list length
_DEAD = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  redis.call('HINCRBY', KEYS[2], 'dead', 1)
  redis.call('RPUSH', KEYS[3], ARGV[4])
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1)
end
redis.call('XACK', KEYS[4], ARGV[3], ARGV[2])
return 1
"""

# Failures of the store, not of the candidate: the entry is retried, not counted.
_INFRA_ERRORS = (
    "redis.exceptions.ConnectionError",
    "redis.exceptions.TimeoutError",
    "redis.exceptions.BusyLoadingError",
    "redis.exceptions.ClusterDownError",
    "migration_errors.StoreUnavailable",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "BrokenPipeError",
)


_COMPARING: ContextVar[bool] = ContextVar("mk_worker_comparing", default=False)
# The graph thread of an entry delivered for the first time, while its comparison runs: its run's
# opening checkpoint lookup is answered "none" without a round trip (once; a list, so copies of the
# context share it).
_FIRST_RUN: ContextVar[list[str] | None] = ContextVar("mk_worker_first_run", default=None)


class _BatchingSaver(RedisSaver):
    """The store's Redis checkpointer as a shadow worker runs the candidate: written behind.

    Under LangGraph's ``durability="async"`` (its default) every checkpoint
    and pending write of a run goes out pipelined on one ordered connection
    (``RedisSaver``'s own behaviour under that durability), instead of each
    ``put`` waiting for Redis in a pool thread. ``delete_thread`` (the migration dropping a
    finished event's thread) is queued behind that thread's writes instead of
    flushing the queue and waiting for its own round trip.

    The worker flushes the writer before it records a batch, so when an entry
    is acknowledged its thread's checkpoints are gone from Redis. A worker
    killed mid-run loses at most what was still queued (milliseconds of
    writes): the reclaimed event resumes from the last checkpoint that reached
    Redis, or runs whole when none did. Reads of a thread (a resume's
    ``get_state``) wait for that thread's queued writes first. Deletes are
    deferred only inside the worker's own comparisons (``_COMPARING``);
    anything else in the process (a saga handover) deletes as ``RedisSaver`` does.
    """

    def get_tuple(self, config: Any) -> Any:
        first = _FIRST_RUN.get()
        if first:
            conf = config.get("configurable") or {}
            if conf.get("thread_id") == first[0] and not conf.get("checkpoint_id") and not conf.get("checkpoint_ns"):
                first.clear()
                return None
        return super().get_tuple(config)

    def delete_thread(self, thread_id: str) -> None:
        if not _COMPARING.get():  # not one of the worker's own comparisons: as RedisSaver does
            super().delete_thread(thread_id)
            return
        self._queue_delete_thread(thread_id)


class _Retry(Exception):
    """The store was unreachable while handling an entry: try it again later."""


@dataclass
class WorkerStats:
    """What one worker did: entries handled, newly recorded, duplicates, dead letters, retries."""

    handled: int = 0
    recorded: int = 0
    duplicates: int = 0
    divergent: int = 0
    errors: int = 0
    dead: int = 0
    reclaimed: int = 0
    retried: int = 0
    reconnects: int = 0

    def to_dict(self) -> dict[str, int]:
        """The counts as JSON-ready data."""
        return dict(self.__dict__)


def default_consumer() -> str:
    """A consumer name unique to this process: ``<host>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    """One shadow worker process's loop (``migration-kit worker``; ``Migration.worker()`` builds one).

    Args:
        name: the migration's name (the stream's keys).
        store: the migration's store: it holds the candidate's checkpoints and the evidence.
        executor: compares each entry (``Executor.compare_recorded``).
        candidate: the candidate graph (run on a written-behind saver when it uses the store's).
        noise: learned noise (loaded once, before the comparing threads share it).
        phases: the phase (evidence belongs to its attempt; a rollback decision acts on it).
        evidence: where the worker's evidence is saved, and all sources' read for the policy.
        policy: decides over the stored evidence after each save.
        redactor: masks the divergence groups and examples stored in Redis.
        url: the Redis with the shadow stream (default: the migration's store).
        consumer: this worker's name in the group (default ``<host>-<pid>``).
        concurrency: entries compared at once (threads).
        block_ms: how long one ``XREADGROUP`` waits for new entries.
        claim_idle_ms: entries pending longer than this are reclaimed from
            their (presumably dead) consumer.
        max_events: stop after handling this many entries (for tests).
        evidence_every: seconds between saves of the evidence (and policy looks).
    """

    def __init__(
        self,
        name: str,
        *,
        store: Store,
        executor: Executor,
        candidate: CandidateGraph,
        noise: NoiseBook,
        phases: PhaseControl,
        evidence: EvidenceStore,
        policy: Policy,
        redactor: Redactor,
        faults: Faults | None = None,
        url: str | None = None,
        consumer: str | None = None,
        concurrency: int = 1,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        max_events: int | None = None,
        evidence_every: float = 2.0,
        batch: int | None = None,
        trim: bool = False,
    ) -> None:
        self.name = name
        self.store = store
        self.executor = executor
        self.candidate = candidate
        self.noise = noise
        self.phases = phases
        self.evidence = evidence
        self.policy = policy
        self.redactor = redactor
        self.faults = faults if faults is not None else Faults(redactor=redactor)  # every failure swallowed here
        # Deleting recorded entries keeps the stream to what is still to compare, but takes them
        # from `migration-kit record` too; off by default (the stream's MAXLEN bounds it anyway).
        self.trim = trim
        self.url = url or store.url
        if store.scheme not in ("redis", "rediss") and url is None:
            raise ConfigurationError(
                f"a shadow worker reads a Redis Stream: the store of {name!r} is {store.display_url}; pass --store redis://..."
            )
        self.keys = ShadowKeys(name)
        self.consumer = consumer or default_consumer()
        self.concurrency = max(1, concurrency)
        self.block_ms = max(1, block_ms)
        self.claim_idle_ms = max(1, claim_idle_ms)
        self.max_events = max_events
        self.evidence_every = evidence_every
        self.batch = batch or max(10, 4 * self.concurrency)
        self.stats = WorkerStats()
        self.last_decision: Any = None
        self._stop = threading.Event()
        self._client: Any = None
        self._record: Any = None
        self._dead: Any = None
        self._retry: deque[tuple[bytes, dict[bytes, bytes]]] = deque()
        self._lock = threading.Lock()
        self._evidence = Evidence()
        self._attempt: int | None = None
        self._unsaved = 0
        self._evidence_suspect = False
        self._saved_at = time.monotonic()
        self._claim_cursor = "0-0"
        self._fresh: set[bytes] = set()
        self._claimed_at = 0.0
        self._saver: _BatchingSaver | None = None

    def __repr__(self) -> str:
        return f"<Worker {self.consumer!r} of {self.name!r} handled={self.stats.handled}>"

    # -- control ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading new entries; what is in flight is finished and recorded (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether ``stop()`` was asked for."""
        return self._stop.is_set()

    # -- Redis -----------------------------------------------------------------------------

    def _connect(self) -> None:
        self._client = connect(self.url, socket_timeout=self.block_ms / 1000 + 10.0, socket_connect_timeout=5.0)
        self._record = self._client.register_script(_RECORD)
        self._dead = self._client.register_script(_DEAD)

    def _ensure_group(self) -> None:
        try:
            self._client.xgroup_create(self.keys.stream, GROUP, id="0", mkstream=True)
        except Exception as exc:  # noqa: BLE001
            if "BUSYGROUP" not in str(exc):
                raise
        self._forget_idle_consumers()

    def _forget_idle_consumers(self) -> None:
        """Remove consumers with nothing pending, idle over IDLE_CONSUMER_MS (nothing of theirs is lost)."""
        try:
            for c in self._client.xinfo_consumers(self.keys.stream, GROUP):
                name = c.get("name")
                name = name.decode() if isinstance(name, bytes) else str(name)
                if name != self.consumer and int(c.get("pending", 0)) == 0 and int(c.get("idle", 0)) > IDLE_CONSUMER_MS:
                    self._client.xgroup_delconsumer(self.keys.stream, GROUP, name)
        except Exception as exc:  # noqa: BLE001 - swallowed: tidying; the next start tries again
            self.faults.raised("worker.tidy_consumers", exc)

    def _unreachable(self, exc: BaseException) -> bool:
        from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError  # noqa: A004

        return isinstance(exc, (ConnectionError, TimeoutError, BusyLoadingError, StoreUnavailable, OSError))

    def _with_redis(self, fn: Any, *args: Any, persist: bool = False) -> Any:
        """Run ``fn`` against Redis, waiting out outages (with backoff).

        Gives up (None) when the worker is stopping, unless ``persist``: a
        computed result is recorded however long the outage lasts.
        """
        backoff = 0.05
        gave_up_at = None
        while True:
            try:
                if self._client is None:
                    self._connect()
                    self._ensure_group()
                return fn(*args)
            except Exception as exc:
                if missing_group(exc):  # the stream was lost (a restart without persistence): start over
                    self._ensure_group()
                    continue
                if not self._unreachable(exc):
                    raise
                self.stats.reconnects += 1
                log.warning("shadow worker %s: Redis unavailable (%s); retrying in %.2fs", self.consumer, exc, backoff)
                if self._stop.is_set():
                    # Stopping: a result not recorded within STOP_GRACE stays pending; another
                    # worker reclaims it, and its done marker keeps it counted once.
                    gave_up_at = gave_up_at or time.monotonic() + (STOP_GRACE if persist else 0.0)
                    if time.monotonic() >= gave_up_at:
                        return None
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> WorkerStats:
        """Consume until stopped (or ``max_events`` handled); returns the stats."""
        self._saver = self._install_saver()
        try:
            return self._run()
        finally:
            self._uninstall_saver()

    def _run(self) -> WorkerStats:
        _ = self.candidate.graph, self.noise.model  # compile and load once, before threads share them
        self._with_redis(lambda: None)
        self._load_evidence()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="mk-worker") if self.concurrency > 1 else None
        try:
            # Entries this consumer read before it restarted come first.
            own = self._with_redis(self._read, "0")
            if own:
                self._process(own, pool)
            while not self._stop.is_set() and not self._enough():
                entries: list[tuple[bytes, dict[bytes, bytes]]] = []
                if self._retry:
                    entries = [self._retry.popleft() for _ in range(min(len(self._retry), self.batch))]
                    self.stats.retried += len(entries)
                elif time.monotonic() - self._claimed_at >= min(self.claim_idle_ms / 1000, 5.0):
                    entries = self._with_redis(self._claim) or []
                if not entries:
                    fresh = self._with_redis(self._read, ">") or []
                    self._fresh.update(eid for eid, _ in fresh)  # first delivery: no checkpoint to resume
                    entries = fresh
                if entries:
                    self._process(entries, pool)
                self._maybe_save()
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            self._save(force=True)
            if self._client is not None:
                self._client.close()
        return self.stats

    def _install_saver(self) -> _BatchingSaver | None:
        """Run the candidate on a written-behind Redis saver when it would use the store's.

        Only when the store is Redis, the candidate has no checkpointer of its
        own and nothing has opened the store's checkpointer or compiled the
        graph yet; ``run`` puts things back as they were when it returns.
        """
        store = self.store
        if store.scheme not in ("redis", "rediss") or self.candidate.compiled or store.checkpointer_opened:
            return None
        if self.candidate.own_checkpointer:
            return None
        saver = _BatchingSaver.from_url(store.url)
        if not store.install_checkpointer(saver):
            saver.close()
            return None
        return saver

    def _uninstall_saver(self) -> None:
        saver, self._saver = self._saver, None
        if saver is None:
            return
        if self.store.uninstall_checkpointer(saver):
            self.candidate.reset()
        try:
            saver.close()  # flushes what is queued
        except Exception as exc:  # noqa: BLE001 - swallowed: the results are recorded; only cleanup is at stake
            self.faults.raised("worker.close_checkpointer", exc)

    def _settle_checkpoints(self) -> None:
        """Wait for the queued checkpoint writes and deletes of the runs just finished."""
        if self._saver is None:
            return
        try:
            self._saver.flush(FLUSH_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - swallowed: the comparisons stand; at worst a finished thread is left behind
            self.faults.raised("worker.flush_checkpoints", exc)

    def _enough(self) -> bool:
        return self.max_events is not None and self.stats.handled >= self.max_events

    def _read(self, start: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
        count = self.batch
        if self.max_events is not None:
            count = max(1, min(count, self.max_events - self.stats.handled))
        block = None if start == "0" else self.block_ms
        reply = self._client.xreadgroup(GROUP, self.consumer, {self.keys.stream: start}, count=count, block=block)
        if not reply:
            return []
        _, entries = reply[0] if isinstance(reply, list) else next(iter(reply.items()))
        return [(eid, fields) for eid, fields in entries if fields is not None]

    def _claim(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        self._claimed_at = time.monotonic()
        reply = self._client.xautoclaim(
            self.keys.stream, GROUP, self.consumer, self.claim_idle_ms, start_id=self._claim_cursor, count=self.batch
        )
        cursor, entries = reply[0], reply[1]
        self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        found = [(eid, fields) for eid, fields in entries if fields is not None]
        self.stats.reclaimed += len(found)
        if found:
            log.info("shadow worker %s: reclaimed %d idle entries", self.consumer, len(found))
        return found

    def _process(self, entries: list[tuple[bytes, dict[bytes, bytes]]], pool: ThreadPoolExecutor | None) -> None:
        """Compare a read batch, then record and acknowledge all of it in one round trip."""
        if pool is None:
            results = [self._compute(entry) for entry in entries]
        else:
            results = list(pool.map(self._compute, entries))
        done = [r for r in results if r is not None]
        if not done:
            return
        self._settle_checkpoints()
        firsts = self._with_redis(self._record_batch, done, persist=True)
        with self._lock:
            self.stats.handled += len(done)
            if firsts is None:  # stopping during an outage: the entries stay pending for another worker
                return
            for (_, _, comparison), first in zip(done, firsts):
                if first:
                    self.stats.recorded += 1
                    self.stats.divergent += comparison.divergent
                    self.stats.errors += comparison.errored
                    self._add_evidence(comparison)
                else:
                    self.stats.duplicates += 1

    # -- one entry -----------------------------------------------------------------------------

    def _compute(self, entry: tuple[bytes, dict[bytes, bytes]]) -> tuple[str, Tapped, Comparison] | None:
        """Compare one entry; None when it was dead-lettered or is to be retried (nothing to record)."""
        eid_raw, fields = entry
        eid = eid_raw.decode() if isinstance(eid_raw, bytes) else str(eid_raw)
        try:
            tapped = decode_entry(fields.get(FIELD), eid)
        except BadShadowEntry as exc:
            log.warning("shadow worker %s: dead-lettered %s", self.consumer, exc)
            self._with_redis(self._dead_letter, eid, str(exc), persist=True)
            with self._lock:
                self.stats.handled += 1
                self.stats.dead += 1
            return None
        with self._lock:
            fresh = eid_raw in self._fresh
            self._fresh.discard(eid_raw)
        token = _COMPARING.set(True)
        # The thread name is the one the executor gives the event's run.
        first = _FIRST_RUN.set([self.executor.thread_for(tapped.event)] if fresh else None)
        try:
            comparison = self._compare(tapped, resume=not fresh)
        except _Retry:
            with self._lock:
                self._retry.append(entry)
            time.sleep(0.2)  # the store is down: give it a moment before the retry
            return None
        finally:
            _FIRST_RUN.reset(first)
            _COMPARING.reset(token)
        return eid, tapped, comparison

    def _compare(self, tapped: Tapped, *, resume: bool = True) -> Comparison:
        comparison = self.executor.compare_recorded(
            tapped.event, tapped.legacy, tapped.state_before, traceparent=tapped.traceparent, resume=resume,
            candidate=tapped.candidate,
        )
        cand = comparison.candidate
        if cand.crashed and cand.errors and cand.errors[0].type in _INFRA_ERRORS:
            raise _Retry(cand.errors[0].message)
        return comparison

    def _record_batch(self, done: list[tuple[str, Tapped, Comparison]]) -> list[bool]:
        """Record compared events once each, with the evidence, and acknowledge their entries (one script call per chunk)."""
        k = self.keys
        if self._evidence_suspect and self.atomic_evidence:
            self._reload_evidence()
        firsts: list[bool] = []
        for at in range(0, len(done), RECORD_CHUNK):
            chunk = done[at : at + RECORD_CHUNK]
            keys: list[str] = [k.counters, k.groups, k.examples, k.stream, k.evidence]
            per_event: list[Any] = []
            for eid, tapped, comparison in chunk:
                keys.append(k.done(tapped.event.id))
                groups = self._record_result(tapped, comparison)
                per_event += [eid, int(comparison.divergent), int(comparison.errored), len(groups) // 2, *groups]
            ids = [tapped.event.id for _, tapped, _ in chunk]
            flags = [int(tapped.event.id not in ids[:i]) for i, (_, tapped, _) in enumerate(chunk)]  # first guess: all new
            for _ in range(len(chunk) + 2):
                evidence, doc = self._evidence_with(chunk, flags)
                head = [self.consumer, DONE_TTL, GROUP, MAX_GROUPS, self.source, doc, "".join(map(str, flags))]
                try:
                    reply = [int(x) for x in self._record(keys=keys, args=head + per_event)]
                except BaseException:
                    self._evidence_suspect = True  # it may have run: reload what was recorded before retrying
                    raise
                if reply and reply[0] == -1:  # some were recorded meanwhile: recompute with what is so
                    flags = reply[1:]
                    continue
                if evidence is not None:
                    with self._lock:
                        self._evidence = evidence
                firsts += [bool(x) for x in reply]
                if self.trim:
                    self._trim([eid for eid, _, _ in chunk])
                break
            else:
                raise StoreUnavailable(f"shadow worker {self.consumer}: the done markers kept changing while recording a batch")
        return firsts

    def _trim(self, ids: list[str]) -> None:
        """Delete recorded (acknowledged) entries from the stream, so it holds what is still to compare."""
        try:
            self._client.xdel(self.keys.stream, *ids)
        except Exception as exc:  # noqa: BLE001 - swallowed: the entry stays, within the stream's MAXLEN
            self.faults.raised("worker.trim", exc)

    def _evidence_with(self, chunk: list[tuple[str, Tapped, Comparison]], flags: list[int]) -> tuple[Evidence | None, str]:
        """The worker's evidence with the first-time events of ``chunk`` added, and its stored JSON ("" when not atomic)."""
        if not self.atomic_evidence:
            return None, ""
        with self._lock:
            evidence = self._evidence.copy()
            attempt = self._attempt
        for (_, _, comparison), first in zip(chunk, flags, strict=True):
            if first:
                evidence.add(comparison)
        return evidence, json.dumps({"attempt": attempt, "evidence": evidence.to_dict()}, separators=(",", ":"))

    def _record_result(self, tapped: Tapped, comparison: Comparison) -> list[str]:
        """The divergence groups of one comparison: (signature, example) JSON pairs, flattened, masked.

        They are stored in Redis, so paths and both values go through the
        migration's redactor (``migration_kit.observe.redaction``).
        """
        args: list[str] = []
        if not comparison.differences:
            return args
        red = self.redactor
        secrets = tuple(red.comparison_secrets(comparison))
        seen: set[tuple[str, str, str]] = set()
        for diff in comparison.differences:
            sig = signature(comparison.first_divergent_node, diff, red)
            if sig in seen:
                continue
            seen.add(sig)
            example = {"event": tapped.event.id, "event_type": tapped.event.type, **red.difference(diff, secrets).to_dict()}
            args += [json.dumps(list(sig)), json.dumps(example, default=str)]
        return args

    def _dead_letter(self, eid: str, error: str) -> None:
        k = self.keys
        record = json.dumps({"id": eid, "error": error, "consumer": self.consumer, "at": time.time()})
        self._dead(keys=[f"{k.tag}:deadmark:{eid}", k.counters, k.dead, k.stream], args=[DONE_TTL, eid, GROUP, record, MAX_DEAD])

    # -- evidence and the policy -------------------------------------------------------------

    @property
    def source(self) -> str:
        """What this worker's evidence and reports name as their source."""
        return f"shadow:{self.consumer}"

    @property
    def atomic_evidence(self) -> bool:
        """True when the evidence is recorded with the results (the stream is on the store's Redis)."""
        return self.store.scheme in ("redis", "rediss") and self.url == self.store.url

    def decide(self) -> Decision:
        """The policy's decision over every source's stored evidence, in the phase now (``Migration.decide``)."""
        now = self.phases.read()[0]
        return self.policy.evaluate(self.evidence.stored(now.attempt), phase=now.phase, percent=now.percent)

    def _reload_evidence(self) -> None:
        """This worker's evidence as last recorded (after a record call whose reply was lost)."""
        raw = self._client.hget(self.keys.evidence, self.source)
        doc = json.loads(raw) if raw else None
        with self._lock:
            if doc and doc.get("attempt") == self._attempt:
                self._evidence = Evidence.from_dict(doc.get("evidence"))
            else:
                self._evidence = Evidence()
            self._evidence_suspect = False

    def _load_evidence(self) -> None:
        state = self.phases.read()[0]
        self._attempt = state.attempt
        if self.atomic_evidence:  # a restarted worker with the same name continues its own evidence
            self._with_redis(self._reload_evidence)
            return
        mine = self.evidence.of(self.source, state.attempt)
        if mine is not None:  # a restarted worker with the same name continues its own evidence
            self._evidence = mine

    def _add_evidence(self, comparison: Comparison) -> None:
        if not self.atomic_evidence:  # atomic: already added, and recorded with the batch
            self._evidence.add(comparison)
        self._unsaved += 1

    def _maybe_save(self) -> None:
        if self._unsaved and time.monotonic() - self._saved_at >= self.evidence_every:
            self._save()

    def _save(self, force: bool = False) -> None:
        if not self._unsaved and not force:
            return
        try:
            state = self.phases.read()[0]
            with self._lock:
                if state.attempt != self._attempt:  # a new attempt: its evidence starts afresh
                    self._evidence, self._attempt = Evidence(), state.attempt
                snapshot = self._evidence.copy()
                self._unsaved = 0
            if snapshot.compared and not self.atomic_evidence:
                self.evidence.save(self.source, snapshot, state.attempt)
            self._saved_at = time.monotonic()
            decision = self.decide()
            self.last_decision = decision
            if decision.action == "rollback":
                log.warning("shadow worker %s: the policy rolls back: %s", self.consumer, "; ".join(decision.reasons))
            self.phases.act_on(decision, state)
        except Exception as exc:  # noqa: BLE001 - evidence is retried at the next save
            self._saved_at = time.monotonic()
            self._unsaved += 1
            self.faults.raised("worker.save_evidence", exc)
