"""Replay across processes and machines: one log, partitioned by saga, leased to workers.

``Migration.replay(path, workers=N)`` (``migration-kit replay LOG --workers N``)
is the coordinator. It reads the log once (validating every line as a local
replay would, counting each partition's events and noting where its last one
ends), writes a *job*, forks N worker processes and merges their results;
``migration-kit worker --replay`` processes on other machines join the same
job through a Redis store. Each worker must reach the log at the same path
(a shared volume) or be given its own copy with ``--log`` (its size and
SHA-256 are checked against the job's).

How the work is divided: ``partitions`` (64) partitions, ``hash(saga) mod P``
(``migration_kit.run.partition``). A worker claims up to ``batch`` free partitions
by writing their *lease* (owner, expiry; renewed every ``ttl/3`` by a heartbeat
thread and at each save, with the partition's progress), then reads the log once from the earliest saved point of
its batch to the last event of any of them, running only its partitions'
events, in log order. Every ``checkpoint_every`` events of a partition it saves
the partition's whole point in one record: byte offset, line, place in the log,
the tally (counts, groups, examples, evidence with latency sketches), flags of
its divergent and errored events, both paths' saga states (sealed), the noise
it learned; its last save marks it ``done``. Delivery is at least once and
results count exactly once: a save *replaces* the partition's record (with a
compare-and-set on its version), so events after the last save that a dead
worker had compared are compared again by whoever reclaims the expired lease
and counted once. A reclaim first bumps the record's version, so a worker that
was only paused cannot write over it afterwards (its next save fails and it
drops the partition).

The coordinator merges the partitions' records in partition order
(``partition.merge_tallies``): the report is the one a single process gives.
What it cannot be: measured latencies (each run measures its own; the policy
monitor sees the counts at a single process's looks and the merged sketches at
the end), and saga-state eviction, which is per partition (a replay of more
than ``saga_capacity`` open sagas evicts less than one process would).

Stores: Redis (``redis://``) for workers on several machines; a SQLite store
(the CLI's default) for workers on one machine; with ``memory://`` the
coordination lives in a temporary SQLite file and only forked workers join.

Records (``Store.records`` of the coordination store), for a job ``J``:

* ``dreplay:active``            {job, path}: the job ``worker --replay`` joins
* ``dreplay:log:<sha1 of path>`` {job}: the latest job of that log (resume finds it)
* ``dreplay:job:J``             the job: log path, size, sha256, partitions, ends, sizes, lease ttl, batch,
                                events, skipped lines, the noise model at the start, status
* ``dreplay:lease:J:<p>``       {owner, expires, events, divergent, done}: partition p's lease and progress
* ``dreplay:part:J:<p>``        partition p's saved point (above), owner and claims
Leases and partition records are deleted when the report is made; the job record stays (small).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any, Callable

from legacy_bus import BoundedStateStore, EventLog, SkippedLine
from migration_errors import BadEventLog, ConfigurationError, MigrationKitError

from migration_kit.run.partition import TrackedNoise, flag_of, merge_tallies, observation_of, partition_of, sampled
from migration_kit.report.report import ReplayTally
from migration_kit.run.resume import ReplayInterrupted, progress_key
from migration_kit.store import Records, Store, VersionConflict
from migration_kit.types import PartitionReplayer

__all__ = ["DistributedReplay", "ReplayWorker", "join_replay", "last_job", "replay_status", "unfinished_job"]

PARTITIONS = 64
LEASE_TTL = 30.0
ACTIVE = "dreplay:active"


def _job_key(job: str) -> str:
    return f"dreplay:job:{job}"


def _lease_key(job: str, p: int) -> str:
    return f"dreplay:lease:{job}:{p}"


def _part_key(job: str, p: int) -> str:
    return f"dreplay:part:{job}:{p}"


def _log_key(path: str | Path) -> str:
    return "dreplay:log:" + hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()


def _file_digest(path: str | Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def unfinished_job(records: Records, path: str | Path) -> dict[str, Any] | None:
    """The job of the distributed replay of ``path`` that has not finished, if any."""
    pointer, _ = records.get(_log_key(path))
    if not pointer:
        return None
    job, _ = records.get(_job_key(pointer["job"]))
    return job if job and job.get("status") == "running" else None


def last_job(records: Records, path: str | Path) -> dict[str, Any] | None:
    """The record of the latest distributed replay of ``path`` (finished or not)."""
    pointer, _ = records.get(_log_key(path))
    return records.get(_job_key(pointer["job"]))[0] if pointer else None


def replay_status(records: Records, job: str | None = None) -> dict[str, Any] | None:
    """The progress of a distributed replay (the active one by default): per partition owner, events, done."""
    if job is None:
        active, _ = records.get(ACTIVE)
        if not active:
            return None
        job = active["job"]
    doc, _ = records.get(_job_key(job))
    if not doc:
        return None
    leases = [records.get(_lease_key(job, p))[0] or {} for p in range(doc["partitions"])]
    return {
        "job": job,
        "status": doc["status"],
        "events": doc["events"],
        "compared": sum(int(x.get("events", 0)) for x in leases),
        "divergent": sum(int(x.get("divergent", 0)) for x in leases),
        "partitions": [
            {"owner": x.get("owner"), "events": int(x.get("events", 0)), "done": bool(x.get("done")), "claims": int(x.get("claims", 0))}
            for x in leases
        ],
    }


def _worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class _Run:
    """One claimed partition while a worker replays it."""

    def __init__(self, p: int, doc: dict[str, Any], version: int, lease_version: int, replayer: PartitionReplayer, job: dict[str, Any]) -> None:
        self.p, self.version, self.lease_version = p, version, lease_version
        self.claims = int(doc.get("claims", 0))
        self.tally = ReplayTally.from_dict(doc["tally"]) if doc.get("tally") else ReplayTally()
        self.tally.redactor = replayer.redactor
        self.legacy = BoundedStateStore(replayer.saga_capacity)
        self.candidate = BoundedStateStore(replayer.saga_capacity)
        self.legacy.restore(replayer.unseal(doc.get("legacy_states")))
        self.candidate.restore(replayer.unseal(doc.get("candidate_states")))
        self.noise = TrackedNoise(job.get("noise"), replayer.unseal(doc.get("noise")))
        self.shared = [observation_of(row) for row in replayer.unseal(job.get("shared")) or []]
        self.shared_at = 0
        self.flags: list[list[Any]] = list(doc.get("flags", []))
        self.offset, self.line, self.ordinal = int(doc.get("offset", 0)), int(doc.get("line", 0)), int(doc.get("ordinal", 0))
        self.types: dict[str, int] = dict(doc.get("types", {}))
        # Resumed after a save: the events after it may have left graph threads mid-run.
        self.suspect = int(job["checkpoint_every"]) + 1 if self.offset else 0
        self.since = 0
        self.lost = False
        self.end = int(job["ends"][p])
        self.catch_up(self.ordinal)

    def catch_up(self, upto: int) -> None:
        """Take in the shared first samples one process would have learned before ordinal ``upto``."""
        while self.shared_at < len(self.shared) and self.shared[self.shared_at][0] < upto:
            _, event_type, obs = self.shared[self.shared_at]
            self.noise.observe_shared(event_type, obs)
            self.shared_at += 1

    def doc(self, replayer: PartitionReplayer, owner: str, status: str) -> dict[str, Any]:
        """The partition's saved point, as its record keeps it."""
        return {
            "status": status,
            "owner": owner,
            "claims": self.claims,
            "offset": self.offset,
            "line": self.line,
            "ordinal": self.ordinal,
            "types": self.types,
            "tally": self.tally.to_dict(),
            "flags": self.flags,
            "legacy_states": replayer.seal(self.legacy.snapshot()),
            "candidate_states": replayer.seal(self.candidate.snapshot()),
            "noise": replayer.seal(self.noise.learned.to_dict()),
        }


class ReplayWorker:
    """Replays leased partitions of one distributed replay job until every partition is done.

    Args:
        replayer: what a partition is replayed with (this process's own: its noise model is swapped per partition);
            a ``migration_kit.types.PartitionReplayer`` (the migration's ``Replayer``).
        records: the coordination store's records.
        job: the job id.
        name: this worker's name in leases (default ``<host>-<pid>``).
        log: where this machine has the log (default: the job's path); checked against the job's digest.
        stop: a ``threading.Event``; when set, the worker saves its partitions, releases them and returns.
        verify: check the log's size and SHA-256 against the job's first.
    """

    def __init__(
        self, replayer: PartitionReplayer, records: Records, job: str, *, name: str | None = None, log: str | None = None, stop: threading.Event | None = None,
        verify: bool = True,
    ) -> None:
        self.replayer, self.records, self.job_id = replayer, records, job
        self.name = name or _worker_name()
        self.stop = stop or threading.Event()
        doc, _ = records.get(_job_key(job))
        if not doc:
            raise ConfigurationError(f"no distributed replay job {job!r} in the store")
        self.job = doc
        self.log = log or doc["path"]
        if verify:
            try:
                size, digest = _file_digest(self.log)
            except OSError as exc:
                raise BadEventLog(
                    f"this worker cannot read the replayed log at {self.log} ({exc.strerror}): give its path here with --log", source=self.log
                ) from None
            if (size, digest) != (doc["size"], doc["sha256"]):
                raise BadEventLog(f"the log at {self.log} is not the one being replayed ({size:,} bytes, sha256 {digest[:12]}…)", source=self.log)
        self.ttl = float(doc["lease_ttl"])
        self.beat = self.ttl / 3  # lease renewals; progress also rides on each partition's saves
        self.poll = min(self.beat, 0.2)  # how often an idle worker looks for a lease to take or the end
        self.events = 0
        self._held: dict[int, _Run] = {}
        self._lock = threading.Lock()  # lease writes: the heartbeat thread and the replaying thread

    # -- leases -------------------------------------------------------------------------------

    def _lease_doc(self, run: _Run, *, done: bool = False, expires: float | None = None) -> dict[str, Any]:
        return {
            "owner": None if done else self.name,
            "expires": time.time() + self.ttl if expires is None else expires,
            "events": run.tally.total,
            "divergent": run.tally.divergent,
            "done": done,
            "claims": run.claims,
        }

    def _write_lease(self, run: _Run, **kw: Any) -> bool:
        with self._lock:
            try:
                run.lease_version = self.records.put(_lease_key(self.job_id, run.p), self._lease_doc(run, **kw), version=run.lease_version)
                return True
            except VersionConflict:
                run.lost = True  # reclaimed by another worker: its record is no longer ours to write
                return False

    def _heartbeat(self, done: threading.Event) -> None:
        while not done.wait(self.beat):
            for run in list(self._held.values()):
                if not run.lost:
                    try:
                        self._write_lease(run)
                    except MigrationKitError:  # the store blinked: the next beat tries again
                        pass

    def _claim(self) -> dict[int, _Run]:
        job = self.job
        parts, batch = int(job["partitions"]), int(job["batch"])
        got: dict[int, _Run] = {}
        first = int(hashlib.blake2b(self.name.encode(), digest_size=4).hexdigest(), 16) % parts  # spread the workers out
        for k in range(parts):
            if len(got) >= batch:
                break
            p = (first + k) % parts
            lease, lv = self.records.get(_lease_key(self.job_id, p))
            if lease and (lease.get("done") or (lease.get("owner") and float(lease.get("expires", 0)) > time.time())):
                continue
            doc, dv = self.records.get(_part_key(self.job_id, p))
            doc = dict(doc or {})
            done = doc.get("status") == "done"  # its owner died between its last save and its lease
            claims = int(doc.get("claims", 0)) + (0 if done else 1)
            mine = {**(lease or {}), "owner": None if done else self.name, "expires": time.time() + self.ttl, "done": done, "claims": claims}
            try:
                lv = self.records.put(_lease_key(self.job_id, p), mine, version=lv)
            except VersionConflict:
                continue
            if done:
                continue
            doc.update(owner=self.name, claims=claims, status="running")
            try:
                # The fence: a paused former owner's next save now finds another version and gives up.
                dv = self.records.put(_part_key(self.job_id, p), doc, version=dv)
            except VersionConflict:
                continue
            got[p] = _Run(p, doc, dv, lv, self.replayer, job)
        return got

    def _all_done(self) -> bool:
        return all((self.records.get(_lease_key(self.job_id, p))[0] or {}).get("done") for p in range(int(self.job["partitions"])))

    def _running(self) -> bool:
        doc, _ = self.records.get(_job_key(self.job_id))
        return bool(doc) and doc.get("status") == "running"

    # -- replaying --------------------------------------------------------------------------------

    def _save(self, run: _Run, status: str) -> None:
        if run.lost:
            return
        try:
            run.version = self.records.put(_part_key(self.job_id, run.p), run.doc(self.replayer, self.name, status), version=run.version)
        except VersionConflict:
            run.lost = True
            return
        if status == "done":
            self._write_lease(run, done=True)
        elif status == "released":
            self._write_lease(run, expires=0.0)
        else:
            self._write_lease(run)  # renewed, with the progress the coordinator shows

    def run(self) -> int:
        """Replay partitions until all are done (or ``stop``); returns how many events this worker compared."""
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(done,), name="replay-lease-heartbeat", daemon=True)
        beat.start()
        try:
            while not self.stop.is_set() and self._running():
                runs = self._claim()
                if not runs:
                    if self._all_done():
                        break
                    self.stop.wait(self.poll)  # others hold the rest: wait for them to finish or their leases to expire
                    continue
                self._held = runs
                try:
                    self._pass(runs)
                finally:
                    self._held = {}
        finally:
            done.set()
            beat.join()
        return self.events

    def _pass(self, runs: dict[int, _Run]) -> None:
        replayer, job = self.replayer, self.job
        learning = replayer.comparator.learning
        base = (job.get("noise") or {}).get("samples") or {}
        first = learning.first if learning is not None else 0
        known = set(replayer.legacy.event_types)
        parts, every = int(job["partitions"]), int(job["checkpoint_every"])
        start = min(runs.values(), key=lambda r: r.offset)
        ordinal, types = start.ordinal, dict(start.types)
        stop_at = max(r.end for r in runs.values())
        entries = EventLog(self.log, on_error="skip").entries(start_offset=start.offset, start_line=start.line + 1)
        for entry in entries:
            if entry.offset >= stop_at or self.stop.is_set():
                break
            event = entry.event
            if event.type not in known:
                continue  # the coordinator listed it as skipped
            place, seen = ordinal, types.get(event.type, 0)
            ordinal += 1
            types[event.type] = seen + 1
            run = runs.get(partition_of(event.saga_key, parts))
            if run is None or run.lost or entry.end <= run.offset:
                continue
            seen += int(base.get(event.type, 0))
            # The first samples of a type were learned up front (shared, taken in by catch_up); later ones here.
            sample = seen >= first and sampled(learning, event.type, event.id, seen) if learning is not None else None
            run.catch_up(place + 1)
            comparison = replayer.replay_step(entry, run.legacy, run.candidate, noise=run.noise, sample=sample, resume=run.suspect > 0)
            run.suspect = max(0, run.suspect - 1)
            run.tally.add(comparison, entry.line)
            bits = flag_of(comparison)
            if bits:
                run.flags.append([place, bits, comparison.first_divergent_node])
            # Where this partition resumes from: its offset, and the log-wide counts there.
            run.offset, run.line, run.ordinal, run.types = entry.end, entry.line, ordinal, dict(types)
            self.events += 1
            run.since += 1
            if run.since >= every:
                self._save(run, "running")
                run.since = 0
        finished = not self.stop.is_set()
        for run in runs.values():
            self._save(run, "done" if finished else "released")


def _child(replayer: PartitionReplayer, coordination: str, job: str, name: str) -> None:
    """A forked worker process: its own store connections, SIGTERM to stop after the event in hand."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the coordinator, which stops us in order
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if replayer.store.scheme != "memory":
        replayer.reopen_store()
    records = Store(coordination, replayer.name).records
    print(f"replay worker {name} started (pid {os.getpid()})", file=sys.stderr, flush=True)
    ReplayWorker(replayer, records, job, name=name, stop=stop, verify=False).run()


@dataclass
class DistributedResult:
    """What the partitions add up to; ``finished()`` marks the job done once the migration has saved it."""

    tally: ReplayTally
    skipped: list[SkippedLine]
    noise: dict[str, Any]
    source: str
    duration: float
    finished: Callable[[], None] = field(repr=False, default=lambda: None)


class DistributedReplay:
    """The coordinator of one replay across processes (what ``Migration.replay(workers=N)`` runs).

    Args:
        replayer: the migration's ``Replayer`` (a ``migration_kit.types.PartitionReplayer``).
        path: the log file.
        workers: processes to fork here (0: only workers that join; None on resume: as many as before).
        resume: continue this log's unfinished distributed replay instead of starting again.
        skip_bad: skip unreadable lines and unknown event types (listed in the report) instead of refusing the log.
        checkpoint_every: events of a partition between its saves.
        partitions: how many partitions (fixed for the job).
        lease_ttl: seconds without a heartbeat after which a partition is reclaimed.
        batch: partitions a worker takes at once (default: partitions / (2 x workers)).
        name_prefix: the forked workers' names are ``<prefix>-<i>`` (default ``<host>-<pid>``).
    """

    def __init__(
        self, replayer: PartitionReplayer, path: str | Path, *, workers: int | None = None, resume: bool = False, skip_bad: bool = False,
        checkpoint_every: int = 100, partitions: int = PARTITIONS, lease_ttl: float = LEASE_TTL, batch: int | None = None,
    ) -> None:
        if workers is not None and (not isinstance(workers, int) or workers < 0):
            raise ConfigurationError(f"replay(workers={workers!r}): give a number of worker processes (0 or more)")
        if not isinstance(partitions, int) or partitions < 1:
            raise ConfigurationError(f"replay(partitions={partitions!r}): give a positive number of partitions")
        if lease_ttl <= 0:
            raise ConfigurationError(f"replay(lease_ttl={lease_ttl!r}): give a positive number of seconds")
        self.replayer = replayer
        self.path = str(Path(path).resolve())
        self.source = str(path)
        self.workers, self.resume, self.skip_bad = workers, resume, skip_bad
        self.checkpoint_every, self.partitions, self.lease_ttl, self.batch = max(1, checkpoint_every), partitions, lease_ttl, batch
        store = replayer.store
        if store.scheme == "memory":
            # tmpfs when there is one: these records need no durability, and fsyncs would cost more than the work
            shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
            self._tmp = tempfile.mkdtemp(prefix="migration-kit-replay-", dir=shm)
            self.coordination = f"sqlite:///{self._tmp}/coordination.sqlite"
        else:
            self._tmp = None
            self.coordination = store.url
        self.records = Store(self.coordination, replayer.name).records

    # -- the job ------------------------------------------------------------------------------

    def _scan(self) -> dict[str, Any]:
        """Read the log once as a local replay would: refuse (or list) bad lines; each partition's size and end."""
        log = EventLog(self.path, on_error="skip" if self.skip_bad else "raise")
        known = set(self.replayer.legacy.event_types)
        ends, sizes = [0] * self.partitions, [0] * self.partitions
        events = 0
        learning = self.replayer.comparator.learning
        base = self.replayer.noise.samples if learning is not None else {}
        seen: dict[str, int] = {}
        firsts: dict[int, str] = {}  # ordinal -> saga of the events one process samples first (per type)
        for entry in log:
            event = entry.event
            if event.type not in known:
                reason = f"has event type {event.type!r}, which no handler of bus {self.replayer.legacy.name!r} subscribes to"
                if not self.skip_bad:
                    raise BadEventLog(f"{self.source} line {entry.line} {reason}", line=entry.line, source=self.source)
                log.skipped.append(SkippedLine(entry.line, reason))
                continue
            p = partition_of(event.saga_key, self.partitions)
            ends[p], sizes[p] = entry.end, sizes[p] + 1
            if learning is not None:
                n = seen[event.type] = seen.get(event.type, 0) + 1
                if base.get(event.type, 0) + n - 1 < learning.first:
                    firsts[events] = event.saga_key
            events += 1
        size, digest = _file_digest(self.path)
        return {
            "events": events, "ends": ends, "sizes": sizes, "size": size, "sha256": digest,
            "skipped": [{"line": s.line, "reason": s.reason} for s in log.skipped],
            "shared": self.replayer.seal(self._first_samples(firsts)),
        }

    def _first_samples(self, firsts: dict[int, str]) -> list[list[Any]]:
        """Learn the first samples of each type up front, in log order: ``[ordinal, type, keys, unordered]``.

        One process learns them before comparing each (and every later event of
        the type is compared knowing them); learning them here and sharing them
        gives every partition that knowledge at the same places. Only their sagas'
        legacy paths run (a saga's state depends on its own events alone).
        """
        if not firsts:
            return []
        sagas, last = set(firsts.values()), max(firsts)
        known = set(self.replayer.legacy.event_types)
        states = BoundedStateStore(max(self.replayer.saga_capacity, len(sagas)))
        out: list[list[Any]] = []
        ordinal = 0
        for entry in EventLog(self.path, on_error="skip"):
            if entry.event.type not in known:
                continue
            if ordinal > last:
                break
            if entry.event.saga_key in sagas:
                obs = self.replayer.legacy_step(entry, states, sample=ordinal in firsts)
                if obs is not None:
                    out.append([ordinal, entry.event.type, obs.keys, sorted(obs.unordered)])
            ordinal += 1
        return out

    def _open_job(self) -> dict[str, Any]:
        records = self.records
        old = unfinished_job(records, self.path)
        if old is not None and self.resume:
            size, digest = _file_digest(self.path)
            if (size, digest) != (old["size"], old["sha256"]):
                raise BadEventLog(
                    f"cannot resume: event log {self.path} changed since the interrupted distributed replay "
                    f"({size:,} bytes now, {old['size']:,} then); replay it from the start",
                    source=self.path,
                )
            if self.workers is None:
                self.workers = int(old.get("workers", 1))
            records.put(ACTIVE, {"job": old["id"], "path": self.path})
            return old
        if old is not None:
            self._drop(old, status="abandoned")
        if self.workers is None:
            self.workers = 1
        scan = self._scan()
        job = {
            "id": secrets.token_hex(6),
            "path": self.path,
            "source": self.source,
            "partitions": self.partitions,
            "lease_ttl": self.lease_ttl,
            "batch": self.batch or max(1, -(-self.partitions // (2 * max(1, self.workers)))),
            "checkpoint_every": self.checkpoint_every,
            "workers": self.workers,
            "noise": self.replayer.noise.to_dict(),
            "status": "running",
            "created": time.time(),
            **scan,
        }
        records.put(_job_key(job["id"]), job)
        records.put(_log_key(self.path), {"job": job["id"]})
        records.put(ACTIVE, {"job": job["id"], "path": self.path})
        records.put("replay:last", {"key": progress_key(self.path), "path": self.path, "status": "running", "workers": self.workers})
        return job

    def _drop(self, job: dict[str, Any], *, status: str) -> None:
        """End a job: its status kept, its leases and partition records deleted (bounded storage)."""
        records = self.records
        doc, version = records.get(_job_key(job["id"]))
        claims = [int((records.get(_lease_key(job["id"], p))[0] or {}).get("claims", 0)) for p in range(int(job["partitions"]))]
        records.put(
            _job_key(job["id"]),
            # kept: how many partitions were taken over from a worker that stopped answering
            {**(doc or job), "status": status, "ends": [], "sizes": [], "noise": None, "shared": None, "skipped": [], "reclaims": sum(max(0, c - 1) for c in claims)},
        )
        for p in range(int(job["partitions"])):
            records.delete(_lease_key(job["id"], p))
            records.delete(_part_key(job["id"], p))
        active, _ = records.get(ACTIVE)
        if active and active.get("job") == job["id"]:
            records.delete(ACTIVE)

    # -- running ------------------------------------------------------------------------------

    def run(self, monitor: Any, *, on_result: Callable[[Any, Any], None] | None = None, stop: threading.Event | None = None) -> DistributedResult:
        """Fork the workers, show progress, wait for every partition, and merge them (``monitor`` sees the looks)."""
        import multiprocessing
        from types import SimpleNamespace

        job = self._open_job()
        started = perf_counter()
        ctx = multiprocessing.get_context("fork")  # the workers inherit the migration's parts as loaded here, whatever made them
        if self.replayer.store.scheme == "memory":
            self.replayer.graph  # compiled once here, inherited (other stores: each worker opens its own)
        base = _worker_name()
        procs = []
        for i in range(self.workers or 0):
            proc = ctx.Process(target=_child, args=(self.replayer, self.coordination, job["id"], f"{base}-{i}"), daemon=True)
            proc.start()
            procs.append(proc)
        parts = int(job["partitions"])
        last_shown, done = 0.0, 0
        try:
            while True:
                leases = [self.records.get(_lease_key(job["id"], p))[0] or {} for p in range(parts)]
                done = sum(int(x.get("events", 0)) for x in leases)
                if on_result is not None and (perf_counter() - last_shown >= 1.0 or all(x.get("done") for x in leases)):
                    last_shown = perf_counter()
                    live = {x["owner"] for x in leases if x.get("owner") and not x.get("done")}
                    on_result(None, SimpleNamespace(total=done, divergent=sum(int(x.get("divergent", 0)) for x in leases), workers=len(live)))
                if all(x.get("done") for x in leases):
                    break
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
                if procs and not any(p.is_alive() for p in procs):
                    # Every forked worker is gone (killed): this process finishes what they left.
                    ReplayWorker(self.replayer, self.records, job["id"], name=f"{base}-c", stop=stop, verify=False).run()
                    procs = []
                    continue
                # Reading every lease costs the store P reads: twice a second is enough for progress and the end.
                if stop is not None:
                    stop.wait(0.5)
                else:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            for proc in procs:
                if proc.is_alive():
                    os.kill(proc.pid, signal.SIGTERM)  # each saves its partitions and releases them
            for proc in procs:
                proc.join()
            raise ReplayInterrupted(
                f"distributed replay of {self.source} interrupted after {done:,} events; each partition's progress is saved: "
                "resume it with `migration-kit resume` (or Migration.replay(path, resume=True))",
                line=0,
                total=done,
            ) from None
        for proc in procs:
            proc.join()
        return self._merge(job, monitor, perf_counter() - started)

    def _merge(self, job: dict[str, Any], monitor: Any, duration: float) -> DistributedResult:
        tallies, flags = [], []
        noise = TrackedNoise()
        for row in self.replayer.unseal(job.get("shared")) or []:
            _, event_type, obs = observation_of(row)
            noise.observe(event_type, obs)
        for p in range(int(job["partitions"])):
            doc, _ = self.records.get(_part_key(job["id"], p))
            if not doc or doc.get("status") != "done":
                raise MigrationKitError(f"distributed replay {job['id']}: partition {p} has no finished record")
            tallies.append(ReplayTally.from_dict(doc["tally"]))
            flags.extend(doc.get("flags", []))
            noise.merge(self.replayer.unseal(doc.get("noise")) or {})
        tally = merge_tallies(tallies, flags, monitor=monitor, redactor=self.replayer.redactor)
        skipped = [SkippedLine(int(x["line"]), x["reason"]) for x in job.get("skipped", [])]

        def finished() -> None:
            """The job is done: its records go, ``resume`` has nothing left of it."""
            self._drop(job, status="done")
            self.records.put("replay:last", {"key": progress_key(self.path), "path": self.path, "status": "done"})

        return DistributedResult(tally, skipped, noise.to_dict(), job.get("source", self.source), duration, finished)


def join_replay(replayer: PartitionReplayer, *, name: str | None = None, log: str | None = None, wait: float = 60.0, stop: threading.Event | None = None) -> int:
    """Join the migration's active distributed replay (waiting up to ``wait`` s for one); returns the events compared here.

    Raises:
        ConfigurationError: no replay to join appeared in time.
    """
    stop = stop or threading.Event()
    records = replayer.store.records
    deadline = time.monotonic() + wait
    print(f"replay worker {name or _worker_name()} waiting for a replay of {replayer.name!r} to join", file=sys.stderr, flush=True)
    while True:
        active, _ = records.get(ACTIVE)
        if active:
            job, _ = records.get(_job_key(active["job"]))
            if job and job.get("status") == "running":
                break
        if time.monotonic() >= deadline or stop.is_set():
            raise ConfigurationError(
                f"no distributed replay of migration {replayer.name!r} to join in {replayer.store.display_url} "
                f"(waited {wait:g} s): start one with `migration-kit replay LOG --workers N` on the same store"
            )
        stop.wait(0.2)
    worker = ReplayWorker(replayer, records, active["job"], name=name, log=log, stop=stop)
    print(f"replay worker {worker.name} joined the replay of {job['path']} (pid {os.getpid()})", file=sys.stderr, flush=True)
    return worker.run()
