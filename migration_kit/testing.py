"""Test helpers for users' own migrations and buses.

* ``assert_parity(migration, events)``: every event through both paths,
  sandboxed; fails naming each divergent event, its first divergent node and
  the differing fields.
* ``check_legacy_bus(bus, events)``: the ``LegacyBus`` contract suite, for an
  adapter you write for a bus migration-kit does not ship. Run it from your
  own test: ``check_legacy_bus(my_bus, [my_bus.codec.to_event(msg), ...])``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from graph_flows import flow_from_bus
from legacy_bus import EffectCall, Event, OverlayStateStore, Sandbox
from legacy_bus.protocol import DISCIPLINES, LegacyBus, missing_members

from migration_kit.compare.comparator import Comparator, Comparison
from migration_kit.compare.noise import NoiseBook
from migration_kit.observe.redaction import Redactor
from migration_kit.run.candidate import CandidateGraph
from migration_kit.run.executor import Executor
from migration_kit.store import Store
from migration_kit.types import Comparing

__all__ = ["assert_parity", "check_legacy_bus"]


def _describe(c: Comparison, limit: int = 5) -> str:
    diffs = "; ".join(f"{d.path}: {d.legacy!r} != {d.candidate!r} ({d.kind})" for d in c.differences[:limit])
    more = f" (+{len(c.differences) - limit} more)" if len(c.differences) > limit else ""
    return f"event {c.event.type} {c.event.id}: first divergent node {c.first_divergent_node!r}: {diffs}{more}"


def assert_parity(migration: Comparing, events: Iterable[Event]) -> list[Comparison]:
    """Compare every event on both paths; raise ``AssertionError`` naming every divergence.

    ``migration`` is a ``Migration`` (or anything with its ``compare(event)``:
    ``migration_kit.types.Comparing``). Returns the comparisons (all without
    divergence) so a test can look closer.
    """
    comparisons = [migration.compare(e) for e in events]
    bad = [c for c in comparisons if c.divergent]
    if bad:
        lines = "\n  ".join(_describe(c) for c in bad[:10])
        raise AssertionError(f"{len(bad)} of {len(comparisons)} events diverge between legacy and candidate:\n  {lines}")
    return comparisons


def check_legacy_bus(bus: Any, events: Iterable[Event]) -> None:
    """The ``LegacyBus`` contract: raise ``AssertionError`` saying which clause ``bus`` breaks.

    Clauses: it has every member; its discipline is known; node names are
    unique; the codec round-trips each event exactly; a sandboxed, captured
    dispatch never raises and reports every emitted event with the handler
    that emitted it, as a descendant of the root; the graph derived from it
    does what the bus does, event for event (``assert_parity``).
    """
    missing = missing_members(bus)
    assert not missing, f"{type(bus).__name__} lacks LegacyBus members: {missing}"
    assert bus.discipline in DISCIPLINES, f"discipline {bus.discipline!r} is not one of {DISCIPLINES}"
    names = [s.name for s in bus.subscriptions]
    assert len(names) == len(set(names)), f"node names are not unique: {names}"
    events = list(events)
    assert events, "check_legacy_bus() needs at least one event"
    for event in events:
        again = bus.codec.to_event(bus.codec.from_event(event))
        assert (again.type, again.payload) == (event.type, event.payload), (
            f"the codec does not round-trip {event.type!r}: {event.payload!r} came back as {again.type!r}: {again.payload!r}"
        )
        try:
            dispatch = bus.dispatch(event, sandbox=Sandbox(), states=OverlayStateStore(bus.state_store), capture=True)
        except Exception as exc:  # noqa: BLE001 - translated: the clause is exactly that it must not raise
            raise AssertionError(f"dispatch(capture=True) raised {type(exc).__name__}: {exc}") from exc
        assert len(dispatch.emitted) == len(dispatch.emitted_by), "every emitted event needs the handler that emitted it"
        known = {event.id} | {e.id for e in dispatch.emitted}
        for child in dispatch.emitted:
            assert child.causation_id in known, f"emitted {child.type!r} is caused by {child.causation_id!r}, not part of this cascade"
        for step in dispatch.steps:
            assert step.node in names, f"a step ran node {step.node!r}, which is not among the subscriptions {names}"
    assert_parity(_DerivedGraphParity(bus), events)


class _DerivedGraphParity:
    """A bus against the graph ``flow_from_bus`` derives from it, one event at a time (a ``Comparing``).

    What ``check_legacy_bus`` asserts parity with: the executor of a migration
    of ``bus`` onto its own derived graph, with the default comparator, on a
    ``memory://`` store, built from the parts (this kit sits below the facade).
    """

    def __init__(self, bus: LegacyBus) -> None:
        name = f"contract-{bus.name}"
        store = Store("memory://", name)
        graph = CandidateGraph(flow_from_bus(bus), lambda: store.checkpointer)
        noise = NoiseBook(store, Redactor().difference_dict)
        self.bus = bus
        self.executor = Executor(name, bus, graph, Comparator(), noise, lambda comparison, _traceparent=None: comparison)

    def compare(self, event: Event, *, effects: Iterable[EffectCall] = ()) -> Comparison:
        """Both paths on ``event``, sandboxed, from a copy of the bus's saga state (``Migration.compare``)."""
        seed = self.bus.state_store.peek(event.saga_key)
        states = OverlayStateStore(self.bus.state_store)
        return self.executor.compare(event, tuple(effects), states, copy.deepcopy(seed) if seed else None)[0]
