"""A replay's progress record stays small: saga state is saved in pages, only the pages used since the last save."""

from __future__ import annotations

import json
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus, EventLog
from migration_kit import Migration
from migration_kit.run.resume import ReplayInterrupted, progress_key
from migration_kit.run.saga_pages import PagedStates, page_count
from migration_kit.store import MemoryRecords


class CountingRecords(MemoryRecords):
    """Real in-memory records that also count the pages written (what a save costs)."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[str] = []

    def put(self, key, value, *, version=None):
        self.puts.append(key)
        return super().put(key, value, version=version)


def same(a: PagedStates, b: PagedStates) -> bool:
    return a.snapshot() == b.snapshot()


def test_a_save_writes_only_the_pages_of_the_sagas_used_since_the_last_one():
    records = CountingRecords()
    states = PagedStates(1000)
    for i in range(1000):
        states.save(f"saga-{i}", {"n": i})
    states.save_pages(records, "p", lambda v: v)
    states.saved(records, "p")
    assert len(records.puts) == page_count(1000)
    records.puts.clear()
    states.save("saga-7", {"n": 8})
    states.save_pages(records, "p", lambda v: v)
    states.saved(records, "p")
    assert len(records.puts) == 1
    records.puts.clear()
    states.save("saga-new", {"n": 1})  # the store is full: the least recently used saga is evicted
    manifest = states.save_pages(records, "p", lambda v: v)
    states.saved(records, "p")
    assert 1 <= len(records.puts) <= 2 and states.evicted == 1 and "saga-0" not in {k for k, _ in states.snapshot()["states"]}
    again = PagedStates(1000)
    again.restore_pages(records, "p", manifest, lambda v: v)
    assert same(states, again)
    # superseded page versions are gone: one record per page
    assert len([k for k in records._docs if k.startswith("p:")]) == page_count(1000)


def test_a_crash_after_the_pages_but_before_the_progress_record_resumes_from_the_previous_save():
    records = MemoryRecords()
    states = PagedStates(100)
    for i in range(50):
        states.save(f"s{i}", {"n": i})
    manifest = states.save_pages(records, "p", lambda v: v)
    states.saved(records, "p")
    before = states.snapshot()
    for i in range(50):
        states.save(f"s{i}", {"n": -i})
    states.save_pages(records, "p", lambda v: v)  # ... and the process dies before the record is saved
    again = PagedStates(100)
    again.restore_pages(records, "p", manifest, lambda v: v)
    assert again.snapshot() == before


ops = st.lists(
    st.one_of(
        st.tuples(st.just("save"), st.integers(0, 12), st.integers(0, 3)),
        st.tuples(st.just("load"), st.integers(0, 12), st.just(0)),
        st.tuples(st.just("checkpoint"), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=80, deadline=None)
@given(ops, ops)
def test_for_any_uses_restoring_the_last_save_gives_the_same_sagas_in_the_same_eviction_order(first, then):
    records = MemoryRecords()
    states = PagedStates(5)
    manifest = states.save_pages(records, "p", lambda v: v)
    states.saved(records, "p")
    at_save = states.snapshot()

    def apply(store: PagedStates, steps) -> None:
        nonlocal manifest, at_save
        for op, k, v in steps:
            if op == "save":
                store.save(f"k{k}", {"v": v} if v else {})
            elif op == "load":
                store.load(f"k{k}")
            elif store is states:
                manifest = store.save_pages(records, "p", lambda x: x)
                store.saved(records, "p")
                at_save = store.snapshot()

    apply(states, first)
    resumed = PagedStates(5)
    resumed.restore_pages(records, "p", manifest, lambda v: v)
    assert resumed.snapshot() == at_save
    # and from there both go on alike
    ref = PagedStates(5)
    ref.restore(at_save)
    apply(resumed, then)
    apply(ref, [s for s in then if s[0] != "checkpoint"])
    assert resumed.snapshot() == ref.snapshot()


def app() -> EventBus:
    bus = EventBus("sagas")

    @bus.on("Added")
    def add(e, ctx):
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        ctx.state["log"] = "x" * 200

    return bus


def events(sagas: int, per: int) -> list[Event]:
    return [Event(type="Added", payload={}, correlation_id=f"saga-{s}") for _ in range(per) for s in range(sagas)]


def test_the_progress_record_does_not_grow_with_the_sagas_held_and_its_pages_go_when_the_replay_is_done(tmp_path):
    sizes = {}
    for sagas in (20, 1000):
        log = tmp_path / f"{sagas}.jsonl"
        EventLog(log).write(events(sagas, 1000 // sagas))
        bus = app()
        m = Migration("sagas", legacy=bus, candidate=flow_from_bus(bus))
        stop = threading.Event()
        with pytest.raises(ReplayInterrupted):
            m.replay(log, on_result=lambda c, t: t.total == 1000 and stop.set(), stop=stop)
        doc, _ = m.store.records.get(progress_key(log))
        # The saga state's part of the record (the tally and monitor hold latency sketches, whose
        # size follows the machine's timing, not the sagas held).
        sizes[sagas] = len(json.dumps({k: v for k, v in doc.items() if k not in ("tally", "monitor", "elapsed")}))
        assert any(k.startswith(progress_key(log) + ":") for k in m.store.records._docs)
        report = m.replay(log, resume=True)
        assert report.total == 1000
        assert not any(k.startswith(progress_key(log) + ":") for k in m.store.records._docs)
    # 50x the sagas held (each ~250 bytes, on both paths: ~0.5 MB if the record held them): the record
    # names a version per page, no state
    assert sizes[1000] - sizes[20] < 2 * 2 * page_count(10_000)
