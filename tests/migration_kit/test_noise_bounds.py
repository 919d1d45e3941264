"""The learned-noise model stays bounded: data-dependent paths fold into wildcards, the rarest go at the cap."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from migration_kit import Migration
from migration_kit.compare.noise import MAX_PATHS, NoiseModel, NoiseObservation, learned_since


def keyed_by_data() -> EventBus:
    """Legacy code whose payload keys are generated: every run shows noise under new paths."""
    bus = EventBus("keyed")

    @bus.on("OrderPlaced")
    def reserve(e, ctx):
        ctx.publish("Reserved", {"order": e.payload["order"], "items": {uuid.uuid4().hex: {"qty": 1}}, "total": e.payload["total"]})

    @bus.on("Reserved")
    def done(e):
        return None

    return bus


def orders(n: int) -> list[Event]:
    return [Event(type="OrderPlaced", payload={"order": i, "total": 10 + i}) for i in range(n)]


def obs(*keys: str) -> NoiseObservation:
    return NoiseObservation({k: {"first": 1, "second": 2} for k in keys}, frozenset())


def test_paths_keyed_by_data_fold_into_one_wildcard_and_replay_stays_at_parity():
    bus = keyed_by_data()
    migration = Migration("keyed", legacy=bus, candidate=flow_from_bus(bus))
    divergent_at: list[int] = []
    report = migration.replay(orders(300), on_result=lambda c, t: c.divergent and divergent_at.append(t.total))
    paths = migration.noise.paths["OrderPlaced"]
    assert len(paths) <= MAX_PATHS
    assert "emitted<reserve:Reserved>.payload.items.*" in paths
    assert not any(k.startswith("emitted<reserve:Reserved>.payload.items[") for k in paths)
    # Only the first few events, before sixteen such paths were seen, could not be explained.
    assert report.total == 300 and report.divergent == len(divergent_at) and max(divergent_at, default=0) <= 10
    assert any(r["path"] == "emitted<reserve:Reserved>.payload.items.*" for r in report.noise)


def test_a_wildcard_path_still_lets_a_real_change_elsewhere_through():
    bus = keyed_by_data()
    flow = flow_from_bus(bus)

    def reserve_v2(e, ctx):
        ctx.publish("Reserved", {"order": e.payload["order"], "items": {uuid.uuid4().hex: {"qty": 1}}, "total": e.payload["total"] + 1})

    flow.replace("reserve", reserve_v2)
    report = Migration("keyed", legacy=bus, candidate=flow).replay(orders(100))
    assert report.divergent == 100
    late = [g for g in report.groups if g.count >= 90]
    assert [g.path for g in late] == ["emitted[*].payload.total"]


def test_past_the_cap_the_rarest_path_is_dropped_counted_and_learned_again_when_it_shows():
    model = NoiseModel(max_paths=3)
    for _ in range(5):
        model.observe("T", obs("state.a", "state.b"))
    model.observe("T", obs("state.c"))
    model.observe("T", obs("state.c"))
    model.observe("T", obs("state.d"))  # the fourth path is kept; the rarest older one (c) goes
    assert set(model.paths["T"]) == {"state.a", "state.b", "state.d"}
    assert model.dropped == {"T": 1}
    assert "state.c" not in model.keys("T") and "state.d" in model.keys("T")
    assert any(r["path"] == "(1 rarer paths dropped at the cap of 3)" for r in model.summary())
    model.observe("T", obs("state.c"))  # shows again: learned again, the rarest older (d) goes
    assert set(model.paths["T"]) == {"state.a", "state.b", "state.c"} and model.dropped == {"T": 2}
    assert model.paths["T"]["state.a"]["count"] == 5


def test_a_wildcard_counts_what_it_folded_and_survives_persistence_without_double_counting():
    model = NoiseModel(collapse_at=4)
    for i in range(4):
        model.observe("T", obs(f"state.cart.k{i}.qty"))
    assert model.paths["T"] == {"state.cart.*.qty": {"count": 4, "example": {"first": 1, "second": 2}}}
    assert "state.cart.other.qty" in model.keys("T") and "state.cart.other.price" not in model.keys("T")
    model.observe("T", obs("state.cart.k9.qty"))
    assert model.paths["T"]["state.cart.*.qty"]["count"] == 5
    # another process loaded three concrete paths and folded them after learning a fourth
    loaded = NoiseModel()
    for i in range(3):
        loaded.observe("T", obs(f"state.cart.k{i}.qty"))
    mine = NoiseModel.from_dict(loaded.to_dict())
    mine.collapse_at = 4
    mine.observe("T", obs("state.cart.k3.qty"))
    stored = NoiseModel.from_dict(loaded.to_dict())
    stored.merge(learned_since(mine.to_dict(), loaded.to_dict()))
    assert sum(e["count"] for e in stored.paths["T"].values()) == 4


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from([f"state.{a}.{b}" for a in "abcdefgh" for b in "xyz"]), max_size=6), max_size=40))
def test_for_any_observations_the_model_stays_under_its_cap_and_matches_every_key_it_did_not_drop(batches):
    model = NoiseModel(max_paths=8, collapse_at=4)
    seen: set[str] = set()
    for keys in batches:
        model.observe("T", obs(*keys))
        seen.update(keys)
    assert len(model.paths.get("T", {})) <= 8
    if not model.dropped:
        assert all(k in model.keys("T") for k in seen)
