"""Noise is learned from the legacy path itself, applied per path and type, and persisted."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from migration_kit import Comparator, Migration
from migration_kit.compare.noise import NoiseLearning


def noisy_shop() -> EventBus:
    """Legacy code as it is: uuids, clocks and a set iterated in no fixed order."""
    random.seed(20261124)  # the shuffles stay random, but the test is repeatable
    bus = EventBus("noisy")

    @bus.effect("mail.send", stub={"queued": True})
    def send(to, body):  # pragma: no cover - never real here
        raise AssertionError("real effect")

    @bus.on("OrderPlaced")
    def accept(e, ctx):
        ctx.state["accepted_at"] = datetime.now(UTC).isoformat()
        ctx.publish(
            "OrderAccepted",
            {"order": e.payload["order"], "trace_id": uuid.uuid4().hex, "at": datetime.now(UTC).isoformat(), "total": e.payload["total"]},
        )

    @bus.on("OrderAccepted")
    def pick(e):
        skus = list(e.payload["order"].get("skus", ["a", "b", "c"]))
        random.shuffle(skus)  # the legacy code iterated a set: no fixed order
        return [Event(type="ItemPicked", payload={"sku": s, "slot": f"bin-{s}"}) for s in skus]

    @bus.on("ItemPicked")
    def label(e):
        send("warehouse@example.com", f"label {e.payload['sku']} ref {uuid.uuid4()}")

    return bus


def orders(n: int) -> list[Event]:
    return [Event(type="OrderPlaced", payload={"order": {"id": i, "skus": ["a", "b", "c"]}, "total": 10.0 + i}) for i in range(n)]


def test_noise_from_uuids_clocks_and_shuffled_fan_out_is_learned_to_zero_divergence():
    bus = noisy_shop()
    report = Migration("noisy", legacy=bus, candidate=flow_from_bus(bus)).replay(orders(1000))
    assert (report.total, report.divergent) == (1000, 0)
    learned = {row["path"] for row in report.noise}
    assert "emitted<accept:OrderAccepted>.payload.trace_id" in learned
    assert "emitted<accept:OrderAccepted>.payload.at" in learned
    assert "emitted<pick:ItemPicked> order" in learned
    assert "effects<label:mail.send>.args[1]" in learned
    assert "state.accepted_at" in learned
    row = next(r for r in report.noise if r["path"].endswith(".trace_id"))
    assert row["event_type"] == "OrderPlaced" and row["differed"] >= 20 and row["example"]["first"] != row["example"]["second"]


def test_without_noise_learning_the_same_run_reports_those_fields():
    bus = noisy_shop()
    migration = Migration("noisy", legacy=bus, candidate=flow_from_bus(bus), comparator=Comparator(noise=False))
    report = migration.replay(orders(200))
    assert report.divergent == 200
    paths = {g.path for g in report.groups}
    assert {"emitted[*].payload.trace_id", "emitted[*].payload.at", "effects[*].args[*]", "state.accepted_at"} <= paths
    assert report.noise == ()


def test_a_real_change_is_reported_with_both_values_and_without_the_noisy_fields():
    bus = noisy_shop()
    flow = flow_from_bus(bus)

    def accept_v2(e, ctx):
        ctx.state["accepted_at"] = datetime.now(UTC).isoformat()
        total = e.payload["total"] * (1.2 if e.payload["order"]["id"] % 10 == 0 else 1.0)
        ctx.publish("OrderAccepted", {"order": e.payload["order"], "trace_id": uuid.uuid4().hex, "at": datetime.now(UTC).isoformat(), "total": total})

    flow.replace("accept", accept_v2)
    migration = Migration("noisy", legacy=bus, candidate=flow)
    report = migration.replay(orders(100))
    assert report.divergent == 10
    assert report.by_node == {"accept": 10}
    for example in report.examples:
        paths = [d["path"] for d in example["differences"]]
        assert paths == ["emitted[0].payload.total"]
        diff = example["differences"][0]
        assert diff["candidate"] == diff["legacy"] * 1.2


def test_a_float_change_within_tolerance_is_not_a_divergence():
    bus = EventBus("f")
    bus.subscribe("A", lambda e: Event(type="B", payload={"tax": e.payload["x"] * 0.07 + 0.1 + 0.2}), name="tax")
    flow = flow_from_bus(bus).replace("tax", lambda e: Event(type="B", payload={"tax": e.payload["x"] * 0.07 + 0.3}))
    report = Migration("f", legacy=bus, candidate=flow).replay([Event(type="A", payload={"x": x}) for x in range(100)])
    assert report.divergent == 0
    off = Migration("f", legacy=bus, candidate=flow, comparator=Comparator(float_tolerance=0.0, noise=False))
    assert off.replay([Event(type="A", payload={"x": x}) for x in range(100)]).divergent > 0


def test_learned_noise_is_persisted_and_a_later_run_starts_from_it(tmp_path):
    store = f"sqlite:///{tmp_path}/store.sqlite"
    bus = noisy_shop()
    with Migration("noisy", legacy=bus, candidate=flow_from_bus(bus), store=store) as first:
        assert first.replay(orders(50)).divergent == 0
    never_learn = Comparator(noise=NoiseLearning(first=0, rate=0.0, confirm=False))
    with Migration("noisy", legacy=bus, candidate=flow_from_bus(bus), store=store, comparator=never_learn) as later:
        assert later.noise.samples["OrderPlaced"] >= 20
        assert later.replay(orders(50)).divergent == 0
    with Migration("other", legacy=bus, candidate=flow_from_bus(bus), store=store, comparator=never_learn) as other:
        assert other.replay(orders(10)).divergent == 10  # noise is kept per migration


def test_noise_is_per_event_type_never_a_blanket_ignore():
    bus = EventBus("t")
    bus.subscribe("Noisy", lambda e: Event(type="Out", payload={"ref": uuid.uuid4().hex}), name="noisy")
    bus.subscribe("Quiet", lambda e: Event(type="Out", payload={"ref": e.payload["ref"]}), name="quiet")
    flow = flow_from_bus(bus).replace("quiet", lambda e: Event(type="Out", payload={"ref": e.payload["ref"] + "!"}))
    migration = Migration("t", legacy=bus, candidate=flow)
    migration.replay([Event(type="Noisy") for _ in range(30)])
    c = migration.compare(Event(type="Quiet", payload={"ref": "r1"}))
    assert [(d.path, d.legacy, d.candidate) for d in c.differences] == [("emitted[0].payload.ref", "r1", "r1!")]


def test_confirmation_learns_noise_that_the_sample_missed():
    bus = EventBus("clock")
    ticks = iter(range(10**6))

    @bus.on("A")
    def stamp(e):
        # a coarse clock: the same value in most runs, so a sample can miss it
        return Event(type="B", payload={"minute": next(ticks) // 7})

    migration = Migration("clock", legacy=bus, candidate=flow_from_bus(bus), comparator=Comparator(noise=NoiseLearning(first=1, rate=0.0)))
    report = migration.replay([Event(type="A") for _ in range(60)])
    assert report.divergent == 0
    assert [r["path"] for r in report.noise] == ["emitted<stamp:B>.payload.minute"]


def test_order_between_fan_out_handlers_does_not_matter_but_within_a_handler_it_does():
    bus = EventBus("fan")
    bus.subscribe("A", lambda e: Event(type="X", payload={"n": 1}), name="left")
    bus.subscribe("A", lambda e: Event(type="Y", payload={"n": 2}), name="right")
    bus.subscribe("B", lambda e: [Event(type="Z", payload={"n": 1}), Event(type="Z", payload={"n": 2})], name="pair")
    swapped = flow_from_bus(bus)
    swapped.replace("left", lambda inp: {"emit": [{"type": "X", "payload": {"n": 1}}]}, native=True)
    swapped.replace("right", lambda inp: {"emit": [{"type": "Y", "payload": {"n": 2}}]}, native=True)
    from migration_kit.compare.outcome import Emission, Outcome

    m = Migration("fan", legacy=bus, candidate=swapped, comparator=Comparator(noise=False))
    c = m.compare(Event(type="A"))
    assert not c.divergent
    # Hand-made outcomes: the same two events, published by two handlers in the other order.
    ev = Event(type="A")
    a = Outcome("legacy", ev, (Emission("left", "X", {}, {}, "<root>", 1, "1"), Emission("right", "Y", {}, {}, "<root>", 1, "2")))
    b = Outcome("candidate", ev, (Emission("right", "Y", {}, {}, "<root>", 1, "3"), Emission("left", "X", {}, {}, "<root>", 1, "4")))
    assert not Comparator(noise=False).compare(a, b).divergent
    assert Comparator(noise=False, ordering="strict").compare(a, b).divergent
    reordered = flow_from_bus(bus).replace("pair", lambda e: [Event(type="Z", payload={"n": 2}), Event(type="Z", payload={"n": 1})])
    c2 = Migration("fan", legacy=bus, candidate=reordered, comparator=Comparator(noise=False)).compare(Event(type="B"))
    assert [d.path for d in c2.differences] == ["emitted[0].payload.n", "emitted[1].payload.n"]
