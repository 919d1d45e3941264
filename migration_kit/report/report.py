"""Replay reports: counts, where divergence starts, grouped findings, the decision.

Comparisons hold real values in memory; what a report keeps of them (group
and event examples) is masked as it is taken, and again on the way out
(``to_dict``, ``to_json``, HTML), by the migration's redactor
(``migration_kit.observe.redaction``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from legacy_bus import SkippedLine

from migration_kit.compare.comparator import Comparison, Difference
from migration_kit.decide.decision import Decision
from migration_kit.decide.evidence import Evidence
from migration_kit.observe.redaction import Redactor, default_redactor
from migration_kit.decide.statistics import rate_bounds

__all__ = ["DivergenceGroup", "ReplayReport", "ReplayTally"]

_INDEX = re.compile(r"\[(?:\d+|[^\]\[]*=[^\]\[]*)\]")  # list indices, and row keys of writes ([reference=b1])
# The tally's bounds (README "Bounds"): past MAX_GROUPS signatures a new finding is counted in
# ``other`` (occurrences and events) instead of getting a group; past MAX_EXAMPLES divergent events
# no example is taken (``examples_dropped`` counts them); a group example's value longer than
# MAX_EXAMPLE_CHARS of JSON is kept as a preview string naming its size.
MAX_EXAMPLES = 20
MAX_GROUPS = 1000
MAX_TIMELINE = 400
MAX_EXAMPLE_CHARS = 2000


def signature(node: str | None, diff: Difference, redactor: Redactor | None = None) -> tuple[str, str, str]:
    """How findings are grouped: the node, the kind, and the path with indices and row keys collapsed (masked by ``redactor``)."""
    path = diff.path if redactor is None else redactor.text(diff.path)
    return (node or diff.node or "?", diff.kind, _INDEX.sub("[*]", path))


@dataclass(frozen=True, slots=True)
class DivergenceGroup:
    """Every divergent event sharing one signature: how many, first and last, one example."""

    node: str
    kind: str
    path: str
    count: int
    first_event: str
    last_event: str
    example: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The group as JSON-ready data (unmasked: the report masks it)."""
        return {
            "node": self.node,
            "kind": self.kind,
            "path": self.path,
            "count": self.count,
            "first_event": self.first_event,
            "last_event": self.last_event,
            "example": self.example,
        }


@dataclass
class ReplayTally:
    """The running totals of a replay (mutable while it runs; frozen into a ``ReplayReport``)."""

    total: int = 0
    divergent: int = 0
    errors: int = 0
    by_node: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    last_line: int = 0
    evidence: Evidence = field(default_factory=Evidence)
    # (events, divergent) at a stride that doubles to keep at most MAX_TIMELINE points
    timeline: list[tuple[int, int]] = field(default_factory=list)
    timeline_stride: int = 1
    # node -> event types it was seen publishing (to draw the graph)
    observed: dict[str, set[str]] = field(default_factory=dict)
    # findings past MAX_GROUPS: {"count": differences, "events": divergent events with one}
    other: dict[str, int] = field(default_factory=lambda: {"count": 0, "events": 0})
    examples_dropped: int = 0  # divergent events past MAX_EXAMPLES
    # masks the examples as they are taken (default: card numbers only; the report applies the rules again)
    redactor: Redactor | None = field(default=None, compare=False, repr=False)
    # Without a redactor the rules are not known yet: the root events of the examples are kept
    # (in memory only, at most MAX_EXAMPLES + MAX_GROUPS) so freeze() can scrub the values its
    # rules mask wherever an example quotes them (an e-mail address in an effect's arguments).
    _sources: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def add(self, comparison: Comparison, line: int = 0) -> None:
        """Count one comparison from line ``line`` of the log."""
        self.total += 1
        self.last_line = line
        self.evidence.add(comparison)
        for e in comparison.legacy.emitted:
            seen_types = self.observed.get(e.node)
            if seen_types is None:
                self.observed[e.node] = {e.type}
            else:
                seen_types.add(e.type)
        if comparison.errored:
            self.errors += 1
        if comparison.divergent:
            self.divergent += 1
        if self.total % self.timeline_stride == 0:
            self.timeline.append((self.total, self.divergent))
            if len(self.timeline) > MAX_TIMELINE:
                self.timeline = self.timeline[1::2]
                self.timeline_stride *= 2
        if not comparison.divergent:
            return
        node = comparison.first_divergent_node or "(unlocated)"
        self.by_node[node] = self.by_node.get(node, 0) + 1
        eid = comparison.event.id
        red = self.redactor or default_redactor()
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({**red.comparison(comparison), "line": line})
            if self.redactor is None:
                self._sources[eid] = comparison.event
        else:
            self.examples_dropped += 1
        seen: set[tuple[str, str, str]] = set()
        rolled_up = False
        secrets: tuple[str, ...] | None = None
        for diff in comparison.differences:
            sig = signature(comparison.first_divergent_node, diff, red)
            if sig in seen:
                continue
            seen.add(sig)
            group = self.groups.get(sig)
            if group is None:
                if len(self.groups) >= MAX_GROUPS:
                    self.other["count"] += 1
                    if not rolled_up:
                        self.other["events"] += 1
                        rolled_up = True
                    continue
                if secrets is None:
                    secrets = tuple(red.comparison_secrets(comparison))
                example = _trimmed({"event": eid, **red.difference(diff, secrets).to_dict()})
                # the lines let partitions of a distributed replay be merged in log order
                self.groups[sig] = {"count": 1, "first_event": eid, "last_event": eid, "example": example, "first_line": line, "last_line": line}
                if self.redactor is None:
                    self._sources[eid] = comparison.event
            else:
                group["count"] += 1
                group["last_event"] = eid
                group["last_line"] = line

    def to_dict(self) -> dict[str, Any]:
        """Everything a resumed replay needs to go on counting exactly (JSON)."""
        return {
            "total": self.total,
            "divergent": self.divergent,
            "errors": self.errors,
            "by_node": self.by_node,
            "examples": self.examples,
            "groups": [[list(sig), g] for sig, g in self.groups.items()],
            "last_line": self.last_line,
            "evidence": self.evidence.to_dict(),
            "timeline": [list(p) for p in self.timeline],
            "timeline_stride": self.timeline_stride,
            "observed": {n: sorted(t) for n, t in self.observed.items()},
            "other": dict(self.other),
            "examples_dropped": self.examples_dropped,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplayTally:
        """A tally from its saved form (a resumed replay goes on from it)."""
        return cls(
            total=int(data["total"]),
            divergent=int(data["divergent"]),
            errors=int(data["errors"]),
            by_node=dict(data["by_node"]),
            examples=list(data["examples"]),
            groups={tuple(sig): g for sig, g in data["groups"]},
            last_line=int(data["last_line"]),
            evidence=Evidence.from_dict(data["evidence"]),
            timeline=[(int(a), int(b)) for a, b in data["timeline"]],
            timeline_stride=int(data["timeline_stride"]),
            observed={n: set(t) for n, t in data["observed"].items()},
            other={"count": 0, "events": 0, **(data.get("other") or {})},
            examples_dropped=int(data.get("examples_dropped", 0)),
        )

    def freeze(
        self,
        decision: Decision,
        *,
        migration: str,
        source: str,
        skipped: list[SkippedLine],
        duration: float,
        noise: tuple[dict[str, Any], ...] = (),
        graph: dict[str, Any] | None = None,
        policy: dict[str, Any] | None = None,
        redactor: Redactor | None = None,
    ) -> ReplayReport:
        """The finished ``ReplayReport`` of what was counted, masked by ``redactor`` (else the tally's, else the built-in rules)."""
        red = redactor or self.redactor or default_redactor()  # the facade hands its own; without one, the built-in rules
        sources = self._sources

        def secrets(event_id: Any) -> tuple[str, ...]:
            event = sources.get(event_id) if isinstance(event_id, str) else None
            return tuple(red.event_secrets(event)) if event is not None else ()

        groups = tuple(
            sorted(
                (
                    DivergenceGroup(
                        n, k, red.text(p), g["count"], g["first_event"], g["last_event"], red.example(g["example"], secrets(g["first_event"]))
                    )
                    for (n, k, p), g in self.groups.items()
                ),
                # Groups over the same events (an effect's arguments and the value that
                # changed them) sort next to each other: same count, node, first and last event.
                key=lambda g: (-g.count, g.node, g.first_event, g.last_event, g.path),
            )
        )
        examples = tuple(red.example(x, secrets((x.get("event") or {}).get("id"))) for x in self.examples)
        return ReplayReport(
            migration=migration,
            source=source,
            total=self.total,
            divergent=self.divergent,
            errors=self.errors,
            by_node=dict(sorted(self.by_node.items(), key=lambda kv: (-kv[1], kv[0]))),
            decision=decision,
            groups=groups,
            examples=examples,
            skipped=tuple(skipped),
            duration=duration,
            noise=tuple(red.report({"noise": list(noise)})["noise"]),
            evidence=self.evidence,
            timeline=tuple(self.timeline if self.timeline and self.timeline[-1][0] == self.total else [*self.timeline, (self.total, self.divergent)]),
            graph=graph,
            policy=policy,
            redactor=redactor or self.redactor,
            other=dict(self.other),
            examples_dropped=self.examples_dropped,
        )


@dataclass(frozen=True)
class ReplayReport:
    """The result of replaying a log through both paths.

    ``errors`` counts events whose candidate path ended in an error (a
    handler's exception, or the graph failing); an error the legacy path
    raised the same way is parity, not a divergence.
    """

    migration: str
    source: str
    total: int
    divergent: int
    errors: int
    by_node: dict[str, int]
    decision: Decision
    groups: tuple[DivergenceGroup, ...] = ()
    examples: tuple[dict[str, Any], ...] = ()
    skipped: tuple[SkippedLine, ...] = ()
    duration: float = 0.0
    noise: tuple[dict[str, Any], ...] = ()  # learned noise: event_type, path, differed, samples, example
    evidence: Evidence | None = field(default=None, compare=False)  # counts and latency sketches behind the decision
    timeline: tuple[tuple[int, int], ...] = ()  # (events, divergent so far), at most MAX_TIMELINE points
    graph: dict[str, Any] | None = None  # the derived graph as data (graph_flows.BusFlow.graph_data)
    policy: dict[str, Any] | None = None  # limits worth drawing, e.g. {"divergence_limit": 0.001}
    # the migration's, handed in by the facade (through freeze); None: looked up by name (transitional)
    redactor: Redactor | None = field(default=None, compare=False, repr=False)
    other: dict[str, int] = field(default_factory=lambda: {"count": 0, "events": 0})  # findings past MAX_GROUPS
    examples_dropped: int = 0  # divergent events past MAX_EXAMPLES

    @property
    def parity(self) -> bool:
        """Whether no event diverged."""
        return self.divergent == 0

    @property
    def events_per_second(self) -> float:
        """Events replayed per second of the replay's duration."""
        return self.total / self.duration if self.duration > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data, masked by the migration's redactor."""
        return self._redactor().report(self._data())

    def _redactor(self) -> Redactor:
        return self.redactor or default_redactor()  # the facade's freeze(redactor=); without one, the built-in rules

    def _data(self) -> dict[str, Any]:
        return {
            "migration": self.migration,
            "source": self.source,
            "total": self.total,
            "divergent": self.divergent,
            "errors": self.errors,
            "by_node": self.by_node,
            "decision": self.decision.to_dict(),
            "groups": [g.to_dict() | {"related": k} for g, k in zip(self.groups, related_ids(self.groups), strict=True)],
            "groups_other": dict(self.other),
            "examples": list(self.examples),
            "examples_dropped": self.examples_dropped,
            "skipped": [{"line": s.line, "reason": s.reason} for s in self.skipped],
            "noise": list(self.noise),
            "evidence": self.evidence.summary() if self.evidence is not None else None,
            "latency": latency_view(self.evidence) if self.evidence is not None else None,
            "timeline": timeline_view(self.timeline),
            "graph": self.graph,
            "policy": self.policy,
            "duration_s": round(self.duration, 3),
            "events_per_second": round(self.events_per_second, 1),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as a JSON string (keys: total, divergent, errors, by_node, decision, ...)."""
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def write_json(self, path: str | Path) -> None:
        """Write the masked report as JSON to ``path``."""
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    def write_html(self, path: str | Path) -> None:
        """A self-contained HTML page of the report (inline CSS and SVG plots; no script, no network)."""
        from migration_kit.report.html import render_report
        from migration_kit.observe.safe_text import for_file

        page = render_report(self.to_dict(), redactor=self._redactor())
        Path(path).write_text(for_file(page), encoding="utf-8")  # a lone surrogate in the data must not stop the writing


def _trimmed(example: dict[str, Any]) -> dict[str, Any]:
    """A group example whose values stay small: a value over MAX_EXAMPLE_CHARS of JSON becomes a preview."""
    for side in ("legacy", "candidate"):
        v = example.get(side)
        if isinstance(v, (dict, list, str)):
            text = json.dumps(v, default=str)
            if len(text) > MAX_EXAMPLE_CHARS:
                example[side] = f"<{type(v).__name__} of {len(text):,} chars: {text[:200]}...>"
    return example


def related_ids(groups: tuple[DivergenceGroup, ...] | list[dict[str, Any]]) -> list[int]:
    """For each group, the index of the first group over the same events (same node, count, first
    and last event): groups sharing an index are one finding seen at several paths."""
    first: dict[tuple[Any, ...], int] = {}
    out = []
    for i, g in enumerate(groups):
        get = g.get if isinstance(g, dict) else lambda k, g=g: getattr(g, k)
        key = (get("node"), get("count"), get("first_event"), get("last_event"))
        out.append(first.setdefault(key, i))
    return out


def timeline_view(points: tuple[tuple[int, int], ...], alpha: float = 0.05) -> list[dict[str, Any]]:
    """Divergence rate over the events compared, with its anytime-valid bounds, for plotting."""
    out = []
    for n, k in points:
        lo, hi = rate_bounds(k, n, alpha) if n else (0.0, 1.0)
        out.append({"events": n, "divergent": k, "rate": k / n if n else 0.0, "lower": lo, "upper": hi})
    return out


def latency_view(evidence: Evidence) -> dict[str, Any]:
    """Latency quantiles (seconds) per path and per node, and each path's distribution, for plotting."""
    paths: dict[str, Any] = {}
    dist: dict[str, Any] = {}
    nodes: dict[str, dict[str, Any]] = {}
    for path in ("legacy", "candidate"):
        sketch = evidence.sketch(path)
        if not sketch.count:
            continue
        paths[path] = {f"p{int(q * 100)}": sketch.quantile(q) for q in (0.5, 0.95, 0.99)}
        dist[path] = [[q / 100, sketch.quantile(q / 100)] for q in range(1, 100)]
        for node, s in evidence.nodes[path].items():
            if s.count:
                nodes.setdefault(node, {})[path] = {"p50": s.quantile(0.5), "p95": s.quantile(0.95)}
    return {"paths": paths, "distribution": dist, "nodes": nodes, "breakdown": breakdown_view(evidence)}


#: How each part is named to a reader, in the order a stacked bar draws them.
PART_LABELS = {
    "legacy": (("handler", "handler compute"), ("bus", "bus overhead")),
    "candidate": (("node", "node compute"), ("runtime", "LangGraph runtime"), ("checkpoint", "checkpoint store")),
}


def breakdown_view(evidence: Evidence) -> dict[str, Any]:
    """Where each path's time goes per event (mean seconds per part; the parts add up to the mean
    wall time), and what the default contract judges (``served``, p50 / p99)."""
    out: dict[str, Any] = {}
    for path, labels in PART_LABELS.items():
        total = evidence.latency[path]
        if not total.count:
            continue
        parts = [{"part": k, "label": label, "mean": evidence.parts[path][k].mean or 0.0} for k, label in labels]
        served = evidence.parts[path]["served"]
        out[path] = {
            "mean": total.mean,
            "parts": parts,
            "served": {"mean": served.mean, "p50": served.quantile(0.5), "p99": served.quantile(0.99)},
        }
    return out
