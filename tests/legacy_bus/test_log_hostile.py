"""A hostile event log is read as inert data or rejected by line number, never executed.

Each crafted line would create a marker file if anything unpickled or
evaluated it: a ``__reduce__`` document, a pickle (raw, and base64 in a
payload), LangGraph / LangChain constructor JSON (as the line and as a
payload). They are read through ``EventLog``, through ``entry_from_json`` (the
shape stream entries carry), and then run through a real graph with the Redis
checkpointer and read back, and the marker never appears.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from checkpoints import RedisSaver
from graph_flows import flow_from_bus
from legacy_bus import BadEventLog, Event, EventBus, EventLog
from legacy_bus.log import entry_from_json


class _Exploit:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def constructor(cmd: str) -> dict[str, Any]:
    return {"lc": 2, "type": "constructor", "id": ["os", "system"], "args": [cmd], "kwargs": {}}


def inert_lines(cmd: str) -> list[dict[str, Any]]:
    """Valid events whose payloads carry attack shapes: they must be kept as plain data."""
    pickled = base64.b64encode(pickle.dumps(_Exploit(cmd))).decode()
    return [
        {"type": "Reduce", "payload": {"__reduce__": ["os.system", [cmd]], "py/reduce": [{"py/function": "os.system"}, [cmd]]}},
        {"type": "Pickled", "payload": {"blob": pickled, "encoding": "pickle+base64"}},
        {"type": "Constructor", "payload": constructor(cmd)},
        {"type": "Nested", "payload": {"items": [constructor(cmd), {"lc": 1, "type": "constructor", "id": ["subprocess", "getoutput"], "kwargs": {"cmd": cmd}}]}},
        {"event": {"type": "Recorded", "payload": {"x": 1}}, "effects": [{"port": "mail", "args": [constructor(cmd)], "kwargs": {}, "response": constructor(cmd)}]},
    ]


def test_attack_shapes_in_payloads_are_read_as_plain_data(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    cmd = f"touch {marker}"
    lines = inert_lines(cmd)
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    entries = list(EventLog(path))
    assert [e.event.type for e in entries] == ["Reduce", "Pickled", "Constructor", "Nested", "Recorded"]
    for entry, line in zip(entries, lines):
        expected = line["event"]["payload"] if "event" in line else line["payload"]
        assert entry.event.payload == expected  # exactly the JSON, nothing revived
        assert all(type(v) in (str, int, list, dict) for v in entry.event.payload.values())
    assert entries[4].effects and entries[4].effects[0].response == constructor(cmd)
    # Stream entries carry the same shapes through entry_from_json.
    for line in lines:
        entry_from_json(line)
    assert not marker.exists()


def test_lines_that_are_not_events_are_rejected_by_line_number(tmp_path: Path) -> None:
    """A raw pickle, a constructor document, a ``__reduce__`` document: each a BadEventLog naming its line."""
    marker = tmp_path / "pwned"
    cmd = f"touch {marker}"
    good = Event(type="Ok").model_dump_json().encode() + b"\n"
    bad_lines = {
        "raw pickle": pickle.dumps(_Exploit(cmd), protocol=0).replace(b"\n", b" ") + b"\n",
        "binary pickle": pickle.dumps(_Exploit(cmd)).replace(b"\n", b"") + b"\n",
        "constructor document": json.dumps(constructor(cmd)).encode() + b"\n",
        "__reduce__ document": json.dumps({"__reduce__": ["os.system", [cmd]]}).encode() + b"\n",
        "extra field": json.dumps({"type": "A", "payload": {}, "__class__": "os.system"}).encode() + b"\n",
        "pickle as the event": json.dumps({"event": base64.b64encode(pickle.dumps(_Exploit(cmd))).decode()}).encode() + b"\n",
    }
    for name, line in bad_lines.items():
        path = tmp_path / "log.jsonl"
        path.write_bytes(good + line + good)
        with pytest.raises(BadEventLog, match=r"line 2 (is not JSON|is a JSON|is not a valid event|has an 'event')") as info:
            list(EventLog(path))
        assert info.value.line == 2, name
        skipping = EventLog(path, on_error="skip")
        assert [e.line for e in skipping] == [1, 3], name
        assert [s.line for s in skipping.skipped] == [2], name
        if line.startswith(b"{"):  # the same document as a stream entry is refused too
            with pytest.raises(Exception, match="is a JSON|is not a valid event|has an 'event'"):
                entry_from_json(json.loads(line))
        path.unlink()
    assert not marker.exists()


def test_hostile_payloads_stay_inert_through_a_graph_and_its_redis_checkpoints(tmp_path: Path, redis_url: str) -> None:
    """The inert events run through a derived graph; what the checkpoint gives back is the same plain data."""
    marker = tmp_path / "pwned"
    lines = [line for line in inert_lines(f"touch {marker}") if "event" not in line]
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    bus = EventBus("hostile")
    seen: list[dict[str, Any]] = []

    @bus.on("Constructor")
    def echo(event: Event) -> Event:
        seen.append(event.payload)
        return Event(type="Echoed", payload={"copy": event.payload})

    for event_type in ("Reduce", "Pickled", "Nested", "Echoed"):
        bus.subscribe(event_type, lambda event: None, name=f"noop_{event_type}")
    with RedisSaver.from_conn_string(redis_url) as saver:
        graph = flow_from_bus(bus).compile(checkpointer=saver)
        for i, entry in enumerate(EventLog(path)):
            config = {"configurable": {"thread_id": f"h{i}"}}
            graph.invoke({"event": entry.event}, config)
            restored = saver.get_tuple(config).checkpoint["channel_values"]
            assert json.loads(json.dumps(restored, default=str))  # plain data all the way down
            if entry.event.type == "Constructor":
                assert restored["emitted"][0]["payload"]["copy"] == constructor(f"touch {marker}")
    assert seen == [constructor(f"touch {marker}")]
    assert not marker.exists()
