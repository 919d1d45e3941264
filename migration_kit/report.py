"""Replay reports: counts, where divergence starts, grouped findings, the decision."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from legacy_bus import SkippedLine

from migration_kit.comparator import Comparison, Difference
from migration_kit.decision import Decision
from migration_kit.evidence import Evidence

__all__ = ["DivergenceGroup", "ReplayReport", "ReplayTally"]

_INDEX = re.compile(r"\[\d+\]")
MAX_EXAMPLES = 20
MAX_GROUPS = 1000


def signature(node: str | None, diff: Difference) -> tuple[str, str, str]:
    """How findings are grouped: the node, the kind, and the path with indices collapsed."""
    return (node or diff.node or "?", diff.kind, _INDEX.sub("[*]", diff.path))


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

    def add(self, comparison: Comparison, line: int = 0) -> None:
        self.total += 1
        self.last_line = line
        self.evidence.add(comparison)
        if comparison.errored:
            self.errors += 1
        if not comparison.divergent:
            return
        self.divergent += 1
        node = comparison.first_divergent_node or "(unlocated)"
        self.by_node[node] = self.by_node.get(node, 0) + 1
        eid = comparison.event.id
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({**comparison.to_dict(), "line": line})
        seen: set[tuple[str, str, str]] = set()
        for diff in comparison.differences:
            sig = signature(comparison.first_divergent_node, diff)
            if sig in seen:
                continue
            seen.add(sig)
            group = self.groups.get(sig)
            if group is None:
                if len(self.groups) >= MAX_GROUPS:
                    continue
                self.groups[sig] = {"count": 1, "first_event": eid, "last_event": eid, "example": {"event": eid, **diff.to_dict()}}
            else:
                group["count"] += 1
                group["last_event"] = eid

    def freeze(
        self,
        decision: Decision,
        *,
        migration: str,
        source: str,
        skipped: list[SkippedLine],
        duration: float,
        noise: tuple[dict[str, Any], ...] = (),
    ) -> ReplayReport:
        groups = tuple(
            sorted(
                (DivergenceGroup(n, k, p, g["count"], g["first_event"], g["last_event"], g["example"]) for (n, k, p), g in self.groups.items()),
                key=lambda g: (-g.count, g.node, g.path),
            )
        )
        return ReplayReport(
            migration=migration,
            source=source,
            total=self.total,
            divergent=self.divergent,
            errors=self.errors,
            by_node=dict(sorted(self.by_node.items(), key=lambda kv: (-kv[1], kv[0]))),
            decision=decision,
            groups=groups,
            examples=tuple(self.examples),
            skipped=tuple(skipped),
            duration=duration,
            noise=noise,
            evidence=self.evidence,
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

    @property
    def parity(self) -> bool:
        return self.divergent == 0

    @property
    def events_per_second(self) -> float:
        return self.total / self.duration if self.duration > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "migration": self.migration,
            "source": self.source,
            "total": self.total,
            "divergent": self.divergent,
            "errors": self.errors,
            "by_node": self.by_node,
            "decision": self.decision.to_dict(),
            "groups": [g.to_dict() for g in self.groups],
            "examples": list(self.examples),
            "skipped": [{"line": s.line, "reason": s.reason} for s in self.skipped],
            "noise": list(self.noise),
            "evidence": self.evidence.summary() if self.evidence is not None else None,
            "duration_s": round(self.duration, 3),
            "events_per_second": round(self.events_per_second, 1),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as a JSON string (keys: total, divergent, errors, by_node, decision, ...)."""
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    def write_html(self, path: str | Path) -> None:
        """A self-contained HTML page of the report (no script, no network)."""
        Path(path).write_text(render_html(self), encoding="utf-8")


def _e(value: Any) -> str:
    if not isinstance(value, str):
        value = json.dumps(value, default=str, sort_keys=True)
    return html.escape(value, quote=True)


def render_html(report: ReplayReport) -> str:
    d = report.decision
    color = "#2e7d32" if d.ok else "#c62828"
    rows = "".join(
        f"<tr><td>{_e(n)}</td><td class=num>{c:,}</td></tr>" for n, c in report.by_node.items()
    ) or "<tr><td colspan=2>none</td></tr>"
    groups = "".join(
        f"<tr><td>{_e(g.node)}</td><td>{_e(g.kind)}</td><td><code>{_e(g.path)}</code></td><td class=num>{g.count:,}</td>"
        f"<td><code>{_e(g.example.get('legacy'))}</code></td><td><code>{_e(g.example.get('candidate'))}</code></td></tr>"
        for g in report.groups
    ) or "<tr><td colspan=6>no divergence</td></tr>"
    reasons = "".join(f"<li>{_e(r)}</li>" for r in d.reasons)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>migration-kit replay: {_e(report.migration)}</title>
<style>
body{{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1b1b;max-width:1100px}}
h1{{font-size:1.4rem}} .decision{{border-left:6px solid {color};padding:.6rem 1rem;background:#fafafa}}
.action{{font-weight:700;color:{color};text-transform:uppercase}} table{{border-collapse:collapse;margin:1rem 0}}
td,th{{border-bottom:1px solid #ddd;padding:.3rem .7rem;text-align:left;vertical-align:top}} .num{{text-align:right}}
code{{font-size:12px;word-break:break-all}}
</style></head><body>
<h1>Replay of {_e(report.source)} through {_e(report.migration)}</h1>
<div class="decision"><div>Decision: <span class="action">{_e(d.action)}</span></div><ul>{reasons}</ul></div>
<table><tr><th>events</th><th>divergent</th><th>errors</th><th>skipped lines</th><th>events/s</th></tr>
<tr><td class=num>{report.total:,}</td><td class=num>{report.divergent:,}</td><td class=num>{report.errors:,}</td>
<td class=num>{len(report.skipped):,}</td><td class=num>{report.events_per_second:,.0f}</td></tr></table>
<h2>First divergent node</h2><table><tr><th>node</th><th>events</th></tr>{rows}</table>
<h2>Divergence groups</h2><table><tr><th>node</th><th>kind</th><th>path</th><th>events</th><th>legacy</th><th>candidate</th></tr>{groups}</table>
</body></html>
"""
