"""Evidence: what every comparison adds to the case for (or against) the candidate.

An ``Evidence`` accumulates counts (compared, divergent, candidate errors,
errors the legacy path did not have) and latency sketches per path and per
node. It is small (sketches are bounded), JSON-serializable and mergeable, so
replays and shadow workers each keep their own and the store holds the sum.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from migration_kit import keys
from migration_kit.decide.latency import CANDIDATE_PARTS, LEGACY_PARTS, breakdown
from migration_kit.decide.statistics import Sketch, clopper_pearson, rate_bounds

if TYPE_CHECKING:
    from migration_kit.compare.comparator import Comparison

__all__ = ["PATHS", "Evidence", "EvidenceStore"]

PATHS = ("legacy", "candidate")
MAX_NODES = 1000
_COUNTS = ("compared", "divergent", "errors", "legacy_errors", "new_errors")
#: Per-event sketches of each path's parts (``migration_kit.decide.latency``), and of what each
#: contract part judges: ``served`` (after cutover) and ``compute`` (node / handler compute).
PARTS = {"legacy": (*LEGACY_PARTS, "served", "compute"), "candidate": (*CANDIDATE_PARTS, "served", "compute")}


class Evidence:
    """Running evidence over compared events (mutable; ``to_dict`` for a snapshot).

    Counts: ``compared``; ``divergent``; ``errors`` (candidate path ended in an
    error, as in the replay report); ``legacy_errors``; ``new_errors`` (the
    candidate errored where the legacy path did not: a regression).
    Latency: ``latency[path]`` per event and ``nodes[path][node]`` per node, in
    seconds; ``parts[path][part]`` per event for each part of ``PARTS``.
    """

    def __init__(self) -> None:
        self.compared = 0
        self.divergent = 0
        self.errors = 0
        self.legacy_errors = 0
        self.new_errors = 0
        self.by_node: dict[str, int] = {}
        self.latency: dict[str, Sketch] = {p: Sketch() for p in PATHS}
        self.nodes: dict[str, dict[str, Sketch]] = {p: {} for p in PATHS}
        self.parts: dict[str, dict[str, Sketch]] = {p: {k: Sketch() for k in PARTS[p]} for p in PATHS}

    def __repr__(self) -> str:
        return f"<Evidence compared={self.compared} divergent={self.divergent} errors={self.errors}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Evidence) and self.to_dict() == other.to_dict()

    # -- adding ----------------------------------------------------------------------------

    def add(self, comparison: Comparison) -> None:
        """Add one comparison: its verdict, both paths' durations and per-node durations."""
        legacy, candidate = comparison.legacy, comparison.candidate
        lb, cb = breakdown(legacy), breakdown(candidate)
        self.observe(
            divergent=comparison.divergent,
            errored=comparison.errored,
            legacy_error=legacy.crashed or bool(legacy.errors),
            legacy=legacy.duration,
            candidate=candidate.duration,
            legacy_nodes=legacy.node_durations,
            candidate_nodes=candidate.node_durations,
            node=comparison.first_divergent_node,
            legacy_parts={**lb.parts, "served": lb.served, "compute": lb.compute},
            candidate_parts={**cb.parts, "served": cb.served, "compute": cb.compute},
        )

    def observe(
        self,
        *,
        divergent: bool = False,
        errored: bool = False,
        legacy_error: bool = False,
        legacy: float | None = None,
        candidate: float | None = None,
        legacy_nodes: Mapping[str, float] | None = None,
        candidate_nodes: Mapping[str, float] | None = None,
        node: str | None = None,
        legacy_parts: Mapping[str, float] | None = None,
        candidate_parts: Mapping[str, float] | None = None,
    ) -> None:
        """Add one event's evidence from plain values (what ``add`` does for a ``Comparison``).

        Parts not given are derived: ``served`` is the path's total and
        ``compute`` the sum of its node durations.
        """
        self.compared += 1
        if divergent:
            self.divergent += 1
            where = node or "(unlocated)"
            self.by_node[where] = self.by_node.get(where, 0) + 1
        if errored:
            self.errors += 1
            if not legacy_error:
                self.new_errors += 1
        if legacy_error:
            self.legacy_errors += 1
        for path, total, per_node, parts in (
            ("legacy", legacy, legacy_nodes, legacy_parts),
            ("candidate", candidate, candidate_nodes, candidate_parts),
        ):
            if total is not None:
                self.latency[path].add(max(0.0, total))
                given = dict(parts or {})
                given.setdefault("served", total)
                given.setdefault("compute", sum((per_node or {}).values()))
                for name, seconds in given.items():
                    sketch = self.parts[path].get(name)
                    if sketch is not None:
                        sketch.add(max(0.0, seconds))
            for name, seconds in (per_node or {}).items():
                sketches = self.nodes[path]
                sketch = sketches.get(name)
                if sketch is None:
                    if len(sketches) >= MAX_NODES:
                        continue
                    sketch = sketches[name] = Sketch()
                sketch.add(max(0.0, seconds))

    def merge(self, other: Evidence) -> Evidence:
        """Add another accumulator's evidence into this one; returns self."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for node, n in other.by_node.items():
            self.by_node[node] = self.by_node.get(node, 0) + n
        for path in PATHS:
            self.latency[path].merge(other.latency[path])
            for name, sketch in other.parts[path].items():
                self.parts[path].setdefault(name, Sketch()).merge(sketch)
            for node, sketch in other.nodes[path].items():
                mine = self.nodes[path].get(node)
                if mine is None:
                    self.nodes[path][node] = Sketch.from_dict(sketch.to_dict())
                else:
                    mine.merge(sketch)
        return self

    def copy(self) -> Evidence:
        """An independent deep copy of this evidence."""
        return copy.deepcopy(self)

    # -- reading ---------------------------------------------------------------------------

    def count(self, metric: str) -> int:
        """A count by name: compared, divergent, errors, legacy_errors or new_errors."""
        if metric not in _COUNTS:
            raise KeyError(f"unknown count {metric!r}: use one of {', '.join(_COUNTS)}")
        return getattr(self, metric)

    def sketch(self, path: str, node: str | None = None, part: str = "total") -> Sketch:
        """The latency sketch of a path (``legacy`` or ``candidate``), per event or for one node.

        ``part`` picks what is measured per event: ``total`` (wall time), or a
        part of ``PARTS`` such as ``served`` or ``compute`` (a node's own
        sketch is its compute whatever the part).
        """
        if node is not None:
            return self.nodes[path].get(node) or Sketch()
        if part == "total":
            return self.latency[path]
        return self.parts[path].get(part) or Sketch()

    def breakdown(self) -> dict[str, dict[str, float | None]]:
        """Mean ms per event of each path's parts (they add up to the path's mean wall time)."""
        out: dict[str, dict[str, float | None]] = {}
        names = {"legacy": LEGACY_PARTS, "candidate": CANDIDATE_PARTS}
        for path in PATHS:
            out[path] = {name: _ms(self.parts[path][name].mean) for name in names[path]}
            out[path]["total"] = _ms(self.latency[path].mean)
            out[path]["served"] = _ms(self.parts[path]["served"].mean)
        return out

    def summary(self, alpha: float = 0.05) -> dict[str, Any]:
        """A compact, JSON-ready view: counts, rates with bounds, latency quantiles (ms)."""
        n = self.compared

        def rate(k: int) -> dict[str, Any]:
            lo, hi = rate_bounds(k, n, alpha)
            cp = clopper_pearson(k, n, 1 - alpha)
            return {"count": k, "rate": k / n if n else None, "anytime_bounds": [lo, hi], "clopper_pearson": list(cp)}

        def quantiles(s: Sketch) -> dict[str, Any]:
            return {f"p{int(q * 100)}_ms": _ms(s.quantile(q)) for q in (0.5, 0.95, 0.99)} | {"n": s.count}

        return {
            "compared": n,
            "divergent": self.divergent,
            "errors": self.errors,
            "new_errors": self.new_errors,
            "confidence": 1 - alpha,
            "divergence": rate(self.divergent),
            "new_error_rate": rate(self.new_errors),
            "latency": {p: quantiles(self.latency[p]) for p in PATHS},
            "served": {p: quantiles(self.parts[p]["served"]) for p in PATHS},
            "breakdown_ms": self.breakdown(),
        }

    # -- JSON --------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The evidence as JSON-ready data (``from_dict`` reads it back)."""
        return {
            **{name: getattr(self, name) for name in _COUNTS},
            "by_node": dict(sorted(self.by_node.items())),
            "latency": {p: self.latency[p].to_dict() for p in PATHS},
            "nodes": {p: {k: s.to_dict() for k, s in sorted(self.nodes[p].items())} for p in PATHS},
            "parts": {p: {k: s.to_dict() for k, s in self.parts[p].items()} for p in PATHS},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Evidence:
        """Evidence from ``to_dict()`` data (empty evidence for None)."""
        ev = cls()
        if not data:
            return ev
        for name in _COUNTS:
            setattr(ev, name, int(data.get(name, 0)))
        ev.by_node = dict(data.get("by_node", {}))
        for p in PATHS:
            if p in data.get("latency", {}):
                ev.latency[p] = Sketch.from_dict(data["latency"][p])
            ev.nodes[p] = {k: Sketch.from_dict(v) for k, v in data.get("nodes", {}).get(p, {}).items()}
            for k, v in (data.get("parts") or {}).get(p, {}).items():
                ev.parts[p][k] = Sketch.from_dict(v)
        return ev


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


class EvidenceStore:
    """The evidence a migration keeps: one entry per source (a replayed log, a worker) for the current attempt.

    Replaying a log again replaces its entry instead of counting its events twice; a new
    attempt (after a rollback) starts afresh. Shadow workers on the store's Redis record
    theirs with their results (``workers(attempt)`` reads them), and those win over any
    older entry of the same source here.

    Args:
        store: the migration's ``Store``.
        workers: reads the workers' evidence of an attempt, ``{source: evidence dict}`` (default: none).
    """

    def __init__(self, store: Any, workers: Any = None) -> None:
        self.store = store
        self.workers = workers

    def stored(self, attempt: int) -> Evidence:
        """Every source's evidence of ``attempt``, merged."""
        doc, _ = self.store.records.get(keys.EVIDENCE)
        total = Evidence()
        workers: dict[str, Any] = self.workers(attempt) if self.workers is not None else {}
        for part in workers.values():
            total.merge(Evidence.from_dict(part))
        if doc and doc.get("attempt") == attempt:
            for source, part in doc.get("sources", {}).items():
                if source not in workers:
                    total.merge(Evidence.from_dict(part))
        return total

    def of(self, source: str, attempt: int) -> Evidence | None:
        """What ``source`` saved for ``attempt`` (a restarted worker continues its own), if anything."""
        doc, _ = self.store.records.get(keys.EVIDENCE)
        if doc and doc.get("attempt") == attempt and source in doc.get("sources", {}):
            return Evidence.from_dict(doc["sources"][source])
        return None

    def save(self, source: str, evidence: Evidence, attempt: int) -> None:
        """Replace ``source``'s entry for ``attempt`` (another attempt's entries are dropped)."""

        def with_source(doc: Any) -> dict[str, Any]:
            if not doc or doc.get("attempt") != attempt:
                doc = {"attempt": attempt, "sources": {}}
            doc["sources"][source] = evidence.to_dict()
            return doc

        self.store.update(keys.EVIDENCE, with_source, what=f"the evidence of {source}")
