"""A sketch read between adds (its sorted buckets kept) answers as one built from scratch."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from migration_kit.decide.statistics import Sketch

VALUES = st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(VALUES, VALUES, st.integers(4, 16))
def test_quantiles_read_between_adds_and_merges_match_a_fresh_sketch(first, second, max_buckets):
    kept = Sketch(max_buckets=max_buckets)
    for x in first:
        kept.add(x)
        kept.quantile(0.5)  # read between adds: the sorted buckets are kept, then must follow the adds
    other = Sketch(max_buckets=max_buckets)
    for x in second:
        other.add(x)
    kept.quantile(0.99)
    kept.merge(other)
    fresh = Sketch.from_dict(kept.to_dict())
    fresh.bins = dict(kept.bins)  # a new dict: nothing cached for it
    for q in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0):
        assert kept.quantile(q) == fresh.quantile(q)
    assert [kept.value_at_rank(k) for k in range(1, kept.count + 1)] == [fresh.value_at_rank(k) for k in range(1, fresh.count + 1)]
