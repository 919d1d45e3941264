"""``Migration``: one legacy bus, one candidate graph, and the evidence between them."""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import hashlib
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from time import perf_counter
from typing import Any, Callable

from graph_flows import BusFlow
from legacy_bus import (
    EffectCall,
    Event,
    EventBus,
    EventLog,
    LogEntry,
    OverlayStateStore,
    Sandbox,
    SkippedLine,
    StateStore,
)
from legacy_bus.copying import copy_event, deep_copy
from legacy_bus.protocol import LegacyBus, require_legacy_bus
from migration_errors import BadEventLog, ConfigurationError, MigrationKitError, PhaseConflict, PolicyViolation, UnisolatedNoiseLearning
from legacy_bus.database import RowWrite, rewind as rewind_writes

from migration_kit.compare.comparator import Comparator, Comparison, Difference
from migration_kit.decide.decision import Decision
from migration_kit.decide.evidence import Evidence
from migration_kit.decide.latency import TimedSaver, timed_saver
from migration_kit.decide.phases import PhaseMachine, PhaseState, Transition
from migration_kit.observe.redaction import redactor_for
from migration_kit.decide.policy import Monitor, Policy, load_policy
from migration_kit.compare.noise import NoiseModel, learned_since
from migration_kit.run.saga_pages import PagedStates
from migration_kit.compare.outcome import Outcome
from migration_kit.report.report import ReplayReport, ReplayTally
from migration_kit.run.resume import LogIdentity, ReplayInterrupted, progress_key, store_failed
from migration_kit.store import Store, VersionConflict
from migration_kit.observe.telemetry import Telemetry
from migration_kit.run.threads import Finished, Fresh, Resumable, ThreadState, thread_state

__all__ = ["Migration", "route_point"]

EVIDENCE_KEY = "evidence"
SAVE_EVIDENCE_EVERY = 1000  # events between saves of a running replay's evidence (status sees progress)
# A sandboxed replay's candidate is answered from recorded effects, so an event cut off mid-run
# is run again from its start (same answers, same result) instead of resumed step by step. It
# needs no checkpoint, so it runs on the graph without a checkpointer: the replay's bookkeeping
# is not charged to the candidate (the latency contracts model a production checkpointer instead,
# migration_kit.decide.latency). A run that looks for a thread a cut-off run left (resume=True) uses the
# store's checkpointer with durability="exit": one checkpoint, when the run exits.
SANDBOX_DURABILITY = "exit"


def route_point(migration: str, correlation_id: str) -> float:
    """A saga's stable point in [0, 100): where it falls in a canary's percentage."""
    digest = hashlib.blake2b(f"{migration}\x00{correlation_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100

Source = str | Path | EventLog | Iterable[Event | LogEntry | dict[str, Any]]


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
        if not isinstance(candidate, BusFlow) and not hasattr(candidate, "invoke"):
            raise ConfigurationError(
                f"Migration(candidate=...) takes a BusFlow or a compiled LangGraph graph, not {type(candidate).__name__}"
            )
        self.name = name
        self.legacy = legacy
        self.candidate = candidate
        self.comparator = comparator if comparator is not None else Comparator()
        self.store = Store(store, name)
        self.store_explicit = store is not None
        self.policy: Policy = load_policy(policy)
        self.phase_ttl = 1.0  # seconds a read phase is trusted by route() and telemetry
        self._seen: tuple[PhaseState, int] | None = None
        self._seen_at = 0.0
        self._view: Any = None  # while attached: the in-memory phase live traffic is routed by (migration_kit.live.router)
        self.redact = tuple(redact or ())
        self.saga_capacity = saga_capacity
        self._graph: Any = None
        self._timed: tuple[Any, Any, TimedSaver | None] | None = None
        self._unsaved: tuple[Any, Any] | None = None
        self.telemetry = Telemetry(name, phase=lambda: str(getattr(self, "phase", "shadow")))
        self._noise: NoiseModel | None = None
        self._noise_loaded: dict[str, Any] | None = None
        self._noise_dirty = False
        self.redactor = redactor_for(self)  # what leaves the process is masked by it

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
            self._graph = None

    def use_store(self, url: str) -> Migration:
        """Point the migration at another store (what the CLI's ``--store`` does); returns self."""
        self.close()
        self._noise = None
        self._seen = None
        self.store = Store(url, self.name)
        self.store_explicit = True
        return self

    # -- the candidate ---------------------------------------------------------------

    @property
    def flow(self) -> BusFlow | None:
        """The candidate as a ``BusFlow``, when it was given as one."""
        return self.candidate if isinstance(self.candidate, BusFlow) else None

    @property
    def graph(self) -> Any:
        """The compiled candidate graph, with the store's checkpointer unless it has its own."""
        if self._graph is None:
            if isinstance(self.candidate, BusFlow):
                self._graph = self.candidate.compile(checkpointer=self.store.checkpointer)
            elif getattr(self.candidate, "checkpointer", None) is None:
                self._graph = self.candidate.copy(update={"checkpointer": self.store.checkpointer})
            else:
                self._graph = self.candidate
        return self._graph

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
        return self._compare(event, tuple(effects), states, copy.deepcopy(seed) if seed else None)[0]

    def _compare(
        self,
        event: Event,
        answers: tuple[EffectCall, ...],
        states: StateStore,
        seed: dict[str, Any] | None,
        *,
        resume: bool = False,
        sample: bool | None = None,
    ) -> tuple[Comparison, dict[str, Any] | None]:
        learning = self.comparator.learning
        before = None
        if learning is not None:
            # The saga state before the event, so the legacy path can be run
            # again from the same starting point to learn what is noise.
            peeked = states.peek(event.saga_key)
            before = deep_copy(peeked) if peeked else None
        noise = self.noise if learning is not None else None
        # ``sample`` overrides the choice (a distributed replay decides by the event's place in the whole log).
        sampled = learning is not None and (learning.samples(event.type, event.id, self.noise) if sample is None else sample)
        legacy = self._run_legacy(event, answers, states)
        if sampled:
            self._learn(event, answers, before, legacy, sampled=True)
        candidate = self._run_candidate(event, answers, seed, resume=resume, durability=SANDBOX_DURABILITY)
        comparison = self._diff(legacy, candidate, noise)
        if comparison.divergent and learning is not None and learning.confirm:
            # Confirm before reporting: a clock that agreed in the sample, a
            # shuffle that happened to repeat, or an event type not sampled yet
            # shows its noise on more legacy runs. Stop once it is explained.
            for _ in range(learning.confirm_runs):
                if self._learn(event, answers, before, legacy, sampled=False):
                    comparison = self._diff(legacy, candidate, noise)
                    if not comparison.divergent:
                        break
        return self._observed(comparison), candidate.state

    def _observed(self, comparison: Comparison, traceparent: str | None = None) -> Comparison:
        """Count and trace a comparison (telemetry never fails the comparison)."""
        try:
            trace_id = self.telemetry.record(comparison, traceparent=traceparent)
        except Exception:  # noqa: BLE001 - observability must not break the migration
            return comparison
        return dataclasses.replace(comparison, trace_id=trace_id) if trace_id else comparison

    def _diff(self, legacy: Outcome, candidate: Outcome, noise: NoiseModel | None) -> Comparison:
        try:
            return self.comparator.compare(legacy, candidate, noise=noise)
        except Exception as exc:  # a bug in a comparator rule must not stop the run
            diff = Difference("comparator", "comparator_failed", None, f"{type(exc).__name__}: {exc}")
            return Comparison(legacy.event, legacy, candidate, (diff,), None)

    def _learn(
        self, event: Event, answers: tuple[EffectCall, ...], before: dict[str, Any] | None, legacy: Outcome, *, sampled: bool
    ) -> bool:
        """Run the legacy path again from the same saga state; learn what differs. True if something new."""
        observation = self._rerun_legacy(event, answers, before, legacy)
        if observation is None:
            return False
        new = self.noise.observe(event.type, observation, sampled=sampled)
        self._noise_dirty = self._noise_dirty or new or sampled
        return new

    def _rerun_legacy(self, event: Event, answers: tuple[EffectCall, ...], before: dict[str, Any] | None, legacy: Outcome) -> Any:
        """What differs when the legacy path runs again from the same saga state (None: not known)."""
        _refuse_unisolated(event, legacy)
        scratch = OverlayStateStore()
        if before:
            scratch.save(event.saga_key, copy.deepcopy(before))
        again = self._run_legacy(event, answers, scratch)
        _refuse_unisolated(event, again)
        try:
            return self.comparator.noise_between(legacy, again)
        except Exception:  # learning is best effort; the comparison stands as it is
            return None

    def legacy_step(self, entry: LogEntry, states: StateStore, *, sample: bool = False) -> Any:
        """Run one logged event's legacy path on a replay's saga state; with ``sample``, run it again from
        the same state and return the ``NoiseObservation`` (what a distributed replay learns up front)."""
        event = entry.event
        peeked = states.peek(event.saga_key) if sample else None
        before = copy.deepcopy(peeked) if peeked else None
        legacy = self._run_legacy(event, entry.effects, states)
        return self._rerun_legacy(event, entry.effects, before, legacy) if sample else None

    # -- learned noise ---------------------------------------------------------------------

    @property
    def noise(self) -> NoiseModel:
        """Noise learned so far (loaded from the store on first use)."""
        if self._noise is None:
            self._noise = NoiseModel()
            self._noise_loaded = self._load_noise()
        return self._noise

    def _load_noise(self) -> dict[str, Any] | None:
        try:
            data, _ = self.store.records.get("noise")
        except MigrationKitError:
            return None
        if data:
            assert self._noise is not None
            self._noise.merge(data)
        return data

    def save_noise(self) -> None:
        """Persist what was learned, merged with what other processes learned meanwhile."""
        if self._noise is None or not self._noise_dirty:
            return
        records = self.store.records
        for _ in range(10):
            stored, version = records.get("noise")
            merged = NoiseModel.from_dict(stored)
            merged.merge(_delta(self._noise.to_dict(), self._noise_loaded))
            try:
                records.put("noise", self._masked_noise(copy.deepcopy(merged.to_dict())), version=version)
            except VersionConflict:
                continue
            self._noise_loaded = copy.deepcopy(merged.to_dict())
            self._noise = merged
            self._noise_dirty = False
            return

    def _masked_noise(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The noise model as stored: its example values masked (they are shown, never compared)."""
        for paths in (doc.get("paths") or {}).values():
            for key, entry in paths.items():
                ex = entry.get("example")
                if isinstance(ex, dict) and ("first" in ex or "second" in ex):
                    m = self.redactor.difference_dict({"path": key, "legacy": ex.get("first"), "candidate": ex.get("second")})
                    entry["example"] = {**ex, "first": m["legacy"], "second": m["candidate"]}
        return doc

    def _run_legacy(
        self, event: Event, answers: tuple[EffectCall, ...], states: StateStore, rewind: tuple[RowWrite, ...] = ()
    ) -> Outcome:
        # A private copy: legacy handlers may mutate payloads in place.
        mine = copy_event(event)
        started = perf_counter()
        try:
            sandbox = rewind_writes(Sandbox(answers), rewind)  # declared databases start from before the event
            dispatch = self.legacy.dispatch(mine, sandbox=sandbox, states=states, capture=True)
        except Exception as exc:
            return Outcome.crash("legacy", event, exc, perf_counter() - started)
        return Outcome.from_dispatch(dispatch)

    def _run_candidate(
        self,
        event: Event,
        answers: tuple[EffectCall, ...],
        seed: dict[str, Any] | None,
        *,
        resume: bool = False,
        durability: str | None = None,
        rewind: tuple[RowWrite, ...] = (),
    ) -> Outcome:
        graph, timer = self._timed_graph()
        if durability == SANDBOX_DURABILITY and not resume:
            graph, timer = self._unsaved_graph(graph), None
        thread = self.thread_for(event)
        config = {"configurable": {"thread_id": thread}}
        inp: dict[str, Any] | None = {"event": event.to_dict()}
        if seed:
            inp["sagas"] = {event.saga_key: seed}
        options = {"durability": durability} if durability and timer is not None else {}
        with timer.measure(thread) if timer is not None else contextlib.nullcontext() as spent:
            cpu = time.thread_time()
            started = perf_counter()
            sandbox = rewind_writes(Sandbox(answers), rewind)
            try:
                found = self._resumed(graph, event, config) if resume else Fresh()
                if isinstance(found, Finished):
                    final = found.values
                elif isinstance(found, Resumable):
                    # Answers the finished nodes already took are not offered again.
                    sandbox = rewind_writes(Sandbox(found.remaining(answers)), rewind)
                    with sandbox:
                        final = graph.invoke(None, config, **options)
                else:
                    if found.stale or found.other is not None:
                        self._forget(graph, thread)  # a run that is not this event's, or can be neither finished nor resumed
                    with sandbox:
                        final = graph.invoke(inp, config, **options)
            except Exception as exc:  # the candidate failing is evidence, never an exception here
                return Outcome.crash("candidate", event, exc, perf_counter() - started)
            finally:
                elapsed, cpu = perf_counter() - started, time.thread_time() - cpu
                self._forget(graph, thread)
        if spent is None:
            return _with_writes(Outcome.from_flow_state(event, final, elapsed, started, cpu=cpu), sandbox)
        outcome = Outcome.from_flow_state(event, final, elapsed, started, checkpoint=spent.seconds, cpu=cpu, steps=max(0, spent.step))
        return _with_writes(outcome, sandbox)

    def _unsaved_graph(self, graph: Any) -> Any:
        """``graph`` without a checkpointer: what a sandboxed run that needs no checkpoint runs on."""
        cached = self._unsaved
        if cached is None or cached[0] is not graph:
            bare = graph.copy(update={"checkpointer": None}) if getattr(graph, "checkpointer", None) not in (None, True, False) else graph
            self._unsaved = cached = (graph, bare)
        return cached[1]

    def _timed_graph(self) -> tuple[Any, TimedSaver | None]:
        """The candidate graph on a timing wrapper of its checkpointer (built once per compiled graph)."""
        graph = self.graph
        cached = self._timed
        if cached is not None and cached[0] is graph:
            return cached[1], cached[2]
        saver = getattr(graph, "checkpointer", None)
        timed = timed_saver(saver)
        if isinstance(timed, TimedSaver):
            self._timed = (graph, graph.copy(update={"checkpointer": timed}), timed)
        else:
            self._timed = (graph, graph, None)
        return self._timed[1], self._timed[2]

    def thread_for(self, event: Event) -> str:
        """The graph thread of one event's comparison run (replay, shadow worker): ``<name>:<event id>``."""
        return f"{self.name}:{event.id}"

    def _resumed(self, graph: Any, event: Event, config: dict[str, Any]) -> ThreadState:
        """What an interrupted run left on ``event``'s thread (``migration_kit.run.threads``: the one rule)."""
        flow = self.flow
        return thread_state(graph, config, event.id, complete=flow.is_complete if flow is not None else None)

    @staticmethod
    def _forget(graph: Any, thread: str) -> None:
        # A finished event's checkpoints are not needed again; dropping them
        # keeps a long replay's memory (or store) flat.
        saver = getattr(graph, "checkpointer", None)
        if saver is not None and saver is not True and hasattr(saver, "delete_thread"):
            try:
                saver.delete_thread(thread)
            except Exception:  # noqa: S110 - best effort cleanup
                pass

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
        if workers is not None or (resume and isinstance(events_or_path, (str, Path)) and self._distributed_unfinished(events_or_path)):
            return self._replay_distributed(
                events_or_path, workers=workers, skip_bad=skip_bad, resume=resume, on_result=on_result,
                checkpoint_every=checkpoint_every, stop=stop, **distributed,
            )
        if distributed:
            raise TypeError(f"replay() got {', '.join(sorted(distributed))}: options of a replay across processes, which need workers=N")
        entries, source, skipped = self._entries(events_or_path, skip_bad)
        log = events_or_path if isinstance(events_or_path, EventLog) else (
            EventLog(events_or_path) if isinstance(events_or_path, (str, Path)) else None
        )
        tally = ReplayTally(redactor=self.redactor)
        state = self._read_phase()[0]
        monitor = Monitor(self.policy, phase=state.phase, percent=state.percent)
        legacy_states = PagedStates(self.saga_capacity, side="legacy")
        candidate_states = PagedStates(self.saga_capacity, side="candidate")
        identity = LogIdentity.start(log.path) if log is not None else None
        elapsed_before = 0.0
        suspect = 0  # events after a resume point whose graph thread may have been left behind
        if resume:
            if log is None:
                raise ConfigurationError("only a replay of a log file can resume: pass its path")
            saved = self._progress(log.path)
            if saved is not None and saved.get("status") != "done":
                identity = LogIdentity.from_dict(saved["log"])
                identity.verify()
                tally = ReplayTally.from_dict(saved["tally"])
                tally.redactor = self.redactor
                monitor.restore(saved.get("monitor"))
                for states in (legacy_states, candidate_states):
                    if f"{states.side}_pages" in saved:
                        states.restore_pages(self.store.records, progress_key(log.path), saved[f"{states.side}_pages"], self._unseal)
                    else:  # saved before pages existed
                        states.restore(self._unseal(saved.get(f"{states.side}_states")))
                self._noise = NoiseModel.from_dict(saved.get("noise"))
                skipped.extend(SkippedLine(int(x["line"]), x["reason"]) for x in saved.get("skipped", []))
                elapsed_before = float(saved.get("elapsed", 0.0))
                entries = EventLog(log.path, on_error="skip" if skip_bad else "raise").entries(
                    start_offset=identity.offset, start_line=identity.line + 1
                )
                suspect = max(checkpoint_every, int(saved.get("every") or 0)) + 1  # the interrupted run's window too
        if identity is not None and suspect == 0:  # a fresh replay: an abandoned run's saga pages go
            abandoned = self._progress(identity.path) or {}
            for states in (legacy_states, candidate_states):
                states.drop_pages(self.store.records, progress_key(identity.path), abandoned.get(f"{states.side}_pages"))
        known = set(self.legacy.event_types)
        started = perf_counter()

        def save(status: str) -> None:
            if identity is None:
                return
            # Saga state goes in pages of its own; only the pages used since the last save are written.
            prefix, records = progress_key(identity.path), self.store.records
            pages = {f"{s.side}_pages": s.save_pages(records, prefix, self._seal) for s in (legacy_states, candidate_states)}
            self._save_progress(
                identity,
                {
                    "status": status,
                    "source": source,
                    "tally": tally.to_dict(),
                    "monitor": monitor.state(),
                    **pages,
                    "noise": self.noise.to_dict(),
                    "skipped": [{"line": x.line, "reason": x.reason} for x in skipped],
                    "elapsed": elapsed_before + perf_counter() - started,
                    "every": checkpoint_every,
                },
            )
            for s in (legacy_states, candidate_states):
                s.saved(records, prefix)
                if status == "done":  # a finished replay is never resumed: its saga pages go
                    s.drop_pages(records, prefix, pages[f"{s.side}_pages"])

        save("running")
        since = 0
        last: LogEntry | None = None
        try:
            for entry in entries:
                event = entry.event
                if event.type not in known:
                    reason = f"has event type {event.type!r}, which no handler of bus {self.legacy.name!r} subscribes to"
                    if not skip_bad:
                        raise BadEventLog(f"{source} line {entry.line} {reason}", line=entry.line, source=source)
                    skipped.append(SkippedLine(entry.line, reason))
                    last = entry
                    continue
                key = event.saga_key
                seed = candidate_states.peek(key)
                comparison, after = self._compare(
                    event, entry.effects, legacy_states, deep_copy(seed) if seed else None, resume=suspect > 0
                )
                suspect = max(0, suspect - 1)
                store_failed(comparison.candidate, self.store.display_url)  # a dead store is not a candidate error
                candidate_states.save(key, after or {})
                tally.add(comparison, entry.line)
                last = entry
                monitor.observe(tally.evidence)
                if tally.total % SAVE_EVIDENCE_EVERY == 0:
                    self._save_evidence(source, tally.evidence, state.attempt)
                since += 1
                if identity is not None and since >= checkpoint_every:
                    identity.advance(entry.line, entry.end)
                    save("running")
                    since = 0
                if on_result is not None:
                    on_result(comparison, tally)
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            if identity is not None and last is not None:
                identity.advance(last.line, last.end)
            save("interrupted")
            self.save_noise()
            where = f"line {identity.line:,}" if identity is not None else "the start"
            raise ReplayInterrupted(
                f"replay of {source} interrupted after {tally.total:,} events ({where}); progress is saved: "
                "resume it with `migration-kit resume` (or Migration.replay(path, resume=True))",
                line=identity.line if identity is not None else 0,
                total=tally.total,
            ) from None
        if identity is not None and last is not None:
            identity.advance(last.line, last.end)
        decision = self._settle_replay(tally, monitor, source, state)
        save("done")
        return self._freeze_replay(tally, decision, source, skipped, elapsed_before + perf_counter() - started)

    def _settle_replay(self, tally: ReplayTally, monitor: Monitor, source: str, state: PhaseState) -> Decision:
        """The end of a replay: the decision, the evidence saved, the policy acted on, noise saved."""
        decision = monitor.finish(tally.evidence)
        self._save_evidence(source, tally.evidence, state.attempt)
        self._act_on(decision, state)
        self.save_noise()
        return decision

    def _freeze_replay(self, tally: ReplayTally, decision: Decision, source: str, skipped: list[SkippedLine], duration: float) -> ReplayReport:
        return tally.freeze(
            decision,
            migration=self.name,
            source=source,
            skipped=skipped,
            duration=duration,
            noise=tuple(self.noise.summary()) if self.comparator.learning is not None else (),
            graph=self.flow.graph_data(tally.observed) if self.flow is not None else None,
            policy=_drawable_limits(self.policy),
        )

    # -- replaying across processes (migration_kit.run.distributed) ----------------------------------

    def _distributed_unfinished(self, path: str | Path) -> bool:
        from migration_kit.run.distributed import unfinished_job

        return unfinished_job(self.store.records, path) is not None

    def _replay_distributed(self, path: Any, *, on_result: Any, stop: Any, **options: Any) -> ReplayReport:
        from migration_kit.run.distributed import DistributedReplay

        if not isinstance(path, (str, Path)):
            raise ConfigurationError("replay(..., workers=N) splits a log file: pass its path")
        state = self._read_phase()[0]
        monitor = Monitor(self.policy, phase=state.phase, percent=state.percent)
        result = DistributedReplay(self, path, **options).run(monitor, on_result=on_result, stop=stop)
        self.noise.merge(result.noise)  # what the partitions learned, beside what was loaded
        self._noise_dirty = True
        decision = self._settle_replay(result.tally, monitor, result.source, state)
        result.finished()
        return self._freeze_replay(result.tally, decision, result.source, result.skipped, result.duration)

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
        event = entry.event
        key = event.saga_key
        seed = candidate_states.peek(key)
        kept = (self._noise, self._noise_dirty)
        if noise is not None:
            self._noise = noise
        try:
            comparison, after = self._compare(
                event, entry.effects, legacy_states, copy.deepcopy(seed) if seed else None, resume=resume, sample=sample
            )
        finally:
            if noise is not None:
                self._noise, self._noise_dirty = kept
        candidate_states.save(key, after or {})
        return comparison

    def seal(self, value: Any) -> dict[str, str]:
        """Saga state made ready for the store's records (encrypted at rest when checkpoints are)."""
        return self._seal(value)

    def unseal(self, doc: Any) -> Any:
        """What ``seal`` made, back."""
        return self._unseal(doc)

    def reopen_store(self) -> None:
        """Open the store anew, leaving the inherited connections alone (in a forked process closing them
        could disturb the parent's: SQLite may checkpoint its WAL away, Redis sockets would shut down)."""
        self.store = Store(self.store.url, self.name)
        self._graph = None

    # -- phases, routing, status ---------------------------------------------------------------

    @property
    def phases(self) -> PhaseMachine:
        """The persisted phase state machine on this migration's store."""
        return PhaseMachine(self.store.records)

    def _read_phase(self, *, fresh: bool = True) -> tuple[PhaseState, int]:
        now = time.monotonic()
        if fresh or self._seen is None or now - self._seen_at > self.phase_ttl:
            self._seen, self._seen_at = self.phases.read(), now
        return self._seen

    @property
    def phase(self) -> str:
        """The current phase: ``shadow | canary | primary | retired | rolled_back`` (read from the store)."""
        return self._read_phase(fresh=False)[0].phase

    @property
    def phase_state(self) -> PhaseState:
        """The current phase with its canary percentage, attempt, and who set it when and why."""
        return self._read_phase()[0]

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
        expected = self._seen if self._seen is not None else self._read_phase()
        try:
            t = self.phases.promote(to=to, percent=percent, by=by, reason=reason, evidence=self._evidence_summary(), expected=expected)
        except PhaseConflict:
            self._seen = None
            raise
        self._remember(t)
        return t

    def rollback(self, reason: str, *, by: str = "user") -> Transition:
        """Send all traffic back to the legacy path, from any phase; ``reason`` is required."""
        t = self.phases.rollback(reason=reason, by=by, evidence=self._evidence_summary())
        self._remember(t)
        return t

    def _remember(self, t: Transition) -> None:
        self._seen = (t.to_state, t.version)
        self._seen_at = time.monotonic()
        if self._view is not None:
            self._view.saw(t.to_state)

    def route(self, event: Event) -> str:
        """Which path serves ``event`` now: ``legacy`` or ``candidate``.

        Sticky per saga: in canary, a stable hash of the migration's name and
        the event's correlation id (its own id for a root) picks a point in
        [0, 100); the candidate serves it when that is below the percentage,
        so a saga never switches paths while the percentage only grows.
        """
        return self._side_for(event.saga_key)

    def _side_for(self, saga: str) -> str:
        view = self._view
        seen = view.seen.state if view is not None else None  # attached: the in-memory phase, no I/O
        state = seen if seen is not None else self._read_phase(fresh=False)[0]
        if state.phase in ("primary", "retired"):
            return "candidate"
        if state.phase != "canary" or not state.percent:
            return "legacy"
        return "candidate" if route_point(self.name, saga) < state.percent else "legacy"

    # -- sagas across the cutover -----------------------------------------------------------

    def sagas(self, states: Any = None) -> Any:
        """The saga ledger: which side holds each saga (``migration_kit.live.sagas.SagaLedger``).

        ``states`` is the legacy side's state store (default: the live bus's).
        """
        from migration_kit.live.sagas import SagaLedger

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
        from migration_kit.live.cutover import Cutover
        from migration_kit.live.tap import active_handle

        handle = active_handle(self)
        cutover = handle.cutover if handle is not None else Cutover(self, self.legacy)
        return cutover.settle(reason=reason, sagas=sagas)

    def handovers(self) -> list[dict[str, Any]]:
        """The audit of every saga handover, oldest first: saga, from, to, why, by whom, when."""
        return self.sagas().audit()

    def history(self) -> list[dict[str, Any]]:
        """Every phase transition, oldest first: when, from, to, by whom, why, and the evidence then."""
        return self.phases.history()

    def evidence(self) -> Evidence:
        """The evidence stored for the current attempt: every replay's (and worker's) merged."""
        return self._stored_evidence(self._read_phase()[0].attempt)

    def decide(self) -> Decision:
        """The policy's decision over the stored evidence, in the current phase."""
        state = self._read_phase()[0]
        return self.policy.evaluate(self._stored_evidence(state.attempt), phase=state.phase, percent=state.percent)

    def status(self) -> dict[str, Any]:
        """Where the migration stands: phase, counts, the decision and the history (JSON-ready)."""
        state = self._read_phase()[0]
        ev = self._stored_evidence(state.attempt)
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

    def _stored_evidence(self, attempt: int) -> Evidence:
        doc, _ = self.store.records.get(EVIDENCE_KEY)
        total = Evidence()
        workers: dict[str, Any] = {}
        if self.store.scheme in ("redis", "rediss"):  # shadow workers record theirs with their results
            from migration_kit.live.tap import ShadowKeys, worker_evidence

            workers = worker_evidence(self.store.records, ShadowKeys(self.name), attempt)
            for part in workers.values():
                total.merge(Evidence.from_dict(part))
        if doc and doc.get("attempt") == attempt:
            for source, part in doc.get("sources", {}).items():
                if source not in workers:
                    total.merge(Evidence.from_dict(part))
        return total

    def _evidence_summary(self) -> dict[str, Any]:
        return self.evidence().summary()

    def _save_evidence(self, source: str, evidence: Evidence, attempt: int) -> None:
        # One entry per source, replaced on each save: replaying a log again
        # replaces its evidence instead of counting its events twice.
        records = self.store.records
        for _ in range(20):
            doc, version = records.get(EVIDENCE_KEY)
            if not doc or doc.get("attempt") != attempt:
                doc = {"attempt": attempt, "sources": {}}
            doc["sources"][source] = evidence.to_dict()
            try:
                records.put(EVIDENCE_KEY, doc, version=version)
                return
            except VersionConflict:
                continue
        raise MigrationKitError(f"could not save the evidence of {source}: the store kept changing under it (20 tries)")

    def _act_on(self, decision: Decision, state: PhaseState) -> None:
        # The policy's rollback is carried out at once: a regression proven on
        # live traffic must not wait for a person.
        if decision.action != "rollback" or state.phase == "rolled_back":
            return
        try:
            self.rollback("; ".join(decision.reasons[-2:]), by="automatic")
        except PolicyViolation:  # someone rolled it back first
            pass

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
        from migration_kit.live.tap import attach

        url = store_url or (self.store.url if self.store.scheme in ("redis", "rediss") else None)
        if url is None:
            raise ConfigurationError(
                f"Migration({self.name!r}).attach(): live shadow traffic needs Redis; pass attach('redis://host:port/0') "
                f"or give the migration a Redis store (it has {self.store.display_url})"
            )
        return attach(self, url, **options)

    def shadow_status(self, store_url: str | None = None) -> dict[str, Any]:
        """Live shadow counts: compared, divergent, errors, pending, shed (JSON-ready).

        Read from the Redis the tap and the workers use (``store_url``, else
        the attached tap's, else this migration's Redis store). ``shed``
        includes this process's sheds not yet reported to Redis. When Redis
        cannot be read, the counts are this process's and ``error`` says why.
        """
        from migration_kit.live.tap import COUNTERS, ShadowKeys, active_handle, divergence_groups, read_status

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
            from redis_connect.connection import connect

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
        legacy: Outcome,
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
        if legacy is None:
            if candidate is None:
                raise ConfigurationError("compare_recorded(): give the recorded legacy or candidate outcome")
            seeded = OverlayStateStore()
            if state_before:
                seeded.save(event.saga_key, copy.deepcopy(state_before))
            # The candidate served for real: its committed writes are undone in the legacy run's sandbox.
            legacy = self._run_legacy(event, tuple(candidate.effects), seeded, candidate.writes)
        elif not resume:
            candidate = self._run_candidate(event, tuple(legacy.effects), state_before, rewind=legacy.writes)
        else:
            candidate = self._run_recorded_candidate(event, tuple(legacy.effects), state_before, legacy.writes)
        comparison = self._diff(legacy, candidate, self.noise)
        return self._observed(comparison, traceparent)

    def _run_recorded_candidate(
        self, event: Event, answers: tuple[EffectCall, ...], seed: dict[str, Any] | None, rewind: tuple[RowWrite, ...] = ()
    ) -> Outcome:
        # A reclaimed entry: its thread may hold a run a dead worker left (the same rule as replay).
        return self._run_candidate(event, answers, seed, resume=True, rewind=rewind)

    def _seal(self, value: Any) -> dict[str, str]:
        """Saga state for the store's records, through the checkpointer's serializer: encrypted at
        rest exactly when checkpoints are (``MIGRATION_KIT_CHECKPOINT_KEY``), never pickled."""
        kind, data = self.store.checkpointer.serde.dumps_typed(value)
        return {"sealed": kind, "data": base64.b64encode(data).decode()}

    def _unseal(self, doc: Any) -> Any:
        if isinstance(doc, dict) and "sealed" in doc:
            return self.store.checkpointer.serde.loads_typed((doc["sealed"], base64.b64decode(doc["data"])))
        return doc  # saved before sealing existed

    def _progress(self, path: str | Path) -> dict[str, Any] | None:
        """The saved progress of this migration's replay of ``path``, if any."""
        data, _ = self.store.records.get(progress_key(path))
        return data

    def _save_progress(self, identity: LogIdentity, doc: dict[str, Any]) -> None:
        key = progress_key(identity.path)
        self.store.records.put(key, {**doc, "log": identity.to_dict()})
        self.store.records.put("replay:last", {"key": key, "path": identity.path, "status": doc["status"]})

    def unfinished_replay(self, path: str | Path | None = None) -> str | None:
        """The log path of the last replay (or of ``path``'s) if it did not finish (what ``resume`` continues)."""
        if path is not None:
            saved = self._progress(path)
            last, _ = self.store.records.get("replay:last")
            started = bool(last) and last.get("key") == progress_key(path) and last.get("status") != "done"
            return str(Path(path).resolve()) if (saved and saved.get("status") != "done") or (not saved and started) else None
        last, _ = self.store.records.get("replay:last")
        if not last or last.get("status") == "done":
            return None
        return str(last["path"])

    def replayed(self, path: str | Path) -> bool:
        """Whether a replay of ``path`` saved any progress in this store (finished or not)."""
        return self._progress(path) is not None

    def replay_started(self, path: str | Path) -> None:
        """Record that a replay of ``path`` starts, so ``resume`` finds it even if killed before its first save."""
        resolved = str(Path(path).resolve())
        self.store.records.put("replay:last", {"key": progress_key(resolved), "path": resolved, "status": "started"})

    @staticmethod
    def _entries(src: Source, skip_bad: bool) -> tuple[Iterator[LogEntry], str, list[SkippedLine]]:
        if isinstance(src, (str, Path)):
            src = EventLog(src, on_error="skip" if skip_bad else "raise")
        if isinstance(src, EventLog):
            if skip_bad:
                src.on_error = "skip"
            return iter(src), str(src.path), src.skipped

        def entries() -> Iterator[LogEntry]:
            for i, item in enumerate(src, start=1):
                if isinstance(item, LogEntry):
                    yield item
                elif isinstance(item, Event):
                    yield LogEntry(i, item)
                elif isinstance(item, dict):
                    yield LogEntry(i, Event.model_validate(item))
                else:
                    raise BadEventLog(f"item {i} of the events given to replay() is a {type(item).__name__}, not an Event")

        return entries(), "<events>", []


def _with_writes(outcome: Outcome, sandbox: Sandbox) -> Outcome:
    """The candidate's outcome with the rows its sandboxed run wrote (the graph's state does not hold them)."""
    writes = sandbox.writes
    return dataclasses.replace(outcome, writes=writes) if writes else outcome


def _refuse_unisolated(event: Event, *runs: Outcome) -> None:
    """Noise is only learned from re-runs whose state was isolated; a blocked write means it was not."""
    for run in runs:
        for w in run.writes:
            if w.op == "blocked":
                raise UnisolatedNoiseLearning(
                    f"noise learning refused to re-run the legacy path of {event.type!r} (event {event.id}): handler "
                    f"{w.node or '?'!r} writes {w.database}, which no bus declared ({w.statement}), so two runs would not "
                    "start from the same state. Declare it with bus.database(name, engine or sessionmaker), "
                    "or turn learning off with Comparator(noise=False)",
                    database=w.database,
                    statement=w.statement or "",
                    node=w.node,
                )


def _delta(now: dict[str, Any], loaded: dict[str, Any] | None) -> dict[str, Any]:
    """What was learned in this process since the model was loaded (counts minus the loaded counts)."""
    return learned_since(now, loaded)


def _drawable_limits(policy: Any) -> dict[str, Any] | None:
    """The policy's divergence limit (for the report's plot), found anywhere in its tree."""
    try:
        tree = policy.model_dump() if hasattr(policy, "model_dump") else None
    except Exception:  # noqa: BLE001 - a report must not fail over a drawing hint
        return None
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("rate") == "divergence" and isinstance(node.get("limit"), (int, float)):
                return {"divergence_limit": float(node["limit"])}
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None
