"""``Migration``: one legacy bus, one candidate graph, and the evidence between them.

A facade: it builds the parts below from its arguments and delegates to them.
Nothing below it imports it; each part receives only what it needs.

==================  ==========================================================
part                what it owns
==================  ==========================================================
``store``           one URL for everything kept (``migration_kit.store``)
``candidate_graph`` the candidate, compiled once (``run.candidate``)
``noise_book``      learned noise, loaded and saved (``compare.noise``)
``executor``        one event through both paths, compared (``run.executor``)
``phase_control``   the phase, read and moved (``decide.phases``)
``router``          which side serves a saga (``live.router``)
``evidence_store``  the evidence per source (``decide.evidence``)
``replayer``        recorded logs through the executor (``run.replay``)
==================  ==========================================================
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from graph_flows import BusFlow
from legacy_bus import EffectCall, Event, LogEntry, OverlayStateStore, StateStore
from legacy_bus.protocol import LegacyBus, require_legacy_bus
from migration_errors import ConfigurationError
from redis_connect.connection import connect

from migration_kit.compare.comparator import Comparator, Comparison
from migration_kit.compare.noise import NoiseBook, NoiseModel
from migration_kit.compare.outcome import Outcome
from migration_kit.decide.decision import Decision
from migration_kit.decide.evidence import Evidence, EvidenceStore
from migration_kit.decide.phases import PhaseControl, PhaseMachine, PhaseState, Transition
from migration_kit.decide.policy import Policy, load_policy
from migration_kit.live.router import Router, route_point
from migration_kit.observe.faults import Faults
from migration_kit.observe.redaction import Redactor
from migration_kit.observe.telemetry import Telemetry
from migration_kit.report.report import ReplayReport, ReplayTally
from migration_kit.run.candidate import CandidateGraph, require_candidate
from migration_kit.run.executor import Executor
from migration_kit.run.replay import Replayer, Source
from migration_kit.store import Store
from migration_kit.live.cutover import Cutover
from migration_kit.live.sagas import SagaLedger
from migration_kit.live.worker import Worker
from migration_kit.live.tap import COUNTERS, ShadowKeys, active_handle, attach, divergence_groups, read_status, worker_evidence
from migration_kit.types import Side

__all__ = ["Migration", "route_point"]


class Migration:
    """A migration of ``legacy`` (an ``EventBus``) onto ``candidate`` (a LangGraph graph).

    Args:
        name: names the migration in the store, traces and reports.
        legacy: the event bus whose handlers are the behaviour to keep.
        candidate: a ``BusFlow`` (compiled here with the store's
            checkpointer) or a compiled graph following the flow state
            contract of ``graph_flows.state``. A graph compiled with its own
            checkpointer keeps it; one compiled without gets the store's.
        comparator: the rules for comparing outcomes (``Comparator()``).
        store: one URL for everything the migration keeps: ``memory://``
            (default), ``sqlite:///path`` or ``redis://host:port/db``.
        policy: the decision policy: a ``Policy``, a dict, or a ``.toml`` /
            ``.yaml`` file; None uses ``default_policy()`` (any divergence
            holds; a proven regression rolls back a canary).
        redact: glob paths whose values never leave the process unmasked.
        saga_capacity: how many sagas' scratch state a replay keeps in memory.
    """

    def __init__(
        self,
        name: str,
        *,
        legacy: LegacyBus,
        candidate: Any,
        comparator: Comparator | None = None,
        store: str | None = None,
        policy: Any = None,
        redact: Iterable[str] | None = None,
        saga_capacity: int = 10_000,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError("Migration(name, ...): the name must be a non-empty string")
        require_legacy_bus(legacy, "Migration(legacy=...)")
        require_candidate(candidate, "Migration(candidate=...)")
        self.name = name
        self.legacy = legacy
        self.candidate = candidate
        self.comparator = comparator if comparator is not None else Comparator()
        self.policy: Policy = load_policy(policy)
        self.redact = tuple(redact or ())
        self.saga_capacity = saga_capacity
        self.store_explicit = store is not None
        self.redactor = Redactor(self.redact)  # what leaves the process is masked by it: built once, handed to every sink
        self.faults = Faults(redactor=self.redactor)  # every machinery failure the parts swallow goes through it
        self.telemetry = Telemetry(name, phase=lambda: str(getattr(self, "phase", "shadow")), redactor=self.redactor, faults=self.faults)
        self.faults.telemetry = self.telemetry
        self._assemble(Store(store, name))

    def _assemble(self, store: Store, *, ttl: float = 1.0) -> None:
        """Build the parts on ``store`` (at construction, and when the store is replaced)."""
        self.store = store
        self.candidate_graph = CandidateGraph(self.candidate, lambda: store.checkpointer)
        self.noise_book = NoiseBook(store, self.redactor.difference_dict)
        self.executor = Executor(
            self.name, self.legacy, self.candidate_graph, self.comparator, self.noise_book, self._observed, faults=self.faults
        )
        self.evidence_store = EvidenceStore(store, self._worker_evidence if store.scheme in ("redis", "rediss") else None)
        self.phase_control = PhaseControl(store, lambda: self.evidence().summary(), ttl=ttl)
        self.router = Router(self.name, self.phase_control)
        self.replayer = Replayer(
            self.name,
            store=store,
            executor=self.executor,
            phases=self.phase_control,
            evidence=self.evidence_store,
            noise=self.noise_book,
            policy=self.policy,
            redactor=self.redactor,
            saga_capacity=self.saga_capacity,
        )

    def __repr__(self) -> str:
        return f"<Migration {self.name!r} store={self.store.display_url!r}>"

    def __enter__(self) -> Migration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Persist learned noise and release the store's connections."""
        try:
            self.save_noise()
        finally:
            self.store.close()
            self.candidate_graph.reset()

    def use_store(self, url: str) -> Migration:
        """Point the migration at another store (what the CLI's ``--store`` does); returns self."""
        self.close()
        self._assemble(Store(url, self.name), ttl=self.phase_ttl)
        self.store_explicit = True
        return self

    def reopen_store(self) -> None:
        """Open the store anew, leaving the inherited connections alone (in a forked process closing them
        could disturb the parent's: SQLite may checkpoint its WAL away, Redis sockets would shut down)."""
        self.replayer.reopen_store()

    @property
    def phase_ttl(self) -> float:
        """Seconds a read phase is trusted by ``route()`` and telemetry (an attached tap refreshes 4 times as often)."""
        return self.phase_control.ttl

    @phase_ttl.setter
    def phase_ttl(self, seconds: float) -> None:
        self.phase_control.ttl = seconds

    # -- the candidate ---------------------------------------------------------------

    @property
    def flow(self) -> BusFlow | None:
        """The candidate as a ``BusFlow``, when it was given as one."""
        return self.candidate_graph.flow

    @property
    def graph(self) -> Any:
        """The compiled candidate graph, with the store's checkpointer unless it has its own."""
        return self.candidate_graph.graph

    def thread_for(self, event: Event) -> str:
        """The graph thread of one event's comparison run (replay, shadow worker): ``<name>:<event id>``."""
        return self.executor.thread_for(event)

    # -- comparing ---------------------------------------------------------------------

    def compare(self, event: Event, *, effects: Iterable[EffectCall] = ()) -> Comparison:
        """Run one event through both paths, sandboxed, and compare what they did.

        Saga state is read from the bus's own store (a copy: nothing live
        changes). ``effects`` are authoritative calls recorded for this event,
        whose responses answer both paths' sandboxed calls.
        """
        if not isinstance(event, Event):
            raise TypeError(f"compare() takes an Event, not {type(event).__name__}")
        states = OverlayStateStore(self.legacy.state_store)
        seed = self.legacy.state_store.peek(event.saga_key)
        return self.executor.compare(event, tuple(effects), states, copy.deepcopy(seed) if seed else None)[0]

    def _observed(self, comparison: Comparison, traceparent: str | None = None) -> Comparison:
        """Count and trace a comparison (telemetry never fails the comparison)."""
        try:
            trace_id = self.telemetry.record(comparison, traceparent=traceparent)
        except Exception as exc:  # noqa: BLE001 - swallowed: observability must not break the migration
            self.faults.raised("telemetry.record", exc)
            return comparison
        return dataclasses.replace(comparison, trace_id=trace_id) if trace_id else comparison

    def legacy_step(self, entry: LogEntry, states: StateStore, *, sample: bool = False) -> Any:
        """Run one logged event's legacy path on a replay's saga state (``Executor.legacy_step``)."""
        return self.executor.legacy_step(entry, states, sample=sample)

    def replay_step(
        self,
        entry: LogEntry,
        legacy_states: StateStore,
        candidate_states: StateStore,
        *,
        noise: NoiseModel | None = None,
        sample: bool | None = None,
        resume: bool = False,
    ) -> Comparison:
        """Compare one logged event on a replay's saga state, learning into ``noise`` (a partition's step)."""
        return self.executor.replay_step(entry, legacy_states, candidate_states, noise=noise, sample=sample, resume=resume)

    # -- learned noise ---------------------------------------------------------------------

    @property
    def noise(self) -> NoiseModel:
        """Noise learned so far (loaded from the store on first use)."""
        return self.noise_book.model

    def save_noise(self) -> None:
        """Persist what was learned, merged with what other processes learned meanwhile."""
        self.noise_book.save()

    # -- replaying ---------------------------------------------------------------------

    def replay(
        self,
        events_or_path: Source,
        *,
        skip_bad: bool = False,
        resume: bool = False,
        on_result: Callable[[Comparison, ReplayTally], None] | None = None,
        checkpoint_every: int = 100,
        stop: Any = None,
        workers: int | None = None,
        **distributed: Any,
    ) -> ReplayReport:
        """Replay recorded events through both paths; returns the report.

        Streams the log: memory stays flat over any length. Saga state
        carries across the events of a replay (starting empty), on each path
        separately. A line that is not a valid event, or whose type no handler
        subscribes to, raises ``BadEventLog`` naming the line, or with
        ``skip_bad=True`` is skipped and listed in the report.

        A replay of a file saves its progress in the store every
        ``checkpoint_every`` events and when interrupted (Ctrl-C raises
        ``ReplayInterrupted`` once the progress is saved). ``resume=True``
        continues the unfinished replay of the same file, if there is one,
        ``stop`` (a ``threading.Event``) ends it like Ctrl-C after the event in hand,
        and reports exactly what an uninterrupted run would have; a log
        changed since is refused, naming what changed.

        ``workers=N`` splits a log file across N processes by saga (and lets
        ``migration-kit worker --replay`` processes elsewhere join through a
        Redis store); the report is the one a single process gives. See
        ``migration_kit.run.distributed`` (its options: ``partitions``,
        ``lease_ttl``, ``batch``). ``on_result`` then gets ``(None, progress)``
        about once a second, ``progress`` having ``total`` and ``divergent``.
        """
        return self.replayer.replay(
            events_or_path, skip_bad=skip_bad, resume=resume, on_result=on_result,
            checkpoint_every=checkpoint_every, stop=stop, workers=workers, **distributed,
        )

    def seal(self, value: Any) -> dict[str, str]:
        """Saga state made ready for the store's records (encrypted at rest when checkpoints are)."""
        return self.store.seal(value)

    def unseal(self, doc: Any) -> Any:
        """What ``seal`` made, back."""
        return self.store.unseal(doc)

    def unfinished_replay(self, path: str | Path | None = None) -> str | None:
        """The log path of the last replay (or of ``path``'s) if it did not finish (what ``resume`` continues)."""
        return self.replayer.unfinished_replay(path)

    def replayed(self, path: str | Path) -> bool:
        """Whether a replay of ``path`` saved any progress in this store (finished or not)."""
        return self.replayer.replayed(path)

    def replay_started(self, path: str | Path) -> None:
        """Record that a replay of ``path`` starts, so ``resume`` finds it even if killed before its first save."""
        self.replayer.replay_started(path)

    # -- phases, routing, status ---------------------------------------------------------------

    @property
    def phases(self) -> PhaseMachine:
        """The persisted phase state machine on this migration's store."""
        return self.phase_control.machine

    @property
    def phase(self) -> str:
        """The current phase: ``shadow | canary | primary | retired | rolled_back`` (read from the store)."""
        return self.phase_control.read(fresh=False)[0].phase

    @property
    def phase_state(self) -> PhaseState:
        """The current phase with its canary percentage, attempt, and who set it when and why."""
        return self.phase_control.read()[0]

    def promote(self, to: str | None = None, percent: float | None = None, *, by: str = "user", reason: str | None = None) -> Transition:
        """Move to the next phase (or the next canary step), or forward to ``to`` / ``percent``.

        From ``rolled_back`` it starts a new attempt (from ``shadow`` unless
        ``to`` says otherwise; the evidence of the old attempt is set aside).
        It acts on the phase this object last saw (through ``phase``,
        ``status()`` or a transition; read now if it saw none): when another
        process changed it since, nothing is written and ``PhaseConflict``
        says what it is now. Raises ``InvalidTransition`` for a move the
        state machine does not allow.
        """
        return self.phase_control.promote(to=to, percent=percent, by=by, reason=reason)

    def rollback(self, reason: str, *, by: str = "user") -> Transition:
        """Send all traffic back to the legacy path, from any phase; ``reason`` is required."""
        return self.phase_control.rollback(reason, by=by)

    def route(self, event: Event) -> Side:
        """Which path serves ``event`` now: ``legacy`` or ``candidate``.

        Sticky per saga: in canary, a stable hash of the migration's name and
        the event's correlation id (its own id for a root) picks a point in
        [0, 100); the candidate serves it when that is below the percentage,
        so a saga never switches paths while the percentage only grows.
        """
        return self.router.side_for(event.saga_key)

    # -- sagas across the cutover -----------------------------------------------------------

    def sagas(self, states: Any = None) -> Any:
        """The saga ledger: which side holds each saga (``migration_kit.live.sagas.SagaLedger``).

        ``states`` is the legacy side's state store (default: the live bus's).
        """
        return SagaLedger(self, states if states is not None else self.legacy.state_store)

    def saga(self, correlation_id: str) -> dict[str, Any]:
        """Where a saga's state lives now and what it is: ``{"side", "state", "handovers"}``."""
        ledger = self.sagas()
        side, state = ledger.state(correlation_id)
        doc, _ = ledger.record(correlation_id)
        return {"side": side, "state": state, "handovers": int((doc or {}).get("handovers", 0))}

    def settle(self, reason: str = "settle", *, sagas: Iterable[str] | None = None) -> list[Any]:
        """Hand every saga to the side serving it now (after a rollback: all back to legacy).

        Sagas hand themselves over when their next event arrives; this moves
        them now: every saga ever handed to the candidate, or the correlation
        ids in ``sagas`` (e.g. all open orders, right after a promotion).

        Run it where the live bus's state store is (the attached process, or
        any process when that store is Redis). Handovers a crash cut off are
        finished first. Returns the ``Handover``s made.
        """
        handle = active_handle(self)
        cutover = handle.cutover if handle is not None else self._new_cutover()
        return cutover.settle(reason=reason, sagas=sagas)

    def handovers(self) -> list[dict[str, Any]]:
        """The audit of every saga handover, oldest first: saga, from, to, why, by whom, when."""
        return self.sagas().audit()

    def history(self) -> list[dict[str, Any]]:
        """Every phase transition, oldest first: when, from, to, by whom, why, and the evidence then."""
        return self.phases.history()

    def evidence(self) -> Evidence:
        """The evidence stored for the current attempt: every replay's (and worker's) merged."""
        return self.evidence_store.stored(self.phase_control.read()[0].attempt)

    def decide(self) -> Decision:
        """The policy's decision over the stored evidence, in the current phase."""
        state = self.phase_control.read()[0]
        return self.policy.evaluate(self.evidence_store.stored(state.attempt), phase=state.phase, percent=state.percent)

    def status(self) -> dict[str, Any]:
        """Where the migration stands: phase, counts, the decision and the history (JSON-ready)."""
        state = self.phase_control.read()[0]
        ev = self.evidence_store.stored(state.attempt)
        decision = self.policy.evaluate(ev, phase=state.phase, percent=state.percent)
        try:
            shadow = self.shadow_status()
        except Exception:  # noqa: BLE001 - status must show what it can
            shadow = {}
        return {
            "migration": self.name,
            "store": self.store.display_url,
            "phase": state.phase,
            "percent": state.percent,
            "attempt": state.attempt,
            "since": state.since,
            "compared": ev.compared,
            "divergent": ev.divergent,
            "errors": ev.errors,
            "pending": shadow.get("pending", 0),
            "shed": shadow.get("shed", 0),
            "decision": decision.to_dict(),
            "policy": self.policy.name,
            "evidence": ev.summary(),
            "history": self.history(),
        }

    def _worker_evidence(self, attempt: int) -> dict[str, Any]:
        """The evidence shadow workers recorded with their results, on the store's Redis."""
        return worker_evidence(self.store.records, ShadowKeys(self.name), attempt)

    # -- live shadow traffic ---------------------------------------------------------------

    def attach(self, store_url: str | None = None, **options: Any) -> Any:
        """Hook the live bus: every root publish is shadowed through a Redis Stream; returns the handle.

        Each root publish runs on the legacy path exactly as before (real
        effects; its values and exceptions reach the caller unchanged); the
        event and its observed outcome go to a bounded queue and a background
        sender, which sheds (and counts) when the queue is full or Redis is
        slow or down. Shadow workers (``migration-kit worker``) compare.
        Idempotent while attached; ``handle.close()`` restores the bus exactly.

        Args:
            store_url: the Redis holding the stream (default: this
                migration's store, which must then be ``redis://``).
            options: ``queue_size`` (10,000), ``batch`` (200 per XADD
                pipeline), ``maxlen`` (100,000, approximate stream cap),
                ``timeout`` (1 s for Redis commands).

        Raises:
            ConfigurationError: no Redis URL to shadow into.
        """
        url = store_url or (self.store.url if self.store.scheme in ("redis", "rediss") else None)
        if url is None:
            raise ConfigurationError(
                f"Migration({self.name!r}).attach(): live shadow traffic needs Redis; pass attach('redis://host:port/0') "
                f"or give the migration a Redis store (it has {self.store.display_url})"
            )
        options.setdefault("redactor", self.redactor)
        options.setdefault("faults", self.faults)
        return attach(self, url, cutover=self._new_cutover, **options)

    def _new_cutover(self) -> Cutover:
        """A ``Cutover`` of the live bus, built from the parts (a new tap gets one; ``settle`` without a tap)."""
        return Cutover(
            self.name, self.legacy, store=self.store, candidate=self.candidate_graph,
            router=self.router, phases=self.phase_control, policy=self.policy,
        )

    def worker(self, url: str | None = None, **options: Any) -> Worker:
        """A shadow worker comparing this migration's live traffic (``migration_kit.live.worker.Worker``); ``run()`` it.

        ``url`` is the Redis with the shadow stream (default: this migration's
        store); ``options`` are the worker's (``consumer``, ``concurrency``,
        ``block_ms``, ``claim_idle_ms``, ``max_events``, ``evidence_every``,
        ``batch``, ``trim``).
        """
        return Worker(
            self.name,
            store=self.store,
            executor=self.executor,
            candidate=self.candidate_graph,
            noise=self.noise_book,
            phases=self.phase_control,
            evidence=self.evidence_store,
            policy=self.policy,
            redactor=self.redactor,
            faults=self.faults,
            url=url,
            **options,
        )

    def shadow_status(self, store_url: str | None = None) -> dict[str, Any]:
        """Live shadow counts: compared, divergent, errors, pending, shed (JSON-ready).

        Read from the Redis the tap and the workers use (``store_url``, else
        the attached tap's, else this migration's Redis store). ``shed``
        includes this process's sheds not yet reported to Redis. When Redis
        cannot be read, the counts are this process's and ``error`` says why.
        """
        handle = active_handle(self)
        local_shed = 0 if handle is None else handle.unreported_shed
        url = store_url or (handle.url if handle is not None else None)
        if url is None and self.store.scheme in ("redis", "rediss"):
            url = self.store.url
        out: dict[str, Any] = {name: 0 for name in COUNTERS} | {"pending": 0}
        if url is None:
            out["shed"] = local_shed
            return out
        keys = ShadowKeys(self.name)
        try:
            client = connect(url, socket_timeout=2.0, socket_connect_timeout=2.0)
            try:
                out = read_status(client, keys)
                out["groups"] = divergence_groups(client, keys)
            finally:
                client.close()
        except Exception as exc:  # status must say what is wrong, not fail
            out["error"] = f"{type(exc).__name__}: {exc}"
        out["shed"] = out.get("shed", 0) + local_shed
        if handle is not None:
            out["tap"] = handle.stats()
        return out

    def compare_recorded(
        self,
        event: Event,
        legacy: Outcome | None,
        state_before: dict[str, Any] | None = None,
        *,
        traceparent: str | None = None,
        resume: bool = True,
        candidate: Outcome | None = None,
    ) -> Comparison:
        """Compare the candidate against a recorded legacy outcome (the legacy path is not run again).

        The other way round when ``legacy`` is None and ``candidate`` is the
        recorded outcome of the candidate serving for real (canary, primary):
        the legacy path runs sandboxed, answered with the candidate's effect
        responses, from ``state_before``, and is compared against it.

        The candidate runs sandboxed, its effect calls answered with the
        responses the legacy path recorded, from ``state_before`` (the saga
        state before the event). Its graph thread is ``<name>:<event id>``:
        when that thread has a checkpoint with pending tasks (a worker died
        mid-run) it is resumed from there instead of started again. ``resume=False``
        skips looking (an event delivered for the first time has no checkpoint).
        """
        return self.executor.compare_recorded(
            event, legacy, state_before, traceparent=traceparent, resume=resume, candidate=candidate
        )
