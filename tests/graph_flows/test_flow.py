"""The graph derived from a bus mirrors it, node by node, and is safe to checkpoint."""

from __future__ import annotations

import asyncio
import copy
import logging
import warnings

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from graph_flows import BEGIN, flow_from_bus
from legacy_bus import ConfigurationError, Event, EventBus


def _bus() -> EventBus:
    bus = EventBus("shop")

    @bus.on("OrderPlaced")
    def validate(e, ctx):
        ctx.state["status"] = "validated"
        bus.publish("OrderValidated", {"order": e.payload["order"]})

    @bus.on("OrderValidated")
    def reserve(e):
        return Event(type="Reserved", payload={"order": e.payload["order"], "queue": "standard"})

    @bus.on("OrderValidated")
    async def audit(e):
        await asyncio.sleep(0)

    @bus.on("Reserved")
    def ship(e, ctx):
        ctx.publish("Shipped", {"queue": e.payload["queue"], "status": ctx.state.get("status")})

    return bus


def test_the_flow_has_one_node_per_handler_named_as_the_handler():
    flow = flow_from_bus(_bus())
    assert list(flow.nodes) == ["validate", "reserve", "audit", "ship"]
    graph = flow.compile()
    assert set(graph.get_graph().nodes) == {"__start__", "__end__", BEGIN, "validate", "reserve", "audit", "ship"}


def test_the_graph_emits_what_the_bus_emits_in_the_same_order_from_the_same_nodes():
    bus = _bus()
    root = Event(type="OrderPlaced", payload={"order": "o1"})
    live = bus.publish(root)
    final = flow_from_bus(_bus()).compile().invoke({"event": root})
    assert [(e["type"], e["payload"]) for e in final["emitted"]] == [(e.type, e.payload) for e in live.emitted]
    assert [t["node"] for t in final["trace"]] == [s.node for s in live.steps]
    assert final["sagas"][root.id] == {"status": "validated"}


def test_ainvoke_awaits_async_handlers_natively():
    root = Event(type="OrderPlaced", payload={"order": "o1"})
    final = asyncio.run(flow_from_bus(_bus()).compile().ainvoke({"event": root}))
    assert [e["type"] for e in final["emitted"]] == ["OrderValidated", "Reserved", "Shipped"]


def test_emitted_holds_only_this_invocations_events_on_a_long_lived_thread():
    graph = flow_from_bus(_bus()).compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "saga-1"}}
    first = Event(type="OrderPlaced", payload={"order": "o1"}, correlation_id="saga-1")
    graph.invoke({"event": first}, config)
    second = Event(type="Reserved", payload={"order": "o1", "queue": "express"}, correlation_id="saga-1")
    final = graph.invoke({"event": second}, config)
    assert [(e["type"], e["payload"]) for e in final["emitted"]] == [
        ("Shipped", {"queue": "express", "status": "validated"})
    ]
    assert len(final["trace"]) == 1


def test_checkpoints_hold_only_plain_data_even_under_the_strict_serializer(caplog):
    strict = InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=None))
    graph = flow_from_bus(_bus()).compile(checkpointer=strict)
    config = {"configurable": {"thread_id": "t"}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.WARNING):
            graph.invoke({"event": Event(type="OrderPlaced", payload={"order": "o1"})}, config)
            history = list(graph.get_state_history(config))
    assert len(history) > 3
    assert not [r for r in caplog.records if "unregistered" in r.getMessage() or "blocked" in r.getMessage()]
    assert isinstance(history[0].values["event"], dict)


def test_replace_with_a_handler_style_callable_changes_only_that_node():
    flow = flow_from_bus(_bus())

    def reserve_v2(e):
        return Event(type="Reserved", payload={"order": e.payload["order"], "queue": "priority"})

    flow.replace("reserve", reserve_v2)
    final = flow.compile().invoke({"event": Event(type="OrderPlaced", payload={"order": "o1"})})
    assert final["emitted"][-1]["payload"]["queue"] == "priority"
    assert flow.replaced == ["reserve"]
    flow.restore("reserve")
    assert flow.replaced == []


def test_replace_with_a_native_node_follows_the_documented_contract():
    flow = flow_from_bus(_bus())
    seen = {}

    def ship_native(inp):
        seen.update(copy.deepcopy(inp))
        return {"emit": [{"type": "Shipped", "payload": {"queue": "native"}}], "state": {**inp["state"], "shipped": True}}

    flow.replace("ship", ship_native, native=True)
    root = Event(type="OrderPlaced", payload={"order": "o1"})
    final = flow.compile().invoke({"event": root})
    assert final["emitted"][-1]["payload"] == {"queue": "native"}
    assert final["emitted"][-1]["causation_id"] == final["emitted"][-2]["id"]
    assert final["sagas"][root.id] == {"status": "validated", "shipped": True}
    assert seen["event"]["type"] == "Reserved" and seen["state"] == {"status": "validated"}
    assert seen["depth"] == 2 and seen["node"] == "ship"


def test_consecutive_native_subscribers_are_sent_together_as_a_fan_out():
    bus = EventBus()
    bus.subscribe("A", lambda e: None, name="n1")
    bus.subscribe("A", lambda e: None, name="n2")
    flow = flow_from_bus(bus)
    flow.replace("n1", lambda inp: {"emit": [{"type": "X"}]}, native=True)
    flow.replace("n2", lambda inp: {"emit": [{"type": "Y"}]}, native=True)
    by_step: dict[int, list[str]] = {}
    for d in flow.compile().stream({"event": Event(type="A")}, stream_mode="debug"):
        if d["type"] == "task":
            by_step.setdefault(d["step"], []).append(d["payload"]["name"])
    assert ["n1", "n2"] in by_step.values()
    final = flow.compile().invoke({"event": Event(type="A")})
    assert [e["type"] for e in final["emitted"]] == ["X", "Y"]
    assert [t["node"] for t in final["trace"]] == ["n1", "n2"]


def test_replacing_an_unknown_node_lists_the_known_ones():
    with pytest.raises(ConfigurationError, match="validate"):
        flow_from_bus(_bus()).replace("nope", lambda e: None)


def test_mermaid_shows_subscriptions_and_published_event_types():
    text = flow_from_bus(_bus()).to_mermaid()
    assert text.startswith("flowchart LR")
    assert "validate" in text and "-.->" in text and '(["OrderValidated"])' in text


def test_the_graph_applies_the_same_fan_out_bound_as_the_bus():
    bus = EventBus(max_fanout=2, on_error="record")
    bus.subscribe("A", lambda e: [Event(type="B") for _ in range(3)], name="flood")
    final = flow_from_bus(bus).compile().invoke({"event": Event(type="A")})
    assert final["emitted"] == []
    assert final["errors"][0]["type"].endswith("FanoutError")
