"""The replay tally stays bounded: groups and examples are capped, what is past the caps is counted."""

from __future__ import annotations

import json
import threading

import pytest

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus, EventLog
from migration_kit import Comparator, Migration
from migration_kit.report import report as report_module
from migration_kit.run.resume import ReplayInterrupted


def app() -> tuple[EventBus, object]:
    """A candidate that writes each order's result under a field named for the order: one new path per event."""
    bus = EventBus("caps")

    @bus.on("OrderPlaced")
    def price(e, ctx):
        ctx.publish("Priced", {"order": e.payload["order"], "lines": e.payload["lines"]})

    @bus.on("Priced")
    def done(e):
        return None

    flow = flow_from_bus(bus)

    def price_v2(e, ctx):
        ctx.publish("Priced", {"order": e.payload["order"], "lines": e.payload["lines"], f"f{e.payload['order']}": 1})

    flow.replace("price", price_v2)
    return bus, flow


def orders(n: int, lines: int = 1) -> list[Event]:
    return [Event(type="OrderPlaced", payload={"order": i, "lines": list(range(lines))}) for i in range(n)]


@pytest.fixture
def small_caps(monkeypatch):
    monkeypatch.setattr(report_module, "MAX_GROUPS", 5)
    monkeypatch.setattr(report_module, "MAX_EXAMPLES", 3)


def test_past_the_cap_on_groups_findings_are_counted_in_other_and_totals_stay_exact(small_caps, tmp_path):
    bus, flow = app()
    report = Migration("caps", legacy=bus, candidate=flow, comparator=Comparator(noise=False)).replay(orders(12))
    assert (report.total, report.divergent) == (12, 12)
    assert {g.path for g in report.groups} == {f"emitted[*].payload.f{i}" for i in range(5)}  # the first five kept
    assert report.other == {"count": 7, "events": 7}
    assert len(report.examples) == 3 and report.examples_dropped == 9
    data = json.loads(report.to_json())
    assert data["groups_other"] == {"count": 7, "events": 7} and data["examples_dropped"] == 9
    html = tmp_path / "r.html"
    report.write_html(html)
    assert "other: 7 findings past the cap on groups" in html.read_text()


def test_an_example_value_too_large_is_kept_as_a_preview_naming_its_size():
    bus = EventBus("big")

    @bus.on("OrderPlaced")
    def price(e, ctx):
        ctx.publish("Priced", {"order": e.payload["order"]})

    flow = flow_from_bus(bus)

    def price_v2(e, ctx):
        ctx.publish("Priced", {"order": e.payload["order"], "audit": list(range(5000))})

    flow.replace("price", price_v2)
    report = Migration("big", legacy=bus, candidate=flow, comparator=Comparator(noise=False)).replay(orders(3))
    (group,) = report.groups
    assert (group.path, group.count, group.example["legacy"]) == ("emitted[*].payload.audit", 3, None)
    preview = group.example["candidate"]
    assert preview.startswith("<list of 28,890 chars: [0, 1, 2") and len(preview) < 300


def test_a_replay_resumed_past_the_caps_reports_what_an_uninterrupted_run_would(small_caps, tmp_path):
    bus, flow = app()
    log = tmp_path / "events.jsonl"
    EventLog(log).write(orders(12))
    store = f"sqlite:///{tmp_path / 'store.db'}"
    whole = Migration("caps", legacy=bus, candidate=flow, comparator=Comparator(noise=False)).replay(orders(12))
    stop = threading.Event()
    first = Migration("caps", legacy=bus, candidate=flow, comparator=Comparator(noise=False), store=store)
    with pytest.raises(ReplayInterrupted):
        first.replay(log, checkpoint_every=2, on_result=lambda c, t: t.total == 8 and stop.set(), stop=stop)
    first.close()
    again = Migration("caps", legacy=bus, candidate=flow, comparator=Comparator(noise=False), store=store)
    resumed = again.replay(log, resume=True)
    again.close()
    assert (resumed.total, resumed.other, resumed.examples_dropped) == (12, whole.other, whole.examples_dropped)
    assert {g.path for g in resumed.groups} == {g.path for g in whole.groups}
