"""The one hook for swallowed machinery failures: counted per operation, traced, logged rate-limited, never raising."""

from __future__ import annotations

import logging
import time

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from servers import RedisServer

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from migration_kit import Migration
from migration_kit.decide.phases import PhaseState
from migration_kit.live.router import PhaseView
from migration_kit.observe.faults import HANDLER, MAX_OPERATIONS, OTHER, Faults
from migration_kit.observe.redaction import Redactor
from migration_kit.observe.telemetry import Telemetry

CARD = "4111 1111 1111 1111"


def test_raised_counts_each_failure_under_its_operation():
    faults = Faults()
    faults.raised("tap.send", ConnectionError("down"))
    faults.raised("tap.send", ConnectionError("down"))
    faults.raised("router.refresh", TimeoutError("slow"))
    assert faults.counts() == {"tap.send": 2, "router.refresh": 1}
    assert faults.total == 3


@given(st.lists(st.text(max_size=6), max_size=300))
def test_for_any_operation_names_the_counts_stay_bounded_and_add_up(names):
    faults = Faults(logger=logging.getLogger("migration_kit.test.quiet"))
    for name in names:
        faults.raised(name, RuntimeError("x"))
    counts = faults.counts()
    assert sum(counts.values()) == len(names)
    assert len(counts) <= MAX_OPERATIONS + 1  # the distinct names kept, and OTHER for the rest
    keys = {name or OTHER for name in names}  # an empty name is counted under OTHER
    if len(keys) <= MAX_OPERATIONS:
        assert set(counts) == keys  # within the bound, every name keeps its own count


def test_names_past_the_bound_fold_into_other():
    faults = Faults(logger=logging.getLogger("migration_kit.test.quiet"))
    for i in range(MAX_OPERATIONS + 5):
        faults.raised(f"op{i}", RuntimeError("x"))
    counts = faults.counts()
    assert len(counts) == MAX_OPERATIONS + 1 and counts[OTHER] == 5


def test_the_log_has_the_first_failure_with_its_traceback_then_every_nth(caplog):
    caplog.set_level(logging.WARNING, logger="migration_kit")
    faults = Faults(log_every=3)
    for _ in range(7):
        try:
            raise ValueError("boom")
        except ValueError as exc:
            faults.raised("pruning.prune", exc)
    records = [r for r in caplog.records if r.name == "migration_kit"]
    assert len(records) == 3  # failures 1, 3 and 6
    assert records[0].exc_info is not None and "pruning.prune failed" in records[0].getMessage()
    assert "(3 times so far" in records[1].getMessage() and "(6 times so far" in records[2].getMessage()
    assert faults.counts() == {"pruning.prune": 7}


def test_the_logged_message_and_traceback_mask_what_the_redactor_masks(caplog):
    caplog.set_level(logging.WARNING, logger="migration_kit")
    red = Redactor(key="k")
    faults = Faults(redactor=red)
    try:
        raise ValueError(f"card {CARD} declined")
    except ValueError as exc:
        faults.raised("tap.encode", exc)
    assert "4111" not in caplog.text and red.token(CARD) in caplog.text
    assert faults.last["tap.encode"] == f"ValueError: card {red.token(CARD)} declined"


def test_a_user_handler_gets_the_operation_and_the_exception():
    seen = []
    faults = Faults(lambda operation, exc: seen.append((operation, exc)))
    exc = KeyError("k")
    faults.raised("tap.settle", exc)
    assert seen == [("tap.settle", exc)]


def test_a_subclass_may_override_raised_as_scientist_allows():
    class Strict(Faults):
        def raised(self, operation, exc):
            super().raised(operation, exc)
            self.seen = operation

    faults = Strict()
    faults.raised("router.refresh", OSError("x"))
    assert faults.seen == "router.refresh" and faults.counts() == {"router.refresh": 1}


def test_a_handler_that_raises_is_counted_and_never_raises_itself():
    def broken(operation, exc):
        raise RuntimeError("the handler's own bug")

    faults = Faults(broken)
    faults.raised("tap.send", ConnectionError("down"))  # must not raise
    assert faults.counts() == {"tap.send": 1, HANDLER: 1}


def test_telemetry_counts_faults_and_marks_them_on_the_active_span():
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry("faulty", tracer_provider=provider, meter_provider=MeterProvider(metric_readers=[reader]))
    faults = Faults(telemetry=telemetry)
    with provider.get_tracer("test").start_as_current_span("publish"):
        faults.raised("tap.enqueue", MemoryError())
    faults.raised("tap.enqueue", MemoryError())  # no active span: counted only
    points = [
        (dict(p.attributes), p.value)
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "migration.faults"
        for p in m.data.data_points
    ]
    assert points == [({"migration": "faulty", "operation": "tap.enqueue", "exception.type": "MemoryError"}, 2)]
    (span,) = exporter.get_finished_spans()
    assert [(e.name, e.attributes["operation"]) for e in span.events] == [("migration.fault", "tap.enqueue")]


def test_the_phase_view_hands_each_failed_read_to_its_faults():
    def read_phase() -> PhaseState:
        raise ConnectionError("the store is down")

    faults = Faults()
    view = PhaseView(read_phase, lambda: False, faults=faults)
    assert view.refresh() is False and view.refresh() is False
    assert view.failures == 2 and faults.counts() == {"router.refresh": 2}


def _app() -> EventBus:
    bus = EventBus("faulty-tap")
    bus.subscribe("Paid", lambda e: None, name="noted")
    return bus


def test_a_tap_whose_redis_is_gone_hands_its_failed_sends_to_its_faults_and_the_publish_still_serves():
    server = RedisServer.start()
    bus = _app()
    m = Migration("faulty-tap", legacy=bus, candidate=flow_from_bus(bus), store=server.url)
    faults = Faults()
    handle = m.attach(server.url, faults=faults, timeout=0.2)
    try:
        server.kill()
        for i in range(3):
            bus.publish(Event(type="Paid", payload={"i": i}))  # the live path never sees the store's failure
        deadline = time.monotonic() + 30
        while not faults.counts().get("tap.send") and time.monotonic() < deadline:
            handle.flush(0.5)
        assert faults.counts().get("tap.send", 0) >= 1
        assert handle.shed >= 1 and handle.faults is faults
    finally:
        handle.close(timeout=0.5)
        server.stop()
        m.close()


def test_the_migration_hands_its_one_hook_to_its_parts_and_a_failed_noise_learning_is_counted_there():
    from migration_kit import Comparator

    class Flaky(Comparator):
        def noise_between(self, first, second):  # noqa: ANN001, ANN201 - a bug in a user's rule
            raise RuntimeError("rule bug")

    bus = EventBus("hook-parts")

    @bus.on("Ping")
    def pong(event):  # noqa: ANN001, ANN202
        return None

    m = Migration("hook-parts", legacy=bus, candidate=flow_from_bus(bus), comparator=Flaky())  # learns from the first events of a type
    assert m.executor.faults is m.faults and m.telemetry.faults is m.faults
    comparison = m.compare(Event(type="Ping", payload={}))
    assert not comparison.divergent  # learning is best effort: the comparison stands
    assert m.faults.counts() == {"executor.learn_noise": 1}
