"""One trace per comparison, both paths node by node; counters that match the report."""

from __future__ import annotations

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from migration_kit import Migration
from migration_kit.observe.telemetry import current_traceparent

_EXPORTER = InMemorySpanExporter()
_READER = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def sdk():
    # OpenTelemetry allows one global provider per process; install it once for this module.
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    yield


@pytest.fixture(autouse=True)
def clear():
    _EXPORTER.clear()
    yield


def shop() -> EventBus:
    bus = EventBus("traced")

    @bus.effect("mail.send", stub={"ok": True})
    def send(to):  # pragma: no cover - sandboxed
        raise AssertionError

    bus.subscribe("A", lambda e: Event(type="B", payload={"q": e.payload["q"]}), name="first")

    def second(e):
        send("x@example.com")
        return Event(type="C", payload={"q": e.payload["q"]})

    bus.subscribe("B", second, name="second")
    return bus


def _counter(name: str, migration: str) -> int:
    data = _READER.get_metrics_data()
    total = 0
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    for p in m.data.data_points:
                        if p.attributes.get("migration") == migration:
                            total += p.value
    return total


def test_each_comparison_is_one_trace_with_both_paths_node_by_node():
    bus = shop()
    flow = flow_from_bus(bus).replace("second", lambda e: Event(type="C", payload={"q": -1}))
    c = Migration("traced", legacy=bus, candidate=flow).compare(Event(type="A", payload={"q": 1}))
    spans = _EXPORTER.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1
    root = next(s for s in spans if s.name == "migration.compare")
    assert root.parent is None
    assert root.attributes["migration.divergent"] is True
    assert root.attributes["migration.first_divergent_node"] == "second"
    assert root.attributes["migration.differences"] == len(c.differences) > 0
    assert c.trace_id == format(root.context.trace_id, "032x")
    by_id = {s.context.span_id: s for s in spans}
    paths = {s.name: s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id}
    assert set(paths) == {"legacy", "candidate"}
    for path in ("legacy", "candidate"):
        nodes = [s.name for s in spans if s.parent is not None and s.parent.span_id == paths[path].context.span_id]
        assert nodes == ["first", "second"]
    legacy_second = next(s for s in spans if s.name == "second" and by_id[s.parent.span_id].name == "legacy")
    assert [e.attributes["effect.port"] for e in legacy_second.events] == ["mail.send"]


def test_counters_match_the_replay_report():
    bus = shop()
    flow = flow_from_bus(bus).replace("first", lambda e: Event(type="B", payload={"q": e.payload["q"] % 3}))
    before = {n: _counter(n, "counted") for n in ("migration.compared", "migration.divergent", "migration.errors")}
    report = Migration("counted", legacy=bus, candidate=flow).replay([Event(type="A", payload={"q": q}) for q in range(12)])
    after = {n: _counter(n, "counted") for n in before}
    assert after["migration.compared"] - before["migration.compared"] == report.total == 12
    assert after["migration.divergent"] - before["migration.divergent"] == report.divergent == 9
    assert after["migration.errors"] - before["migration.errors"] == report.errors == 0
    assert all(ex["trace_id"] for ex in report.examples)


def test_a_comparison_continues_the_live_trace_it_was_given():
    bus = shop()
    migration = Migration("linked", legacy=bus, candidate=flow_from_bus(bus))
    tracer = trace.get_tracer("live-app")
    with tracer.start_as_current_span("live publish") as live:
        parent = current_traceparent()
    assert parent is not None
    legacy = migration.executor.run_legacy(Event(type="A", payload={"q": 1}), (), __import__("legacy_bus").OverlayStateStore())
    candidate = migration.executor.run_candidate(legacy.event, (), None)
    c = migration.executor.observe(migration.executor.diff(legacy, candidate, None), parent)
    root = next(s for s in _EXPORTER.get_finished_spans() if s.name == "migration.compare")
    assert root.context.trace_id == live.get_span_context().trace_id
    assert root.parent.span_id == live.get_span_context().span_id
    assert c.trace_id == format(live.get_span_context().trace_id, "032x")
