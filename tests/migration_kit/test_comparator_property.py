"""For every payload and any one mutation, exactly the mutated path is reported."""

from __future__ import annotations

import copy
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from legacy_bus import Event
from migration_kit import Comparator
from migration_kit.compare.outcome import Emission, Outcome

KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=6)
LEAVES = st.one_of(
    st.integers(-10**6, 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
)
JSON = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=20,
)
PAYLOADS = st.dictionaries(KEYS, JSON, min_size=1, max_size=6)


def leaf_paths(value, prefix=()):
    """Every (path tuple) to a leaf or a container, with its value."""
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaf_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaf_paths(v, (*prefix, i))


def render(path) -> str:
    out = "emitted[0].payload"
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", p) else f"[{p!r}]")
    return out


def different(old, draw):
    """A JSON value that differs from ``old`` (not equal in Python, nor within float tolerance)."""
    candidate = draw(LEAVES.filter(lambda v: not (v == old) and not (isinstance(v, (int, float)) and isinstance(old, (int, float)) and abs(v - old) <= 1e-6 * max(abs(v), abs(old)))))
    return candidate


@st.composite
def mutated(draw):
    payload = draw(PAYLOADS)
    paths = [p for p, _ in leaf_paths(payload) if p]
    path = draw(st.sampled_from(paths))
    new = copy.deepcopy(payload)
    parent = new
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    old = parent[last]
    action = draw(st.sampled_from(["change", "delete"] if isinstance(parent, dict) else ["change"]))
    if action == "change":
        parent[last] = different(old, draw)
        kind = "value_changed"
    else:
        del parent[last]
        kind = "field_missing"
    return payload, new, path, kind


def outcome(path: str, payload: dict) -> Outcome:
    ev = Event(type="Root", id="root")
    return Outcome(path, ev, (Emission("node", "Out", payload, {}, "<root>", 1, "e1"),))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(mutated())
def test_exactly_the_mutated_path_is_reported(case):
    payload, new, path, kind = case
    c = Comparator(noise=False).compare(outcome("legacy", payload), outcome("candidate", new))
    assert [(d.path, d.kind) for d in c.differences] == [(render(path), kind)]
    (d,) = c.differences
    assert d.node == "node" and c.first_divergent_node in (None, "node")


@settings(max_examples=100, deadline=None)
@given(PAYLOADS)
def test_a_payload_compared_with_a_copy_of_itself_has_no_difference(payload):
    assert not Comparator(noise=False).compare(outcome("legacy", payload), outcome("candidate", copy.deepcopy(payload))).divergent
