"""The executor: one event through the legacy bus and the candidate graph, sandboxed, and compared.

Everything the migration runs itself goes through here: ``compare``, replay (one
process or many), the shadow worker's ``compare_recorded``, noise learning's
legacy re-runs. The legacy side is reached only through the ``LegacyBus``
Protocol, the candidate through ``CandidateGraph``.

The candidate runs by one plan (``plan_run``), decided from what its graph thread
holds (``migration_kit.run.threads``' one rule): start the event, resume a run cut
off mid-way, or take a finished run's result. ``drive`` / ``adrive`` carry a plan
out, sync or async; the plan itself does no I/O. Replay and the shadow worker plan
here, on the event's own thread; cutover (``migration_kit.live.cutover``) plans by
the same function on a saga's long-lived thread, where a previous event's cut-off
run is finished first and the saga's state comes from the thread or the ledger's seed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any, cast

from legacy_bus import EffectCall, Event, LogEntry, OverlayStateStore, Sandbox, StateStore
from legacy_bus.copying import copy_event, deep_copy
from legacy_bus.database import RowWrite, rewind as rewind_writes
from legacy_bus.protocol import LegacyBus
from migration_errors import ConfigurationError, UnisolatedNoiseLearning

from migration_kit.compare.comparator import Comparator, Comparison, Difference
from migration_kit.compare.noise import NoiseBook, NoiseModel
from migration_kit.compare.outcome import Outcome
from migration_kit.observe.faults import Faults
from migration_kit.run.candidate import CandidateGraph
from migration_kit.run.threads import Finished, Fresh, Resumable, ThreadState, thread_state
from migration_kit.types import Side

__all__ = ["SANDBOX_DURABILITY", "UNREAD", "Executor", "RunPlan", "adrive", "drive", "plan_run"]

# A sandboxed replay's candidate is answered from recorded effects, so an event cut off mid-run
# is run again from its start (same answers, same result) instead of resumed step by step. It
# needs no checkpoint, so it runs on the graph without a checkpointer: the replay's bookkeeping
# is not charged to the candidate (the latency contracts model a production checkpointer instead,
# migration_kit.decide.latency). A run that looks for a thread a cut-off run left (resume=True) uses the
# store's checkpointer with durability="exit": one checkpoint, when the run exits.
SANDBOX_DURABILITY = "exit"


@dataclass(frozen=True, slots=True)
class RunPlan:
    """How to run one event on its graph thread, decided from what the thread holds (no I/O).

    ``input`` is what to invoke with (None: resume the run on the thread), ``values`` a
    finished run's final state (nothing to run), ``answers`` the effect answers to
    offer (without those a resumed run's finished nodes already took), and
    ``drop_first`` whether the thread holds a run to forget before starting.

    On a saga's long-lived thread (cutover) three more: ``again``, the plan finishes
    the previous event's cut-off run, after which the thread is read and planned
    again; ``before``, the saga's state before the event (the thread's, or the
    ledger's seed); ``seeded``, the input carries that seed (the ledger drops it once
    the run took it). ``wants_seed``: nothing to run yet; the thread holds no state,
    so read the ledger's seed and plan again with it.
    """

    input: dict[str, Any] | None
    answers: tuple[EffectCall, ...]
    values: dict[str, Any] | None = None
    drop_first: bool = False
    again: bool = False
    before: dict[str, Any] | None = None
    seeded: bool = False
    wants_seed: bool = False

    @property
    def finished(self) -> bool:
        """True when the event already ran to its end on this thread: its result is ``values``."""
        return self.values is not None


#: ``plan_run``'s ``seed`` when the ledger's seed has not been read (it is read only when needed).
UNREAD = object()


def plan_run(
    found: ThreadState,
    start: dict[str, Any],
    answers: tuple[EffectCall, ...],
    *,
    saga: str | None = None,
    seed: dict[str, Any] | None | object = UNREAD,
) -> RunPlan:
    """The one plan: take a finished run's result, resume a cut-off run, or start ``start`` afresh.

    ``saga`` names the saga of a long-lived thread (cutover; None: the event's own thread,
    which holds nothing worth keeping). There the saga's state carries on from the thread:
    a previous event's cut-off run is finished first (``again``), and a thread holding no
    state starts from ``seed``, the ledger's; while it is ``UNREAD`` the plan ``wants_seed``.
    """
    if isinstance(found, Finished):
        return RunPlan(None, answers, values=found.values)
    if isinstance(found, Resumable):
        return RunPlan(None, found.remaining(answers))
    if saga is None:
        return RunPlan(start, answers, drop_first=found.stale or found.other is not None)
    if isinstance(found.other, Resumable):
        return RunPlan(None, found.other.remaining(answers), again=True)
    if found.held:  # the thread carries the saga's state (a previous event's end, or a stale run's)
        return RunPlan(start, answers, before=(found.held.get("sagas") or {}).get(saga) or None)
    if seed is UNREAD:
        return RunPlan(None, answers, wants_seed=True)
    if seed:  # a saga handed over: its first event here starts from the seed
        state = cast("dict[str, Any]", seed)
        return RunPlan({**start, "sagas": {saga: state}}, answers, before=state, seeded=True)
    return RunPlan(start, answers)


def drive(graph: Any, config: dict[str, Any], plan: RunPlan, sandbox: Callable[[RunPlan], Any], **options: Any) -> dict[str, Any]:
    """Carry ``plan`` out on ``graph`` (sync): its final state."""
    if plan.values is not None:
        return plan.values
    with sandbox(plan):
        return graph.invoke(plan.input, config, **options)


async def adrive(graph: Any, config: dict[str, Any], plan: RunPlan, sandbox: Callable[[RunPlan], Any], **options: Any) -> dict[str, Any]:
    """Carry ``plan`` out on ``graph`` (async): its final state."""
    if plan.values is not None:
        return plan.values
    with sandbox(plan):
        return await graph.ainvoke(plan.input, config, **options)


class Executor:
    """Runs events through both paths, sandboxed, and compares them.

    Args:
        name: the migration's name (it names the candidate's per-event threads).
        legacy: the team's bus, through the ``LegacyBus`` Protocol.
        candidate: the candidate graph.
        comparator: the rules comparing two outcomes.
        noise: learned noise (consulted and taught when the comparator learns).
        observe: counts and traces one comparison; returns it (maybe with its trace id).
    """

    def __init__(
        self,
        name: str,
        legacy: LegacyBus,
        candidate: CandidateGraph,
        comparator: Comparator,
        noise: NoiseBook,
        observe: Callable[[Comparison, str | None], Comparison],
        faults: Faults | None = None,
    ) -> None:
        self.name = name
        self.legacy = legacy
        self.candidate = candidate
        self.comparator = comparator
        self.noise = noise
        self.observe = observe
        self.faults = faults if faults is not None else Faults()  # every failure swallowed here goes through it

    # -- one path at a time ----------------------------------------------------------------

    def run_legacy(
        self, event: Event, answers: tuple[EffectCall, ...], states: StateStore, rewind: tuple[RowWrite, ...] = ()
    ) -> Outcome:
        """The legacy path, sandboxed: its effect calls answered by ``answers``, declared databases rewound."""
        # A private copy: legacy handlers may mutate payloads in place.
        mine = copy_event(event)
        started = perf_counter()
        try:
            sandbox = rewind_writes(Sandbox(answers), rewind)  # declared databases start from before the event
            dispatch = self.legacy.dispatch(mine, sandbox=sandbox, states=states, capture=True)
        except Exception as exc:  # the legacy path failing is evidence, never an exception here
            return Outcome.crash(Side.LEGACY, event, exc, perf_counter() - started)
        return Outcome.from_dispatch(dispatch)

    def thread_for(self, event: Event) -> str:
        """The graph thread of one event's comparison run (replay, shadow worker): ``<name>:<event id>``."""
        return f"{self.name}:{event.id}"

    def run_candidate(
        self,
        event: Event,
        answers: tuple[EffectCall, ...],
        seed: dict[str, Any] | None,
        *,
        resume: bool = False,
        durability: str | None = None,
        rewind: tuple[RowWrite, ...] = (),
    ) -> Outcome:
        """The candidate path, sandboxed, on the event's own thread, by the one plan (``plan_run``).

        ``resume``: look for a run a cut-off replay or a dead worker left on the thread
        (finish it, or take its result); otherwise the event starts afresh, and with
        ``durability=SANDBOX_DURABILITY`` on a graph without a checkpointer.
        """
        graph, timer = self.candidate.timed()
        if durability == SANDBOX_DURABILITY and not resume:
            graph, timer = self.candidate.unsaved(graph), None
        thread = self.thread_for(event)
        config = {"configurable": {"thread_id": thread}}
        start: dict[str, Any] = {"event": event.to_dict()}
        if seed:
            start["sagas"] = {event.saga_key: seed}
        options = {"durability": durability} if durability and timer is not None else {}
        sandboxes: list[Sandbox] = []

        def sandbox(plan: RunPlan) -> Sandbox:
            box = rewind_writes(Sandbox(plan.answers), rewind)
            sandboxes.append(box)
            return box

        with timer.measure(thread) if timer is not None else contextlib.nullcontext() as spent:
            cpu = time.thread_time()
            started = perf_counter()
            try:
                found = self.found(graph, event, config) if resume else Fresh()
                plan = plan_run(found, start, answers)
                if plan.drop_first:
                    self._forget(graph, thread)  # a run that is not this event's, or can be neither finished nor resumed
                final = drive(graph, config, plan, sandbox, **options)
            except Exception as exc:  # the candidate failing is evidence, never an exception here
                return Outcome.crash(Side.CANDIDATE, event, exc, perf_counter() - started)
            finally:
                elapsed, cpu = perf_counter() - started, time.thread_time() - cpu
                self._forget(graph, thread)
        writes = sandboxes[-1].writes if sandboxes else ()
        if spent is None:
            outcome = Outcome.from_flow_state(event, final, elapsed, started, cpu=cpu)
        else:
            outcome = Outcome.from_flow_state(event, final, elapsed, started, checkpoint=spent.seconds, cpu=cpu, steps=max(0, spent.step))
        return dataclasses.replace(outcome, writes=writes) if writes else outcome

    def found(self, graph: Any, event: Event, config: dict[str, Any]) -> ThreadState:
        """What an interrupted run left on ``event``'s thread (``migration_kit.run.threads``: the one rule)."""
        return thread_state(graph, config, event.id, complete=self.candidate.complete())

    def _forget(self, graph: Any, thread: str) -> None:
        # A finished event's checkpoints are not needed again; dropping them
        # keeps a long replay's memory (or store) flat.
        saver = getattr(graph, "checkpointer", None)
        if saver is not None and saver is not True and hasattr(saver, "delete_thread"):
            try:
                saver.delete_thread(thread)
            except Exception as exc:  # noqa: BLE001 - swallowed: best effort cleanup
                self.faults.raised("executor.forget_thread", exc)

    # -- both paths ------------------------------------------------------------------------

    def compare(
        self,
        event: Event,
        answers: tuple[EffectCall, ...],
        states: StateStore,
        seed: dict[str, Any] | None,
        *,
        resume: bool = False,
        sample: bool | None = None,
    ) -> tuple[Comparison, dict[str, Any] | None]:
        """Both paths on one event (legacy on ``states``, the candidate from ``seed``): the comparison and
        the candidate's saga state after it. Learns noise when the comparator learns (``sample``
        overrides the choice: a distributed replay decides by the event's place in the whole log)."""
        learning = self.comparator.learning
        before = None
        if learning is not None:
            # The saga state before the event, so the legacy path can be run
            # again from the same starting point to learn what is noise.
            peeked = states.peek(event.saga_key)
            before = deep_copy(peeked) if peeked else None
        noise = self.noise.model if learning is not None else None
        sampled = learning is not None and (learning.samples(event.type, event.id, self.noise.model) if sample is None else sample)
        legacy = self.run_legacy(event, answers, states)
        if sampled:
            self._learn(event, answers, before, legacy, sampled=True)
        candidate = self.run_candidate(event, answers, seed, resume=resume, durability=SANDBOX_DURABILITY)
        comparison = self.diff(legacy, candidate, noise)
        if comparison.divergent and learning is not None and learning.confirm:
            # Confirm before reporting: a clock that agreed in the sample, a
            # shuffle that happened to repeat, or an event type not sampled yet
            # shows its noise on more legacy runs. Stop once it is explained.
            for _ in range(learning.confirm_runs):
                if self._learn(event, answers, before, legacy, sampled=False):
                    comparison = self.diff(legacy, candidate, noise)
                    if not comparison.divergent:
                        break
        return self.observe(comparison, None), candidate.state

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
        """The candidate against a recorded legacy outcome, or (``legacy`` None) the legacy path against the
        recorded outcome of the candidate serving for real; see ``Migration.compare_recorded``."""
        if legacy is None:
            if candidate is None:
                raise ConfigurationError("compare_recorded(): give the recorded legacy or candidate outcome")
            seeded = OverlayStateStore()
            if state_before:
                seeded.save(event.saga_key, copy.deepcopy(state_before))
            # The candidate served for real: its committed writes are undone in the legacy run's sandbox.
            legacy = self.run_legacy(event, tuple(candidate.effects), seeded, candidate.writes)
        else:
            # A reclaimed entry: its thread may hold a run a dead worker left (the same plan as replay).
            candidate = self.run_candidate(event, tuple(legacy.effects), state_before, resume=resume, rewind=legacy.writes)
        return self.observe(self.diff(legacy, candidate, self.noise.model), traceparent)

    def diff(self, legacy: Outcome, candidate: Outcome, noise: NoiseModel | None) -> Comparison:
        """The comparator's comparison; a failing comparator rule is a difference, not an exception."""
        try:
            return self.comparator.compare(legacy, candidate, noise=noise)
        except Exception as exc:  # a bug in a comparator rule must not stop the run
            diff = Difference("comparator", "comparator_failed", None, f"{type(exc).__name__}: {exc}")
            return Comparison(legacy.event, legacy, candidate, (diff,), None)

    # -- learning noise --------------------------------------------------------------------

    def _learn(
        self, event: Event, answers: tuple[EffectCall, ...], before: dict[str, Any] | None, legacy: Outcome, *, sampled: bool
    ) -> bool:
        """Run the legacy path again from the same saga state; learn what differs. True if something new."""
        observation = self.rerun_legacy(event, answers, before, legacy)
        if observation is None:
            return False
        new = self.noise.model.observe(event.type, observation, sampled=sampled)
        self.noise.learned(new or sampled)
        return new

    def rerun_legacy(self, event: Event, answers: tuple[EffectCall, ...], before: dict[str, Any] | None, legacy: Outcome) -> Any:
        """What differs when the legacy path runs again from the same saga state (None: not known)."""
        refuse_unisolated(event, legacy)
        scratch = OverlayStateStore()
        if before:
            scratch.save(event.saga_key, copy.deepcopy(before))
        again = self.run_legacy(event, answers, scratch)
        refuse_unisolated(event, again)
        try:
            return self.comparator.noise_between(legacy, again)
        except Exception as exc:  # noqa: BLE001 - swallowed: learning is best effort; the comparison stands as it is
            self.faults.raised("executor.learn_noise", exc)
            return None

    # -- a replay's steps ------------------------------------------------------------------

    def legacy_step(self, entry: LogEntry, states: StateStore, *, sample: bool = False) -> Any:
        """Run one logged event's legacy path on a replay's saga state; with ``sample``, run it again from
        the same state and return the ``NoiseObservation`` (what a distributed replay learns up front)."""
        event = entry.event
        peeked = states.peek(event.saga_key) if sample else None
        before = copy.deepcopy(peeked) if peeked else None
        legacy = self.run_legacy(event, entry.effects, states)
        return self.rerun_legacy(event, entry.effects, before, legacy) if sample else None

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
        with self.noise.borrowed(noise):
            comparison, after = self.compare(
                event, entry.effects, legacy_states, copy.deepcopy(seed) if seed else None, resume=resume, sample=sample
            )
        candidate_states.save(key, after or {})
        return comparison


def refuse_unisolated(event: Event, *runs: Outcome) -> None:
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
