"""The reference event bus behaves like the legacy buses it stands for."""

from __future__ import annotations

import asyncio

import pytest

from legacy_bus import (
    ConfigurationError,
    CycleError,
    Event,
    EventBus,
    OverlayStateStore,
    Sandbox,
)
from legacy_bus.records import EffectCall


def test_event_ids_and_timestamps_are_generated_and_the_event_is_immutable():
    a, b = Event(type="A"), Event(type="A")
    assert a.id != b.id and a.timestamp.tzinfo is not None
    with pytest.raises(Exception):
        a.type = "B"  # type: ignore[misc]
    assert Event.model_validate_json(a.model_dump_json()) == a


def test_cascade_is_breadth_first_in_subscription_order():
    bus = EventBus()
    order: list[str] = []

    @bus.on("Root")
    def first(e):
        order.append("first")
        return [Event(type="Child", payload={"n": 1}), Event(type="Child", payload={"n": 2})]

    @bus.on("Root")
    def second(e):
        order.append("second")
        return Event(type="Other")

    @bus.on("Child")
    def child(e):
        order.append(f"child{e.payload['n']}")
        return Event(type="Grandchild", payload=e.payload)

    @bus.on("Other")
    def other(e):
        order.append("other")

    @bus.on("Grandchild")
    def grandchild(e):
        order.append(f"grand{e.payload['n']}")

    d = bus.publish("Root")
    assert order == ["first", "second", "child1", "child2", "other", "grand1", "grand2"]
    assert [e.type for e in d.emitted] == ["Child", "Child", "Other", "Grandchild", "Grandchild"]
    assert list(d.emitted_by) == ["first", "first", "second", "child", "child"]


def test_all_three_publishing_styles_are_captured_with_causation_and_correlation():
    bus = EventBus()

    @bus.on("Root")
    def styles(e, ctx):
        bus.publish("ViaBus", {"k": 1})
        ctx.publish("ViaCtx", {"k": 2})
        return Event(type="Returned", payload={"k": 3})

    root = Event(type="Root")
    d = bus.publish(root)
    assert [(e.type, e.payload["k"]) for e in d.emitted] == [("ViaBus", 1), ("ViaCtx", 2), ("Returned", 3)]
    assert all(e.causation_id == root.id and e.correlation_id == root.id for e in d.emitted)


def test_children_keep_an_explicit_correlation_id_of_the_root():
    bus = EventBus()
    bus.subscribe("A", lambda e: Event(type="B"), name="a")
    bus.subscribe("B", lambda e: Event(type="C"), name="b")
    d = bus.publish("A", correlation_id="order-7")
    assert [e.correlation_id for e in d.emitted] == ["order-7", "order-7"]
    assert d.emitted[1].causation_id == d.emitted[0].id


async def _async_handler(e):
    await asyncio.sleep(0)
    return Event(type="Done", payload={"async": True})


def test_sync_publish_runs_async_handlers_without_a_running_loop():
    bus = EventBus()
    bus.subscribe("A", _async_handler, name="h")
    assert [e.payload for e in bus.publish("A").emitted] == [{"async": True}]


def test_sync_publish_runs_async_handlers_inside_a_running_loop():
    bus = EventBus()
    bus.subscribe("A", _async_handler, name="h")

    async def main():
        return bus.publish("A")

    assert [e.type for e in asyncio.run(main()).emitted] == ["Done"]


def test_apublish_awaits_async_handlers_on_the_running_loop():
    bus = EventBus()
    bus.subscribe("A", _async_handler, name="h")
    bus.subscribe("Done", lambda e: None, name="sink")
    d = asyncio.run(bus.apublish("A"))
    assert [s.node for s in d.steps] == ["h", "sink"]


def test_a_cycle_is_cut_at_max_depth_with_an_error_naming_the_cycle():
    bus = EventBus(max_depth=4)
    bus.subscribe("Ping", lambda e: Event(type="Pong"), name="ping")
    bus.subscribe("Pong", lambda e: Event(type="Ping"), name="pong")
    with pytest.raises(CycleError) as info:
        bus.publish("Ping")
    assert "Ping -> Pong -> Ping" in str(info.value) or "Pong -> Ping -> Pong" in str(info.value)
    assert "max_depth=4" in str(info.value)
    d = bus.dispatch(Event(type="Ping"), capture=True)
    assert len(d.emitted) == 4 and d.error is not None and d.error.type.endswith("CycleError")


def test_on_error_raise_propagates_the_handlers_own_exception_and_stops():
    bus = EventBus(on_error="raise")
    ran: list[str] = []

    class Boom(Exception):
        pass

    def bad(e):
        bus.publish("Never")
        raise Boom("card declined")

    bus.subscribe("A", bad, name="bad")
    bus.subscribe("A", lambda e: ran.append("after"), name="after")
    with pytest.raises(Boom, match="card declined"):
        bus.publish("A")
    assert ran == []


def test_on_error_record_keeps_going_and_records_the_error():
    bus = EventBus(on_error="record")
    bus.subscribe("A", lambda e: 1 / 0, name="bad")
    bus.subscribe("A", lambda e: Event(type="B"), name="good")
    d = bus.publish("A")
    assert [e.type for e in d.emitted] == ["B"]
    assert d.error is not None and d.error.type == "ZeroDivisionError"
    assert [s.error is not None for s in d.steps] == [True, False]


def test_a_second_handler_with_the_same_name_is_refused_with_a_hint():
    bus = EventBus()

    def handle(e):
        pass

    bus.subscribe("A", handle)
    with pytest.raises(ConfigurationError, match="name="):
        bus.subscribe("B", handle)
    bus.subscribe("B", handle, name="handle_b")
    assert [s.name for s in bus.subscriptions] == ["handle", "handle_b"]


def test_handler_gets_ctx_only_with_a_second_required_positional_parameter():
    bus = EventBus()
    seen = {}

    @bus.on("A")
    def one(e, extra=None):
        seen["one"] = extra

    @bus.on("A")
    def two(e, ctx):
        seen["two"] = type(ctx).__name__

    bus.publish("A")
    assert seen == {"one": None, "two": "HandlerContext"}


def _payments_bus():
    bus = EventBus()
    real: list[tuple] = []

    @bus.effect("payments.charge", stub={"status": "stubbed"})
    def charge(order_id, amount):
        real.append((order_id, amount))
        return {"status": "approved", "order": order_id}

    @bus.on("OrderPlaced")
    def pay(e):
        result = charge(e.payload["order"], e.payload["amount"])
        return Event(type="Paid", payload=result)

    return bus, real


def test_a_live_publish_runs_the_effect_exactly_once_and_records_it():
    bus, real = _payments_bus()
    d = bus.publish("OrderPlaced", {"order": "o1", "amount": 10})
    assert real == [("o1", 10)]
    assert [(c.port, c.mode, c.response) for c in d.effects] == [
        ("payments.charge", "real", {"status": "approved", "order": "o1"})
    ]


def test_a_sandboxed_dispatch_never_runs_the_effect_and_answers_with_the_stub():
    bus, real = _payments_bus()
    d = bus.dispatch(Event(type="OrderPlaced", payload={"order": "o1", "amount": 10}), sandbox=Sandbox())
    assert real == []
    assert d.emitted[0].payload == {"status": "stubbed"}
    assert d.effects[0].mode == "stub"


def test_a_sandboxed_call_is_answered_by_the_matching_recorded_call_in_order():
    bus, real = _payments_bus()
    recorded = [
        EffectCall("payments.charge", ["o2", 5], {}, {"status": "declined"}),
        EffectCall("payments.charge", ["o1", 10], {}, {"status": "approved-recorded"}),
    ]
    d = bus.dispatch(Event(type="OrderPlaced", payload={"order": "o1", "amount": 10}), sandbox=Sandbox(recorded))
    assert real == []
    assert d.emitted[0].payload == {"status": "approved-recorded"}
    assert d.effects[0].mode == "recorded"


def test_saga_state_is_kept_per_correlation_id_and_readable_from_outside():
    bus = EventBus()

    @bus.on("Step")
    def count(e, ctx):
        ctx.state["steps"] = ctx.state.get("steps", 0) + 1

    bus.publish("Step", correlation_id="saga-1")
    bus.publish("Step", correlation_id="saga-1")
    bus.publish("Step", correlation_id="saga-2")
    assert bus.state_for("saga-1") == {"steps": 2}
    assert bus.state_for("saga-2") == {"steps": 1}
    assert bus.state_for("unknown") == {}


def test_a_sandboxed_dispatch_on_an_overlay_never_changes_live_saga_state():
    bus = EventBus()

    @bus.on("Step")
    def count(e, ctx):
        ctx.state["steps"] = ctx.state.get("steps", 0) + 1

    bus.publish("Step", correlation_id="s")
    d = bus.dispatch(Event(type="Step", correlation_id="s"), sandbox=Sandbox(), states=OverlayStateStore(bus.state_store))
    assert d.state == {"steps": 2}
    assert bus.state_for("s") == {"steps": 1}


def test_a_handler_returning_something_else_than_events_is_an_error_of_that_handler():
    bus = EventBus(on_error="record")
    bus.subscribe("A", lambda e: "oops", name="bad")
    d = bus.publish("A")
    assert d.error is not None and "returned str" in d.error.message


def test_a_handler_publishing_more_than_max_fanout_fails_and_its_children_are_dropped():
    bus = EventBus(max_fanout=3, on_error="record")
    bus.subscribe("A", lambda e: [Event(type="B") for _ in range(4)], name="flood")
    bus.subscribe("A", lambda e: [Event(type="B") for _ in range(3)], name="ok")
    d = bus.publish("A")
    assert len(d.emitted) == 3 and list(d.emitted_by) == ["ok"] * 3
    assert d.error is not None and d.error.type.endswith("FanoutError") and "max_fanout=3" in d.error.message
