"""One candidate-run plan for its three callers: replay, the shadow worker and cutover.

The cut-off points of ``test_threads`` (a forked child SIGKILLed with the input checkpoint
written, inside a node, between nodes with a step's writes saved but not its checkpoint,
after the last node), each picked up by every caller of ``migration_kit.run.executor.plan_run``:

* replay: ``Executor.run_candidate(..., resume=True)`` on the event's own thread;
* the shadow worker: ``Executor.compare_recorded`` against the recorded legacy outcome;
* cutover: ``Cutover.run_candidate`` / ``arun_candidate`` on the saga's long-lived thread,
  for real (the child that was cut off was the cutover serving the event too).

Each reaches what an uninterrupted run gives. Two calls of one effect port with the same
arguments get different answers, so an answer offered twice (sandboxed) or a real call made
twice (cutover: every real call is a line in a file shared with the child) would show.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from legacy_bus import EffectCall, Event, EventBus, OverlayStateStore

sys.path.insert(0, str(Path(__file__).parent))
from test_threads import _cut, _essence, _migration  # noqa: E402  (the cut-off points of "A replay you can trust")

from migration_kit.live.cutover import Cutover  # noqa: E402
from migration_kit.run.threads import Finished, Resumable  # noqa: E402

SAGA = "order-1"
START = Event(type="Start", payload={}, id="start-1", correlation_id=SAGA)
AGAIN = Event(type="Start", payload={}, id="start-2", correlation_id=SAGA)
# The graph's checkpoints for one event: -1 the input, 3 the last; put_writes #3 is first_post's
# (with the Send to second_post), saved before the checkpoint after it.
POINTS = ["afterput:-1", "node:second_post", "writes:3", "afterput:3"]
LEFT = {"afterput:-1": Resumable, "node:second_post": Resumable, "writes:3": Resumable, "afterput:3": Finished}  # the rule's word
ANSWERS = (EffectCall("ledger.post", [1], {}, {"n": 1}, None, "real"), EffectCall("ledger.post", [1], {}, {"n": 2}, None, "real"))


def build(ledger: Path) -> EventBus:
    """Two handlers in a chain, each calling one port with the same arguments; the real port appends to ``ledger``."""
    bus = EventBus("cut")

    @bus.effect("ledger.post", stub={"n": 0})
    def post(amount):
        with ledger.open("a") as f:
            f.write(f"{amount}\n")
        return {"n": len(ledger.read_text().splitlines())}

    @bus.on("Start")
    def first_post(event, ctx):
        n = post(1)["n"]
        ctx.state["calls"] = [*ctx.state.get("calls", []), n]
        return Event(type="Next", payload={"got": n})

    @bus.on("Next")
    def second_post(event, ctx):
        n = post(1)["n"]
        ctx.state["calls"] = [*ctx.state.get("calls", []), n]
        return Event(type="Done", payload={"got": n, "before": event.payload["got"]})

    return bus


def _dispatch(result) -> dict:
    return {
        "emitted": [(e.type, e.payload) for e in result.emitted],
        "emitted_by": list(result.emitted_by),
        "steps": [(s.node, s.event.type, [p.type for p in s.published], [c.response for c in s.effects]) for s in result.steps],
        "state": result.state,
        "error": result.error,
        "exception": result.exception,
    }


def _cutover(m) -> Cutover:
    return Cutover(
        m.name, m.legacy, store=m.store, candidate=m.candidate_graph, router=m.router, phases=m.phase_control, policy=m.policy
    )


@pytest.fixture
def ledger(tmp_path) -> Path:
    return tmp_path / "ledger.txt"


# -- replay and the shadow worker: the event's own thread, sandboxed --------------------------------


def _legacy(m):
    """The legacy outcome a tap recorded (its answers are what the worker offers the candidate)."""
    return m.executor.run_legacy(START, ANSWERS, OverlayStateStore())


@pytest.mark.parametrize("where", POINTS)
def test_replay_and_the_worker_pick_up_a_cut_off_run_as_if_it_had_not_been_cut_off(tmp_path, ledger, where):
    bus = build(ledger)
    with _migration(f"sqlite:///{tmp_path}/whole.sqlite", bus) as m:
        whole = _essence(m.executor.run_candidate(START, ANSWERS, None))
        recorded = _legacy(m)
        worker_whole = m.executor.compare_recorded(START, recorded, None, resume=False)
    assert [c[2] for c in whole["effects"]] == [{"n": 1}, {"n": 2}]  # each answer taken once, in order
    assert not worker_whole.divergent

    replay_store = f"sqlite:///{tmp_path}/replay.sqlite"
    _cut(replay_store, where, "sync", event=START, bus=bus, answers=ANSWERS)
    with _migration(replay_store, bus) as m:
        assert isinstance(m.executor.found(m.graph, START, {"configurable": {"thread_id": m.thread_for(START)}}), LEFT[where])
        assert _essence(m.executor.run_candidate(START, ANSWERS, None, resume=True)) == whole

    worker_store = f"sqlite:///{tmp_path}/worker.sqlite"
    _cut(worker_store, where, "sync", event=START, bus=bus, answers=tuple(recorded.effects))
    with _migration(worker_store, bus) as m:
        comparison = m.executor.compare_recorded(START, recorded, None)
    assert not comparison.divergent, comparison.differences
    assert _essence(comparison.candidate) == _essence(worker_whole.candidate)
    assert not ledger.exists()  # sandboxed: no real call anywhere


# -- cutover: the saga's long-lived thread, for real ------------------------------------------------


def _claim(store: str, bus: EventBus) -> None:
    """Hand the saga (with its legacy state) to the candidate: the ledger keeps the state as its seed."""
    bus.state_store.save(SAGA, {"seeded": True})
    with _migration(store, bus) as m:
        assert _cutover(m).ledger.ensure(SAGA, "candidate", reason="test").to == "candidate"


def _serve(m, event, driver):
    cutover = _cutover(m)
    if driver == "sync":
        return cutover.run_candidate(event, False)
    return asyncio.run(cutover.arun_candidate(event, False))


def _served(m, event):  # the child: the cutover serves the event, and is cut off somewhere inside
    _cutover(m).run_candidate(event, False)


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path) -> str:
    if request.param == "redis":
        return request.getfixturevalue("redis_url")
    return f"sqlite:///{tmp_path}/cutover.sqlite"


@pytest.mark.parametrize("driver", ["sync", "async"])
@pytest.mark.parametrize("where", POINTS)
def test_cutover_picks_up_a_run_cut_off_on_a_sagas_thread_as_if_it_had_not_been_cut_off(tmp_path, store, where, driver):
    whole_ledger = tmp_path / "whole.txt"
    bus = build(whole_ledger)
    whole_store = f"sqlite:///{tmp_path}/whole.sqlite"
    _claim(whole_store, bus)
    with _migration(whole_store, bus) as m:
        result, outcome, before = _serve(m, START, driver)
        assert m.sagas().record(SAGA)[0].get("seed") is None  # the run took the seed
    assert before == {"seeded": True}
    assert outcome.state == {"seeded": True, "calls": [1, 2]}

    ledger = tmp_path / "ledger.txt"
    bus = build(ledger)
    _claim(store, bus)
    _cut(store, where, "sync", event=START, bus=bus, thread=f"threads:saga:{SAGA}", run=_served)
    with _migration(store, bus) as m:
        plan = _cutover(m).planned(START, _cutover(m).ledger.config(SAGA))
        assert plan.finished if LEFT[where] is Finished else (plan.input is None and not plan.again)  # resume it
        again, again_outcome, _ = _serve(m, START, driver)
    assert _essence(again_outcome) == _essence(outcome)
    assert _dispatch(again) == _dispatch(result)
    assert ledger.read_text().splitlines() == ["1", "1"]  # every real call once: the child's and the rest


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_cutover_finishes_the_previous_events_cut_off_run_before_the_next_event(tmp_path, driver):
    whole_ledger = tmp_path / "whole.txt"
    bus = build(whole_ledger)
    whole_store = f"sqlite:///{tmp_path}/whole.sqlite"
    _claim(whole_store, bus)
    with _migration(whole_store, bus) as m:
        _serve(m, START, driver)
        result, outcome, before = _serve(m, AGAIN, driver)
    assert outcome.state == {"seeded": True, "calls": [1, 2, 3, 4]} and before == {"seeded": True, "calls": [1, 2]}

    ledger = tmp_path / "ledger.txt"
    bus = build(ledger)
    store = f"sqlite:///{tmp_path}/cutover.sqlite"
    _claim(store, bus)
    _cut(store, "node:second_post", "sync", event=START, bus=bus, thread=f"threads:saga:{SAGA}", run=_served)
    assert ledger.read_text().splitlines() == ["1"]  # first_post's real call, then the child died
    with _migration(store, bus) as m:
        assert _cutover(m).planned(AGAIN, _cutover(m).ledger.config(SAGA)).again  # START's run first
        again, again_outcome, again_before = _serve(m, AGAIN, driver)
    assert _essence(again_outcome) == _essence(outcome) and again_before == before
    assert _dispatch(again) == _dispatch(result)
    assert ledger.read_text().splitlines() == ["1"] * 4


# -- one parser of the final state: the Dispatch cutover returns is derived from the run's Outcome ---------


class Declined(Exception):
    """A handler's own exception: it reaches the caller as itself."""


@pytest.mark.parametrize("on_error", ["raise", "record"])
def test_the_dispatch_a_graph_run_amounts_to_is_the_one_the_bus_returns(on_error):
    from graph_flows import flow_from_bus
    from legacy_bus import Sandbox

    from migration_kit.compare.outcome import Outcome
    from migration_kit.live.cutover import dispatch_of

    bus = EventBus("errs", on_error=on_error)

    @bus.on("A")
    def fan_out(event, ctx):
        ctx.state["seen"] = 1
        ctx.publish("B", {"x": 1})
        ctx.publish("B", {"x": 2})

    @bus.on("B")
    def check(event, ctx):
        if event.payload["x"] == 2:
            raise Declined(f"declined {event.payload['x']}")
        ctx.publish("C", {})

    @bus.on("C")
    def last(event, ctx):
        raise ValueError("c")

    root = Event(type="A", payload={}, id="a-1")
    expected = bus.dispatch(root.model_copy(deep=True), sandbox=Sandbox(()), capture=True)
    with Sandbox(()):
        final = flow_from_bus(bus).compile().invoke({"event": root.to_dict()})
    for got in (dispatch_of(root, final, 0.0), dispatch_of(root, final, 0.0, Outcome.from_flow_state(root, final, 0.0))):
        assert [(s.node, s.event.type, s.event.payload, [p.type for p in s.published], s.error) for s in got.steps] == [
            (s.node, s.event.type, s.event.payload, [p.type for p in s.published], s.error) for s in expected.steps
        ]
        assert [(e.type, e.payload) for e in got.emitted] == [(e.type, e.payload) for e in expected.emitted]
        assert got.emitted_by == expected.emitted_by and got.state == expected.state and got.error == expected.error
        if on_error == "raise":  # the handler's own exception, for the caller
            assert type(got.exception) is Declined and str(got.exception) == str(expected.exception)
        else:  # recorded errors reach no caller (the bus keeps the object; the graph's state only its data)
            assert got.exception is None
