"""``Migration``: one legacy bus, one candidate graph, and the evidence between them."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from pathlib import Path
from time import perf_counter
from typing import Any, Callable

from graph_flows import BusFlow
from legacy_bus import (
    BoundedStateStore,
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
from migration_errors import BadEventLog, ConfigurationError

from migration_kit.comparator import Comparator, Comparison, Difference
from migration_kit.decision import parity_decision
from migration_kit.outcome import Outcome
from migration_kit.report import ReplayReport, ReplayTally
from migration_kit.store import Store

__all__ = ["Migration"]

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
        policy: the decision policy (until one is given, any divergence
            holds the migration).
        redact: glob paths whose values never leave the process unmasked.
        saga_capacity: how many sagas' scratch state a replay keeps in memory.
    """

    def __init__(
        self,
        name: str,
        *,
        legacy: EventBus,
        candidate: Any,
        comparator: Comparator | None = None,
        store: str | None = None,
        policy: Any = None,
        redact: Iterable[str] | None = None,
        saga_capacity: int = 10_000,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError("Migration(name, ...): the name must be a non-empty string")
        if not isinstance(legacy, EventBus):
            raise ConfigurationError(f"Migration(legacy=...) takes an EventBus, not {type(legacy).__name__}")
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
        self.policy = policy
        self.redact = tuple(redact or ())
        self.saga_capacity = saga_capacity
        self._graph: Any = None

    def __repr__(self) -> str:
        return f"<Migration {self.name!r} store={self.store.display_url!r}>"

    def __enter__(self) -> Migration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()
        self._graph = None

    def use_store(self, url: str) -> Migration:
        """Point the migration at another store (what the CLI's ``--store`` does); returns self."""
        self.close()
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
        self, event: Event, answers: tuple[EffectCall, ...], states: StateStore, seed: dict[str, Any] | None
    ) -> tuple[Comparison, dict[str, Any] | None]:
        legacy = self._run_legacy(event, answers, states)
        candidate = self._run_candidate(event, answers, seed)
        try:
            comparison = self.comparator.compare(legacy, candidate)
        except Exception as exc:  # a bug in a comparator rule must not stop the run
            diff = Difference("comparator", "comparator_failed", None, f"{type(exc).__name__}: {exc}")
            comparison = Comparison(event, legacy, candidate, (diff,), None)
        return comparison, candidate.state

    def _run_legacy(self, event: Event, answers: tuple[EffectCall, ...], states: StateStore) -> Outcome:
        # A private copy: legacy handlers may mutate payloads in place.
        mine = event.model_copy(deep=True)
        started = perf_counter()
        try:
            dispatch = self.legacy.dispatch(mine, sandbox=Sandbox(answers), states=states, capture=True)
        except Exception as exc:
            return Outcome.crash("legacy", event, exc, perf_counter() - started)
        return Outcome.from_dispatch(dispatch)

    def _run_candidate(self, event: Event, answers: tuple[EffectCall, ...], seed: dict[str, Any] | None) -> Outcome:
        graph = self.graph
        thread = f"{self.name}:{event.id}"
        config = {"configurable": {"thread_id": thread}}
        inp: dict[str, Any] = {"event": event.to_dict()}
        if seed:
            inp["sagas"] = {event.saga_key: seed}
        started = perf_counter()
        try:
            with Sandbox(answers):
                final = graph.invoke(inp, config)
        except Exception as exc:  # the candidate failing is evidence, never an exception here
            return Outcome.crash("candidate", event, exc, perf_counter() - started)
        finally:
            self._forget(graph, thread)
        return Outcome.from_flow_state(event, final, perf_counter() - started)

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
    ) -> ReplayReport:
        """Replay recorded events through both paths; returns the report.

        Streams the log: memory stays flat over any length. Saga state
        carries across the events of a replay (starting empty), on each path
        separately. A line that is not a valid event, or whose type no handler
        subscribes to, raises ``BadEventLog`` naming the line, or with
        ``skip_bad=True`` is skipped and listed in the report.
        """
        if resume:
            raise ConfigurationError("replay(..., resume=True) is not available yet in this version")
        entries, source, skipped = self._entries(events_or_path, skip_bad)
        tally = ReplayTally()
        legacy_states = BoundedStateStore(self.saga_capacity)
        candidate_states = BoundedStateStore(self.saga_capacity)
        known = set(self.legacy.event_types)
        started = perf_counter()
        for entry in entries:
            event = entry.event
            if event.type not in known:
                reason = f"has event type {event.type!r}, which no handler of bus {self.legacy.name!r} subscribes to"
                if not skip_bad:
                    raise BadEventLog(f"{source} line {entry.line} {reason}", line=entry.line, source=source)
                skipped.append(SkippedLine(entry.line, reason))
                continue
            key = event.saga_key
            seed = candidate_states.peek(key)
            comparison, after = self._compare(event, entry.effects, legacy_states, copy.deepcopy(seed) if seed else None)
            candidate_states.save(key, after or {})
            tally.add(comparison, entry.line)
            if on_result is not None:
                on_result(comparison, tally)
        decision = parity_decision(tally.total, tally.divergent, tally.by_node)
        return tally.freeze(
            decision, migration=self.name, source=source, skipped=skipped, duration=perf_counter() - started
        )

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
