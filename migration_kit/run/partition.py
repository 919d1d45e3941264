"""Partitions of a replayed log: which saga goes where, what one partition keeps, and the merge.

A distributed replay (``migration_kit.run.distributed``) cuts one log into a fixed
number of partitions by saga: a stable hash of ``Event.saga_key`` (the
correlation id, or a root's own id) modulo the partition count, so one saga's
events stay in log order on one worker, with its saga state.

A partition keeps a ``ReplayTally`` of its own events and, for each event that
was divergent or errored on either path, one *flag* ``[ordinal, bits, node]``:
its place among the compared events of the whole log. Every worker reads the
whole log (skipping other partitions' events without running them), so it
knows each event's ordinal and how many events of its type came before it.

The merge adds the tallies in partition order (counts, by-node counts,
evidence and latency sketches add exactly) and rebuilds from lines and
ordinals what depends on the whole log's order: the first examples, each
group's first and last event, the divergence timeline and the policy
monitor's looks. Noise sampling is decided by the event's place among the
events of its type in the whole log, exactly as one process decides it, so the
same events are sampled however the log is cut; the first samples of each type
are learned up front and shared (``distributed``), so every partition knows at
each event the noise one process would know from them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from migration_kit.decide.evidence import Evidence
from migration_kit.compare.noise import NoiseLearning, NoiseModel, NoiseObservation
from migration_kit.report.report import MAX_EXAMPLES, MAX_GROUPS, MAX_TIMELINE, ReplayTally

if TYPE_CHECKING:
    from migration_kit.compare.comparator import Comparison
    from migration_kit.decide.policy import Monitor
    from migration_kit.observe.redaction import Redactor

__all__ = [
    "FLAG_DIVERGENT",
    "FLAG_ERRORED",
    "FLAG_LEGACY_ERROR",
    "TrackedNoise",
    "flag_of",
    "merge_tallies",
    "observation_of",
    "partition_of",
    "sampled",
]

FLAG_DIVERGENT, FLAG_ERRORED, FLAG_LEGACY_ERROR = 1, 2, 4


def partition_of(saga_key: str, partitions: int) -> int:
    """The partition of a saga: a stable hash (the same on every machine and Python), modulo ``partitions``."""
    digest = hashlib.blake2b(saga_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def flag_of(comparison: Comparison) -> int:
    """The bits the merge needs of one comparison (0 for a quiet one: nothing is kept)."""
    legacy = comparison.legacy
    bits = FLAG_DIVERGENT if comparison.divergent else 0
    if comparison.errored:
        bits |= FLAG_ERRORED
    if legacy.crashed or legacy.errors:  # as Evidence.add counts a legacy error
        bits |= FLAG_LEGACY_ERROR
    return bits


class _Seen:
    __slots__ = ("samples",)

    def __init__(self, samples: dict[str, int]) -> None:
        self.samples = samples


def sampled(learning: NoiseLearning, event_type: str, event_id: str, seen: int) -> bool:
    """Whether one process would sample this event: ``seen`` events of its type were compared before it
    (plus the samples the stored model already had). One process samples the first ``first`` of a type,
    each of them counted, so its sample count there is exactly that place."""
    return learning.samples(event_type, event_id, _Seen({event_type: seen}))  # type: ignore[arg-type]


class TrackedNoise(NoiseModel):
    """A noise model that also keeps, in ``learned``, only what was observed since it was made."""

    def __init__(self, base: dict[str, Any] | None = None, learned: dict[str, Any] | None = None) -> None:
        super().__init__()
        if base:
            self.merge(base)
        self.learned = NoiseModel.from_dict(learned)
        if learned:
            self.merge(learned)

    def observe(self, event_type: str, obs: NoiseObservation, *, sampled: bool = True) -> bool:
        """Record an observation here and in ``learned``."""
        self.learned.observe(event_type, obs, sampled=sampled)
        return super().observe(event_type, obs, sampled=sampled)

    def observe_shared(self, event_type: str, obs: NoiseObservation) -> None:
        """Take in a sample learned elsewhere (counted there, not in ``learned``)."""
        super().observe(event_type, obs, sampled=True)


def observation_of(row: Sequence[Any]) -> tuple[int, str, NoiseObservation]:
    """``[ordinal, event type, keys, unordered groups]`` (a shared sample, as the job keeps it) back."""
    return int(row[0]), str(row[1]), NoiseObservation(dict(row[2]), frozenset(row[3]))


def merge_tallies(
    tallies: Sequence[ReplayTally], flags: Iterable[Sequence[Any]], *, monitor: Monitor | None = None, redactor: Redactor | None = None
) -> ReplayTally:
    """One tally from the partitions' (given in partition order): the one a single process keeps.

    ``flags`` are every partition's ``[ordinal, bits, node]``; ``monitor`` (if
    given) is shown the evidence counts at the looks a single process makes
    (latency is measured, not replayed: the monitor sees it at the end).
    """
    out = ReplayTally(redactor=redactor)
    for t in tallies:
        out.total += t.total
        out.divergent += t.divergent
        out.errors += t.errors
        out.last_line = max(out.last_line, t.last_line)
        for node, n in t.by_node.items():
            out.by_node[node] = out.by_node.get(node, 0) + n
        out.evidence.merge(t.evidence)
        for node, types in t.observed.items():
            out.observed.setdefault(node, set()).update(types)
    out.examples = sorted((x for t in tallies for x in t.examples), key=lambda x: int(x.get("line", 0)))[:MAX_EXAMPLES]
    out.examples_dropped = out.divergent - len(out.examples)  # as one process counts: every divergent event past the cap
    out.groups, cut = _merge_groups(tallies)
    # the other rollup: what partitions could not group, and the groups the merge's cap let go
    out.other = {
        "count": sum(t.other.get("count", 0) for t in tallies) + sum(g["count"] for g in cut),
        "events": sum(t.other.get("events", 0) for t in tallies),
    }
    ordered = sorted((int(o), int(b), n) for o, b, n in flags)
    out.timeline, out.timeline_stride = _timeline(ordered, out.total)
    if monitor is not None:
        _replay_looks(monitor, ordered, out.total)
    return out


def _merge_groups(tallies: Sequence[ReplayTally]) -> tuple[dict[tuple[str, str, str], dict[str, Any]], list[dict[str, Any]]]:
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for t in tallies:
        for sig, g in t.groups.items():
            first, last = int(g.get("first_line", 0)), int(g.get("last_line", 0))
            m = merged.get(sig)
            if m is None:
                merged[sig] = dict(g)
                continue
            m["count"] += g["count"]
            if first < int(m.get("first_line", 0)):
                m.update(first_line=first, first_event=g["first_event"], example=g["example"])
            if last > int(m.get("last_line", 0)):
                m.update(last_line=last, last_event=g["last_event"])
    # One process opens groups in log order and stops at MAX_GROUPS; each partition kept its first ones.
    order = sorted(merged.items(), key=lambda kv: int(kv[1].get("first_line", 0)))
    return dict(order[:MAX_GROUPS]), [g for _, g in order[MAX_GROUPS:]]


def _timeline(flags: list[tuple[int, int, Any]], total: int) -> tuple[list[tuple[int, int]], int]:
    """The (events, divergent) points ``ReplayTally.add`` keeps, from the divergent events' ordinals."""
    divergent_at = [o for o, bits, _ in flags if bits & FLAG_DIVERGENT]
    points: list[tuple[int, int]] = []
    stride, seen, i = 1, 0, 0
    for n in range(1, total + 1):
        while i < len(divergent_at) and divergent_at[i] < n:
            seen += 1
            i += 1
        if n % stride == 0:
            points.append((n, seen))
            if len(points) > MAX_TIMELINE:
                points = points[1::2]
                stride *= 2
    return points, stride


def _replay_looks(monitor: Monitor, flags: list[tuple[int, int, Any]], total: int) -> None:
    evidence = Evidence()
    i = 0
    for n in range(total):
        if i < len(flags) and flags[i][0] == n:
            _, bits, node = flags[i]
            i += 1
            evidence.observe(
                divergent=bool(bits & FLAG_DIVERGENT), errored=bool(bits & FLAG_ERRORED), legacy_error=bool(bits & FLAG_LEGACY_ERROR), node=node
            )
        else:
            evidence.compared += 1  # a quiet event: what observe() would add, without its bookkeeping
        monitor.observe(evidence)
