"""Statistics for decisions that stay sound while they are watched continuously.

A migration's policy is evaluated after every event (or batch), so a
fixed-sample test repeated at each look would raise false alarms almost surely
over a long enough run (Kayenta's re-judged windows have exactly this
problem). Every bound the policy acts on here is therefore a *confidence
sequence*: it covers the true value at all sample sizes at once, with
probability at least ``1 - alpha``, so it may be looked at after every event
and acted on the first time it crosses a limit.

The construction is the conjugate-mixture (Robbins) martingale for Bernoulli
observations:

    M_n(p) = ∫ θ^S (1-θ)^(n-S) dπ(θ) / (p^S (1-p)^(n-S)),

a nonnegative martingale under ``p`` for any prior ``π``, so by Ville's
inequality ``{p : M_n(p) < 1/alpha}`` is a (1 - alpha) confidence sequence.
With ``π`` a finite mixture of beta distributions the integral is a sum of
beta functions (``scipy.special.betaln``); roots come from
``scipy.optimize.brentq``.

- Rates (divergence, errors): Howard, Ramdas, McAuliffe & Sekhon (2021),
  "Time-uniform, nonparametric, nonasymptotic confidence sequences",
  Annals of Statistics 49(2), §3 (conjugate mixtures), after Robbins (1970),
  "Statistical methods related to the law of the iterated logarithm".
  The same mixture-likelihood-ratio idea is the mSPRT of Johari, Koomen,
  Pekelis & Walsh (2017/2022), "Always valid inference", and the
  anytime-valid count tests of Lindon & Malek (2022), "Anytime-valid
  inference for multinomial count data" (Netflix's sequential canary testing).
- Quantiles (latency): Howard & Ramdas (2022), "Sequential estimation of
  quantiles with applications to A/B-testing and best-arm identification",
  Bernoulli 28(3): the count of observations at or below the true q-quantile
  is a Binomial(n, q) process, so a confidence sequence for that count turns
  order statistics into a confidence sequence for the quantile.

Latencies are kept in a ``Sketch`` (DDSketch-style log buckets, Masson, Rim
& Lee 2019, "DDSketch: a fast and fully-mergeable quantile sketch with
relative-error guarantees", VLDB): bounded memory, mergeable, JSON, every
order statistic within ``relative_accuracy`` (1%) of the true one; bounds
taken from it are widened by that accuracy so they stay valid.

Fixed-sample intervals (``clopper_pearson``) are offered for reports, which
are read once; decisions use the sequential ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import optimize, special, stats

__all__ = [
    "RATE_PRIOR",
    "ContractTest",
    "Sketch",
    "clopper_pearson",
    "latency_contract",
    "log_mixture",
    "quantile_bounds",
    "quantile_prior",
    "rank_bounds",
    "rate_bounds",
]

Prior = tuple[tuple[float, float, float], ...]  # (weight, a, b) beta components

# Rates: a mixture of Beta(1, b) priors with means 50%, 10%, 1% and 0.1%, so
# the sequence is tight whether a regression is large or tiny (tuning a single
# prior trades one for the other; the mixture costs only log(4) in the bound).
RATE_PRIOR: Prior = tuple((0.25, 1.0, b) for b in (1.0, 9.0, 99.0, 999.0))


def quantile_prior(q: float) -> Prior:
    """Beta mixture centred on ``q`` for the count below the q-quantile, at four scales of deviation."""
    scale = min(q, 1.0 - q)
    out = []
    for k in range(4):
        w = scale / 3.0**k
        c = q * (1.0 - q) / (w * w)
        out.append((0.25, q * c, (1.0 - q) * c))
    return tuple(out)


def log_mixture(k: Any, n: Any, p: Any, prior: Prior = RATE_PRIOR) -> Any:
    """log M_n(p): the log of the beta-mixture martingale for ``k`` successes in ``n`` (numpy-vectorized).

    ``k`` may be fractional (the functions below solve for it).
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    terms = [math.log(w) + special.betaln(a + k, b + n - k) - special.betaln(a, b) for w, a, b in prior]
    num = special.logsumexp(np.stack(terms), axis=0)
    return num - special.xlogy(k, p) - special.xlog1py(n - k, -p)


def rate_bounds(k: int, n: int, alpha: float, prior: Prior = RATE_PRIOR) -> tuple[float, float]:
    """Anytime-valid (1 - alpha) bounds on a rate after ``k`` of ``n``: valid at every n at once."""
    if n <= 0:
        return 0.0, 1.0
    return _rate_bounds(int(k), int(n), float(alpha), prior)


@lru_cache(maxsize=4096)
def _rate_bounds(k: int, n: int, alpha: float, prior: Prior) -> tuple[float, float]:
    c = math.log(1.0 / alpha)
    phat = k / n

    logs = [math.log(w) + special.betaln(a + k, b + n - k) - special.betaln(a, b) for w, a, b in prior]
    top = max(logs)
    num = top + math.log(sum(math.exp(x - top) for x in logs))

    def f(p: float) -> float:  # log_mixture(k, n, p) - c, in scalar arithmetic (called ~40 times)
        return num - (k * math.log(p) if k else 0.0) - ((n - k) * math.log1p(-p) if n - k else 0.0) - c

    # log M is convex in p with its minimum (<= 0) at phat: one root each side.
    lo = 0.0 if k == 0 else optimize.brentq(f, 1e-15, phat, xtol=1e-12)
    hi = 1.0 if k == n else optimize.brentq(f, max(phat, 1e-15), 1.0 - 1e-15, xtol=1e-12)
    return lo, hi


def rank_bounds(n: Any, q: float, alpha: float, prior: Prior | None = None) -> tuple[Any, Any]:
    """The counts ``(lo, hi)`` between which #{X_i <= Q(q)} stays at every n, with probability 1 - alpha.

    Vectorized over ``n``: the whole boundary for a simulation in one call.
    ``lo`` and ``hi`` are integers (``lo`` may be 0, ``hi`` may be ``n``).
    """
    prior = prior or quantile_prior(q)
    n = np.atleast_1d(np.asarray(n, dtype=float))
    c = math.log(1.0 / alpha)
    centre = n * q

    def g(s: Any) -> Any:
        return log_mixture(s, n, q, prior) - c

    # g is convex in s with g(n q) <= 0; bisect each side on the real line.
    lo = _bisect(g, np.zeros_like(n), centre, rising=False)
    hi = _bisect(g, centre, n.copy(), rising=True)
    return np.ceil(lo - 1e-9).astype(int), np.floor(hi + 1e-9).astype(int)


def _bisect(g: Any, a: Any, b: Any, *, rising: bool, steps: int = 60) -> Any:
    """Where g crosses 0 inside [a, b], elementwise; the end of the interval when it does not."""
    a, b = a.copy(), b.copy()
    end = b if rising else a
    inside = g(end) > 0
    for _ in range(steps):
        m = (a + b) / 2
        positive = g(m) > 0
        if rising:
            b = np.where(positive, m, b)
            a = np.where(positive, a, m)
        else:
            a = np.where(positive, m, a)
            b = np.where(positive, b, m)
    root = b if rising else a
    return np.where(inside, root, end)


@lru_cache(maxsize=8192)
def _ranks(n: int, q: float, alpha: float) -> tuple[int, int]:
    prior = quantile_prior(q)
    c = math.log(1.0 / alpha)
    consts = [(math.log(w) - special.betaln(a, b), a, b) for w, a, b in prior]
    lq, l1q = math.log(q), math.log1p(-q)

    def g(s: float) -> float:  # log_mixture(s, n, q) - c in scalar arithmetic
        logs = [k0 + special.betaln(a + s, b + n - s) for k0, a, b in consts]
        top = max(logs)
        return top + math.log(sum(math.exp(x - top) for x in logs)) - s * lq - (n - s) * l1q - c

    centre = n * q
    lo = 0.0 if g(0.0) <= 0 else optimize.brentq(g, 0.0, centre, xtol=1e-9)
    hi = float(n) if g(float(n)) <= 0 else optimize.brentq(g, centre, float(n), xtol=1e-9)
    return math.ceil(lo - 1e-9), math.floor(hi + 1e-9)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact fixed-sample interval for a rate (for reports read once, not for continuous monitoring)."""
    if n <= 0:
        return 0.0, 1.0
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


# -- latency sketch -------------------------------------------------------------------


class Sketch:
    """A bounded-memory, mergeable quantile sketch with relative accuracy (DDSketch-style).

    Values (seconds) fall in log-spaced buckets ``ceil(log_gamma(x))`` with
    ``gamma = (1 + a) / (1 - a)``; a bucket's representative value is within
    ``a`` (relative) of anything in it, so every order statistic is too.
    Values at or below ``min_value`` share a zero bucket. When more than
    ``max_buckets`` exist the lowest ones are collapsed (tail quantiles, the
    ones contracts are about, stay exact to ``a``).
    """

    __slots__ = ("accuracy", "bins", "count", "max", "max_buckets", "min", "min_value", "sum", "zero", "_keys", "_lg")

    def __init__(self, accuracy: float = 0.01, *, min_value: float = 1e-9, max_buckets: int = 2048) -> None:
        if not 0 < accuracy < 1:
            raise ValueError("Sketch accuracy must be in (0, 1)")
        self.accuracy = accuracy
        self.min_value = min_value
        self.max_buckets = max_buckets
        self._lg = math.log((1 + accuracy) / (1 - accuracy))
        self.bins: dict[int, int] = {}
        self._keys: list[int] | None = None  # sorted(bins), kept until a bucket is added or dropped
        self.zero = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def __repr__(self) -> str:
        return f"<Sketch n={self.count} p50={self.quantile(0.5)} p99={self.quantile(0.99)}>"

    def index(self, x: float) -> int:
        """The bucket a positive value falls in."""
        return math.ceil(math.log(x) / self._lg)

    def value(self, i: int) -> float:
        """The representative value of bucket ``i`` (relative error at most ``accuracy``)."""
        gamma = math.exp(self._lg)
        return 2.0 * math.exp(i * self._lg) / (gamma + 1.0)

    def add(self, x: float, count: int = 1) -> None:
        """Count ``count`` observations of the non-negative value ``x`` (``ValueError`` otherwise)."""
        x = float(x)
        if x != x or x < 0:
            raise ValueError(f"a latency must be a non-negative number, not {x!r}")
        self.count += count
        self.sum += x * count
        # min()/max() and index() spelled out: a replay adds ~25 values per event.
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x
        if x <= self.min_value:
            self.zero += count
            return
        i = math.ceil(math.log(x) / self._lg)
        bins = self.bins
        had = bins.get(i)
        if had is not None:
            bins[i] = had + count
            return
        bins[i] = count
        self._keys = None
        if len(bins) > self.max_buckets:  # only a new bucket can pass the bound
            self._collapse()

    def _collapse(self) -> None:
        self._keys = None
        keys = sorted(self.bins)
        extra = len(keys) - self.max_buckets
        into = keys[extra]
        for k in keys[:extra]:
            self.bins[into] += self.bins.pop(k)

    def merge(self, other: Sketch) -> Sketch:
        """Add another sketch's values into this one (same accuracy); returns self."""
        if abs(other.accuracy - self.accuracy) > 1e-12:
            raise ValueError("cannot merge sketches of different accuracy")
        for i, c in other.bins.items():
            self.bins[i] = self.bins.get(i, 0) + c
        self._keys = None
        self.zero += other.zero
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if len(self.bins) > self.max_buckets:
            self._collapse()
        return self

    def value_at_rank(self, k: int) -> float:
        """The k-th smallest value (1-based), to within the sketch's accuracy."""
        if not 1 <= k <= self.count:
            raise IndexError(f"rank {k} outside 1..{self.count}")
        if k <= self.zero:
            return 0.0
        seen = self.zero
        for i in self.sorted_keys():
            seen += self.bins[i]
            if seen >= k:
                return self.value(i)
        return self.max  # pragma: no cover - counts always add up

    def sorted_keys(self) -> list[int]:
        """The bucket indices in order (sorted once per change of buckets: a policy look reads ~40 ranks)."""
        keys = self._keys
        if keys is None or len(keys) != len(self.bins):  # the length guards a dict changed from outside
            keys = self._keys = sorted(self.bins)
        return keys

    def quantile(self, q: float) -> float | None:
        """The q-quantile (the value at rank ``floor(q (n - 1)) + 1``), or None when empty."""
        if self.count == 0:
            return None
        return self.value_at_rank(math.floor(q * (self.count - 1)) + 1)

    @property
    def mean(self) -> float | None:
        """The exact mean of what was added, or None when empty."""
        return self.sum / self.count if self.count else None

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON: bucket indices as a sorted list and their counts."""
        keys = list(self.sorted_keys())
        return {
            "accuracy": self.accuracy,
            "max_buckets": self.max_buckets,
            "n": self.count,
            "sum": self.sum,
            "min": self.min if self.count else None,
            "max": self.max if self.count else None,
            "zero": self.zero,
            "index": keys,
            "counts": [self.bins[k] for k in keys],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sketch:
        """A sketch from ``to_dict()`` data."""
        s = cls(data.get("accuracy", 0.01), max_buckets=data.get("max_buckets", 2048))
        s.bins = dict(zip(data.get("index", []), data.get("counts", []), strict=True))
        s.zero = data.get("zero", 0)
        s.count = data.get("n", 0)
        s.sum = data.get("sum", 0.0)
        s.min = data["min"] if data.get("min") is not None else math.inf
        s.max = data["max"] if data.get("max") is not None else -math.inf
        return s


def quantile_bounds(sketch: Sketch, q: float, alpha: float) -> tuple[float, float]:
    """Anytime-valid (1 - alpha) bounds on the q-quantile of what ``sketch`` samples (seconds).

    ``(0, inf)`` sides mean there is not enough data to bound that side yet.
    Widened by the sketch's accuracy, so they hold for the true order statistics.
    """
    n = sketch.count
    if n == 0:
        return 0.0, math.inf
    lo_rank, hi_rank = _ranks(n, q, alpha)
    a = sketch.accuracy
    lower = sketch.value_at_rank(lo_rank) / (1 + a) if lo_rank >= 1 else 0.0
    upper = sketch.value_at_rank(hi_rank + 1) / (1 - a) if hi_rank + 1 <= n else math.inf
    return lower, upper


@dataclass(frozen=True, slots=True)
class ContractTest:
    """A latency contract ``candidate pXX <= ratio * legacy pXX + slack``, tested sequentially.

    ``violated``: the candidate's lower bound exceeds the contract's limit on
    the legacy's upper bound (proof the contract is broken). ``met``: the
    candidate's upper bound is within the limit on the legacy's lower bound
    (proof it holds). Neither: not enough evidence yet. Each side's bounds
    use ``alpha / 2``, so a contract that holds is declared violated with
    probability at most ``alpha`` over the whole, continuously watched run.
    """

    q: float
    ratio: float
    slack: float
    legacy_n: int
    candidate_n: int
    legacy: float | None
    candidate: float | None
    legacy_bounds: tuple[float, float]
    candidate_bounds: tuple[float, float]

    @property
    def violated(self) -> bool:
        """Whether the candidate's quantile is proven over the contract (its lower bound above the legacy's allowance)."""
        return self.candidate_bounds[0] > self.ratio * self.legacy_bounds[1] + self.slack

    @property
    def met(self) -> bool:
        """Whether the candidate's quantile is proven within the contract (its upper bound under the legacy's allowance)."""
        return self.candidate_bounds[1] <= self.ratio * self.legacy_bounds[0] + self.slack

    @property
    def label(self) -> str:
        """The quantile tested, as people write it (``p99``)."""
        return _qlabel(self.q)

    def to_dict(self) -> dict[str, Any]:
        """The test as JSON-ready data (times in seconds)."""
        return {
            "quantile": self.q,
            "ratio": self.ratio,
            "slack_s": self.slack,
            "legacy_s": self.legacy,
            "candidate_s": self.candidate,
            "legacy_bounds_s": list(self.legacy_bounds),
            "candidate_bounds_s": list(self.candidate_bounds),
            "violated": self.violated,
            "met": self.met,
        }


def _qlabel(q: float) -> str:
    pct = q * 100
    return f"p{pct:g}"


def latency_contract(legacy: Sketch, candidate: Sketch, q: float, ratio: float, slack: float, alpha: float) -> ContractTest:
    """Test ``candidate q-quantile <= ratio * legacy q-quantile + slack`` (seconds) at level ``alpha``."""
    return ContractTest(
        q,
        ratio,
        slack,
        legacy.count,
        candidate.count,
        legacy.quantile(q),
        candidate.quantile(q),
        quantile_bounds(legacy, q, alpha / 2),
        quantile_bounds(candidate, q, alpha / 2),
    )


def bucket_indices(values: Sequence[float] | Any, accuracy: float = 0.01) -> Any:
    """Sketch bucket indices of many values at once (what ``Sketch.add`` computes one at a time)."""
    lg = math.log((1 + accuracy) / (1 - accuracy))
    return np.ceil(np.log(np.asarray(values, dtype=float)) / lg).astype(int)


def bucket_values(indices: Any, accuracy: float = 0.01) -> Any:
    """Representative values of sketch buckets (vectorized ``Sketch.value``)."""
    lg = math.log((1 + accuracy) / (1 - accuracy))
    gamma = math.exp(lg)
    return 2.0 * np.exp(np.asarray(indices, dtype=float) * lg) / (gamma + 1.0)
