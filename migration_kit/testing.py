"""Test helpers for users' own migrations and buses.

* ``assert_parity(migration, events)``: every event through both paths,
  sandboxed; fails naming each divergent event, its first divergent node and
  the differing fields.
* ``check_legacy_bus(bus, events)``: the ``LegacyBus`` contract suite, for an
  adapter you write for a bus migration-kit does not ship. Run it from your
  own test: ``check_legacy_bus(my_bus, [my_bus.codec.to_event(msg), ...])``.
* ``check_records(make_records)``: the ``migration_kit.store.Records``
  contract suite, for a records backend (``make_records()`` returns a fresh,
  empty one).
* ``check_state_store(make_store)``: the ``legacy_bus.StateStore`` contract
  suite, for a saga-state backend (``make_store()`` returns a fresh, empty one).

Each raises ``AssertionError`` naming the clause the backend breaks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from graph_flows import flow_from_bus
from legacy_bus import EffectCall, Event, OverlayStateStore, Sandbox, StateStore
from migration_errors import VersionConflict
from legacy_bus.protocol import DISCIPLINES, LegacyBus, missing_members

from migration_kit.compare.comparator import Comparator, Comparison
from migration_kit.compare.noise import NoiseBook
from migration_kit.observe.redaction import Redactor
from migration_kit.run.candidate import CandidateGraph
from migration_kit.run.executor import Executor
from migration_kit.store import Records, Store
from migration_kit.types import Comparing

__all__ = ["assert_parity", "check_legacy_bus", "check_records", "check_state_store"]


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


# A value with every JSON shape in it: what a backend must give back exactly.
_JSON_VALUE: Any = {
    "text": "héllo \u2603 \"quoted\" \\ back",
    "int": -(2**53) + 1,
    "float": 0.1,
    "bool": [True, False],
    "none": None,
    "nested": {"list": [1, [2, {"three": 3.5}]], "empty": {}, "": []},
}


def _clause(name: str, ok: bool, detail: str) -> None:
    """Raise ``AssertionError`` naming the contract clause ``name`` when ``ok`` is false."""
    if not ok:
        raise AssertionError(f"clause {name!r} broken: {detail}")


def check_records(make_records: Callable[[], Records]) -> None:
    """The ``Records`` contract: raise ``AssertionError`` naming the clause a backend breaks.

    ``make_records()`` returns a fresh, empty backend (it is closed at the end).
    Clauses: ``get-missing`` (an absent key is ``(None, 0)``); ``put-get`` (a put
    value comes back, versions count up from 1); ``versioned-put`` (compare and set:
    a stale version raises ``VersionConflict``, the current one writes, 0 means
    absent); ``json-exact`` (every JSON shape round-trips exactly, in documents and
    lists); ``append-order``, ``items-bounds`` and ``trim`` (lists keep insertion
    order, slice like Python with ``stop`` exclusive, trim keeps the newest);
    ``incr-counters``; ``delete`` (document, list and counters go, others stay).
    """
    records = make_records()
    try:
        _check_documents(records)
        _check_lists(records)
        _check_counters(records)
        _check_delete(records)
    finally:
        records.close()


def _check_documents(r: Records) -> None:
    """The document clauses of ``check_records``."""
    got = r.get("ck:missing")
    _clause("get-missing", tuple(got) == (None, 0), f"get of an absent key returned {got!r}, not (None, 0)")
    v1 = r.put("ck:doc", {"n": 1})
    _clause("put-get", v1 == 1, f"the first put returned version {v1!r}, not 1")
    got = r.get("ck:doc")
    _clause("put-get", tuple(got) == ({"n": 1}, 1), f"get after put returned {got!r}, not ({{'n': 1}}, 1)")
    v2 = r.put("ck:doc", {"n": 2})
    _clause("put-get", v2 == 2 and tuple(r.get("ck:doc")) == ({"n": 2}, 2), f"an unversioned overwrite gave version {v2!r}, then {r.get('ck:doc')!r}")
    for stale in (1, 0, 7):
        try:
            r.put("ck:doc", {"n": "stale"}, version=stale)
        except VersionConflict:
            pass
        else:
            raise AssertionError(f"clause 'versioned-put' broken: put(version={stale}) on a record at version 2 did not raise VersionConflict")
    _clause("versioned-put", tuple(r.get("ck:doc")) == ({"n": 2}, 2), f"a refused put changed the record: {r.get('ck:doc')!r}")
    v3 = r.put("ck:doc", {"n": 3}, version=2)
    _clause("versioned-put", v3 == 3 and tuple(r.get("ck:doc")) == ({"n": 3}, 3), f"put(version=2) at version 2 gave {v3!r}, then {r.get('ck:doc')!r}")
    v_new = r.put("ck:fresh", "first", version=0)
    _clause("versioned-put", v_new == 1 and tuple(r.get("ck:fresh")) == ("first", 1), f"put(version=0) on an absent key gave {v_new!r}")
    r.put("ck:json", _JSON_VALUE)
    back = r.get("ck:json")[0]
    _clause("json-exact", back == _JSON_VALUE and type(back["float"]) is float, f"a JSON document came back as {back!r}")


def _check_lists(r: Records) -> None:
    """The list clauses of ``check_records``."""
    _clause("items-bounds", r.items("ck:nolist") == [], f"items of an absent list returned {r.items('ck:nolist')!r}")
    lengths = [r.append("ck:list", i) for i in range(6)]
    _clause("append-order", lengths == [1, 2, 3, 4, 5, 6], f"append returned lengths {lengths}, not 1..6")
    _clause("append-order", r.items("ck:list") == [0, 1, 2, 3, 4, 5], f"items returned {r.items('ck:list')!r}, not [0..5] in order")
    for start, stop in ((0, None), (2, None), (1, 4), (0, 0), (3, 3), (4, 2), (0, 100), (10, None), (5, 6)):
        want = list(range(6))[start:stop]
        got = r.items("ck:list", start, stop)
        _clause("items-bounds", got == want, f"items(start={start}, stop={stop}) returned {got!r}, not {want!r}")
    r.trim("ck:list", 4)
    _clause("trim", r.items("ck:list") == [2, 3, 4, 5], f"trim(keep=4) left {r.items('ck:list')!r}, not the newest four [2, 3, 4, 5]")
    r.trim("ck:list", 10)
    _clause("trim", r.items("ck:list") == [2, 3, 4, 5], f"trim(keep=10) of four items left {r.items('ck:list')!r}")
    r.trim("ck:list", 0)
    _clause("trim", r.items("ck:list") == [], f"trim(keep=0) left {r.items('ck:list')!r}")
    r.trim("ck:nolist", 3)  # trimming an absent list is a no-op, not an error
    r.append("ck:jsonlist", _JSON_VALUE)
    _clause("json-exact", r.items("ck:jsonlist") == [_JSON_VALUE], f"a JSON list item came back as {r.items('ck:jsonlist')!r}")


def _check_counters(r: Records) -> None:
    """The counter clauses of ``check_records``."""
    _clause("incr-counters", r.counters("ck:nocount") == {}, f"counters of an absent key returned {r.counters('ck:nocount')!r}")
    first = r.incr("ck:count", {"a": 1, "b": 5})
    _clause("incr-counters", first == {"a": 1, "b": 5}, f"the first incr returned {first!r}, not {{'a': 1, 'b': 5}}")
    second = r.incr("ck:count", {"a": 2})
    _clause("incr-counters", second == {"a": 3}, f"incr returned {second!r}, not the new value of only the counters named: {{'a': 3}}")
    third = r.incr("ck:count", {"b": -5, "c": 0})
    _clause("incr-counters", third == {"b": 0, "c": 0}, f"incr with a negative and a zero amount returned {third!r}")
    _clause("incr-counters", r.counters("ck:count") == {"a": 3, "b": 0, "c": 0}, f"counters returned {r.counters('ck:count')!r}")


def _check_delete(r: Records) -> None:
    """The delete clause of ``check_records``."""
    r.put("ck:gone", {"x": 1})
    r.append("ck:gone", 1)
    r.incr("ck:gone", {"x": 1})
    r.put("ck:kept", {"y": 1})
    r.delete("ck:gone")
    left = (tuple(r.get("ck:gone")), r.items("ck:gone"), r.counters("ck:gone"))
    _clause("delete", left == ((None, 0), [], {}), f"after delete, the key still holds (document, list, counters) {left!r}")
    _clause("delete", tuple(r.get("ck:kept")) == ({"y": 1}, 1), f"delete of one key changed another: {r.get('ck:kept')!r}")
    r.delete("ck:never")  # deleting an absent key is a no-op, not an error
    again = r.put("ck:gone", "new")
    _clause("delete", again == 1, f"a put after delete returned version {again!r}, not 1 (the record starts over)")


def check_state_store(make_store: Callable[[], StateStore]) -> None:
    """The ``legacy_bus.StateStore`` contract: raise ``AssertionError`` naming the clause a store breaks.

    ``make_store()`` returns a fresh, empty store. Clauses: ``protocol`` (it has
    ``load``/``save``/``peek``); ``peek-missing`` (None, and peeking creates
    nothing); ``load-missing`` (a new empty dict each time, which creates nothing
    until saved); ``save-load`` and ``save-peek`` (a saved state comes back equal,
    every JSON shape exactly); ``isolation`` (sagas do not see each other's state;
    a dict from ``load`` of a new saga is the caller's, shared with no other);
    ``save-empty`` (saving ``{}`` forgets the saga); ``keys`` and ``delete`` when
    the store offers them (``keys()`` lists exactly the sagas with state).
    """
    store = make_store()
    try:
        _clause("protocol", isinstance(store, StateStore), f"{type(store).__name__} lacks load/save/peek")
        _check_state_clauses(store)
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()


def _check_state_clauses(s: StateStore) -> None:
    """The clauses of ``check_state_store`` on one store."""
    _clause("peek-missing", s.peek("saga-a") is None, f"peek of a new saga returned {s.peek('saga-a')!r}, not None")
    _clause("peek-missing", s.peek("saga-a") is None, "a second peek found state the first one created")
    first, second = s.load("saga-a"), s.load("saga-a")
    _clause("load-missing", first == {} and isinstance(first, dict), f"load of a new saga returned {first!r}, not an empty dict")
    first["scribble"] = 1
    _clause("isolation", second == {} and s.load("saga-b") == {}, f"a dict loaded for a new saga is shared: another load holds {second!r}")
    _clause("load-missing", s.peek("saga-a") is None, f"load without save created state: peek returned {s.peek('saga-a')!r}")
    state = s.load("saga-a")
    state.update(_JSON_VALUE)
    s.save("saga-a", state)
    _clause("save-peek", s.peek("saga-a") == _JSON_VALUE, f"peek after save returned {s.peek('saga-a')!r}")
    _clause("save-load", s.load("saga-a") == _JSON_VALUE, f"load after save returned {s.load('saga-a')!r}")
    _clause("isolation", s.peek("saga-b") is None and s.load("saga-b") == {}, f"saving saga-a gave saga-b {s.peek('saga-b')!r}")
    s.save("saga-b", {"step": 1})
    s.save("saga-b", {"step": 2})
    _clause("save-load", s.load("saga-b") == {"step": 2}, f"the last save did not win: load returned {s.load('saga-b')!r}")
    _clause("isolation", s.peek("saga-a") == _JSON_VALUE, f"saving saga-b changed saga-a to {s.peek('saga-a')!r}")
    keys = getattr(s, "keys", None)
    if callable(keys):
        listed = sorted(keys())
        _clause("keys", listed == ["saga-a", "saga-b"], f"keys() listed {listed}, not the sagas with state ['saga-a', 'saga-b']")
    s.save("saga-b", {})
    _clause("save-empty", s.peek("saga-b") is None and s.load("saga-b") == {}, f"saving an empty state kept {s.peek('saga-b')!r}")
    delete = getattr(s, "delete", None)
    if callable(delete):
        delete("saga-a")
        _clause("delete", s.peek("saga-a") is None, f"after delete, peek returned {s.peek('saga-a')!r}")
        delete("saga-never")  # deleting a saga without state is a no-op, not an error
    if callable(keys):
        listed = sorted(keys())
        want = [] if callable(delete) else ["saga-a"]
        _clause("keys", listed == want, f"keys() listed {listed} after the sagas were emptied, not {want}")
