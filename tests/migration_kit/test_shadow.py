"""Live shadow traffic in one process: the tap, the stream entries, and a worker comparing them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
import redis
from opentelemetry.sdk.trace import TracerProvider

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from migration_kit import Migration, Outcome, ShadowHandle, Worker
from migration_kit.live.tap import BadShadowEntry, ShadowKeys, decode_entry
from migration_kit.observe.telemetry import current_traceparent

sys.path.insert(0, str(Path(__file__).parent))
import shadow_app  # noqa: E402

from servers import free_port  # noqa: E402

KEYS = ShadowKeys("shop")


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def run_worker(m: Migration, n: int, **kw) -> Worker:
    w = m.worker(max_events=n, block_ms=100, evidence_every=0.0, **kw)
    w.run()
    return w


@pytest.fixture(autouse=True)
def _fresh_charges():
    shadow_app.REAL_CHARGES.clear()
    shadow_app.bus.state_store._states.clear()
    yield


def test_attach_is_idempotent_and_close_restores_the_bus_exactly(redis_url):
    bus = shadow_app.bus
    before = dict(bus.__dict__)
    m = shadow_app.migration(store=redis_url)
    handle = m.attach()
    assert isinstance(handle, ShadowHandle) and handle.active
    assert m.attach() is handle  # attaching twice is harmless
    handle.close()
    handle.close()  # closing twice too
    assert not handle.active
    assert bus.__dict__ == before
    assert "dispatch" not in bus.__dict__ and "adispatch" not in bus.__dict__
    assert bus.dispatch.__func__ is EventBus.dispatch and bus.adispatch.__func__ is EventBus.adispatch
    assert bus.publish.__func__ is EventBus.publish
    again = m.attach()
    assert again is not handle and again.active
    again.close()


def _observed(d):
    return (
        [(e.type, e.payload, e.correlation_id, e.causation_id) for e in d.emitted],
        d.emitted_by,
        [(s.node, s.event.id, s.depth, [c.type for c in s.published], s.effects, s.error) for s in d.steps],
        d.state,
    )


def test_a_tapped_publish_returns_what_the_bus_returns_and_raises_what_it_raises(redis_url):
    bus = EventBus("b")
    raised: list[BaseException] = []

    @bus.on("Go")
    def go(e, ctx):
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        bus.publish("Went", {"k": e.payload["k"]})  # publishing inside a handler keeps working
        return Event(type="Also", payload={})

    @bus.on("Boom")
    def boom(e):
        exc = ValueError("card declined")
        raised.append(exc)
        raise exc

    m = Migration("b", legacy=bus, candidate=flow_from_bus(bus), store=redis_url)
    results = []
    for attached in (False, True, False):
        handle = m.attach() if attached else None
        bus.state_store._states.clear()
        ev = Event(type="Go", payload={"k": 1}, id="root-1", correlation_id="saga")
        results.append(_observed(bus.publish(ev)))
        with pytest.raises(ValueError) as info:
            bus.publish("Boom", {})
        assert info.value is raised[-1]  # the very exception object, unchanged
        if handle is not None:
            handle.flush()
            assert handle.tapped == 2 and handle.sent == 2  # the failed publish is shadowed too
            handle.close()
    assert results[0] == results[1] == results[2]


def test_only_root_publishes_are_tapped_and_entries_carry_the_observed_outcome(redis_url):
    m = shadow_app.migration(store=redis_url)
    shadow_app.bus.publish(shadow_app.order(1))  # saga c1 has state before the tapped event
    with m.attach() as handle:
        d = shadow_app.bus.publish(shadow_app.order(51, amount=70))
        handle.flush()
        assert (handle.tapped, handle.sent, handle.shed) == (1, 1, 0)
    entries = client(redis_url).xrange(KEYS.stream)
    assert len(entries) == 1
    raw = entries[0][1][b"d"]
    doc = json.loads(raw)
    assert doc["v"] == 1 and doc["event"]["id"] == d.root.id
    assert doc["state_before"] == {"orders": 1, "total": 11}
    # the state after is written as what the event changed (it decodes to the whole state below)
    assert "state" not in doc["legacy"] and doc["state_delta"] == {"=": {"orders": 2, "total": 70}}
    assert "traceparent" in doc and doc["traceparent"] is None
    tapped = decode_entry(raw)
    assert tapped.legacy.to_dict() == Outcome.from_dispatch(d).to_dict()
    assert [e.type for e in tapped.legacy.emitted] == ["OrderValidated", "PaymentCaptured", "ShipmentScheduled"]
    assert tapped.legacy.effects[0].response == {"status": "approved", "amount": 70, "auth": "auth-o51"}


def test_the_tap_carries_the_active_trace_context(redis_url):
    tracer = TracerProvider().get_tracer("test")
    m = shadow_app.migration(store=redis_url)
    with m.attach() as handle:
        with tracer.start_as_current_span("http POST /orders"):
            shadow_app.bus.publish(shadow_app.order(2))
            expected = current_traceparent()  # what OpenTelemetry's own W3C propagator writes
        handle.flush()
    doc = json.loads(client(redis_url).xrange(KEYS.stream)[0][1][b"d"])
    assert expected and doc["traceparent"] == expected


def test_async_publishes_are_tapped_too(redis_url):
    m = shadow_app.migration(store=redis_url)
    with m.attach() as handle:
        asyncio.run(shadow_app.bus.apublish(shadow_app.order(3)))
        handle.flush()
        assert handle.sent == 1


def test_with_redis_unreachable_live_publishes_succeed_and_shed_rises():
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    m = shadow_app.migration()
    handle = m.attach(url, timeout=0.2)
    for i in range(50):
        d = shadow_app.bus.publish(shadow_app.order(i))
        assert [e.type for e in d.emitted][-1] == "ShipmentScheduled"
    assert len(shadow_app.REAL_CHARGES) == 50  # the live path ran for real, every time
    handle.flush(5)
    assert handle.shed >= 1 and handle.last_error is not None
    status = m.shadow_status()
    assert status["shed"] >= 1 and "error" in status
    handle.close()
    assert handle.tapped == 50 and handle.shed == 50 and handle.sent == 0  # every entry sent or counted


def test_a_full_queue_sheds_instead_of_blocking(redis_url):
    m = shadow_app.migration(store=redis_url)
    handle = m.attach(queue_size=1)
    handle._stop.set()  # a stalled sender: nothing leaves the queue
    handle._drain_deadline = 0.0
    handle._thread.join(2)
    for i in range(5):
        shadow_app.bus.publish(shadow_app.order(i))
    assert (handle.tapped, handle.shed, handle.queued) == (5, 4, 1)
    handle.close()
    assert handle.shed == 5


def test_a_worker_compares_against_the_recorded_legacy_outcome_without_rerunning_effects(redis_url):
    m = shadow_app.migration_v2(store=redis_url)
    with m.attach() as handle:
        for i in range(60):
            shadow_app.bus.publish(shadow_app.order(i))
        handle.flush()
    assert m.shadow_status()["pending"] == 60
    w = run_worker(m, 60)
    assert len(shadow_app.REAL_CHARGES) == 60  # the worker ran no real effect
    heavy = sum(1 for i in range(60) if 25 < i % 31 <= 30)
    status = m.shadow_status()
    assert (status["compared"], status["divergent"], status["errors"], status["pending"]) == (60, heavy, 0, 0)
    assert w.stats.recorded == 60 and w.stats.divergent == heavy
    [group] = status["groups"]
    assert (group["node"], group["kind"], group["path"], group["count"]) == ("ship", "value_changed", "emitted[*].payload.queue", heavy)
    assert (group["example"]["legacy"], group["example"]["candidate"]) == ("heavy", "freight")
    assert m.status()["compared"] == 60  # the evidence the policy reads includes the worker's


def test_the_candidate_is_seeded_with_the_saga_state_from_before_the_event(redis_url):
    m = shadow_app.migration(store=redis_url)
    for i in range(3):  # saga c7 builds up state before the tap is attached
        shadow_app.bus.publish(shadow_app.order(7 + 50 * i))
    with m.attach() as handle:
        shadow_app.bus.publish(shadow_app.order(157))
        handle.flush()
    run_worker(m, 1)
    assert m.shadow_status()["divergent"] == 0


def test_a_redelivered_entry_is_counted_once(redis_url):
    m = shadow_app.migration(store=redis_url)
    with m.attach() as handle:
        for i in range(10):
            shadow_app.bus.publish(shadow_app.order(i))
        handle.flush()
    r = client(redis_url)
    raws = [fields for _, fields in r.xrange(KEYS.stream)]
    run_worker(m, 10)
    for fields in raws:  # the same events delivered again
        r.xadd(KEYS.stream, fields)
    w = run_worker(m, 10)
    assert (w.stats.recorded, w.stats.duplicates) == (0, 10)
    status = m.shadow_status()
    assert (status["compared"], status["pending"]) == (10, 0)
    assert len(list(r.scan_iter(KEYS.done_pattern))) == 10


def test_malformed_entries_are_dead_lettered_and_the_worker_carries_on(redis_url):
    import pickle

    m = shadow_app.migration(store=redis_url)
    r = client(redis_url)
    r.xadd(KEYS.stream, {"d": b"not json"})
    r.xadd(KEYS.stream, {"d": pickle.dumps({"v": 1})})
    r.xadd(KEYS.stream, {"d": json.dumps({"v": 2, "event": {}, "legacy": {}})})
    r.xadd(KEYS.stream, {"other": b"x"})
    with m.attach() as handle:
        shadow_app.bus.publish(shadow_app.order(1))
        handle.flush()
    w = run_worker(m, 5)
    assert (w.stats.dead, w.stats.recorded) == (4, 1)
    status = m.shadow_status()
    assert (status["dead"], status["compared"], status["pending"]) == (4, 1, 0)
    reasons = [json.loads(x)["error"] for x in r.lrange(KEYS.dead, 0, -1)]
    assert any("v: Input should be 1" in x for x in reasons) and any("no 'd' field" in x for x in reasons)
    with pytest.raises(BadShadowEntry, match="not a valid shadow entry"):
        decode_entry(b"[]", "1-0")


def test_a_reclaimed_event_resumes_its_graph_thread_from_the_checkpoint(redis_url):
    bus, runs = shadow_app.two_step_bus()

    m = Migration("resume", legacy=bus, candidate=flow_from_bus(bus), store=redis_url)
    event = Event(type="A", payload={"x": 1})
    legacy = Outcome.from_dispatch(bus.dispatch(event))
    runs.clear()
    # A worker died after the first node: its checkpoint has the second one pending.
    config = {"configurable": {"thread_id": f"resume:{event.id}"}}
    m.graph.invoke({"event": event}, config, interrupt_before=["second"])
    assert m.graph.get_state(config).next == ("second",) and runs == ["first"]
    comparison = m.compare_recorded(event, legacy)
    assert runs == ["first", "second"]  # resumed: the first node did not run again
    assert not comparison.divergent
    assert not m.graph.get_state(config).values  # the finished thread is dropped


def test_a_proven_regression_in_canary_rolls_back_automatically(redis_url):
    m = shadow_app.migration_crash(store=redis_url)
    m.promote(to="canary", percent=5)
    served = []
    with m.attach() as handle:
        for i in range(40):
            event = shadow_app.order(i)
            served.append(m.route(event))
            if served[-1] == "candidate":  # the canary's sagas are served by the crashing candidate, for real
                with pytest.raises(RuntimeError, match="v2 shipping service misconfigured"):  # its own class, as on the bus
                    shadow_app.bus.publish(event)
            else:
                shadow_app.bus.publish(event)
        handle.flush()
    assert 0 < served.count("candidate") < 10
    run_worker(m, 40)
    state = m.phase_state
    assert (state.phase, state.by) == ("rolled_back", "automatic")
    assert "new-error rate" in state.reason
    assert m.shadow_status()["errors"] == 40


def test_status_reports_the_live_shadow_pending_and_shed_counts(redis_url):
    m = shadow_app.migration(store=redis_url)
    with m.attach() as handle:
        for i in range(12):
            shadow_app.bus.publish(shadow_app.order(i))
        handle.flush()
    run_worker(m, 5)
    status = m.status()
    assert (status["pending"], status["shed"]) == (7, 0)
    assert status["compared"] == 5
