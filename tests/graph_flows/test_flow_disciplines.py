"""The derived graph keeps its bus's cascade discipline and bounds, whatever the bus."""

from __future__ import annotations

from pyee import EventEmitter

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from legacy_bus.adapters import pyee_bus


def _tree(ee_or_bus, emit):
    """a -> [b, c] from one handler; b -> d. Depth-first: b, d, c. Breadth-first: b, c, d."""

    def on_a(*_):
        emit("b")
        emit("c")

    def on_b(*_):
        emit("d")

    return on_a, on_b


def test_a_depth_first_bus_gives_a_graph_that_emits_and_runs_in_pre_order():
    ee = EventEmitter()
    ran = []
    on_a, on_b = _tree(ee, lambda t: ee.emit(t))
    for t, fn in (("a", on_a), ("b", on_b)):
        ee.on(t, fn)
    for t in "cd":
        ee.on(t, lambda t=t: ran.append(t))
    bus = pyee_bus(ee)
    assert bus.discipline == "depth_first"
    legacy = bus.dispatch(bus.codec.to_event(("a", (), {})))
    assert [e.type for e in legacy.emitted] == ["b", "d", "c"] and ran == ["d", "c"]
    ran.clear()
    final = flow_from_bus(bus).compile().invoke({"event": bus.codec.to_event(("a", (), {}))})
    assert [e["type"] for e in final["emitted"]] == ["b", "d", "c"] and ran == ["d", "c"]
    assert final["depths"] == [1, 2, 1]


def test_a_breadth_first_bus_keeps_its_queue_order_and_its_own_fanout_bound():
    bus = EventBus("bfs", max_fanout=1)
    on_a, on_b = _tree(bus, lambda t: bus.publish(t))
    bus.subscribe("a", on_a)
    bus.subscribe("b", on_b)
    final = flow_from_bus(bus).compile().invoke({"event": Event(type="a")})
    assert final["errors"][0]["type"].endswith("FanoutError")  # the bus's own bound, kept
    wide = EventBus("bfs-wide")
    on_a, on_b = _tree(wide, lambda t: wide.publish(t))
    wide.subscribe("a", on_a)
    wide.subscribe("b", on_b)
    final = flow_from_bus(wide).compile().invoke({"event": Event(type="a")})
    assert [e["type"] for e in final["emitted"]] == ["b", "c", "d"]
