"""encode passes plain JSON through as it is, and still tags what only looks like JSON."""

from __future__ import annotations

import enum
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from legacy_bus.codec import decode, encode

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    # A "$" key is the codec's tag, so such a dict only looks like JSON and is tagged (tested below).
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4).filter(lambda k: k != "$"), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(_json)
def test_plain_json_encodes_to_itself_and_decodes_back(value: Any) -> None:
    assert repr(encode(value)) == repr(value)
    assert repr(decode(encode(value))) == repr(value)


class Level(enum.IntEnum):
    HIGH = 2


class Key(str):
    pass


def test_values_inside_plain_containers_keep_their_tags() -> None:
    encoded = encode({"a": [Level.HIGH, (1, 2)], "$": 1, 3: "x"})
    assert encoded["$"] == "dict"  # a "$" key (and a non-string key) is tagged, as before
    back = decode(encoded)
    assert back == {"a": [Level.HIGH, (1, 2)], "$": 1, 3: "x"} and type(back["a"][0]) is Level
    assert encode({Key("k"): 1}) == {"k": 1}  # a str subclass key still counts as a string key
    assert decode(encode([{"t": (1,)}])) == [{"t": (1,)}]
