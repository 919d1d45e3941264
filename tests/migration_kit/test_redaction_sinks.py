"""The redactor is built once and handed to each sink: a sink masks with the one it was given, not one looked up by name."""

from __future__ import annotations

import io

import redis
import redact_app
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redact_app import CARD, CARD_DIGITS, EMAIL, RULES
from rich.console import Console

from migration_kit.decide.decision import Decision
from migration_kit.live.tap import ShadowKeys, decode_entry
from migration_kit.observe.redaction import Redactor
from migration_kit.observe.telemetry import Telemetry
from migration_kit.report.console import print_replay
from migration_kit.report.html import render_report
from migration_kit.report.report import ReplayReport

# Another key than the migration's own: a token made with it proves this redactor was used.
HANDED = Redactor(RULES, key="handed-to-the-sink")


def test_the_tap_masks_its_stream_entries_with_the_redactor_it_was_given(redis_url):
    m = redact_app.migration(store=redis_url)
    handle = m.attach(redis_url, redactor=HANDED)
    try:
        redact_app.bus.publish(redact_app.payment(1))
        assert handle.flush() and handle.sent == 1
    finally:
        handle.close()
        m.close()
    raw = redis.Redis.from_url(redis_url).xrange(ShadowKeys("pay").stream)
    tapped = decode_entry(raw[0][1][b"d"])
    assert tapped.event.payload["card"]["number"] == HANDED.token(CARD)
    assert tapped.event.payload["customer"]["email"] == HANDED.token(EMAIL)


def test_telemetry_masks_span_statuses_with_the_redactor_it_was_given():
    m = redact_app.migration_quoting_email()
    comparison = m.compare(redact_app.payment(4))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # A name no migration registered: by name, only card numbers would be masked.
    Telemetry("no-such-migration", tracer_provider=provider, redactor=HANDED).record(comparison)
    failed = next(s for s in exporter.get_finished_spans() if s.name == "receipt" and s.status.description)
    assert failed.status.description == f"ValueError: mailbox {HANDED.token(EMAIL)} unknown"


def _report() -> ReplayReport:
    return ReplayReport(
        migration="no-such-migration",
        source=f"/logs/{CARD_DIGITS}.jsonl",
        total=1,
        divergent=1,
        errors=0,
        by_node={f"node-{CARD_DIGITS}": 1},
        decision=Decision("hold", (f"card {CARD} seen",)),
    )


def test_the_console_masks_what_it_prints_with_the_redactor_it_was_given():
    out = io.StringIO()
    print_replay(_report(), Console(file=out, width=300, highlight=False), redactor=HANDED)
    text = out.getvalue()
    assert CARD_DIGITS not in text and CARD not in text
    assert text.count(HANDED.token(CARD)) == 3  # the source, the reason and the node


def test_the_report_and_its_page_mask_with_the_redactor_handed_to_the_report():
    report = ReplayReport(**{**_report().__dict__, "redactor": HANDED})
    reasons = report.to_dict()["decision"]["reasons"]
    assert reasons == [f"card {HANDED.token(CARD)} seen"]
    unmasked = {"migration": "no-such-migration", "total": 1, "divergent": 1, "decision": {"action": "hold", "reasons": [f"card {CARD} seen"]}}
    page = render_report(unmasked, redactor=HANDED)
    assert f"card {HANDED.token(CARD)} seen" in page and f"card {CARD}" not in page
