"""A stream entry carries the saga's state once: the state after is a delta against the state before."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from legacy_bus import Event
from migration_kit.compare.outcome import Outcome
from migration_kit.live.tap import decode_entry, encode_entry
from migration_kit.compare.state_delta import delta, patched

leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3))
objects = st.recursive(st.dictionaries(st.text(max_size=4), leaf, max_size=5), lambda inner: st.dictionaries(st.text(max_size=4), inner, max_size=4), max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(objects, objects)
def test_for_all_json_objects_patching_the_delta_onto_before_gives_after_and_leaves_before_alone(before, after):
    kept = json.dumps(before, sort_keys=True)
    assert patched(before, delta(before, after)) == after
    assert json.dumps(before, sort_keys=True) == kept


def test_a_delta_holds_only_what_changed():
    before = {"inventory": {f"sku-{i}": i for i in range(200)}, "moves": 7, "old": 1}
    after = {"inventory": {**before["inventory"], "sku-3": 4}, "moves": 8}
    assert delta(before, after) == {"=": {"moves": 8}, "~": {"inventory": {"=": {"sku-3": 4}}}, "-": ["old"]}


def _outcome(event: Event, state: dict | None) -> Outcome:
    return Outcome(path="legacy", event=event, state=state, duration=0.001)


def test_an_entry_carries_the_state_after_as_a_delta_and_decodes_to_the_same_outcome():
    event = Event(type="StockMoved", payload={"sku": "sku-3"}, correlation_id="wh-1")
    before = {"inventory": {f"sku-{i:04d}": i for i in range(200)}, "moves": 7}
    after = {"inventory": {**before["inventory"], "sku-0003": 4}, "moves": 8}
    raw = encode_entry("delta", _outcome(event, after), before, None, 0.0)
    doc = json.loads(raw)
    assert "state" not in doc["legacy"] and doc["state_delta"] == {"=": {"moves": 8}, "~": {"inventory": {"=": {"sku-0003": 4}}}}
    tapped = decode_entry(raw)
    assert tapped.state_before == before and tapped.legacy.state == after
    # the entry is about one state long, not two
    assert len(raw) < 1.2 * len(json.dumps(before))


def test_an_entry_of_a_saga_without_state_before_keeps_its_state_after_whole():
    event = Event(type="StockMoved", payload={}, correlation_id="wh-2")
    raw = encode_entry("delta", _outcome(event, {"moves": 1}), None, None, 0.0)
    assert json.loads(raw)["legacy"]["state"] == {"moves": 1} and decode_entry(raw).legacy.state == {"moves": 1}
