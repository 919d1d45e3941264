"""Live shadow traffic: a near-zero-cost tap on the legacy bus, feeding a Redis Stream.

``Migration.attach()`` hooks the live bus. Every root publish runs on the
legacy path exactly as before (authoritative: real effects, its values and
exceptions reach the caller unchanged); afterwards the tap hands the
``Dispatch`` the bus already built, the saga state from before the event and
the active trace context to a bounded in-process queue, and returns. A
background sender thread turns entries into JSON, batches them into the
stream (``XADD ... MAXLEN ~ N``, pipelined), and reconnects with backoff when
Redis is gone. When the queue is full, or Redis is slow or down, entries are
shed and counted; nothing the shadow does can block or raise into the live
path. Shadow workers (``migration_kit.live.worker``) read the stream and compare.

Redis key scheme, for a migration named ``M`` (the ``{M}`` hash tag keeps one
migration's keys in one cluster slot, so the worker's Lua scripts may touch
several of them):

* ``mk:{M}:shadow``             stream of tapped events; one field ``d``: a JSON entry (below).
* consumer group ``mk-workers`` on that stream (shadow workers).
* ``mk:{M}:count:shadow``       hash of counters: ``compared``, ``divergent``, ``errors``,
                                ``dead`` (malformed entries), ``shed`` (tapped entries dropped).
                                Same key as ``Store.records.counters("shadow")`` on a Redis store.
* ``mk:{M}:done:<event id>``    string (the consumer that recorded it), set once per compared
                                event, with a TTL: what makes a redelivered entry count once.
* ``mk:{M}:shadow:groups``      hash: divergence signature (JSON ``[node, kind, path]``,
                                ``migration_kit.report.report.signature``) -> number of events.
* ``mk:{M}:shadow:examples``    hash: signature -> the first example (JSON), set once.
* ``mk:{M}:shadow:dead``        list (capped) of rejected entries: ``{id, error}`` as JSON.
* ``mk:{M}:shadow:evidence``    hash: evidence source ``shadow:<consumer>`` -> JSON ``{attempt, evidence}``,
                                a worker's latency sketches and counts, written by the same script
                                as its results (so exactly once per event); merged into the
                                migration's evidence (``Migration.evidence()``), which the policy evaluates.
* candidate checkpoints: thread ``<M>:<event id>`` in the store's checkpointer
  (``checkpoints.redis_saver``), deleted once the event is recorded.

Stream entry, version 1 (validated with pydantic when read; never unpickled)::

    {"v": 1, "migration": "M", "event": {Event}, "legacy": {Outcome.to_record()},
     "state_before": {...} | null, "traceparent": "00-..." | null, "tapped_at": <epoch s>}

When the saga had state before the event, the outcome's ``state`` (after) is left out and
``"state_delta"`` holds what the event changed (``migration_kit.compare.state_delta``), computed on the
masked values: an entry carries the saga's state once, not twice.
"""

from __future__ import annotations

import asyncio
import atexit
import copy
import gc
import json
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from legacy_bus import Dispatch, Event, EventBus
from legacy_bus.protocol import LegacyBus
from legacy_bus.effects import current_sandbox, in_handler
from legacy_bus.limits import DEFAULT_LIMITS, InputLimits, LimitExceeded
from migration_errors import BadEventLog, BadShadowEntry, ConfigurationError
from redis_connect.urls import mask_url

from migration_kit.live.cutover import Cutover
from migration_kit.compare.outcome import Outcome
from migration_kit.observe.faults import Faults
from migration_kit.observe.redaction import Redactor, default_redactor
from migration_kit.compare.state_delta import delta, patched
from migration_kit.types import Attachable, Side

__all__ = [
    "ENTRY_VERSION",
    "GROUP",
    "BadShadowEntry",
    "ShadowEntry",
    "ShadowHandle",
    "ShadowKeys",
    "attach",
    "decode_entry",
    "encode_entry",
    "read_status",
]

log = logging.getLogger(__name__)

ENTRY_VERSION = 1
GROUP = "mk-workers"
FIELD = b"d"
COUNTERS = ("compared", "divergent", "errors", "dead", "shed")


@dataclass(frozen=True, slots=True)
class ShadowKeys:
    """The Redis keys of one migration's shadow traffic (see the module docstring)."""

    migration: str

    @property
    def tag(self) -> str:
        """The hash tag every key of this migration shares (one Redis Cluster slot)."""
        return f"mk:{{{self.migration}}}"

    @property
    def stream(self) -> str:
        """The shadow stream the tap writes and workers read."""
        return f"{self.tag}:shadow"

    @property
    def counters(self) -> str:
        """The hash of the shadow path's counters (entries shed, ...)."""
        return f"{self.tag}:count:shadow"

    @property
    def groups(self) -> str:
        """The hash of divergence groups workers count."""
        return f"{self.tag}:shadow:groups"

    @property
    def examples(self) -> str:
        """The hash of one masked example per divergence group."""
        return f"{self.tag}:shadow:examples"

    @property
    def dead(self) -> str:
        """The stream of entries no worker could process (dead letters)."""
        return f"{self.tag}:shadow:dead"

    @property
    def evidence(self) -> str:
        """The hash of the evidence each worker saves, by its source."""
        return f"{self.tag}:shadow:evidence"

    def done(self, event_id: str) -> str:
        """The marker that ``event_id`` was compared (so a redelivery is not counted twice)."""
        return f"{self.tag}:done:{event_id}"

    @property
    def done_pattern(self) -> str:
        """The glob of every done marker of this migration."""
        return f"{self.tag}:done:*"


# -- entries --------------------------------------------------------------------------------


class ShadowEntry(BaseModel):
    """The validated shape of one stream entry (version 1)."""

    model_config = ConfigDict(extra="forbid")

    v: Literal[1]
    migration: str | None = None
    event: dict[str, Any]
    serving: Side = Side.LEGACY
    legacy: dict[str, Any] | None = None
    candidate: dict[str, Any] | None = None
    state_before: dict[str, Any] | None = None
    state_delta: dict[str, Any] | None = None  # the serving outcome's state, as a delta against state_before
    traceparent: str | None = Field(default=None, pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
    tapped_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Tapped:
    """A decoded stream entry: the event, the serving path's recorded outcome and its context.

    ``legacy`` is the recorded outcome when legacy served (shadow, and the
    legacy share of a canary); when the candidate served for real (canary,
    primary) ``legacy`` is None and ``candidate`` holds its recorded outcome.
    """

    event: Event
    legacy: Outcome | None
    state_before: dict[str, Any] | None
    traceparent: str | None
    tapped_at: float
    candidate: Outcome | None = None

    @property
    def serving(self) -> str:
        """The side that served the tapped event live."""
        return "legacy" if self.legacy is not None else "candidate"


def encode_entry(
    migration: str,
    dispatch: Dispatch | Outcome,
    state_before: dict[str, Any] | None,
    traceparent: str | None,
    tapped_at: float,
    *,
    redactor: Redactor | None = None,
) -> bytes:
    """One stream entry as JSON bytes, redacted (run in the sender thread, off the live path).

    ``dispatch`` is the legacy path's ``Dispatch`` when it served, or the
    candidate's ``Outcome`` when the candidate served for real. The entry
    leaves the process, so it is masked by ``redactor``, the migration's
    (``migration_kit.observe.redaction``): workers compare masked values.
    Without one, the one registered for the migration of that name
    (transitional, until every caller passes its redactor).
    """
    outcome = dispatch if isinstance(dispatch, Outcome) else Outcome.from_dispatch(dispatch)
    doc = {
        "v": ENTRY_VERSION,
        "migration": migration,
        "event": outcome.event.to_dict(),
        "serving": outcome.path,
        outcome.path: outcome.to_record(),
        "state_before": state_before,
        "traceparent": traceparent,
        "tapped_at": tapped_at,
    }
    if redactor is None:
        redactor = default_redactor()  # the facade hands its own; without one, the built-in rules
    masked = redactor.entry(doc)
    before, record = masked.get("state_before"), masked.get(outcome.path)
    if isinstance(before, dict) and before and isinstance(record, dict) and isinstance(record.get("state"), dict):
        # masked values on both sides, so the worker rebuilds exactly the masked state after
        masked["state_delta"] = delta(before, record.pop("state"))
    return json.dumps(masked, separators=(",", ":"), default=str).encode()


ENTRY_LIMITS = InputLimits(max_depth=DEFAULT_LIMITS.max_depth + 8)  # a log line's bounds; an entry wraps the event a few levels deeper


def decode_entry(raw: bytes | str | None, entry_id: str = "?") -> Tapped:
    """Validate one stream entry's JSON into a ``Tapped``.

    Raises:
        BadShadowEntry: it is not JSON, not a version-1 entry, or a field is
            invalid; the message names the entry and the field.
    """
    if raw is None:
        raise BadShadowEntry(f"stream entry {entry_id} has no 'd' field: expected a JSON shadow entry (written by Migration.attach)")
    try:  # bounded before it is parsed: a huge or deeply nested entry is dead-lettered, never evaluated
        ENTRY_LIMITS.check_size(raw)
        ENTRY_LIMITS.check_depth(raw)
    except LimitExceeded as exc:
        raise BadShadowEntry(f"stream entry {entry_id} {exc}") from None
    try:
        doc = ShadowEntry.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "(top level)"
        raise BadShadowEntry(f"stream entry {entry_id} is not a valid shadow entry: {where}: {first.get('msg')}") from None
    try:
        event = Event.model_validate(doc.event)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BadShadowEntry(f"stream entry {entry_id} is not a valid shadow entry: event.{where}: {first.get('msg')}") from None
    side = doc.serving
    raw = doc.legacy if side == "legacy" else doc.candidate
    if raw is None:
        raise BadShadowEntry(f"stream entry {entry_id} is not a valid shadow entry: {side}: the {side} path served, but its outcome is missing")
    if doc.state_delta is not None:
        raw = {**raw, "state": patched(doc.state_before or {}, doc.state_delta)}
    try:
        recorded = Outcome.from_record(raw)
    except BadEventLog as exc:
        raise BadShadowEntry(f"stream entry {entry_id}: {side}: {exc}") from None
    if recorded.event.id != event.id:
        raise BadShadowEntry(f"stream entry {entry_id}: the {side} outcome is of event {recorded.event.id}, not {event.id}")
    if recorded.path != side:
        raise BadShadowEntry(f"stream entry {entry_id}: the {side} field holds a {recorded.path} outcome")
    if side == "legacy":
        return Tapped(event, recorded, doc.state_before, doc.traceparent, doc.tapped_at)
    return Tapped(event, None, doc.state_before, doc.traceparent, doc.tapped_at, candidate=recorded)


# -- the tap ---------------------------------------------------------------------------------

_STOP = object()
_yield = time.sleep  # _yield(0): let a waiting thread have the GIL
SETTLE_EVERY = 1.0  # seconds between the sender's checks for sagas to hand back after a rollback
_TAPS: weakref.WeakKeyDictionary[LegacyBus, dict[str, ShadowHandle]] = weakref.WeakKeyDictionary()
_LIVE: weakref.WeakSet[ShadowHandle] = weakref.WeakSet()
_TAPS_LOCK = threading.Lock()
_ATOMIC = (str, int, float, bool, type(None))


def _snapshot(value: Any) -> Any:
    """A copy of saga state, fast for the JSON-shaped values it almost always holds."""
    t = type(value)
    if t is dict:
        return {k: v if type(v) in _ATOMIC else _snapshot(v) for k, v in value.items()}
    if t is list:
        return [v if type(v) in _ATOMIC else _snapshot(v) for v in value]
    if t in _ATOMIC:
        return value
    return copy.deepcopy(value)


def _traceparent() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


class _TapCore:
    """What the tap does around one live root publish, sans I/O: shared by the sync and async drivers.

    The drivers (``ShadowHandle._install``) make the calls: the legacy
    dispatch, the saga's lock, the candidate run. This takes the saga state
    and trace context from before the dispatch, builds the stream entry,
    queues it (never blocking: a full queue sheds) and gives the caller the
    legacy path's own result or exception.
    """

    __slots__ = ("bus", "count", "count_served", "faults", "peek", "put")

    def __init__(self, handle: ShadowHandle) -> None:
        self.peek = handle.bus.state_store.peek
        self.put = handle._queue.put_nowait
        self.count = handle._tally
        self.count_served = handle.cutover.count_served
        self.faults = handle.faults
        self.bus = handle.bus

    def context(self, event: Event) -> tuple[dict[str, Any] | None, str | None] | None:
        """(state before, traceparent) for an unlocked legacy dispatch; None (shed, counted) if it cannot be taken."""
        try:
            before = self.peek(event.saga_key)
            return (_snapshot(before) if before else None), _traceparent()
        except Exception as exc:  # noqa: BLE001 - swallowed: the tap must never break the live path
            self.count(shed=1)
            self.faults.raised("tap.snapshot", exc)
            return None

    def locked_context(self, event: Event) -> tuple[dict[str, Any] | None, str | None]:
        """(state before, traceparent) under the saga's lock (a failure there is the store's, and propagates)."""
        tp = _traceparent()
        before = self.peek(event.saga_key)
        return (_snapshot(before) if before else None), tp

    def fast(self, plan: Any, result: Dispatch, ctx: tuple[Any, Any], capture: bool) -> Dispatch:
        """Legacy served on the fast path (no lock): count it, queue its entry, return its result (the hot path)."""
        self.count_served("legacy", None)
        if plan.shadow:
            self.enqueue((result, ctx[0], ctx[1], time.time()))
        if result.exception is not None and not capture and self.bus.on_error == "raise":
            raise result.exception
        return result

    @staticmethod
    def entry(result: Dispatch, ctx: tuple[Any, Any]) -> tuple[Dispatch, tuple[Any, ...]]:
        """Legacy served under the lock: its result and its entry."""
        return result, (result, ctx[0], ctx[1], time.time())

    @staticmethod
    def candidate_entry(ran: tuple[Dispatch, Outcome, Any], tp: str | None) -> tuple[Dispatch, tuple[Any, ...]]:
        """The candidate served for real: what the caller gets, and the entry of its outcome."""
        result, outcome, before = ran
        return result, (outcome, before, tp, time.time())

    def finish(self, plan: Any, served: tuple[Dispatch, tuple[Any, ...]], capture: bool) -> Dispatch:
        """After the saga's lock: queue the entry when the plan shadows, return the result (or raise the handler's own exception)."""
        result, item = served
        if plan.shadow:
            self.enqueue(item)
        if result.exception is not None and not capture and self.bus.on_error == "raise":
            raise result.exception
        return result

    def enqueue(self, item: tuple[Any, ...]) -> None:
        """Hand an entry to the sender without ever blocking: a full queue sheds it (counted)."""
        try:
            self.put(item)
            self.count(tapped=1)
        except queue.Full:
            self.count(tapped=1, shed=1)
        except Exception as exc:  # noqa: BLE001 - swallowed: the tap must never break the live path
            self.count(tapped=1, shed=1)
            self.faults.raised("tap.enqueue", exc)


class ShadowHandle:
    """An attached tap: the live bus's hook, the bounded queue and the sender thread.

    ``close()`` unhooks the bus (its ``dispatch`` / ``adispatch`` are the
    class's own again), sends what is queued (for up to ``timeout`` seconds)
    and stops the sender. Counts: ``tapped`` = ``sent`` + ``shed`` + what is
    still queued.

    Args:
        name: the migration's name (the stream's keys).
        bus: the live bus to hook.
        url: the Redis holding the stream.
        cutover: serves each root event by phase (``migration_kit.live.cutover``).
        redactor: masks every entry before it leaves the process (the migration's, built once by the facade).
        faults: receives every failure the tap swallows (``migration_kit.observe.faults``).
    """

    def __init__(
        self,
        name: str,
        bus: LegacyBus,
        url: str,
        *,
        cutover: Cutover,
        queue_size: int = 10_000,
        batch: int = 200,
        maxlen: int = 100_000,
        timeout: float = 1.0,
        gc_freeze: bool = True,
        redactor: Redactor | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.gc_freeze = gc_freeze
        # The facade hands its own; without one, the built-in rules.
        self.redactor = redactor if redactor is not None else default_redactor()
        self.faults = faults if faults is not None else Faults(redactor=self.redactor)
        self.migration_name = name
        self.bus = bus
        self.url = url
        self.keys = ShadowKeys(name)
        self.maxlen = maxlen
        self.batch = max(1, batch)
        self.timeout = timeout
        self.tapped = 0
        self.sent = 0
        self.shed = 0
        self._count_lock = threading.Lock()  # publishers on many threads, and the sender, count
        self.last_error: str | None = None
        self._reported_shed = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
        self._on = False
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._client: Any = None
        self._thread: threading.Thread | None = None
        self._installed: dict[str, Any] = {}
        self._previous: dict[str, Any] = {}
        self._drain_deadline = 0.0
        self._unsent = 0
        self.cutover = cutover
        self._settle_at = 0.0
        self._recovered = False

    def __repr__(self) -> str:
        state = "active" if self._on else "closed"
        return f"<ShadowHandle {self.migration_name!r} {state} tapped={self.tapped} sent={self.sent} shed={self.shed}>"

    def __enter__(self) -> ShadowHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def active(self) -> bool:
        """True while the bus is hooked."""
        return self._on

    @property
    def unreported_shed(self) -> int:
        """Events this process shed that its Redis counters do not count yet."""
        return self.shed - self._reported_shed

    @property
    def queued(self) -> int:
        """How many entries wait in the queue for the sender."""
        return self._queue.qsize()

    def stats(self) -> dict[str, Any]:
        """This process's counts: tapped, sent, shed, queued, and the last sender error."""
        c = self.cutover
        return {
            "tapped": self.tapped,
            "sent": self.sent,
            "shed": self.shed,
            "queued": self.queued,
            "served": dict(c.served),
            "handovers": c.handovers,
            "store_failures": c.store_failures,  # publishes failed with StoreUnavailable (canary and on)
            "phase_reads_failed": c.view.failures,
            "last_error": self.last_error,
        }

    def _tally(self, *, tapped: int = 0, shed: int = 0, sent: int = 0) -> None:
        with self._count_lock:
            self.tapped += tapped
            self.shed += shed
            self.sent += sent

    # -- hooking ---------------------------------------------------------------------------

    def _install(self) -> None:
        bus = self.bus
        original_dispatch = bus.dispatch
        original_adispatch = bus.adispatch
        core = _TapCore(self)
        context, fast, entry, finish = core.context, core.fast, core.entry, core.finish
        handle = self
        cutover = self.cutover
        planned, prepare, locks = cutover.plan, cutover.prepare, cutover.ledger.locks
        run_candidate, arun_candidate = cutover.run_candidate, cutover.arun_candidate

        # The two drivers only make the calls (the legacy dispatch, the saga's lock, the candidate
        # run), plain or awaited; what happens around them is decided once, in _TapCore.
        # Only live, authoritative root dispatches are tapped: not the migration's own sandboxed
        # runs, and not a dispatch started while any handler runs (publishes inside a cascade never
        # get here; a dispatch nested in a handler is part of that handler's work). The test is
        # written out in each driver, not called: it runs on every publish.
        def dispatch(event: Event, *, sandbox: Any = None, states: Any = None, capture: bool = False) -> Dispatch:
            if not handle._on or sandbox is not None or states is not None or current_sandbox() is not None or in_handler():
                return original_dispatch(event, sandbox=sandbox, states=states, capture=capture)
            plan = planned(event)
            if plan.fast:
                ctx = context(event)
                if ctx is None:
                    return original_dispatch(event, capture=capture)
                return fast(plan, original_dispatch(event, capture=True), ctx, capture)
            with locks.hold(event.saga_key):
                prepare(event, plan)
                if plan.side == "legacy":
                    ctx = core.locked_context(event)
                    served = entry(original_dispatch(event, capture=True), ctx)
                else:
                    tp = _traceparent()
                    served = core.candidate_entry(run_candidate(event, True), tp)
            return finish(plan, served, capture)

        async def adispatch(event: Event, *, sandbox: Any = None, states: Any = None, capture: bool = False) -> Dispatch:
            if not handle._on or sandbox is not None or states is not None or current_sandbox() is not None or in_handler():
                return await original_adispatch(event, sandbox=sandbox, states=states, capture=capture)
            plan = planned(event)
            if plan.fast:
                ctx = context(event)
                if ctx is None:
                    return await original_adispatch(event, capture=capture)
                return fast(plan, await original_adispatch(event, capture=True), ctx, capture)
            # The saga's lock is released whatever cancels this task: a waiter that is
            # cancelled never holds it, and a store call cut off by a cancellation keeps it
            # until that call's thread returns (migration_kit.live.locks).
            async with locks.ahold(event.saga_key) as held:
                await held.run(prepare, event, plan)
                if plan.side == "legacy":
                    ctx = core.locked_context(event)
                    served = entry(await original_adispatch(event, capture=True), ctx)
                else:
                    tp = _traceparent()
                    served = core.candidate_entry(await arun_candidate(event, True, held.run), tp)
            return finish(plan, served, capture)

        dispatch.__wrapped__ = original_dispatch  # type: ignore[attr-defined]
        adispatch.__wrapped__ = original_adispatch  # type: ignore[attr-defined]
        dispatch.__doc__, adispatch.__doc__ = EventBus.dispatch.__doc__, EventBus.adispatch.__doc__
        for name, fn in (("dispatch", dispatch), ("adispatch", adispatch)):
            if name in bus.__dict__:
                self._previous[name] = bus.__dict__[name]
            setattr(bus, name, fn)
            self._installed[name] = fn
        self._on = True

    def _uninstall(self) -> None:
        bus = self.bus
        for name, fn in self._installed.items():
            if bus.__dict__.get(name) is not fn:
                continue  # someone wrapped on top of us: ours stays below theirs, as a pass-through
            if name in self._previous:
                setattr(bus, name, self._previous[name])
            else:
                delattr(bus, name)
        self._installed.clear()
        self._previous.clear()

    def start(self) -> ShadowHandle:
        """Hook the bus, start the cutover's phase reads and the sender thread; returns the handle."""
        if self.gc_freeze:
            # Entries wait in the queue for the sender across a few young collections, so they are
            # promoted and trigger full collections; with the process's heap at attach frozen
            # (the imports, the compiled graph: most of it), a full collection scans only what
            # came since, and stays short (measured in bench/bench_shadow_tap.py --full-rate).
            gc.freeze()
        self.cutover.start()  # one phase read now, then off the publishers' threads
        self._install()
        self._thread = threading.Thread(target=self._run, name=f"mk-shadow-sender[{self.migration_name}]", daemon=True)
        self._thread.start()
        _LIVE.add(self)
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Unhook the bus, send what is queued (up to ``timeout`` s; the rest is shed), stop the sender."""
        with _TAPS_LOCK:
            if not self._on and self._thread is None:
                return
            self._on = False
            self._uninstall()
            taps = _TAPS.get(self.bus)
            if taps is not None and taps.get(self.migration_name) is self:
                del taps[self.migration_name]
            self.cutover.close()
        thread, self._thread = self._thread, None
        if thread is not None:
            self._drain_deadline = time.monotonic() + timeout
            self._stop.set()
            thread.join(timeout + 1.0)
        while True:  # whatever the sender could not send is shed, and counted
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            self._tally(shed=1)
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # noqa: BLE001 - swallowed: best-effort cleanup
                self.faults.raised("tap.close", exc)
        _LIVE.discard(self)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far was sent or shed; True if it was within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    # -- the sender --------------------------------------------------------------------------

    def _connect(self) -> Any:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        from redis_connect.connection import connect

        return connect(
            self.url,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def _take(self) -> list[Any]:
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            return []
        items = [first]
        while len(items) < self.batch:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _done(self, n: int) -> None:
        for _ in range(n):
            self._queue.task_done()
        with self._idle:
            self._idle.notify_all()

    def _maybe_settle(self) -> None:
        """After a rollback, hand the sagas the candidate holds back to legacy without waiting for their events."""
        now = time.monotonic()
        if now < self._settle_at:
            return
        self._settle_at = now + SETTLE_EVERY
        c = self.cutover
        try:
            seen = c.view.seen
            if not self._recovered:  # once, on attach: what a crashed process left half done
                if seen.state is None:
                    return  # the store has not answered yet
                if seen.phase != "shadow" or seen.candidate_sagas:
                    c.recover()
                self._recovered = True
            if seen.phase == "rolled_back" and seen.candidate_sagas:
                if c.ledger.may_have_candidate_sagas():
                    c.settle(reason="rolled back: handed back to legacy", by="rollback")
        except Exception as exc:  # noqa: BLE001 - swallowed: retried next time; events hand their saga back themselves
            self.last_error = f"settle: {type(exc).__name__}: {exc}"
            self.faults.raised("tap.settle", exc)

    def _run(self) -> None:
        backoff = 0.05
        retry_at = 0.0
        while True:
            if self._on:
                self._maybe_settle()
            stopping = self._stop.is_set()
            if stopping and (self._queue.empty() or time.monotonic() > self._drain_deadline):
                break
            if self._client is None and time.monotonic() < retry_at:
                if stopping:
                    break  # no store to drain into: close() sheds the rest
                time.sleep(min(0.05, retry_at - time.monotonic()))
                continue
            items = self._take()
            if not items:
                continue
            self._unsent = len(items)
            try:
                self._send(items)
                backoff = 0.05
            except Exception as exc:  # noqa: BLE001 - swallowed: Redis slow or gone: shed, count, back off
                self._tally(shed=self._unsent)
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.faults.raised("tap.send", exc)
                client, self._client = self._client, None
                if client is not None:
                    try:
                        client.close()
                    except Exception as close_exc:  # noqa: BLE001 - swallowed: best-effort cleanup
                        self.faults.raised("tap.close", close_exc)
                retry_at = time.monotonic() + backoff
                backoff = min(backoff * 2, 2.0)
            finally:
                self._done(len(items))

    def _send(self, items: list[Any]) -> None:
        payloads = []
        for dispatch, before, tp, at in items:
            _yield(0)  # a publisher waiting for the GIL gets it after one entry, not after the 5 ms switch interval
            try:
                payloads.append(encode_entry(self.migration_name, dispatch, before, tp, at, redactor=self.redactor))
            except Exception as exc:  # noqa: BLE001 - swallowed: an unserializable outcome is shed, not fatal
                self._tally(shed=1)
                root = dispatch.event if isinstance(dispatch, Outcome) else dispatch.root
                self.last_error = f"cannot encode event {root.id}: {type(exc).__name__}: {exc}"
                self.faults.raised("tap.encode", exc)
        self._unsent = len(payloads)  # the others were shed (and counted) already
        if self._client is None:
            self._client = self._connect()
        pipe = self._client.pipeline(transaction=False)
        stream = self.keys.stream
        for i, data in enumerate(payloads):
            if i % 32 == 31:
                _yield(0)
            pipe.xadd(stream, {FIELD: data}, maxlen=self.maxlen, approximate=True)
        unreported = self.shed - self._reported_shed
        if unreported:
            pipe.hincrby(self.keys.counters, "shed", unreported)
        pipe.execute()
        self._reported_shed += unreported
        self._tally(sent=len(payloads))


def attach(migration: Attachable, url: str, *, cutover: Callable[[], Cutover], **options: Any) -> ShadowHandle:
    """Hook ``migration.legacy`` and shadow its root publishes into the stream at ``url``.

    Idempotent: while a handle of this migration is active on the bus it is
    returned again; otherwise ``cutover()`` builds the new handle's ``Cutover``.
    Options: ``redactor``, ``queue_size``, ``batch``, ``maxlen``, ``timeout``, ``gc_freeze``
    (default True: ``gc.freeze()`` once at attach, so full collections skip the heap the process
    had then and the queued entries cannot make them long), ``redactor`` (the migration's, which
    masks every entry) and ``faults`` (the hook the tap's swallowed failures go through).
    """
    from redis_connect.urls import scheme_of

    if scheme_of(url) not in ("redis", "rediss"):
        raise ConfigurationError(
            f"Migration.attach(): live shadow traffic goes through a Redis Stream; {mask_url(url)!r} is not a redis:// URL "
            "(pass attach('redis://host:port/0') or give the migration a Redis store)"
        )
    bus = migration.legacy
    with _TAPS_LOCK:
        taps = _TAPS.setdefault(bus, {})
        handle = taps.get(migration.name)
        if handle is not None and handle.active:
            if handle.url != url:
                raise ConfigurationError(
                    f"migration {migration.name!r} is already attached to {handle.keys.stream} at another store; close() that handle first"
                )
            return handle
        handle = ShadowHandle(migration.name, bus, url, cutover=cutover(), **options).start()
        taps[migration.name] = handle
        return handle


def active_handle(migration: Attachable) -> ShadowHandle | None:
    """The active tap of this migration on its bus, if any."""
    taps = _TAPS.get(migration.legacy)
    handle = taps.get(migration.name) if taps else None
    return handle if handle is not None and handle.active else None


@atexit.register
def _close_all() -> None:  # entries still queued at exit are sent if Redis answers quickly
    for handle in list(_LIVE):
        try:
            handle.close(timeout=1.0)
        except Exception as exc:  # noqa: BLE001 - swallowed: best-effort cleanup at exit
            handle.faults.raised("tap.close", exc)


# -- reading the results -------------------------------------------------------------------------


def read_status(client: Any, keys: ShadowKeys) -> dict[str, Any]:
    """The shadow counters in Redis: compared, divergent, errors, dead, shed, pending (+ lag)."""
    raw = client.hgetall(keys.counters)
    counts = {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in raw.items()}
    out: dict[str, Any] = {name: counts.get(name, 0) for name in COUNTERS}
    pending = 0
    length = lag = int(client.xlen(keys.stream))  # no group yet: nothing was delivered
    try:
        for group in client.xinfo_groups(keys.stream):
            name = group.get("name") or group.get(b"name")
            if (name.decode() if isinstance(name, bytes) else name) != GROUP:
                continue
            pending = int(group.get("pending") or 0)
            lag_value = group.get("lag")
            if lag_value is None:  # lag unknown (entries trimmed or deleted): count what follows last-delivered
                last = group.get("last-delivered-id") or b"0-0"
                lag = len(client.xrange(keys.stream, min=f"({_text(last)}", count=100_000))
            else:
                lag = int(lag_value)
    except Exception as exc:  # noqa: BLE001 - classified: no stream or group yet is expected, the rest re-raised
        if "no such key" not in str(exc).lower():
            raise
    out["pending"] = pending + lag
    out["in_flight"] = pending
    out["lag"] = lag
    out["stream_length"] = length
    return out


def worker_evidence(records: Any, keys: ShadowKeys, attempt: int) -> dict[str, dict[str, Any]]:
    """The evidence workers recorded with their results for ``attempt``: source -> evidence dict."""
    client = getattr(records, "client", None)
    if client is None:
        return {}
    out = {}
    for source, raw in client.hgetall(keys.evidence).items():
        doc = json.loads(raw)
        if doc.get("attempt") == attempt:
            out[_text(source)] = doc.get("evidence") or {}
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def divergence_groups(client: Any, keys: ShadowKeys, limit: int = 50) -> list[dict[str, Any]]:
    """The divergence groups found by shadow workers, largest first, each with its first example."""
    counts = client.hgetall(keys.groups)
    rows = sorted(((int(n), _text(sig)) for sig, n in counts.items()), key=lambda r: (-r[0], r[1]))[:limit]
    examples = client.hmget(keys.examples, [sig for _, sig in rows]) if rows else []
    out = []
    for (n, sig), ex in zip(rows, examples, strict=True):
        node, kind, path = json.loads(sig)
        out.append({"node": node, "kind": kind, "path": path, "count": n, "example": json.loads(ex) if ex else None})
    return out
