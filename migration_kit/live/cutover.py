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
handover and the run, so an event arriving during a handover waits. The run
follows the one plan of ``migration_kit.run.executor.plan_run`` (as replay and
the shadow worker do): a candidate thread whose last checkpoint is this very
event is not run again: finished, its result is returned; cut off mid-run, it
is resumed to completion; a previous event's run cut off is finished first.
``run_candidate`` / ``arun_candidate`` drive one sans-IO core (``_serve``).

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
import contextlib
import dataclasses
import sqlite3
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from legacy_bus import Dispatch, Event, EventBus, Sandbox
from legacy_bus.database import capturing
from legacy_bus.records import EffectCall, ErrorInfo, Step
from graph_flows.errors import handler_exception
from migration_errors import MigrationKitError, StoreUnavailable
from redis.exceptions import RedisError

from migration_kit.compare.outcome import Outcome
from migration_kit.decide.phases import PhaseControl
from migration_kit.live.pruning import ThreadPruner
from migration_kit.live.router import PhaseView, Router
from migration_kit.live.sagas import Handover, SagaLedger, Side
from migration_kit.run.candidate import CandidateGraph
from migration_kit.run.executor import RunPlan, adrive, drive, plan_run
from migration_kit.run.threads import thread_state

__all__ = ["Cutover", "Plan", "dispatch_of"]

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
    It is the ``SagaOwner`` of its ledger (``name``, ``store``, ``graph``, ``policy``).

    Args:
        name: the migration's name (saga threads and messages are named by it).
        bus: the live bus (its state store is the legacy side of each saga).
        store: the migration's ``Store`` (the ledger's records, the phase).
        candidate: the candidate graph, run for real on each saga's thread.
        router: which side serves a saga now.
        phases: the phase as this process reads and moves it.
        policy: the decision policy (``policy.cutoff``: a run cut off mid-saga).
        view: the in-memory phase (default: one refreshed from ``phases``).
    """

    def __init__(
        self,
        name: str,
        bus: EventBus,
        *,
        store: Any,
        candidate: CandidateGraph,
        router: Router,
        phases: PhaseControl,
        policy: Any,
        view: PhaseView | None = None,
    ) -> None:
        self.name = name
        self.bus = bus
        self.store = store
        self.candidate = candidate
        self.router = router
        self.phases = phases
        self.policy = policy
        self.ledger = SagaLedger(self, bus.state_store)
        self.pruner = ThreadPruner()  # a saga's thread keeps its newest checkpoints only
        self.view = view if view is not None else PhaseView(
            lambda: phases.machine.read()[0],
            self.ledger.may_have_candidate_sagas,
            every=phases.ttl / 4,
            bound=phases.ttl,
            name=name,
        )
        self._count_lock = threading.Lock()
        self.served = {"legacy": 0, "candidate": 0}
        self.handovers = 0
        self.redelivered = 0  # rewound events delivered on legacy
        self.store_failures = 0  # events failed with StoreUnavailable (not run on either side)

    @property
    def graph(self) -> Any:
        """The compiled candidate graph, whose checkpointer holds the sagas' threads."""
        return self.candidate.graph

    def start(self) -> Cutover:
        """Route by an in-memory phase from now on (one read now, then the refresher thread)."""
        self.view.start()
        self.router.watch(self.view)
        return self

    def close(self) -> None:
        """Stop the refresher; the migration routes by the store again."""
        self.router.unwatch(self.view)
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
            with self._count_lock:
                self.store_failures += 1
            raise StoreUnavailable(
                f"migration {self.name!r} ({phase}): cannot read the phase from the store {self.store.display_url} "
                f"({view.last_error or 'no answer'}); event {event.id} ({event.type}) was not run on either side. "
                "Check that the store is up and reachable, or roll back (then legacy serves alone)"
            )
        side: Side = self.router.side_for(event.saga_key)
        return Plan(side, phase not in ("retired", "rolled_back"), phase)

    def count_served(self, side: str, handover: Handover | None) -> None:
        """Count one root event served on ``side`` (and the handover it took, if any)."""
        with self._count_lock:
            self.served[side] += 1
            if handover is not None:
                self.handovers += 1
        if handover is not None and handover.to == "candidate":
            self.view.candidate_claimed()

    def _unavailable(self, event: Event, phase: str, what: str, exc: BaseException) -> StoreUnavailable:
        with self._count_lock:
            self.store_failures += 1
        return StoreUnavailable(
            f"migration {self.name!r} ({phase}): cannot read {what} from the store "
            f"{self.store.display_url} ({type(exc).__name__}); event {event.id} ({event.type}) was not run on either side. "
            "Check that the store is up and reachable, or roll back (then legacy serves alone)"
        )

    def _cut_off(self, event: Event, exc: BaseException) -> StoreUnavailable:
        """The store failed while the candidate ran ``event`` (its checkpoints): the run is cut off mid-event."""
        with self._count_lock:
            self.store_failures += 1
        return StoreUnavailable(
            f"migration {self.name!r}: the store {self.store.display_url} failed while the candidate ran event {event.id} "
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
        self.count_served(plan.side, h)

    def begin(self, event: Event) -> tuple[dict[str, Any], RunPlan]:
        """The saga thread's config and ``planned``'s plan, store failures as ``StoreUnavailable`` (the event was not run)."""
        try:
            config = self.ledger.config(event.saga_key)
            return config, self.planned(event, config)
        except _STORE_ERRORS as exc:
            raise self._unavailable(event, "candidate", f"saga {event.saga_key!r}'s graph thread", exc) from None

    def took_seed(self, saga: str) -> None:
        """The run took the seed: drop it from the record (best effort: a thread with a checkpoint wins anyway)."""
        try:
            self.ledger.seed_taken(saga)
        except _STORE_ERRORS:
            pass

    # -- the candidate, authoritative -----------------------------------------------------------

    def planned(self, event: Event, config: dict[str, Any]) -> RunPlan:
        """The one plan (``migration_kit.run.executor.plan_run``) for ``event`` on its saga's thread.

        Reads the thread (``migration_kit.run.threads``: the one rule) and, only when
        the thread holds no state, the saga's seed in the ledger.
        """
        saga = event.saga_key
        found = thread_state(self.graph, config, event.id, complete=self.candidate.complete())
        start: dict[str, Any] = {"event": event.to_dict()}
        plan = plan_run(found, start, (), saga=saga)
        if plan.wants_seed:
            doc, _ = self.ledger.record(saga)
            plan = plan_run(found, start, (), saga=saga, seed=(doc or {}).get("seed"))
        return plan

    def _serve(self, event: Event, capture: bool) -> Generator[_Call | _Drive, Any, tuple[Dispatch, Outcome, dict[str, Any] | None]]:
        """Serving ``event`` on the candidate, once for both drivers (sans-IO: it yields what to call or drive).

        Store failures while it runs are ``StoreUnavailable`` (the run is cut off, see
        ``_cut_off``); any other failure of the graph machinery is answered as a crashed handler.
        """
        graph = self.graph
        config, plan = yield _Call(self.begin, event)
        started = perf_counter()
        try:
            with capturing() as writes:  # the rows it writes for real, for the legacy shadow to start before
                if plan.again:  # a previous event's run was cut off: finish it first, then plan this one
                    yield _Drive(graph, config, plan)
                    plan = yield _Call(self.planned, event, config)
                    if plan.again or plan.wants_seed:
                        raise MigrationKitError(
                            f"saga {event.saga_key!r}: the run a previous event left on its graph thread "
                            f"{config['configurable']['thread_id']!r} did not finish when resumed; event {event.id} was not run"
                        )
                final = yield _Drive(graph, config, plan)
        except (RedisError, StoreUnavailable) as exc:
            raise self._cut_off(event, exc) from None
        except Exception as exc:  # the graph machinery failed: as a crashed handler would
            return self._crashed(event, exc, started, capture)
        if plan.seeded:
            yield _Call(self.took_seed, event.saga_key)
        yield _Call(self.pruner.after, getattr(graph, "checkpointer", None), config)
        return self._finish(event, final, plan.before, started, capture, writes.result())

    def run_candidate(self, event: Event, capture: bool) -> tuple[Dispatch, Outcome, dict[str, Any] | None]:
        """Run ``event`` on the graph, for real, on its saga's thread (the caller holds the saga's lock)."""
        core = self._serve(event, capture)
        step = _advance(core)
        while not isinstance(step, _Done):
            step = _advance(core, *_attempt(_do, step))
        return step.value

    async def arun_candidate(
        self, event: Event, capture: bool, offload: Any = asyncio.to_thread
    ) -> tuple[Dispatch, Outcome, dict[str, Any] | None]:
        """Async twin of ``run_candidate`` (async handlers are awaited on the running loop).

        ``offload(fn, *args)`` runs its blocking store calls (``Held.run`` keeps
        the saga's lock until they return, whatever cancels the caller).
        """
        core = self._serve(event, capture)
        step = _advance(core)
        while not isinstance(step, _Done):
            step = _advance(core, *await _aattempt(_ado(step, offload)))
        return step.value

    def _finish(
        self, event: Event, final: dict[str, Any], before: dict[str, Any] | None, started: float, capture: bool,
        writes: tuple[Any, ...] = (),
    ) -> tuple[Dispatch, Outcome, dict[str, Any] | None]:
        duration = perf_counter() - started
        outcome = Outcome.from_flow_state(event, final, duration, started)
        result = dispatch_of(event, final, duration, outcome)
        if writes:
            outcome = dataclasses.replace(outcome, writes=writes)
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
        if sagas is None and self.phases.read(fresh=False)[0].phase not in ("shadow", "rolled_back") and hasattr(self.ledger.states, "keys"):
            # the candidate serves some sagas: those only legacy knows are candidates to move too
            sagas = list(dict.fromkeys([*self.ledger.known(), *self.ledger.states.keys()]))
        moved = self.ledger.settle(self.router.side_for, reason=reason, by=by, sagas=sagas, after=self.deliver_owed)
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


# -- the two drivers of ``Cutover._serve`` ---------------------------------------------------------


class _Call:
    """A blocking store call the core asks for (the async driver runs it off the loop)."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn = fn
        self.args = args


@dataclass(frozen=True, slots=True)
class _Drive:
    """A plan the core asks to carry out on the graph, for real, each node checkpointed before the next."""

    graph: Any
    config: dict[str, Any]
    plan: RunPlan


@dataclass(frozen=True, slots=True)
class _Done:
    value: Any


def _real(plan: RunPlan) -> contextlib.nullcontext[None]:  # noqa: ARG001 - serving for real: no sandbox, real effect ports
    return contextlib.nullcontext()


def _advance(core: Generator[Any, Any, Any], reply: Any = None, error: BaseException | None = None) -> Any:
    """The core's next step, given the last one's ``reply`` (or its ``error``, raised in the core); ``_Done`` at its end."""
    try:
        return core.throw(error) if error is not None else core.send(reply)
    except StopIteration as done:
        return _Done(done.value)


def _attempt(fn: Callable[[Any], Any], step: Any) -> tuple[Any, BaseException | None]:
    try:
        return fn(step), None
    except BaseException as exc:  # noqa: BLE001 - handed to the core, which decides (or re-raises it)
        return None, exc


async def _aattempt(pending: Any) -> tuple[Any, BaseException | None]:
    try:
        return await pending, None
    except BaseException as exc:  # noqa: BLE001 - handed to the core, which decides (or re-raises it)
        return None, exc


def _do(step: _Call | _Drive) -> Any:
    if isinstance(step, _Drive):
        return drive(step.graph, step.config, step.plan, _real, durability="sync")
    return step.fn(*step.args)


async def _ado(step: _Call | _Drive, offload: Any) -> Any:
    if isinstance(step, _Drive):
        return await adrive(step.graph, step.config, step.plan, _real, durability="sync")
    return await offload(step.fn, *step.args)


# -- what the caller gets -------------------------------------------------------------------------


def dispatch_of(event: Event, final: dict[str, Any], duration: float, outcome: Outcome | None = None) -> Dispatch:
    """The ``Dispatch`` a graph run's final state amounts to, as the bus would have returned it.

    Derived from the run's ``Outcome`` (``Outcome.from_flow_state``: the one parser of the
    final state; pass it when already built): only the whole emitted events and the
    ``errors`` channel (what reaches the caller) are read here.
    """
    if outcome is None:
        outcome = Outcome.from_flow_state(event, final, duration)
    emitted = tuple(Event.from_dict(e) for e in final.get("emitted") or [])
    by_index = (event, *emitted)  # an Outcome's event_index: 0 the root, k emitted[k - 1]; -1 unknown: the root
    steps = tuple(
        Step(
            node=run.node,
            event=by_index[run.event_index] if run.event_index > 0 else event,
            depth=run.depth,
            published=tuple(by_index[i + 1] for i in run.out),
            effects=run.effects,
            error=run.error,
            started=run.started,
            duration=run.duration,
        )
        for run in outcome.trace
    )
    errors = final.get("errors") or []
    raised = next((e for e in errors if e.get("stop", True)), None)  # a logged error does not reach the caller
    return Dispatch(
        root=event,
        emitted=emitted,
        emitted_by=tuple(e.node for e in outcome.emitted),
        steps=steps,
        error=ErrorInfo.from_dict(errors[0]) if errors else None,
        state=outcome.state,
        duration=duration,
        exception=None if raised is None else handler_exception(raised, _raised_by(steps, raised, event).id),
    )


def _raised_by(steps: tuple[Step, ...], error: dict[str, Any], root: Event) -> Event:
    """The event whose handler raised ``error`` (the last failed run of its node; the root if none)."""
    return next((s.event for s in reversed(steps) if s.node == error.get("node") and s.error is not None), root)
