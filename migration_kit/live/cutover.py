"""Serving live traffic by phase: who is authoritative for each root event, and who shadows.

``Migration.attach()`` installs this behind the live bus's ``dispatch``:

=============  =====================================  ============================
phase          authoritative (real effects)           shadow (sandboxed, compared)
=============  =====================================  ============================
shadow         legacy                                 candidate
canary p%      candidate for p% of sagas (sticky by    the other path
               ``correlation_id``), legacy for the
               rest
primary        candidate                              legacy
retired        candidate                              none
rolled_back    legacy                                 none
=============  =====================================  ============================

The candidate, when authoritative, runs the graph without a sandbox (its
effect ports are real) with ``durability="sync"`` (each node's checkpoint is
written before the next node starts, so a crash never makes a finished
node's real effects run again on resume) on the saga's long-lived thread
``<migration>:saga:<correlation id>`` with the store's checkpointer, and the
caller gets a ``Dispatch`` built from the graph's final state, as the bus
would have returned. Its outcome, with the real effect responses, goes to the
shadow stream; a worker runs the legacy path sandboxed against it and
compares the other way round.

Before an event runs, its saga is handed to the serving side if the other
side holds it (``migration_kit.live.sagas``); the saga's lock is held for the
handover and the run, so an event arriving during a handover waits. A
candidate thread whose last checkpoint is this very event is not run again:
finished, its result is returned; cut off mid-run, it is resumed to
completion.

The phase comes from an in-memory view refreshed off the publisher's thread
(``migration_kit.live.router``). In the shadow phase (and after a rollback), while
no saga is on the candidate, none of this runs: the tap's fast path is the
legacy dispatch plus one queue put (none after a rollback), with no I/O. Once
the candidate serves (canary and on), the store is on the serving path, each
of its Redis calls with a deadline (``migration_kit.store.STORE_TIMEOUT``): if
it cannot be read, or the phase view is stale, the event fails with
``StoreUnavailable`` rather than run on a side that may not hold its saga's
state. Saga locks are per saga (``migration_kit.live.locks``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any

from legacy_bus import Dispatch, Event, EventBus, Sandbox
from legacy_bus.database import capturing
from legacy_bus.records import EffectCall, ErrorInfo, Step
from graph_flows.errors import handler_exception
from migration_errors import HandlerError, StoreUnavailable
from redis.exceptions import RedisError

from migration_kit.compare.outcome import Outcome
from migration_kit.live.pruning import ThreadPruner
from migration_kit.live.router import PhaseView
from migration_kit.live.sagas import Handover, SagaLedger, Side
from migration_kit.run.threads import Finished, Resumable, thread_state

if TYPE_CHECKING:
    from migration_kit.migration import Migration

__all__ = ["Cutover", "Plan"]

_STORE_ERRORS = (RedisError, OSError, sqlite3.Error, StoreUnavailable)


@dataclass(frozen=True, slots=True)
class Plan:
    """How one root event is served: the authoritative side, whether it is shadowed, the phase."""

    side: Side
    shadow: bool
    phase: str
    fast: bool = False  # the shadow phase's fast path: legacy, no ledger


# The fast path's plans, built once: planning a shadow-phase publish allocates nothing.
_FAST = {p: Plan("legacy", p == "shadow", p, fast=True) for p in ("shadow", "rolled_back")}


class Cutover:
    """Routes a live bus's root events by phase and keeps each saga's state on its serving side.

    The phase comes from ``view`` (``migration_kit.live.router.PhaseView``, in
    memory); ``start()`` / ``close()`` run its refresher while a tap is attached.
    """

    def __init__(self, migration: Migration, bus: EventBus, view: PhaseView | None = None) -> None:
        self.migration = migration
        self.bus = bus
        self.ledger = SagaLedger(migration, bus.state_store)
        self.pruner = ThreadPruner()  # a saga's thread keeps its newest checkpoints only
        self.view = view if view is not None else PhaseView(
            lambda: migration.phases.read()[0],
            self.ledger.may_have_candidate_sagas,
            every=migration.phase_ttl / 4,
            bound=migration.phase_ttl,
            name=migration.name,
        )
        self._count_lock = threading.Lock()
        self.served = {"legacy": 0, "candidate": 0}
        self.handovers = 0
        self.redelivered = 0  # rewound events delivered on legacy
        self.store_failures = 0  # events failed with StoreUnavailable (not run on either side)

    def start(self) -> Cutover:
        """Route by an in-memory phase from now on (one read now, then the refresher thread)."""
        self.view.start()
        self.migration.router.watch(self.view)
        return self

    def close(self) -> None:
        """Stop the refresher; the migration routes by the store again."""
        self.migration.router.unwatch(self.view)
        self.view.close()

    # -- planning ------------------------------------------------------------------------------

    def plan(self, event: Event) -> Plan:
        """The side serving ``event`` now, and whether the other path shadows it (no I/O).

        Raises:
            StoreUnavailable: past the shadow phase, the phase could not be
                read from the store for longer than the view's bound.
        """
        view = self.view
        seen = view.seen
        phase = seen.phase
        if phase in _FAST:
            if not seen.candidate_sagas:
                return _FAST[phase]
            return Plan("legacy", phase == "shadow", phase)  # sagas may still be on the candidate: the ledger says
        if view.stale():
            m = self.migration
            with self._count_lock:
                self.store_failures += 1
            raise StoreUnavailable(
                f"migration {m.name!r} ({phase}): cannot read the phase from the store {m.store.display_url} "
                f"({view.last_error or 'no answer'}); event {event.id} ({event.type}) was not run on either side. "
                "Check that the store is up and reachable, or roll back (then legacy serves alone)"
            )
        side: Side = self.migration.router.side_for(event.saga_key)
        return Plan(side, phase not in ("retired", "rolled_back"), phase)

    def _count(self, side: str, handover: Handover | None) -> None:
        with self._count_lock:
            self.served[side] += 1
            if handover is not None:
                self.handovers += 1
        if handover is not None and handover.to == "candidate":
            self.view.candidate_claimed()

    def _unavailable(self, event: Event, phase: str, what: str, exc: BaseException) -> StoreUnavailable:
        m = self.migration
        with self._count_lock:
            self.store_failures += 1
        return StoreUnavailable(
            f"migration {m.name!r} ({phase}): cannot read {what} from the store "
            f"{m.store.display_url} ({type(exc).__name__}); event {event.id} ({event.type}) was not run on either side. "
            "Check that the store is up and reachable, or roll back (then legacy serves alone)"
        )

    def _cut_off(self, event: Event, exc: BaseException) -> StoreUnavailable:
        """The store failed while the candidate ran ``event`` (its checkpoints): the run is cut off mid-event."""
        m = self.migration
        with self._count_lock:
            self.store_failures += 1
        return StoreUnavailable(
            f"migration {m.name!r}: the store {m.store.display_url} failed while the candidate ran event {event.id} "
            f"({event.type}; {type(exc).__name__}): the run was cut off after its last checkpoint, and saga "
            f"{event.saga_key!r}'s next event resumes it first (a node cut off may run again). "
            "Check that the store is up and reachable, or roll back"
        )

    def prepare(self, event: Event, plan: Plan) -> None:
        """Hand the event's saga to the serving side (the caller holds the saga's lock).

        Raises:
            StoreUnavailable: the store cannot be read or written; the event
                was not run (on either side).
        """
        try:
            h = self.ledger.ensure(event.saga_key, plan.side, reason=f"routed to {plan.side} in phase {plan.phase}")
            if h is not None and h.cutoff == "rewound":  # owed to legacy now, before this newer event
                self.deliver_owed(event.saga_key)
        except _STORE_ERRORS as exc:
            raise self._unavailable(event, plan.phase, f"which side holds saga {event.saga_key!r}", exc) from None
        self._count(plan.side, h)

    def begin(self, event: Event) -> tuple[dict[str, Any], Any, dict[str, Any] | None, dict[str, Any] | None]:
        """``_start`` with its store failures as ``StoreUnavailable`` (the event was not run)."""
        try:
            return self._start(event)
        except _STORE_ERRORS as exc:
            raise self._unavailable(event, "candidate", f"saga {event.saga_key!r}'s graph thread", exc) from None

    def took_seed(self, saga: str) -> None:
        """The run took the seed: drop it from the record (best effort: a thread with a checkpoint wins anyway)."""
        try:
            self.ledger.seed_taken(saga)
        except _STORE_ERRORS:
            pass

    # -- the candidate, authoritative -----------------------------------------------------------

    def _start(self, event: Event) -> tuple[dict[str, Any], Any, dict[str, Any] | None, dict[str, Any] | None]:
        """(config, what to invoke with, state before, finished values) for a candidate run."""
        saga = event.saga_key
        config = self.ledger.config(saga)
        graph, flow = self.migration.graph, self.migration.flow
        found = thread_state(graph, config, event.id, complete=flow.is_complete if flow is not None else None)  # the one rule
        if isinstance(found, Resumable):
            return config, None, None, None  # cut off mid-run: resume it
        if isinstance(found, Finished):
            return config, None, None, found.values  # already handled here: its result, run nothing
        if isinstance(found.other, Resumable):
            return config, _Resume(event), None, None  # a previous event cut off: finish it first
        values = found.other.values if isinstance(found.other, Finished) else (graph.get_state(config).values or {})
        inp: dict[str, Any] = {"event": event.to_dict()}
        if values:
            before = (values.get("sagas") or {}).get(saga)
        else:
            doc, _ = self.ledger.record(saga)
            before = (doc or {}).get("seed")
            if before:
                inp["sagas"] = {saga: before}
        return config, inp, before or None, None

    def run_candidate(self, event: Event, capture: bool) -> tuple[Dispatch, Outcome, dict[str, Any] | None]:
        """Run ``event`` on the graph, for real, on its saga's thread (the caller holds the saga's lock)."""
        graph = self.migration.graph
        config, inp, before, done = self.begin(event)
        started = perf_counter()
        try:
            with capturing() as writes:  # the rows it writes for real, for the legacy shadow to start before
                if isinstance(inp, _Resume):
                    graph.invoke(None, config, durability="sync")
                    config, inp, before, done = self._start(event)
                final = done if done is not None else graph.invoke(inp, config, durability="sync")
        except (RedisError, StoreUnavailable) as exc:
            raise self._cut_off(event, exc) from None
        except Exception as exc:  # the graph machinery failed: as a crashed handler would
            return self._crashed(event, exc, started, capture)
        if inp is not None and "sagas" in inp:
            self.took_seed(event.saga_key)
        self.pruner.after(getattr(graph, "checkpointer", None), config)
        return self._finish(event, final, before, started, capture, writes.result())

    async def arun_candidate(
        self, event: Event, capture: bool, offload: Any = asyncio.to_thread
    ) -> tuple[Dispatch, Outcome, dict[str, Any] | None]:
        """Async twin of ``run_candidate`` (async handlers are awaited on the running loop).

        ``offload(fn, *args)`` runs its blocking store calls (``Held.run`` keeps
        the saga's lock until they return, whatever cancels the caller).
        """
        graph = self.migration.graph
        config, inp, before, done = await offload(self.begin, event)
        started = perf_counter()
        try:
            with capturing() as writes:
                if isinstance(inp, _Resume):
                    await graph.ainvoke(None, config, durability="sync")
                    config, inp, before, done = await offload(self._start, event)
                final = done if done is not None else await graph.ainvoke(inp, config, durability="sync")
        except (RedisError, StoreUnavailable) as exc:
            raise self._cut_off(event, exc) from None
        except Exception as exc:
            return self._crashed(event, exc, started, capture)
        if inp is not None and "sagas" in inp:
            await offload(self.took_seed, event.saga_key)
        await offload(self.pruner.after, getattr(graph, "checkpointer", None), config)
        return self._finish(event, final, before, started, capture, writes.result())

    def _finish(
        self, event: Event, final: dict[str, Any], before: dict[str, Any] | None, started: float, capture: bool,
        writes: tuple[Any, ...] = (),
    ) -> tuple[Dispatch, Outcome, dict[str, Any] | None]:
        duration = perf_counter() - started
        outcome = Outcome.from_flow_state(event, final, duration, started)
        if writes:
            outcome = dataclasses.replace(outcome, writes=writes)
        result = dispatch_of(event, final, duration)
        if result.exception is not None and not capture and self.bus.on_error == "raise":
            raise result.exception
        return result, outcome, before

    def _crashed(self, event: Event, exc: Exception, started: float, capture: bool) -> tuple[Dispatch, Outcome, None]:
        if not capture and self.bus.on_error == "raise":
            raise exc
        duration = perf_counter() - started
        err = ErrorInfo.of(exc)
        result = Dispatch(root=event, emitted=(), emitted_by=(), steps=(), error=err, duration=duration, exception=exc)
        return result, Outcome.crash("candidate", event, exc, duration), None

    # -- sweeps -----------------------------------------------------------------------------------

    def settle(self, *, reason: str, by: str = "sweep", sagas: Any = None) -> list[Handover]:
        """Hand every saga (or ``sagas``) to the side that serves it now (all to legacy after a rollback).

        "Every saga": those ever handed to the candidate, and in canary,
        primary and retired also those the legacy state store lists (when it
        can list them: ``keys()``), so retiring can empty the legacy store.

        Events a rollback rewound (``Policy.cutoff = "rewind"``) are then
        delivered on the live bus, so none is lost and none runs on both sides.
        """
        if sagas is None and self.migration.phase not in ("shadow", "rolled_back") and hasattr(self.ledger.states, "keys"):
            # the candidate serves some sagas: those only legacy knows are candidates to move too
            sagas = list(dict.fromkeys([*self.ledger.known(), *self.ledger.states.keys()]))
        moved = self.ledger.settle(self.migration.router.side_for, reason=reason, by=by, sagas=sagas, after=self.deliver_owed)
        with self._count_lock:
            self.handovers += len(moved)
        return moved

    def recover(self) -> list[Handover]:
        """After a restart: finish the handovers a crash cut off, and deliver the rewound events still owed."""
        moved = self.ledger.recover()
        for saga in self.ledger.known():
            with self.ledger.lock(saga):
                self.deliver_owed(saga)
        return moved

    def deliver_owed(self, saga: str) -> bool:
        """Deliver on legacy the event a rollback rewound for ``saga``, if one is owed (caller holds the lock).

        It runs on the live bus's state, its effect calls answered with the
        real calls the cut-off candidate run already made (so none happens
        twice) and real for the rest. Between delivering and forgetting it
        a crash would deliver it again: at least once, in that one window.
        """
        owed = self.ledger.owed(saga)
        if not owed:
            return False
        answers = [EffectCall.from_dict(c) for c in owed.get("effects") or []]
        self.bus.dispatch(Event.from_dict(owed["event"]), sandbox=Sandbox(answers, otherwise="real"), capture=True)
        self.ledger.delivered(saga)
        with self._count_lock:
            self.redelivered += 1
        return True


def _event_of(final: dict[str, Any], error: dict[str, Any]) -> str | None:
    """The id of the event whose handler raised ``error`` (the last failed run of its node)."""
    return next((r["event"] for r in reversed(final.get("trace") or []) if r["node"] == error.get("node") and r["error"]), None)


class _Resume:
    __slots__ = ("event",)

    def __init__(self, event: Event) -> None:
        self.event = event


def dispatch_of(event: Event, final: dict[str, Any], duration: float) -> Dispatch:
    """The ``Dispatch`` a graph run's final state amounts to, as the bus would have returned it."""
    emitted = [Event.from_dict(e) for e in final.get("emitted") or []]
    by_id = {event.id: event} | {e.id: e for e in emitted}
    producer: dict[str, str] = {}
    steps = []
    for rec in final.get("trace") or []:
        published = tuple(by_id[c] for c in rec["out"] if c in by_id)
        for c in rec["out"]:
            producer[c] = rec["node"]
        steps.append(
            Step(
                node=rec["node"],
                event=by_id.get(rec["event"], event),
                depth=rec["depth"],
                published=published,
                effects=tuple(EffectCall.from_dict(c) for c in rec["effects"]),
                error=ErrorInfo.from_dict(rec["error"]),
                started=rec.get("started", 0.0),
                duration=rec["duration"],
            )
        )
    errors = final.get("errors") or []
    error = ErrorInfo.from_dict(errors[0]) if errors else None
    raised = next((e for e in errors if e.get("stop", True)), None)  # a logged error does not reach the caller
    state = (final.get("sagas") or {}).get(event.saga_key) or None
    return Dispatch(
        root=event,
        emitted=tuple(emitted),
        emitted_by=tuple(producer.get(e.id, "?") for e in emitted),
        steps=tuple(steps),
        error=error,
        state=state,
        duration=duration,
        exception=None if raised is None else handler_exception(raised, by_id.get(_event_of(final, raised), event).id),
    )
