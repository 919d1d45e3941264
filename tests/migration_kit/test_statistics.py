"""Statistics: sketches within 1%, confidence sequences that cover, contracts tested on both sides."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from migration_kit.decide.statistics import (
    Sketch,
    clopper_pearson,
    latency_contract,
    quantile_bounds,
    rank_bounds,
    rate_bounds,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1e-6, 100.0), min_size=1, max_size=400), st.sampled_from([0.5, 0.95, 0.99]))
def test_sketch_quantiles_are_within_one_percent_of_the_exact_order_statistic(values, q):
    s = Sketch()
    for v in values:
        s.add(v)
    exact = sorted(values)[math.floor(q * (len(values) - 1))]
    assert abs(s.quantile(q) - exact) <= 0.01 * exact


def test_sketch_memory_is_bounded_and_merging_equals_adding_everything():
    rng = np.random.default_rng(0)
    a, b, both = Sketch(max_buckets=256), Sketch(max_buckets=256), Sketch(max_buckets=256)
    xs = rng.lognormal(-5, 3, 20_000)
    for i, x in enumerate(xs):
        (a if i % 2 else b).add(x)
        both.add(x)
    assert len(both.bins) <= 256  # 20,000 values over ~900 buckets' range, kept in 256
    merged = Sketch.from_dict(json.loads(json.dumps(a.to_dict()))).merge(b)
    assert merged.count == both.count and len(merged.bins) <= 256
    # collapsing folds only the lowest buckets: the tail a contract reads stays exact to 1%
    assert merged.quantile(0.99) == both.quantile(0.99)
    small_a, small_b, small = Sketch(), Sketch(), Sketch()
    for i, x in enumerate(xs[:2000]):
        (small_a if i % 2 else small_b).add(x)
        small.add(x)
    assert small_a.merge(small_b).bins == small.bins


def test_rate_bounds_contain_the_observed_rate_and_shrink_with_evidence():
    lo1, hi1 = rate_bounds(10, 100, 0.05)
    lo2, hi2 = rate_bounds(100, 1000, 0.05)
    assert lo1 < 0.1 < hi1 and lo2 < 0.1 < hi2
    assert hi2 - lo2 < hi1 - lo1
    assert rate_bounds(0, 500, 0.05)[0] == 0.0 and rate_bounds(0, 0, 0.05) == (0.0, 1.0)


def test_anytime_bounds_are_wider_than_the_fixed_sample_clopper_pearson_interval():
    cp = clopper_pearson(30, 1000, 0.95)
    lo, hi = rate_bounds(30, 1000, 0.05)
    assert lo < cp[0] and hi > cp[1]


def test_the_rate_confidence_sequence_covers_the_true_rate_at_every_look_in_at_least_95_percent_of_runs():
    rng = np.random.default_rng(1)
    p, runs, n = 0.05, 200, 1000
    missed = 0
    for _ in range(runs):
        k = np.cumsum(rng.random(n) < p)
        looks = range(9, n, 10)
        if any(not (rate_bounds(int(k[i]), i + 1, 0.05)[0] <= p <= rate_bounds(int(k[i]), i + 1, 0.05)[1]) for i in looks):
            missed += 1
    assert missed / runs <= 0.05


def test_rank_bounds_bracket_n_times_q_and_the_vectorized_and_scalar_forms_agree():
    from migration_kit.decide.statistics import _ranks

    ns = np.arange(1, 2001)
    for q in (0.5, 0.99):
        lo, hi = rank_bounds(ns, q, 0.005)
        assert np.all(lo <= ns * q) and np.all(hi >= ns * q)
        for n in (1, 50, 400, 2000):
            assert _ranks(n, q, 0.005) == (lo[n - 1], hi[n - 1])


def test_quantile_bounds_cover_the_true_median_of_a_lognormal():
    rng = np.random.default_rng(2)
    s = Sketch()
    for x in rng.lognormal(0, 1, 3000):
        s.add(x)
    lo, hi = quantile_bounds(s, 0.5, 0.01)
    assert lo < 1.0 < hi  # the true median of lognormal(0, 1) is 1


def test_a_contract_is_violated_when_the_candidate_is_30ms_slower_and_met_when_identical():
    rng = np.random.default_rng(3)
    legacy, slower, same = Sketch(), Sketch(), Sketch()
    for _ in range(300):
        legacy.add(rng.lognormal(math.log(0.005), 0.3))
        x = rng.lognormal(math.log(0.005), 0.3)
        same.add(x)
        slower.add(x + 0.030)
    bad = latency_contract(legacy, slower, 0.5, 1.1, 0.010, 0.01)
    good = latency_contract(legacy, same, 0.5, 1.1, 0.010, 0.01)
    assert bad.violated and not bad.met
    assert good.met and not good.violated


def test_the_slack_lets_a_fast_handler_carry_a_fixed_graph_cost_that_a_pure_ratio_would_fail():
    legacy, candidate = Sketch(), Sketch()
    for i in range(500):
        legacy.add(0.0001 + i * 1e-8)  # 0.1 ms handlers
        candidate.add(0.003 + i * 1e-8)  # + 3 ms of graph runtime
    assert latency_contract(legacy, candidate, 0.5, 1.2, 0.0, 0.01).violated
    assert latency_contract(legacy, candidate, 0.5, 1.2, 0.010, 0.01).met
