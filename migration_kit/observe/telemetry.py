"""OpenTelemetry traces and metrics for comparisons: one trace per compared event.

A compared event becomes one trace: a root span ``migration.compare`` (event
type, id, correlation id, phase, divergent, number of differences, first
divergent node), a ``legacy`` child with a span per handler run, and a
``candidate`` child with a span per graph node run; effect calls are span
events on the node that made them. The spans are built after the fact from
the timings both paths already record, so nothing is added to either path's
hot loop, and the legacy bus never knows it is traced. In live shadow the
root span continues the live publish's trace (a W3C ``traceparent``).

Metrics: counters ``migration.compared``, ``migration.divergent``,
``migration.errors``, ``migration.shed``, ``migration.faults`` (machinery failures
swallowed, attributes ``operation`` and ``exception.type``: ``migration_kit.observe.faults``); histograms
``migration.path.duration`` (attribute ``path``) and
``migration.node.duration`` (``path``, ``node``), in seconds; an observable
gauge ``migration.phase`` (one series per phase, 1 for the current one).

Nothing from an event's payload is put on a span or a label: attributes hold
types, ids, node names and difference paths; error messages (span statuses)
and paths are masked by the migration's redactor (``migration_kit.observe.redaction``:
card numbers, and values its rules mask wherever they are quoted), node
labels too.

Exporters are configured the standard OpenTelemetry way: install an SDK
provider yourself, or let ``configure_from_env()`` do it from ``OTEL_*``
variables (OTLP needs the ``otlp`` extra). With nothing configured the API's
no-op providers are in place and this module does no work at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from migration_kit.types import Phase

if TYPE_CHECKING:
    from migration_kit.compare.comparator import Comparison
    from migration_kit.compare.outcome import Outcome
    from migration_kit.observe.redaction import Redactor

from migration_kit.observe.faults import Faults

__all__ = ["Telemetry", "configure_from_env", "current_traceparent"]

_PROPAGATOR = TraceContextTextMapPropagator()
# perf_counter() seconds -> epoch nanoseconds, for spans built after the fact.
_EPOCH_OFFSET_NS = time.time_ns() - time.perf_counter_ns()


def _ns(perf_seconds: float) -> int:
    return _EPOCH_OFFSET_NS + int(perf_seconds * 1e9)


def _tracing_enabled(provider: Any = None) -> bool:
    provider = provider if provider is not None else trace.get_tracer_provider()
    # The API's default is a proxy to a no-op provider until an SDK is installed.
    return type(provider).__name__ not in ("ProxyTracerProvider", "NoOpTracerProvider")


def _metrics_enabled(provider: Any = None) -> bool:
    provider = provider if provider is not None else metrics.get_meter_provider()
    # Until an SDK provider is set, the API's instruments are proxies whose calls do nothing; once
    # one is set, get_meter_provider() returns it (and the proxies forward to its instruments).
    return type(provider).__name__ not in ("_ProxyMeterProvider", "NoOpMeterProvider")


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the active span, if one is recording (to carry across a stream)."""
    span = trace.get_current_span()
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


class Telemetry:
    """Traces and metrics for one migration's comparisons.

    ``redactor`` masks what could quote event data (error messages, paths,
    node labels): the migration's, built once and handed in by the facade.
    Without one, the one registered for the migration's name is looked up at
    each use (transitional, until the facade passes ``redactor=``).
    """

    def __init__(
        self,
        migration: str,
        phase: Callable[[], str] | None = None,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        redactor: Redactor | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.migration = migration
        self.redactor = redactor
        self.faults = faults if faults is not None else Faults(redactor=redactor)
        self._phase = phase or (lambda: "shadow")
        self._provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracer = trace.get_tracer("migration_kit", tracer_provider=tracer_provider)
        meter = metrics.get_meter("migration_kit", meter_provider=meter_provider)
        self._compared = meter.create_counter("migration.compared", unit="{event}", description="events compared")
        self._divergent = meter.create_counter("migration.divergent", unit="{event}", description="divergent events")
        self._errors = meter.create_counter("migration.errors", unit="{event}", description="events whose candidate path ended in an error")
        self._shed = meter.create_counter("migration.shed", unit="{event}", description="shadow work shed to protect the live path")
        self._faults = meter.create_counter("migration.faults", unit="{failure}", description="machinery failures swallowed (Faults.raised)")
        self._path_duration = meter.create_histogram("migration.path.duration", unit="s", description="time of one path for one event")
        self._node_duration = meter.create_histogram("migration.node.duration", unit="s", description="time of one node (handler) run")
        meter.create_observable_gauge("migration.phase", callbacks=[self._observe_phase], description="1 for the current phase")
        self._attrs = {"migration": migration}

    def _observe_phase(self, _options: Any) -> Any:
        try:
            current = self._phase()
        except Exception as exc:  # noqa: BLE001 - swallowed: a gauge callback must never raise
            self.faults.raised("telemetry.phase", exc)
            return []
        return [metrics.Observation(1 if p == current else 0, {**self._attrs, "phase": p.value}) for p in Phase]

    def shed(self, n: int = 1) -> None:
        """Count shadow work shed (queue full, store down)."""
        self._shed.add(n, self._attrs)

    def fault(self, operation: str, exc: BaseException) -> None:
        """Count one swallowed machinery failure and mark it on the active span (``Faults.raised`` calls it)."""
        attrs = {**self._attrs, "operation": operation, "exception.type": type(exc).__name__}
        self._faults.add(1, attrs)
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event("migration.fault", attrs)

    def _redactor(self) -> Redactor:
        if self.redactor is not None:
            return self.redactor
        from migration_kit.observe.redaction import default_redactor

        return default_redactor()  # the facade hands its own; without one, the built-in rules

    def record(self, comparison: Comparison, *, traceparent: str | None = None) -> str | None:
        """Count one comparison and, when tracing is on, emit its trace; returns the trace id (hex)."""
        tracing, counting = _tracing_enabled(self._provider), _metrics_enabled(self._meter_provider)
        if not (tracing or counting):  # the API's no-op providers: nothing would be recorded
            return None
        attrs = self._attrs
        red = self._redactor()
        if counting:
            self._compared.add(1, attrs)
            if comparison.divergent:
                self._divergent.add(1, attrs)
            if comparison.errored:
                self._errors.add(1, attrs)
            for outcome in (comparison.legacy, comparison.candidate):
                path_attrs = {**attrs, "path": outcome.path}
                self._path_duration.record(outcome.duration, path_attrs)
                for node, seconds in outcome.node_durations.items():
                    self._node_duration.record(seconds, {**path_attrs, "node": red.text(node)})
        if not tracing:
            return None
        return self._trace(comparison, traceparent, red)

    def _trace(self, c: Comparison, traceparent: str | None, red: Redactor) -> str:
        parent = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
        legacy, candidate = c.legacy, c.candidate
        start = min(o.started for o in (legacy, candidate) if o.started) if (legacy.started or candidate.started) else time.perf_counter()
        end = max(legacy.started + legacy.duration, candidate.started + candidate.duration, start)
        ev = c.event
        secrets: tuple[str, ...] = ()
        if red.rules and (c.divergent or legacy.errors or candidate.errors):
            secrets = tuple(red.comparison_secrets(c))  # rule-masked values an error message or path may quote
        root = self._tracer.start_span(
            "migration.compare",
            context=parent,
            kind=SpanKind.INTERNAL,
            start_time=_ns(start),
            attributes={
                "migration.name": self.migration,
                "migration.phase": self._phase(),
                "event.type": ev.type,
                "event.id": ev.id,
                "event.correlation_id": ev.saga_key,
                "migration.divergent": c.divergent,
                "migration.differences": len(c.differences),
                "migration.first_divergent_node": red.text(c.first_divergent_node or ""),
            },
        )
        ctx = trace.set_span_in_context(root)
        for outcome in (legacy, candidate):
            self._path_span(outcome, ctx, red, secrets)
        if c.divergent:
            root.set_status(Status(StatusCode.ERROR, f"{len(c.differences)} differences"))
            for d in c.differences[:20]:
                root.add_event("difference", {"path": red.text(d.path, secrets), "kind": d.kind, "node": red.text(d.node or "")})
        root.end(end_time=_ns(end))
        return format(root.get_span_context().trace_id, "032x")

    def _path_span(self, outcome: Outcome, ctx: Any, red: Redactor, secrets: tuple[str, ...]) -> None:
        start = outcome.started or (outcome.trace[0].started if outcome.trace else time.perf_counter())
        span = self._tracer.start_span(
            outcome.path,
            context=ctx,
            start_time=_ns(start),
            attributes={"migration.path": outcome.path, "migration.crashed": outcome.crashed},
        )
        if outcome.error is not None:
            span.set_status(Status(StatusCode.ERROR, red.text(f"{outcome.error.type}: {outcome.error.message}", secrets)))
        inner = trace.set_span_in_context(span)
        for run in outcome.trace:
            name = red.text(run.node)
            node = self._tracer.start_span(
                name,
                context=inner,
                start_time=_ns(run.started or start),
                attributes={"migration.node": name, "migration.path": outcome.path, "event.depth": run.depth},
            )
            for call in run.effects:
                node.add_event("effect", {"effect.port": call.port, "effect.mode": call.mode})
            if run.error is not None:
                node.set_status(Status(StatusCode.ERROR, red.text(f"{run.error.type}: {run.error.message}", secrets)))
            node.end(end_time=_ns((run.started or start) + run.duration))
        span.end(end_time=_ns(start + outcome.duration))


def configure_from_env() -> bool:
    """Install an SDK tracer and meter provider when ``OTEL_*`` variables ask for an exporter.

    ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` (``otlp`` or
    ``console``) or ``OTEL_EXPORTER_OTLP_ENDPOINT``; ``OTEL_SERVICE_NAME``
    names the service. Returns True when something was configured.
    """
    import os

    traces = os.environ.get("OTEL_TRACES_EXPORTER", "").lower()
    metrics_exp = os.environ.get("OTEL_METRICS_EXPORTER", "").lower()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint and not traces:
        traces = "otlp"
    if endpoint and not metrics_exp:
        metrics_exp = "otlp"
    if traces in ("", "none") and metrics_exp in ("", "none"):
        return False
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "migration-kit")})
    if traces not in ("", "none"):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(_otlp_spans() if traces == "otlp" else ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)
    if metrics_exp not in ("", "none"):
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(_otlp_metrics() if metrics_exp == "otlp" else ConsoleMetricExporter())
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    return True


def _otlp_spans() -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        from migration_errors import ConfigurationError

        raise ConfigurationError("OTLP export needs the otlp extra: pip install 'migration-kit[otlp]'") from exc
    return OTLPSpanExporter()


def _otlp_metrics() -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        from migration_errors import ConfigurationError

        raise ConfigurationError("OTLP export needs the otlp extra: pip install 'migration-kit[otlp]'") from exc
    return OTLPMetricExporter()
