"""Migration.compare and replay: divergence found, counted, located, and never a real effect."""

from __future__ import annotations

import json

import pytest

from graph_flows import flow_from_bus
from legacy_bus import BadEventLog, Event, EventBus, EventLog
from legacy_bus.records import EffectCall
from migration_kit import Comparator, Migration


def shop(real_calls: list | None = None) -> EventBus:
    bus = EventBus("shop")

    @bus.effect("payments.charge", stub=lambda order, amount: {"status": "approved", "amount": amount})
    def charge(order, amount):
        if real_calls is not None:
            real_calls.append(order)
        return {"status": "approved", "amount": amount}

    @bus.on("OrderPlaced")
    def validate(e, ctx):
        ctx.state["total"] = e.payload["amount"]
        ctx.publish("OrderValidated", {"order": e.payload["order"], "weight": e.payload["weight"]})

    @bus.on("OrderValidated")
    def pay(e, ctx):
        receipt = charge(e.payload["order"], ctx.state["total"])
        return Event(type="PaymentCaptured", payload={"order": e.payload["order"], **receipt, "weight": e.payload["weight"]})

    @bus.on("PaymentCaptured")
    def ship(e):
        queue = "heavy" if e.payload["weight"] > 20 else "standard"
        bus.publish("ShipmentScheduled", {"order": e.payload["order"], "queue": queue})

    @bus.on("ShipmentScheduled")
    def notify(e):
        return None

    return bus


def orders(n: int) -> list[Event]:
    return [
        Event(type="OrderPlaced", payload={"order": f"o{i}", "amount": 10 + i, "weight": (i * 7) % 31}) for i in range(n)
    ]


def test_a_bus_and_its_own_graph_are_at_parity_over_a_replay():
    bus = shop()
    report = Migration("m", legacy=bus, candidate=flow_from_bus(bus)).replay(orders(50))
    assert (report.total, report.divergent, report.errors, report.by_node) == (50, 0, 0, {})
    assert report.decision.action == "continue"


def test_a_handler_changed_on_k_of_n_events_gives_exactly_k_divergences_at_that_node():
    bus = shop()
    flow = flow_from_bus(bus)

    def ship_v2(e):  # heavy parcels above 25 kg now go to "freight"
        w = e.payload["weight"]
        queue = "freight" if w > 25 else ("heavy" if w > 20 else "standard")
        bus.publish("ShipmentScheduled", {"order": e.payload["order"], "queue": queue})

    flow.replace("ship", ship_v2)
    events = orders(200)
    k = sum(1 for e in events if e.payload["weight"] > 25)
    assert 0 < k < len(events)
    report = Migration("m", legacy=bus, candidate=flow).replay(events)
    assert report.divergent == k
    assert report.by_node == {"ship": k}
    assert report.decision.action == "hold"
    example = report.examples[0]["differences"]
    assert [(d["path"], d["legacy"], d["candidate"]) for d in example] == [("emitted[2].payload.queue", "heavy", "freight")]
    data = json.loads(report.to_json())
    assert {"total", "divergent", "errors", "by_node", "decision"} <= set(data)
    assert data["groups"][0]["path"] == "emitted[*].payload.queue" and data["groups"][0]["count"] == k


def test_replay_and_compare_never_run_a_real_effect_but_a_live_publish_runs_it_once():
    real: list[str] = []
    bus = shop(real)
    migration = Migration("m", legacy=bus, candidate=flow_from_bus(bus))
    migration.replay(orders(20))
    migration.compare(orders(1)[0])
    assert real == []
    bus.publish(orders(1)[0])
    assert real == ["o0"]


def test_an_extra_or_missing_effect_call_is_reported_with_an_effect_kind_and_the_port():
    bus = shop()
    flow = flow_from_bus(bus)
    charge = bus.ports["payments.charge"]

    def pay_twice(e, ctx):
        charge(e.payload["order"], ctx.state["total"])
        receipt = charge(e.payload["order"], ctx.state["total"])
        return Event(type="PaymentCaptured", payload={"order": e.payload["order"], **receipt, "weight": e.payload["weight"]})

    flow.replace("pay", pay_twice)
    c = Migration("m", legacy=bus, candidate=flow).compare(orders(1)[0])
    assert [(d.kind, d.candidate["port"]) for d in c.differences] == [("effect_extra", "payments.charge")]
    assert c.first_divergent_node == "pay"


def test_recorded_effect_responses_answer_both_paths():
    bus = shop()
    migration = Migration("m", legacy=bus, candidate=flow_from_bus(bus))
    event = orders(1)[0]
    recorded = [EffectCall("payments.charge", ["o0", 10], {}, {"status": "declined", "amount": 10})]
    c = migration.compare(event, effects=recorded)
    assert not c.divergent
    assert c.legacy.emitted[1].payload["status"] == "declined" == c.candidate.emitted[1].payload["status"]


def test_saga_state_carries_across_events_of_a_replay_on_both_paths():
    bus = EventBus("saga")

    @bus.on("Add")
    def add(e, ctx):
        ctx.state["n"] = ctx.state.get("n", 0) + e.payload["k"]
        return Event(type="Total", payload={"n": ctx.state["n"]})

    events = [Event(type="Add", payload={"k": k}, correlation_id="s1") for k in (1, 2, 3)]
    migration = Migration("m", legacy=bus, candidate=flow_from_bus(bus))
    seen: list[int] = []
    report = migration.replay(events, on_result=lambda c, _t: seen.append(c.candidate.emitted[0].payload["n"]))
    assert report.divergent == 0 and seen == [1, 3, 6]


def test_a_state_difference_is_reported_under_state():
    bus = EventBus("saga")

    @bus.on("Add")
    def add(e, ctx):
        ctx.state["n"] = e.payload["k"]

    flow = flow_from_bus(bus).replace("add", lambda e, ctx: ctx.state.update(n=e.payload["k"] + 1))
    c = Migration("m", legacy=bus, candidate=flow).compare(Event(type="Add", payload={"k": 1}))
    assert [(d.path, d.kind, d.legacy, d.candidate) for d in c.differences] == [("state.n", "state_changed", 1, 2)]


def test_ignore_rules_and_float_tolerance_are_applied():
    bus = EventBus("f")
    bus.subscribe("A", lambda e: Event(type="B", payload={"price": 0.1 + 0.2, "at": "x"}), name="a")
    flow = flow_from_bus(bus).replace("a", lambda e: Event(type="B", payload={"price": 0.3, "at": "y"}))
    strict = Migration("m", legacy=bus, candidate=flow).compare(Event(type="A"))
    assert [d.path for d in strict.differences] == ["emitted[0].payload.at"]
    loose = Migration("m", legacy=bus, candidate=flow, comparator=Comparator(ignore=["payload.at"])).compare(Event(type="A"))
    assert not loose.divergent


def test_a_candidate_error_the_legacy_also_raises_is_parity_and_counted_as_an_error():
    bus = EventBus("e", on_error="record")
    bus.subscribe("A", lambda e: 1 / 0, name="a")
    report = Migration("m", legacy=bus, candidate=flow_from_bus(bus)).replay([Event(type="A")])
    assert (report.divergent, report.errors) == (0, 1)


def test_a_log_line_with_an_unsubscribed_event_type_is_refused_naming_the_line(tmp_path):
    bus = shop()
    path = tmp_path / "log.jsonl"
    EventLog(path).write([*orders(2), Event(type="Nobody")])
    migration = Migration("m", legacy=bus, candidate=flow_from_bus(bus))
    with pytest.raises(BadEventLog, match=r"line 3 has event type 'Nobody'"):
        migration.replay(path)
    report = migration.replay(path, skip_bad=True)
    assert report.total == 2 and [s.line for s in report.skipped] == [3]


def test_write_html_is_self_contained_and_escapes_values(tmp_path):
    bus = EventBus("x")
    bus.subscribe("A", lambda e: Event(type="B", payload={"v": "<script>alert(1)</script>"}), name="a")
    flow = flow_from_bus(bus).replace("a", lambda e: Event(type="B", payload={"v": "safe"}))
    report = Migration("m", legacy=bus, candidate=flow).replay([Event(type="A")])
    out = tmp_path / "r.html"
    report.write_html(out)
    text = out.read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "Content-Security-Policy" in text and "hold" in text
