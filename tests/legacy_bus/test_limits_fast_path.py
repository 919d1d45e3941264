"""``InputLimits.loads`` parses without its per-integer check only where no integer could break it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from legacy_bus.limits import InputLimits, LimitExceeded

LIMITS = InputLimits(max_int_digits=6)
NUMBERS = st.one_of(st.integers(-(10**9), 10**9), st.floats(allow_nan=False, allow_infinity=False), st.text("0123456789", min_size=1, max_size=9))
JSON = st.recursive(NUMBERS | st.booleans() | st.none(), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=8)


def checked(raw: bytes):
    """What loads returned before: every integer through the digit check."""
    return json.loads(raw, parse_int=LIMITS._int)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_loads_gives_what_the_checked_parse_gives(value):
    raw = json.dumps(value).encode()
    try:
        expected = checked(raw)
    except LimitExceeded as exc:
        with pytest.raises(LimitExceeded, match="digit integer"):
            LIMITS.loads(raw)
        assert "digit integer" in str(exc)
        return
    assert LIMITS.loads(raw) == expected
    assert LIMITS.loads(raw.decode()) == expected


def test_a_long_integer_is_refused_and_a_long_digit_string_is_not():
    with pytest.raises(LimitExceeded, match="7-digit integer"):
        LIMITS.loads(b'{"n": 1234567}')
    assert LIMITS.loads(b'{"n": "1234567", "m": 123456}') == {"n": "1234567", "m": 123456}
