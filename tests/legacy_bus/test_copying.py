"""deep_copy and copy_event give what copy.deepcopy and model_copy(deep=True) give, faster."""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from legacy_bus import Event
from legacy_bus.copying import copy_event, deep_copy
from legacy_bus.event import new_event_id

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)
# Values copy.deepcopy handles that the fast path must hand over: sets, tuples, dates, int keys.
_other = st.recursive(
    _json
    | st.sets(st.integers(), max_size=3)
    | st.tuples(st.integers(), st.lists(st.integers(), max_size=2))
    | st.just(dt.datetime(2024, 1, 2, tzinfo=dt.UTC)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.integers() | st.text(max_size=3), inner, max_size=3),
    max_leaves=12,
)


def _containers(value: Any) -> list[int]:
    """The ids of every mutable container in ``value``."""
    out: list[int] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, (dict, list, set)):
            out.append(id(v))
            stack.extend(v.values() if isinstance(v, dict) else v)
        elif isinstance(v, tuple):
            stack.extend(v)
    return out


@settings(max_examples=200, deadline=None)
@given(_other)
def test_deep_copy_equals_deepcopy_and_shares_no_container(value: Any) -> None:
    mine = deep_copy(value)
    assert mine == copy.deepcopy(value)
    assert repr(mine) == repr(copy.deepcopy(value))  # same types and order, not only equal
    assert not set(_containers(mine)) & set(_containers(value))


def test_deep_copy_keeps_sharing_and_cycles_as_deepcopy_does() -> None:
    shared = [1, 2]
    value: dict[str, Any] = {"a": shared, "b": shared}
    value["self"] = value
    mine = deep_copy(value)
    assert mine["a"] is mine["b"] and mine["a"] is not shared
    assert mine["self"] is mine


def test_deep_copy_keeps_dict_subclasses() -> None:
    from collections import OrderedDict

    value = {"o": OrderedDict(x=[1])}
    mine = deep_copy(value)
    assert type(mine["o"]) is OrderedDict and mine["o"]["x"] is not value["o"]["x"]


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=4), _json, max_size=4), st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2))
def test_copy_event_equals_model_copy_deep(payload: dict[str, Any], headers: dict[str, str]) -> None:
    event = Event(type="T", payload=payload, headers=headers, correlation_id="c")
    mine = copy_event(event)
    assert mine == event.model_copy(deep=True)
    assert mine.model_fields_set == event.model_fields_set
    assert mine.model_dump_json(exclude_unset=True) == event.model_dump_json(exclude_unset=True)
    assert not set(_containers(mine.payload)) & set(_containers(event.payload))
    assert mine.headers is not event.headers


def test_new_event_id_is_a_uuid4_in_hex_and_unique() -> None:
    ids = [new_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for s in ids[:200]:
        u = uuid.UUID(hex=s)
        assert u.hex == s and u.version == 4 and u.variant == uuid.RFC_4122
