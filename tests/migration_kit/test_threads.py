"""The one rule for a graph thread (``migration_kit.run.threads``), at every point a run can be cut off.

Each case runs one event of the orders example in a forked child on a real
SQLite checkpointer and SIGKILLs the child at one point: before the first
node, inside each node, between nodes (after a step's writes, before or after
its checkpoint), after the last node; with ``sync``, ``async`` and ``exit``
durability. The parent then classifies what LangGraph left and resumes it the
way replay does: the outcome equals an uninterrupted run's.
"""

from __future__ import annotations

import inspect
import os
import signal
from pathlib import Path

import pytest

from examples.orders import app as orders
from graph_flows import flow_from_bus
from legacy_bus import EffectCall, Event, EventBus, Sandbox
from migration_kit import Migration
from migration_kit.run.threads import Finished, Fresh, Resumable, classify

FIRST = Event.model_validate_json((Path(orders.__file__).parent / "events.jsonl").read_text().splitlines()[0])
NODES = ["validate_order", "score_fraud", "reserve_inventory", "charge_payment", "schedule_shipment",
         "award_loyalty_points", "send_receipt", "notify_shipment"]  # fmt: skip
LAST_STEP = 9  # __start__, __begin__, then one step per node


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _killer(fn):  # a handler that kills the process, sync or async like the one it stands in for
    if inspect.iscoroutinefunction(fn):

        async def killed(event, ctx):
            _die()

        return killed

    def killed(event, ctx):  # noqa: ARG001
        _die()

    return killed


def _migration(store: str, bus: EventBus = orders.bus, kill_node: str | None = None) -> Migration:
    flow = flow_from_bus(bus)
    if kill_node is not None:
        flow.replace(kill_node, _killer(flow.nodes[kill_node].sub.handler))
    return Migration("threads", legacy=bus, candidate=flow, store=store)


def _cut(
    store: str, where: str, durability: str, *, event: Event = FIRST, bus: EventBus = orders.bus, answers=(), thread: str | None = None,
    run=None,
) -> None:
    """Run ``event`` on its thread (or ``thread``) in a forked child that SIGKILLs itself at ``where``.

    ``where``: ``node:<name>`` (inside that node), ``put:<step>`` / ``afterput:<step>`` (before / after
    the checkpoint of that step is saved; ``first`` is the first one this run saves), ``writes:<n>``
    (after the n-th save of a task's writes), ``none`` (after the run, before anything else).
    ``run(migration, event)``: how the child runs it instead (e.g. the cutover serving it for real).
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        try:
            kind, _, arg = where.partition(":")
            m = _migration(store, bus, arg if kind == "node" else None)
            saver = m.store.checkpointer
            if kind in ("put", "afterput"):
                put, step = saver.put, (None if arg == "first" else int(arg))

                def hooked(cfg, cp, md, nv):
                    if kind == "put" and md.get("step") == step:
                        _die()
                    out = put(cfg, cp, md, nv)
                    if kind == "afterput" and step in (None, md.get("step")):
                        _die()
                    return out

                saver.put = hooked
            elif kind == "writes":
                put_writes, left = saver.put_writes, [int(arg)]

                def hooked_writes(*a, **k):
                    out = put_writes(*a, **k)
                    left[0] -= 1
                    if left[0] == 0:
                        _die()
                    return out

                saver.put_writes = hooked_writes
            config = {"configurable": {"thread_id": thread or m.thread_for(event)}}
            if run is not None:
                run(m, event)
            else:
                with Sandbox(answers):
                    m.graph.invoke({"event": event.to_dict()}, config, durability=durability)
            _die()  # finished, and killed before the thread was forgotten
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"the child was not killed at {where}"


def _kind_and_outcome(store: str, *, event: Event = FIRST, bus: EventBus = orders.bus, answers=()):
    with _migration(store, bus) as m:
        config = {"configurable": {"thread_id": m.thread_for(event)}}
        found = m.executor.found(m.graph, event, config)
        outcome = m.executor.run_candidate(event, tuple(answers), None, resume=True)
        left = m.graph.get_state(config).values
    assert not left, "the thread is forgotten once the event is done"
    return found, outcome


def _essence(outcome) -> dict:
    return {
        "emitted": [(e.node, e.type, e.payload) for e in outcome.emitted],
        "nodes": [r.node for r in outcome.trace],
        "effects": [(c.port, c.args, c.response, c.mode) for c in outcome.effects],
        "state": outcome.state,
        "errors": [e.type for e in outcome.errors],
        "crashed": outcome.crashed,
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    store = f"sqlite:///{tmp_path_factory.mktemp('whole')}/s.sqlite"
    with _migration(store) as m:
        return _essence(m.executor.run_candidate(FIRST, (), None))


CASES = [
    # (where, durability, what the rule must say)
    ("put:-1", "sync", Fresh),  # before the first node: not even the input checkpoint
    ("afterput:-1", "sync", Resumable),  # before the first node: the input checkpoint (event still in __start__)
    ("writes:1", "sync", Resumable),  # __start__'s writes saved, its checkpoint not: next == (), pending writes
    *[(f"node:{n}", "sync", Resumable) for n in NODES],  # inside each node
    *[(f"writes:{k}", "sync", Resumable) for k in (3, 6, 9)],  # between nodes: writes saved, checkpoint not
    *[(f"afterput:{k}", "sync", Resumable) for k in (2, 5, 8)],  # between nodes: checkpoint saved
    (f"afterput:{LAST_STEP}", "sync", Finished),  # after the last node
    ("node:send_receipt", "async", (Resumable, Fresh)),  # async saves lag: whatever reached the store
    ("node:notify_shipment", "async", (Resumable, Fresh)),
    (f"afterput:{LAST_STEP}", "async", Finished),
    ("node:charge_payment", "exit", Fresh),  # exit durability saves nothing before the end
    (f"afterput:{LAST_STEP}", "exit", Finished),
]


@pytest.mark.parametrize(("where", "durability", "expected"), CASES, ids=[f"{w}-{d}" for w, d, _ in CASES])
def test_a_run_cut_off_at_any_point_is_classified_and_resumes_to_the_uninterrupted_outcome(
    tmp_path, uninterrupted, where, durability, expected
):
    store = f"sqlite:///{tmp_path}/s.sqlite"
    _cut(store, where, durability)
    found, outcome = _kind_and_outcome(store)
    assert isinstance(found, expected), found
    assert _essence(outcome) == uninterrupted


def test_no_pending_tasks_but_pending_writes_is_not_finished(tmp_path):
    """The trap of ``not snapshot.next``: a step's writes saved, the next checkpoint not."""
    store = f"sqlite:///{tmp_path}/s.sqlite"
    _cut(store, "writes:6", "sync")
    with _migration(store) as m:
        snap = m.graph.get_state({"configurable": {"thread_id": m.thread_for(FIRST)}})
    assert snap.next == () and snap.tasks and snap.values["event"]["id"] == FIRST.id
    assert isinstance(classify(snap, FIRST.id), Resumable)


def test_a_checkpoint_of_another_event_is_fresh_and_names_that_run(tmp_path):
    store = f"sqlite:///{tmp_path}/s.sqlite"
    _cut(store, "node:schedule_shipment", "sync")
    with _migration(store) as m:
        snap = m.graph.get_state({"configurable": {"thread_id": m.thread_for(FIRST)}})
    found = classify(snap, "another-event")
    assert isinstance(found, Fresh) and isinstance(found.other, Resumable) and found.other.event_id == FIRST.id


def test_an_incomplete_final_state_must_start_over(tmp_path):
    store = f"sqlite:///{tmp_path}/s.sqlite"
    _cut(store, f"afterput:{LAST_STEP}", "sync")
    with _migration(store) as m:
        snap = m.graph.get_state({"configurable": {"thread_id": m.thread_for(FIRST)}})
        assert isinstance(classify(snap, FIRST.id, complete=m.flow.is_complete), Finished)
        assert isinstance(classify(snap, FIRST.id, complete=lambda values: False), Fresh)
        assert classify(snap, FIRST.id, complete=lambda values: False).stale


# -- effect answers already used are not offered again ----------------------------------------------

twice = EventBus("twice")


@twice.effect("ledger.post", stub={"n": 0})
def post(amount):  # pragma: no cover - sandboxed here
    raise AssertionError("real effect in a sandbox")


@twice.on("Start")
def first_post(event):
    return Event(type="Next", payload={"got": post(1)["n"]})


@twice.on("Next")
def second_post(event):
    return Event(type="Done", payload={"got": post(1)["n"], "before": event.payload["got"]})


ANSWERS = (EffectCall("ledger.post", [1], {}, {"n": 1}, None, "real"), EffectCall("ledger.post", [1], {}, {"n": 2}, None, "real"))
START = Event(type="Start", payload={}, id="start-1")


def test_a_resumed_run_is_not_offered_the_answers_its_finished_nodes_took(tmp_path):
    whole = f"sqlite:///{tmp_path}/whole.sqlite"
    with _migration(whole, twice) as m:
        expected = _essence(m.executor.run_candidate(START, ANSWERS, None))
    assert [e[2] for e in expected["emitted"]] == [{"got": 1}, {"got": 2, "before": 1}]
    store = f"sqlite:///{tmp_path}/s.sqlite"
    _cut(store, "node:second_post", "sync", event=START, bus=twice, answers=ANSWERS)
    found, outcome = _kind_and_outcome(store, event=START, bus=twice, answers=ANSWERS)
    assert isinstance(found, Resumable) and found.used and found.remaining(ANSWERS) == ANSWERS[1:]
    assert _essence(outcome) == expected


# -- a saga's long-lived thread (cutover): runs of several events on one thread -----------------------

SECOND = Event.model_validate_json((Path(orders.__file__).parent / "events.jsonl").read_text().splitlines()[1])
SAGA = "threads:saga:one"


def _saga_state(store: str, event_id: str):
    with _migration(store) as m:
        return m.executor.found(m.graph, Event(type="OrderPlaced", payload={}, id=event_id), {"configurable": {"thread_id": SAGA}})


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("none", Finished),  # the second event finished: a redelivery gets its result
        ("afterput:first", Resumable),  # its input checkpoint: values still show the first event
        ("writes:1", Resumable),  # __start__'s writes saved, no checkpoint after them
        ("node:reserve_inventory", Resumable),
        ("writes:5", Resumable),
    ],
)
def test_on_a_long_lived_thread_the_rule_tells_this_events_run_from_the_previous_events(tmp_path, where, expected):
    store = f"sqlite:///{tmp_path}/s.sqlite"
    _cut(store, "none", "sync", thread=SAGA)  # the first event ran to its end
    assert isinstance(_saga_state(store, SECOND.id), Fresh)
    assert isinstance(_saga_state(store, SECOND.id).other, Finished)
    _cut(store, where, "sync", event=SECOND, thread=SAGA)
    found = _saga_state(store, SECOND.id)
    assert isinstance(found, expected) and found.event_id == SECOND.id
    later = _saga_state(store, "a-third-event")
    assert isinstance(later, Fresh) and isinstance(later.other, expected) and later.other.event_id == SECOND.id
