"""Event logs are streamed, validated, and never lose or overwrite data."""

from __future__ import annotations

import json

import pytest

from legacy_bus import BadEventLog, Event, EventLog
from legacy_bus.records import EffectCall


def test_a_log_round_trips_events_and_recorded_effects(tmp_path):
    path = tmp_path / "log.jsonl"
    events = [Event(type="A", payload={"i": i}) for i in range(3)]
    with EventLog(path).writer() as w:
        w.append(events[0])
        w.append(events[1], [EffectCall("mail.send", ["x@y"], {}, {"ok": True})])
        w.append(events[2])
    entries = list(EventLog(path))
    assert [e.event for e in entries] == events
    assert [e.line for e in entries] == [1, 2, 3]
    assert entries[1].effects[0].response == {"ok": True}


def test_a_line_that_is_not_json_names_its_line_number(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(Event(type="A").model_dump_json() + "\n{not json\n")
    with pytest.raises(BadEventLog, match=r"line 2 is not JSON") as info:
        list(EventLog(path))
    assert info.value.line == 2


def test_a_line_that_is_not_an_event_says_which_field(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps({"payload": {}}) + "\n")
    with pytest.raises(BadEventLog, match=r"line 1 is not a valid event \(type: Field required\)"):
        list(EventLog(path))


def test_skip_mode_skips_bad_lines_and_lists_them(tmp_path):
    path = tmp_path / "log.jsonl"
    good = Event(type="A").model_dump_json()
    path.write_text(f"{good}\n[1, 2]\n\n{good}\n")
    log = EventLog(path, on_error="skip")
    assert len(list(log)) == 2
    assert [(s.line, "JSON list" in s.reason) for s in log.skipped] == [(2, True)]


def test_an_oversized_line_is_rejected_without_reading_it_whole(tmp_path):
    path = tmp_path / "log.jsonl"
    big = Event(type="A", payload={"blob": "x" * 5000}).model_dump_json()
    path.write_text(big + "\n" + Event(type="B").model_dump_json() + "\n")
    log = EventLog(path, on_error="skip", max_line_bytes=1000)
    assert [e.event.type for e in log] == ["B"]
    assert log.skipped[0].line == 1 and "longer than 1000 bytes" in log.skipped[0].reason


def test_writing_never_overwrites_an_existing_log(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text("precious\n")
    with pytest.raises(BadEventLog, match="already exists"):
        EventLog(path).write([Event(type="A")])
    assert path.read_text() == "precious\n"


def test_a_missing_log_is_a_clear_error(tmp_path):
    with pytest.raises(BadEventLog, match="does not exist"):
        list(EventLog(tmp_path / "nope.jsonl"))


def test_reading_resumes_from_a_byte_offset(tmp_path):
    path = tmp_path / "log.jsonl"
    EventLog(path).write([Event(type="A", payload={"i": i}) for i in range(5)])
    entries = list(EventLog(path))
    rest = list(EventLog(path).entries(start_offset=entries[2].offset, start_line=3))
    assert [e.event.payload["i"] for e in rest] == [2, 3, 4]
    assert [e.line for e in rest] == [3, 4, 5]
