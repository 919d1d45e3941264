"""Simulation of the default policy under continuous monitoring (issue 5's acceptance figures).

    .venv/bin/python bench/bench_policy_simulation.py [--runs 500] [--events 5000] [--seed 5]

Synthetic counts and latencies (no graphs), the rollback decision evaluated
after EVERY event of every run, in canary (where the policy may roll back):

* A/A at the boundary of every null: divergence and new errors at exactly the
  allowed 0.10%, candidate latency drawn from the legacy's distribution, and
  latency contracts at ratio 1.0, slack 0 (the hardest null: the contract
  holds with equality). A sound method rolls back at most alpha of runs;
  the default's rollback conditions spend 4 x 1% = 4%.
* A/A under the default contracts (ratio 1.1 + 25 ms at p50, 1.25 + 100 ms at p99).
* A true 2% divergence rate: events until rollback.
* A 20% latency shift (candidate = 1.2 x a legacy draw), strict contracts: events until rollback.
* The same A/A with a naive fixed-sample test (Clopper-Pearson and binomial
  order-statistic intervals at the same alpha) repeated after every event:
  what the anytime-valid method protects against.

The monitoring statistic is evaluated for all runs at once with numpy: rates
from ``statistics.log_mixture`` over the whole (runs x events) grid; latency
bounds from running per-run bucket counts in the sketch's own log buckets
(``statistics.bucket_indices``/``bucket_values``), at the ranks of
``statistics.rank_bounds``, exactly as ``Policy.evaluate`` reads a ``Sketch``
(tests/migration_kit/test_policy.py checks that both find the same first
rollback on the same samples).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from migration_kit.decide.statistics import bucket_indices, bucket_values, log_mixture, rank_bounds  # noqa: E402

ACCURACY = 0.01


@dataclass(frozen=True)
class Params:
    """The rollback half of ``default_policy(...)`` with these arguments."""

    divergence_limit: float = 0.001
    error_limit: float = 0.001
    p50: tuple[float, float] = (1.1, 25.0)  # (ratio, slack ms)
    p99: tuple[float, float] = (1.25, 100.0)
    alpha: float = 0.01

    def policy(self):  # noqa: ANN201
        from migration_kit.decide.policy import default_policy

        return default_policy(
            divergence_limit=self.divergence_limit, error_limit=self.error_limit, p50=self.p50, p99=self.p99, alpha=self.alpha
        )


STRICT = Params(p50=(1.0, 0.0), p99=(1.0, 0.0))


@dataclass(frozen=True)
class Scenario:
    name: str
    divergence: float = 0.0
    errors: float = 0.0
    shift: float = 1.0  # candidate latency = shift x a draw from the legacy's distribution
    median_ms: float = 20.0
    sigma: float = 0.5


def samples(s: Scenario, runs: int, events: int, seed: int) -> dict[str, np.ndarray]:
    """Per-run, per-event synthetic evidence: divergent, new error, both paths' latency (seconds)."""
    rng = np.random.default_rng(seed)
    mu = math.log(s.median_ms / 1000)
    return {
        "divergent": rng.random((runs, events)) < s.divergence,
        "errors": rng.random((runs, events)) < s.errors,
        "legacy": rng.lognormal(mu, s.sigma, (runs, events)),
        "candidate": s.shift * rng.lognormal(mu, s.sigma, (runs, events)),
    }


def _rate_alarm(flags: np.ndarray, limit: float, alpha: float, method: str) -> np.ndarray:
    """(runs x events) booleans: the rate's lower bound is above ``limit`` after that event."""
    k = np.cumsum(flags, axis=1)
    n = np.arange(1, flags.shape[1] + 1)[None, :]
    above = k > n * limit
    if method == "anytime":
        # lower bound > limit  <=>  phat > limit and limit is outside the confidence sequence
        return above & (log_mixture(k, n, limit) >= math.log(1 / alpha))
    lower = np.where(k > 0, stats.beta.ppf(alpha / 2, np.maximum(k, 1), n - k + 1), 0.0)
    return lower > limit


def _ranks(events: int, q: float, alpha: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    n = np.arange(1, events + 1)
    if method == "anytime":
        return rank_bounds(n, q, alpha)
    # the fixed-sample binomial interval for the count below the quantile
    return stats.binom.ppf(alpha / 2, n, q).astype(int), stats.binom.ppf(1 - alpha / 2, n, q).astype(int)


def first_rollback(data: dict[str, np.ndarray], p: Params, method: str = "anytime") -> tuple[np.ndarray, np.ndarray]:
    """For each run: the 1-based event after which the policy first rolls back (0: never), and why.

    Causes: 1 new errors, 2 divergence, 3 p50 latency, 4 p99 latency (the policy's rule order).
    """
    runs, events = data["legacy"].shape
    alarms = [
        _rate_alarm(data["errors"], p.error_limit, p.alpha, method),
        _rate_alarm(data["divergent"], p.divergence_limit, p.alpha, method),
    ]
    lat = np.zeros((2, runs, events), dtype=bool)
    bl = bucket_indices(data["legacy"], ACCURACY)
    bc = bucket_indices(data["candidate"], ACCURACY)
    base = min(bl.min(), bc.min())
    width = max(bl.max(), bc.max()) - base + 1
    bl, bc = bl - base, bc - base
    counts_l = np.zeros((runs, width), dtype=np.int32)
    counts_c = np.zeros((runs, width), dtype=np.int32)
    rows = np.arange(runs)
    contracts = []
    for q, (ratio, slack_ms) in ((0.5, p.p50), (0.99, p.p99)):
        lo, hi = _ranks(events, q, p.alpha / 2, method)  # each side of a contract spends alpha / 2
        contracts.append((lo, hi, ratio, slack_ms / 1000))
    widen_lo, widen_hi = 1 / (1 + ACCURACY), 1 / (1 - ACCURACY)
    for j in range(events):
        n = j + 1
        counts_l[rows, bl[:, j]] += 1
        counts_c[rows, bc[:, j]] += 1
        cum_l = cum_c = None
        for c, (lo, hi, ratio, slack) in enumerate(contracts):
            k_c, k_l = lo[j], hi[j] + 1
            if k_c < 1 or k_l > n:
                continue  # one side is unbounded yet: nothing can be proven
            if cum_l is None:
                cum_l, cum_c = np.cumsum(counts_l, axis=1), np.cumsum(counts_c, axis=1)
            cand_lower = bucket_values((cum_c < k_c).sum(axis=1) + base, ACCURACY) * widen_lo
            leg_upper = bucket_values((cum_l < k_l).sum(axis=1) + base, ACCURACY) * widen_hi
            lat[c, :, j] = cand_lower > ratio * leg_upper + slack
    alarms += [lat[0], lat[1]]
    stacked = np.stack(alarms)  # (cause, runs, events)
    anyalarm = stacked.any(axis=0)
    first = np.where(anyalarm.any(axis=1), anyalarm.argmax(axis=1) + 1, 0)
    cause = np.zeros(runs, dtype=int)
    hit = first > 0
    cause[hit] = stacked[:, hit, first[hit] - 1].argmax(axis=0) + 1
    return first, cause


def policy_first_rollback(data: dict[str, np.ndarray], run: int, p: Params) -> int:
    """The same, for one run, through ``Evidence`` and ``Policy.evaluate`` after every event (slow; for checks)."""
    from migration_kit.decide.evidence import Evidence

    policy = p.policy()
    ev = Evidence()
    for j in range(data["legacy"].shape[1]):
        ev.observe(
            divergent=bool(data["divergent"][run, j]),
            errored=bool(data["errors"][run, j]),
            legacy=float(data["legacy"][run, j]),
            candidate=float(data["candidate"][run, j]),
        )
        if policy.evaluate(ev, phase="canary", percent=5).action == "rollback":
            return j + 1
    return 0


def _cp(k: int, n: int) -> str:
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k / n:.2%} (95% CI {ci.low:.2%} to {ci.high:.2%})"


# -- the latency part judged, on a loaded machine (issue 14) --------------------------------
#
# Per event, from the example's measured parts (ms): handler compute 0.17 over ~8 nodes, bus 0.07,
# LangGraph runtime 2.4 ms of CPU, 9 supersteps. A machine with load factor f runs every CPU-bound
# part f times slower on the wall clock (and preempts: a spike with probability 1 - 1/f); the
# runtime's CPU time is not slowed. "total" judges the wall time the replay measured (runtime x f,
# plus a local store's checkpoint writes); "served" judges node compute + min(runtime wall, CPU) +
# the modelled production checkpointer (migration_kit.decide.latency). The candidate is identical, or has
# +30 ms (a sleep: not slowed by load) in one node that runs on 90% of events.


def _load_case(rng: np.random.Generator, events: int, f: float, part: str, extra_ms: float) -> str:
    from migration_kit import Evidence, default_policy
    from migration_kit.decide.policy import Monitor
    from migration_kit.decide.latency import production_checkpoint

    ev = Evidence()
    mon = Monitor(default_policy())
    nodes = [f"n{i}" for i in range(8)]
    for _ in range(events):
        spike = rng.exponential(f) / 1000 if rng.random() > 1 / f else 0.0
        leg = {n: rng.lognormal(math.log(0.17 / 8), 0.4) / 1000 * f for n in nodes}
        cand = {n: rng.lognormal(math.log(0.17 / 8), 0.4) / 1000 * f for n in nodes}
        if extra_ms and rng.random() < 0.9:
            cand["n1"] += extra_ms / 1000
        cpu = rng.lognormal(math.log(2.4), 0.2) / 1000
        runtime_wall = cpu * f + spike
        legacy_total = sum(leg.values()) + 0.07 / 1000 * f + spike * rng.random()
        compute = sum(cand.values())
        total = compute + runtime_wall + 0.4 / 1000  # a local SQLite store's writes
        served = compute + min(runtime_wall, cpu) + production_checkpoint(9)
        ev.observe(
            legacy=legacy_total,
            candidate=total,
            legacy_nodes=leg,
            candidate_nodes=cand,
            candidate_parts={"served": total if part == "total" else served, "compute": compute},
        )
        mon.observe(ev)
    return mon.finish(ev).action


def load_simulation(runs: int, events: int, seed: int) -> None:
    """How often the default policy holds an identical graph, and catches +30 ms in one node, by load."""
    rng = np.random.default_rng(seed)
    print(f"\nlatency part judged, by machine load ({runs} runs x {events:,} events, policy evaluated as a replay does)")
    for f in (1.0, 4.0, 10.0):
        for part in ("total", "served"):
            same = [_load_case(rng, events, f, part, 0.0) for _ in range(runs)]
            slow = [_load_case(rng, events, f, part, 30.0) for _ in range(runs)]
            held = sum(a in ("hold", "rollback") for a in same)
            caught = sum(a in ("hold", "rollback") for a in slow)
            print(f"  load x{f:g}, judging {part:>6}: identical graph held {held}/{runs}; +30 ms in one node caught {caught}/{runs}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--load-runs", type=int, default=10)
    ap.add_argument("--load-events", type=int, default=600)
    ap.add_argument("--load-only", action="store_true", help="only the latency-part-by-load simulation")
    a = ap.parse_args(argv)
    if a.load_only:
        load_simulation(a.load_runs, a.load_events, a.seed)
        return
    R, N = a.runs, a.events
    limit = Params().divergence_limit
    cases = [
        ("A/A at the null boundary, strict contracts (ratio 1, slack 0)", Scenario("aa", limit, limit), STRICT, "anytime"),
        ("A/A at the null boundary, default contracts", Scenario("aa", limit, limit), Params(), "anytime"),
        ("true 2% divergence (limit 0.10%)", Scenario("div", 0.02), Params(), "anytime"),
        ("20% latency shift, strict contracts", Scenario("lat", shift=1.2), STRICT, "anytime"),
        ("A/A at the null boundary, NAIVE fixed-sample tests at every event", Scenario("aa", limit, limit), STRICT, "fixed"),
    ]
    causes = {1: "new errors", 2: "divergence", 3: "p50 latency", 4: "p99 latency"}
    print(f"{R} runs x {N:,} events, the rollback decision evaluated after every event (seed {a.seed})")
    for i, (title, scen, params, method) in enumerate(cases):
        t0 = time.perf_counter()
        first, cause = first_rollback(samples(scen, R, N, a.seed + i), params, method)
        took = time.perf_counter() - t0
        rolled = int((first > 0).sum())
        by = ", ".join(f"{causes[c]} {int((cause == c).sum())}" for c in causes if (cause == c).any()) or "none"
        print(f"\n{title}  [{took:.1f} s]")
        if scen.name == "aa":
            print(f"  false rollback rate: {_cp(rolled, R)}  by cause: {by}")
        else:
            med = float(np.median(np.where(first > 0, first, np.inf)))
            q = np.percentile(first[first > 0], [10, 90]) if rolled else [math.nan, math.nan]
            print(f"  rolled back: {rolled}/{R}; median events to rollback: {med:,.0f} (10th-90th percentile {q[0]:,.0f}-{q[1]:,.0f}); by cause: {by}")
    load_simulation(a.load_runs, a.load_events, a.seed)


if __name__ == "__main__":
    main()
