"""Redaction: card numbers and rule-matched values never leave the process unmasked; comparison still sees them."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from graph_flows import flow_from_bus
from legacy_bus import Event, EventLog, OverlayStateStore, Sandbox
from migration_errors import ConfigurationError
from migration_kit import Difference, Migration
from migration_kit.cli import main
from migration_kit.observe.redaction import KEY_ENV, Redactor, default_redactor, luhn
from migration_kit.live.tap import ShadowKeys, decode_entry, divergence_groups, encode_entry
from migration_kit.observe.telemetry import Telemetry

sys.path.insert(0, str(Path(__file__).parent))
import redact_app  # noqa: E402
from redact_app import CARD, CARD_DIGITS, EMAIL, OTHER_CARD, RULES, XSS, leaks  # noqa: E402



def cards_in(text: str) -> list[str]:
    """Every Luhn-valid card number in ``text``: 13-19 digits, single spaces or dashes between, not inside a longer run.

    Only for text without floats: a float's digits (``0.0009034946000610944``) are card-shaped one time in ten.
    """
    found = []
    n = len(text)
    for i in range(n):
        if not ("0" <= text[i] <= "9") or (i and "0" <= text[i - 1] <= "9"):
            continue
        digits = ""
        j = i
        while j < n:
            ch = text[j]
            if "0" <= ch <= "9":
                digits += ch
                at_end = j + 1 == n or not ("0" <= text[j + 1] <= "9")
                if at_end and 13 <= len(digits) <= 19 and luhn(digits):
                    found.append(text[i : j + 1])
                if len(digits) > 19:
                    break
                j += 1
            elif ch in " -" and j + 1 < n and "0" <= text[j + 1] <= "9" and "0" <= text[j - 1] <= "9":
                j += 1
            else:
                break
    return found


@st.composite
def card_numbers(draw) -> str:
    """A Luhn-valid card number, 13 to 19 digits, plain or grouped by spaces or dashes."""
    length = draw(st.integers(13, 19))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    check = next(d for d in "0123456789" if luhn(body + d))
    digits = body + check
    sep = draw(st.sampled_from(["", " ", "-"]))
    return sep.join(digits[k : k + 4] for k in range(0, length, 4)) if sep else digits


texts = st.lists(
    st.one_of(card_numbers(), st.text("0123456789 -x[]:redact", max_size=25), st.integers(0, 10**20).map(str)),
    max_size=8,
).map("".join)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20), texts, card_numbers()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text("abcxyz", min_size=1, max_size=4), inner, max_size=4)),
    max_leaves=20,
)


# -- laws -------------------------------------------------------------------------------------


def test_the_card_checker_of_these_tests_finds_grouped_and_plain_card_numbers():
    assert cards_in(f"pay {CARD} or {CARD_DIGITS}-x") == [CARD, CARD_DIGITS]
    assert cards_in("4111111111111112 and 12345678901234567890") == []  # Luhn-invalid; a run of 20


@settings(max_examples=300, deadline=None)
@given(texts)
def test_masked_text_never_holds_a_luhn_valid_card_number(text):
    assert cards_in(Redactor(key="k").text(text)) == []


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_a_masked_json_document_never_holds_a_luhn_valid_card_number(doc):
    masked = Redactor(key="k").value(doc)
    assert cards_in(json.dumps(masked)) == []


@settings(max_examples=200, deadline=None)
@given(json_values, st.sampled_from(["k1", b"another key"]))
def test_masking_is_deterministic_per_key_and_masking_twice_changes_nothing(doc, key):
    once = Redactor(RULES, key=key).value(doc, "payload")
    assert Redactor(RULES, key=key).value(doc, "payload") == once
    assert Redactor(RULES, key=key).value(once, "payload") == once


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60).filter(lambda s: cards_in(s) == [] and not any(c.isdigit() for c in s)))
def test_text_without_digits_passes_unchanged(text):
    assert Redactor(key="k").text(text) == text


@given(card_numbers())
def test_equal_values_mask_equal_under_one_key_and_differently_under_another(card):
    a, b = Redactor(key="one"), Redactor(key="two")
    assert a.token(card) == a.token(card.replace(" ", "").replace("-", ""))  # one card however it is grouped
    assert a.token(card) != b.token(card)
    assert a.text(f"card {card}.") == f"card {a.token(card)}."


# -- rules ------------------------------------------------------------------------------------


def test_rules_mask_paths_relative_to_the_event_and_keep_its_envelope():
    red = Redactor(["payload.card.number", "payload.*.email", "**.token", "payload.items.secret"], key="k")
    event = Event(
        type="Pay",
        correlation_id="saga-1",
        headers={"token": "t-123456"},
        payload={
            "card": {"number": "not-a-luhn-number", "exp": "12/30"},
            "customer": {"email": "a@b.example", "name": "Ada"},
            "deep": {"x": [{"token": "abcdef"}]},
            "items": [{"secret": 1}, {"secret": {"k": "v"}}],
        },
    )
    out = red.event(event)
    assert Event.from_dict(out).id == event.id  # still a valid event: the envelope is kept
    assert (out["type"], out["id"], out["correlation_id"], out["timestamp"]) == ("Pay", event.id, "saga-1", event.to_dict()["timestamp"])
    p = out["payload"]
    assert p["card"]["number"] == red.token("not-a-luhn-number") and p["card"]["exp"] == "12/30"
    assert p["customer"] == {"email": red.token("a@b.example"), "name": "Ada"}
    assert p["deep"]["x"][0]["token"] == red.token("abcdef")
    assert out["headers"]["token"] == red.token("t-123456")
    assert p["items"] == [{"secret": red.token(1)}, {"secret": {"k": red.token("v")}}]  # a rule on a dict keeps its shape
    assert event.payload["card"]["number"] == "not-a-luhn-number"  # the event itself is untouched


@pytest.mark.parametrize(
    ("rule", "path", "hit"),
    [
        ("payload.card.number", "emitted[3].payload.card.number", True),
        ("payload.card", "emitted[0].payload.card.number", True),  # an ancestor's rule covers what is inside
        ("payload.card.number", "emitted[0].payload.card", False),
        ("payload.*.email", "emitted[0].payload.customer.email", True),
        ("payload.*.email", "emitted[0].payload.customer.address.email", False),
        ("payload.**.email", "emitted[0].payload.customer.address.email", True),
        ("**.token", "effects[1].kwargs.token", True),
        ("**.token", "token", True),
        ("args[*].card", "effects[0].args[2].card", True),
        ("payload.items.card", "emitted[1].payload.items[7].card", True),  # list indices may be left out
        ("state.card", "state.card", True),
        ("card", "state.card", True),
        ("payload.card", "emitted[0].payload.cards", False),
    ],
)
def test_globs_match_difference_paths_by_segment(rule, path, hit):
    assert Redactor([rule], key="k").matches(path) is hit


def test_a_rule_that_is_not_a_glob_string_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="glob path"):
        Redactor(["payload.card", ""])
    with pytest.raises(ConfigurationError, match="glob path"):
        Redactor([None])  # type: ignore[list-item]


# -- differences --------------------------------------------------------------------------------


def test_a_difference_on_a_redacted_path_masks_both_values_and_equal_values_stay_equal():
    red = Redactor(["payload.card.number"], key="k")
    changed = red.difference(Difference("emitted[0].payload.card.number", "value_changed", "1234-x", "9876-y", "authorize"))
    assert (changed.legacy, changed.candidate) == (red.token("1234-x"), red.token("9876-y"))
    assert changed.legacy != changed.candidate and changed.node == "authorize" and changed.kind == "value_changed"
    again = red.difference(Difference("emitted[4].payload.card.number", "value_changed", "1234-x", "5555-z"))
    assert again.legacy == changed.legacy  # the same value masks the same, so it is recognisable across examples
    whole = red.difference(Difference("emitted[0]", "event_missing", {"type": "Paid", "payload": {"card": {"number": "1234-x"}, "n": 1}}, None))
    assert whole.legacy == {"type": "Paid", "payload": {"card": {"number": red.token("1234-x")}, "n": 1}} and whole.candidate is None


def test_a_difference_holding_a_card_number_masks_a_near_miss_on_the_other_side():
    red = Redactor(key="k")
    near = red.difference(Difference("emitted[0].payload.pan", "value_changed", CARD_DIGITS, "4111111111111112"))
    assert near.legacy == red.token(CARD_DIGITS) and near.candidate == red.token("4111111111111112")
    text = red.difference(Difference("error", "error", f"ValueError: card {CARD} declined", "ValueError: card 4111 1111 1111 1112 declined"))
    assert text.legacy == f"ValueError: card {red.token(CARD)} declined"
    assert text.candidate == f"ValueError: card {red.token('4111111111111112')} declined"
    plain = red.difference(Difference("emitted[0].payload.qty", "value_changed", 1234567890123, 1234567890124))
    assert (plain.legacy, plain.candidate) == (1234567890123, 1234567890124)  # no card on either side: shown as is


def test_a_value_a_rule_masks_is_scrubbed_where_else_it_is_quoted():
    m = redact_app.migration_quoting_email()
    red = m.redactor
    c = m.compare(redact_app.payment())
    quoted = next(d for d in c.differences if d.path == "error")
    assert EMAIL in quoted.candidate  # the candidate's error message quotes the e-mail address
    masked = red.comparison(c)
    assert leaks(json.dumps(masked)) == []
    error = next(d for d in masked["differences"] if d["path"] == "error")
    assert error["candidate"] == f"ValueError: mailbox {red.token(EMAIL)} unknown"
    effects = [d for d in masked["differences"] if d["kind"] == "effect_missing"]
    assert effects and effects[0]["legacy"]["args"][0] == red.token(EMAIL)  # the e-mail, as an effect argument


# -- keys and one redactor per migration --------------------------------------------------------


def test_the_key_comes_from_the_environment_else_one_random_key_per_process(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert Redactor().token("x") == Redactor().token("x")  # one key per process
    random_token = Redactor().token("x")
    monkeypatch.setenv(KEY_ENV, "shared-secret")
    assert Redactor().token("x") == Redactor(key="shared-secret").token("x") != random_token
    assert default_redactor().token("x") == Redactor(key="shared-secret").token("x")


def test_the_migration_builds_one_redactor_from_redact_and_hands_it_to_its_sinks():
    m = redact_app.migration()
    red = m.redactor
    assert red is m.redactor and red.rules == tuple(RULES)
    assert m.telemetry.redactor is red and m.faults.redactor is red


def test_a_sink_given_no_redactor_masks_with_the_built_in_rules_never_a_migration_found_by_name():
    m = redact_app.migration()  # a migration named "pay" with rules exists in this process
    other = Migration("pay", legacy=redact_app.bus, candidate=flow_from_bus(redact_app.bus), redact=["payload.note"])
    assert other.redactor is not m.redactor and other.redactor.rules == ("payload.note",) and m.redactor.rules == tuple(RULES)
    dispatch = redact_app.bus.dispatch(redact_app.payment(), sandbox=Sandbox(), states=OverlayStateStore(), capture=True)
    plain = encode_entry("pay", dispatch, None, None, 0.0).decode()
    assert CARD not in plain and CARD_DIGITS not in plain  # card numbers: always masked
    assert EMAIL in plain and XSS in json.loads(plain)["event"]["payload"]["note"]  # no rule of any "pay" migration applied
    masked = encode_entry("pay", dispatch, None, None, 0.0, redactor=m.redactor).decode()
    assert leaks(masked) == [] and m.redactor.token(EMAIL) in masked


# -- acceptance: nothing leaves the process unmasked --------------------------------------------


def _redis_dump(url: str) -> str:
    client = redis.Redis.from_url(url)
    parts = []
    for key in client.keys("*"):
        kind = client.type(key).decode()
        if kind == "stream":
            parts.append(repr(client.xrange(key)))
        elif kind == "hash":
            parts.append(repr(client.hgetall(key)))
        elif kind == "list":
            parts.append(repr(client.lrange(key, 0, -1)))
        elif kind == "string":
            parts.append(repr(client.get(key)))
        elif kind == "set":
            parts.append(repr(client.smembers(key)))
        elif kind == "zset":
            parts.append(repr(client.zrange(key, 0, -1, withscores=True)))
        parts.append(repr(key))
    client.close()
    return "\n".join(parts)


@pytest.fixture(autouse=True)
def _fresh_charges():
    redact_app.REAL_CHARGES.clear()
    yield


def test_stream_entries_hold_no_card_number_or_email_and_still_decode(redis_url):
    m = redact_app.migration(store=redis_url)
    with m.attach() as handle:
        redact_app.bus.publish(redact_app.payment(1))
        assert handle.flush() and handle.sent == 1
    assert redact_app.REAL_CHARGES == [CARD]  # the live path ran with the real card number
    raw = redis.Redis.from_url(redis_url).xrange(ShadowKeys("pay").stream)
    assert len(raw) == 1
    entry = raw[0][1][b"d"].decode()
    assert leaks(entry) == []
    tapped = decode_entry(entry)
    red = m.redactor
    assert tapped.event.payload["card"]["number"] == red.token(CARD)
    assert tapped.event.payload["customer"]["email"] == red.token(EMAIL)
    assert tapped.event.payload["note"] == XSS  # not a secret: kept (reports escape it)
    assert tapped.state_before is None and tapped.legacy.state == {"card": red.token(CARD)}
    assert tapped.legacy.effects[0].args[0] == red.token(CARD) and tapped.legacy.effects[0].response["card"] == red.token(CARD)


def test_a_worker_stores_the_changed_card_number_as_a_divergence_with_masked_values(redis_url, caplog):
    caplog.set_level(logging.INFO)
    m = redact_app.migration(store=redis_url)
    with m.attach() as handle:
        redact_app.bus.publish(redact_app.payment(2))
        assert handle.flush()
    stats = m.worker(max_events=1, block_ms=100, evidence_every=0.0).run()
    assert stats.recorded == 1 and stats.divergent == 1
    dump = _redis_dump(redis_url)
    assert leaks(dump) == []  # nothing in Redis: stream, groups, examples, evidence, phase
    assert leaks(caplog.text) == []
    client = redis.Redis.from_url(redis_url)
    groups = {g["path"]: g for g in divergence_groups(client, ShadowKeys("pay"))}
    card = groups["emitted[*].payload.card.number"]["example"]
    red = m.redactor
    assert card["legacy"] == red.token(CARD) and card["candidate"] == red.token(OTHER_CARD)


def _traced(m):
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    m.telemetry = Telemetry(m.name, tracer_provider=provider, meter_provider=MeterProvider(metric_readers=[reader]), redactor=m.redactor)
    return exporter, reader


def _exported_text(exporter, reader) -> str:
    seen = []
    for s in exporter.get_finished_spans():
        seen += [s.name, repr(dict(s.attributes or {})), repr(s.status.description)]
        seen += [f"{e.name} {dict(e.attributes or {})!r}" for e in s.events]
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                seen += [repr(dict(p.attributes)) for p in metric.data.data_points]
    return "\n".join(seen)


def test_spans_span_events_and_metric_labels_hold_no_card_number_or_email():
    m = redact_app.migration()
    exporter, reader = _traced(m)
    c = m.compare(redact_app.payment(3))
    changed = next(d for d in c.differences if d.path == "emitted[0].payload.card.number")
    assert (changed.legacy, changed.candidate) == (CARD, OTHER_CARD)  # compared on the real values, in memory
    text = _exported_text(exporter, reader)
    assert leaks(text) == [] and cards_in(text) == []
    failed = next(s for s in exporter.get_finished_spans() if s.name == "receipt" and s.status.description)
    assert failed.status.description == f"ValueError: no receipt template for card {m.redactor.token(OTHER_CARD)}"
    assert "emitted[0].payload.card.number" in text  # the difference is named on the root span


def test_a_span_status_quoting_a_rule_masked_value_shows_it_masked():
    m = redact_app.migration_quoting_email()
    exporter, reader = _traced(m)
    m.compare(redact_app.payment(4))
    assert leaks(_exported_text(exporter, reader)) == []
    failed = next(s for s in exporter.get_finished_spans() if s.name == "receipt" and s.status.description)
    assert failed.status.description == f"ValueError: mailbox {m.redactor.token(EMAIL)} unknown"


def test_the_replay_report_holds_no_card_number_and_shows_the_changed_card_masked(tmp_path):
    m = redact_app.migration()
    red = m.redactor
    report = m.replay([redact_app.payment(i) for i in range(1, 4)])
    assert report.divergent == 3
    out = report.to_json()
    report.write_html(tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    for text in (out, page, repr(report.groups), repr(report.examples)):
        assert leaks(text) == []
    data = json.loads(out)
    group = next(g for g in data["groups"] if g["path"] == "emitted[*].payload.card.number")
    assert group["count"] == 3 and group["kind"] == "value_changed"
    assert (group["example"]["legacy"], group["example"]["candidate"]) == (red.token(CARD), red.token(OTHER_CARD))
    assert red.token(CARD) in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page


def test_a_tally_given_the_redactor_keeps_only_masked_examples_even_in_its_saved_progress():
    from migration_kit.report.report import ReplayTally

    m = redact_app.migration_quoting_email()
    tally = ReplayTally(redactor=m.redactor)
    tally.add(m.compare(redact_app.payment(5)), 1)
    saved = json.dumps(tally.to_dict())  # what a resumable replay stores
    assert leaks(saved) == [] and m.redactor.token(EMAIL) in saved


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    EventLog(tmp_path / "pay.jsonl").write([redact_app.payment(i) for i in range(1, 4)])
    return tmp_path


def test_the_cli_prints_and_writes_no_card_number_or_email(project, capsys):
    assert main(["replay", "pay.jsonl", "--app", "redact_app:migration", "--json", "out.json", "--html", "out.html"]) == 1
    assert main(["status", "--app", "redact_app:migration", "--json"]) == 0
    assert main(["status", "--app", "redact_app:migration"]) == 0
    assert main(["report", "out.json", "--html", "again.html"]) == 0
    assert main(["replay", "missing.jsonl", "--app", "redact_app:migration"]) == 2
    captured = capsys.readouterr()
    written = [(project / name).read_text() for name in ("out.json", "out.html", "again.html")]
    for text in (captured.out, captured.err, *written):
        assert leaks(text) == []
    assert "emitted[*].payload.card.number" in captured.out and "[redacted:" in captured.out  # the change, masked
    assert "3 divergent" in captured.out and '"divergent": 3' in captured.out  # and the status counts it


def test_status_json_stays_json_when_a_float_has_card_shaped_digits(project, capsys, monkeypatch):
    from migration_kit import Migration

    monkeypatch.setattr(Migration, "status", lambda self: {"phase": "shadow", "rate": 0.4111111111111111, "note": f"card {CARD}"})
    assert main(["status", "--app", "redact_app:migration", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)  # the float's 16 digits pass Luhn; the output still parses
    assert printed["rate"] == 0.4111111111111111 and printed["note"] == f"card {redact_app.migration().redactor.token(CARD)}"


def test_a_printed_card_number_is_masked_on_its_way_to_the_terminal(project, capsys):
    assert main(["replay", f"no-such-{CARD_DIGITS}.jsonl", "--app", "redact_app:migration"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and CARD_DIGITS not in err and "[redacted:" in err


def test_a_recorded_log_holds_no_card_number_or_email_and_replays(project, redis_url, capsys):
    m = redact_app.migration(store=redis_url)
    with m.attach() as handle:
        for i in (1, 2):
            redact_app.bus.publish(redact_app.payment(i))
        assert handle.flush()
    assert main(["record", "--app", "redact_app:migration", "--store", redis_url, "--out", "recorded.jsonl"]) == 0
    text = (project / "recorded.jsonl").read_text()
    assert leaks(text) == [] and cards_in(text) == [] and leaks(capsys.readouterr().err) == []
    entries = list(EventLog(project / "recorded.jsonl"))
    red = m.redactor
    assert [e.event.payload["card"]["number"] for e in entries] == [red.token(CARD)] * 2
    assert [c.port for c in entries[0].effects] == ["gateway.charge", "mail.send"]
    assert entries[0].effects[0].response == {"status": "approved", "card": red.token(CARD), "amount": 10}
    assert redact_app.migration().replay(project / "recorded.jsonl").total == 2  # the masked log replays


def test_learned_noise_is_stored_with_its_examples_masked():
    import json
    import random

    from graph_flows import flow_from_bus
    from legacy_bus import EventBus
    from migration_kit import Migration
    from migration_kit.observe.redaction import luhn

    issued: list[str] = []

    def new_card() -> str:  # a fresh Luhn-valid number on every run: noise on the card path
        while True:
            digits = "4" + "".join(random.choice("0123456789") for _ in range(15))
            if luhn(digits):
                issued.append(digits)
                return digits

    bus = EventBus("cards")

    @bus.on("CardRequested")
    def issue(e, ctx):
        ctx.publish("CardIssued", {"card": {"number": new_card()}, "holder": e.payload["holder"]})

    m = Migration("noise-mask", legacy=bus, candidate=flow_from_bus(bus), store="memory://", redact=["payload.card.number"])
    for i in range(3):
        m.compare(Event(type="CardRequested", payload={"holder": f"h{i}"}))
    assert any("card.number" in row["path"] for row in m.noise.summary())  # learned as noise, not reported
    m.save_noise()
    stored = json.dumps(m.store.records.get("noise")[0])
    assert "card.number" in stored and issued
    assert not any(number in stored for number in issued)
