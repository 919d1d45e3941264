"""Laws of ``migration_kit.observe.safe_text`` and ``legacy_bus.limits``, for all inputs (hypothesis)."""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from legacy_bus.limits import InputLimits, LimitExceeded
from migration_kit.observe.safe_text import for_file, markup, one_line, terminal, text

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
anything = st.text(alphabet=st.characters(codec=None, categories=None), max_size=200)


@given(anything)
def test_one_line_leaves_no_unsafe_character_and_keeps_safe_text_as_it_is(s):
    out = one_line(s)
    assert not UNSAFE.search(out)
    if not UNSAFE.search(s):
        assert out == s
    out.encode("utf-8")  # always writable


@given(anything)
def test_text_and_markup_render_as_the_literal_text(s):
    console = Console(file=None, record=True, width=10_000, color_system=None, highlight=False)
    console.print(text(s), end="", soft_wrap=True)
    assert console.export_text() == one_line(s)
    console.print(markup(s), end="", soft_wrap=True)
    # Rich's own escape() doubles a trailing backslash (so it cannot escape what follows): the one
    # change it makes. Text objects, used everywhere in the CLI, show the text exactly.
    assert console.export_text() in (one_line(s), one_line(s) + "\\")


@given(anything)
def test_the_terminal_filter_lets_only_newlines_tabs_and_rich_sequences_through(s):
    plain = terminal(s)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e]", plain)
    assert "\x1b" not in plain
    tty = terminal(s, tty=True)
    assert not re.search(r"\x1b(?!\[[0-9;?]*[A-Za-z])", tty)  # an ESC only as a CSI sequence


@given(anything)
def test_for_file_is_always_utf8_writable(s):
    for_file(s).encode("utf-8")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"ab', max_size=3), inner, max_size=3),
    max_leaves=30,
)


def _depth(v) -> int:
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    return 0


@settings(max_examples=300)
@given(json_values, st.integers(min_value=0, max_value=6))
def test_the_depth_bound_refuses_exactly_the_values_nested_deeper_than_it(value, limit):
    raw = json.dumps(value)
    limits = InputLimits(max_depth=limit)
    try:
        limits.check_depth(raw)
        refused = False
    except LimitExceeded:
        refused = True
    assert refused == (_depth(value) > limit)


@given(st.integers(min_value=-(10**50), max_value=10**50), st.integers(min_value=1, max_value=60))
def test_the_integer_bound_refuses_exactly_the_longer_integers(n, digits):
    limits = InputLimits(max_int_digits=digits)
    try:
        assert limits.loads(json.dumps({"n": n})) == {"n": n}
        refused = False
    except LimitExceeded:
        refused = True
    assert refused == (len(str(abs(n))) > digits)
