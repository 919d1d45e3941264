"""Phases: a validated state machine, persisted with optimistic concurrency, audited, and routing sticky sagas."""

from __future__ import annotations

import multiprocessing

import pytest

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from migration_kit import InvalidTransition, Migration, PhaseConflict


def bus() -> EventBus:
    b = EventBus("orders")

    @b.on("Order")
    def route(e):
        return Event(type="Routed", payload={"queue": "heavy" if e.payload["kg"] > 20 else "std"})

    @b.on("Routed")
    def sink(e):
        return None

    return b


def migration(store: str = "memory://", *, diverge: bool = False) -> Migration:
    b = bus()
    flow = flow_from_bus(b)
    if diverge:
        flow.replace("route", lambda e: Event(type="Routed", payload={"queue": "freight"}))
    return Migration("orders", legacy=b, candidate=flow, store=store)


def orders(n: int) -> list[Event]:
    return [Event(type="Order", payload={"kg": i % 40}) for i in range(n)]


def test_promote_walks_shadow_canary_steps_primary_retired():
    m = migration()
    seen = [m.phase_state.phase]
    while True:
        try:
            seen.append(m.promote().to_state.describe())
        except InvalidTransition as exc:
            assert "no phase after it" in str(exc)
            break
    assert seen == ["shadow", "canary 1%", "canary 5%", "canary 25%", "canary 50%", "primary", "retired"]


@pytest.mark.parametrize(
    ("setup", "kwargs", "message"),
    [
        ({"percent": 25}, {"percent": 10}, "only moves forward"),
        ({"to": "primary"}, {"to": "canary"}, "past canary"),
        ({}, {"percent": 100}, "below 100"),
        ({}, {"to": "primary", "percent": 5}, "only applies to canary"),
        ({}, {"to": "rolled_back"}, "use rollback"),
        ({}, {"to": "nowhere"}, "unknown phase"),
        ({}, {"to": "shadow"}, "already shadow"),
    ],
)
def test_invalid_transitions_are_refused_with_what_is_allowed(setup, kwargs, message):
    m = migration()
    if setup:
        m.promote(**setup)
    with pytest.raises(InvalidTransition, match=message):
        m.promote(**kwargs)


def test_rollback_needs_a_reason_works_from_any_phase_and_not_twice():
    for setup in ({}, {"percent": 5}, {"to": "primary"}, {"to": "retired"}):
        m = migration()
        if setup:
            m.promote(**setup)
        with pytest.raises(InvalidTransition, match="needs a reason"):
            m.rollback("  ")
        assert m.rollback("p99 doubled").to_state.phase == "rolled_back"
        with pytest.raises(InvalidTransition, match="already rolled back"):
            m.rollback("again")


def test_promote_from_rolled_back_starts_a_new_attempt_with_fresh_evidence():
    m = migration()
    m.replay(orders(10))
    assert m.evidence().compared == 10
    m.rollback("bad")
    t = m.promote()
    assert (t.to_state.phase, t.to_state.attempt) == ("shadow", 2)
    assert m.evidence().compared == 0 and m.status()["compared"] == 0


def test_every_transition_is_recorded_with_when_why_who_and_the_evidence():
    m = migration()
    m.replay(orders(12))
    m.promote(percent=5, reason="replay clean")
    m.rollback("latency", by="automatic")
    h = m.history()
    assert [(x["from"], x["to"], x["by"], x["reason"]) for x in h] == [
        ("shadow", "canary", "user", "replay clean"),
        ("canary", "rolled_back", "automatic", "latency"),
    ]
    assert h[0]["percent"] == 5 and h[0]["at"].endswith("+00:00")
    assert h[0]["evidence"]["compared"] == 12 and "latency" in h[0]["evidence"]


def test_route_is_sticky_per_correlation_id_and_follows_the_phase():
    m = migration()
    events = [Event(type="Order", payload={"kg": 1}, correlation_id=f"saga-{i}") for i in range(2000)]
    assert {m.route(e) for e in events} == {"legacy"}
    m.promote(percent=25)
    first = [m.route(e) for e in events]
    again = [m.route(Event(type="Routed", payload={}, correlation_id=e.correlation_id)) for e in events]
    assert first == again
    assert 0.20 < first.count("candidate") / len(first) < 0.30
    m.promote(percent=50)
    later = [m.route(e) for e in events]
    assert all(b == "candidate" for a, b in zip(first, later, strict=True) if a == "candidate")
    m.promote(to="primary")
    assert {m.route(e) for e in events} == {"candidate"}
    m.rollback("x")
    assert {m.route(e) for e in events} == {"legacy"}


def test_a_replay_that_proves_a_regression_in_canary_rolls_back_automatically():
    m = migration(diverge=True)
    m.promote(percent=5)
    report = m.replay(orders(40))
    assert report.decision.action == "rollback"
    assert m.phase == "rolled_back"
    last = m.history()[-1]
    assert last["by"] == "automatic" and "divergence" in last["reason"]


def _stores(tmp_path, redis_url):
    return {"sqlite": f"sqlite:///{tmp_path}/mk.sqlite", "redis": redis_url}


def _read_status(url, out):
    out.put(migration(url).status())


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_phase_history_and_evidence_persist_across_processes(tmp_path, redis_url, kind):
    url = _stores(tmp_path, redis_url)[kind]
    with migration(url) as m:
        m.replay(orders(15))
        m.promote(percent=5, reason="clean")
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    p = ctx.Process(target=_read_status, args=(url, out))
    p.start()
    status = out.get(timeout=30)
    p.join(30)
    assert (status["phase"], status["percent"], status["compared"]) == ("canary", 5.0, 15)
    assert [h["reason"] for h in status["history"]] == ["clean"]
    assert status["decision"]["action"] == "continue"


def _promote_at_barrier(url, barrier, out):
    m = migration(url)
    assert m.phase == "shadow"  # both processes see shadow before either writes
    barrier.wait(timeout=30)
    try:
        t = m.promote()
        out.put(("ok", t.to_state.describe()))
    except PhaseConflict as exc:
        out.put(("conflict", str(exc)))
    finally:
        m.close()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_two_processes_promoting_at_once_exactly_one_succeeds(tmp_path, redis_url, kind):
    url = _stores(tmp_path, redis_url)[kind]
    migration(url).close()
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_promote_at_barrier, args=(url, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=30) for _ in procs)
    for p in procs:
        p.join(30)
    assert [r[0] for r in results] == ["conflict", "ok"]
    assert results[1][1] == "canary 1%"
    assert "another process changed the phase first" in results[0][1] and "now canary 1%" in results[0][1]
    with migration(url) as m:
        assert m.phase_state.describe() == "canary 1%" and len(m.history()) == 1
