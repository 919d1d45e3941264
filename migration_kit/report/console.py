"""Terminal rendering of reports (rich); plain text when stdout is not a terminal."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.text import Text

from migration_kit.observe.redaction import Redactor, default_redactor
from migration_kit.report.report import ReplayReport
from migration_kit.observe.safe_text import one_line, text

__all__ = ["latency_breakdown_lines", "print_latency_breakdown", "print_replay"]


def _short(value: Any, width: int = 60, redactor: Redactor | None = None) -> str:
    if redactor is not None:
        value = redactor.value(value)
    text = json.dumps(value, default=str, sort_keys=True, ensure_ascii=False)
    text = one_line(text)  # escapes first: a cut never splits one
    return text if len(text) <= width else text[: width - 1] + "…"


def print_replay(report: ReplayReport, console: Console | None = None, *, groups: int = 10, redactor: Redactor | None = None) -> None:
    """Print a replay's parity summary, where divergence starts, and the top groups.

    What is printed from the data is masked by ``redactor`` (the migration's;
    default: the report's own, else card numbers only).
    """
    console = console or Console(highlight=False, soft_wrap=True)
    red = redactor or report.redactor or default_redactor()
    mask = red.text
    d = report.decision
    style = "bold green" if d.ok else "bold red"
    # Every value from the data goes in as Text (never parsed as markup), on one line.
    head = Text.assemble(
        text(mask(report.migration), "bold"),
        f": {report.total:,} events replayed from {one_line(mask(report.source))}, ",
        (f"{report.divergent:,} divergent", "red" if report.divergent else "green"),
        f", {report.errors:,} candidate errors",
        f", {len(report.skipped):,} lines skipped" if report.skipped else "",
        f" ({report.events_per_second:,.0f} events/s)",
    )
    console.print(head)
    console.print(Text.assemble("decision: ", (d.action.upper(), style)))
    for reason in d.reasons:
        console.print(Text.assemble("  - ", text(mask(reason))))
    print_latency_breakdown(report, console)
    if report.by_node:
        console.print("first divergent node:")
        nodes = {mask(node): n for node, n in report.by_node.items()}
        width = max(len(one_line(n)) for n in nodes)
        for node, n in nodes.items():
            console.print(text(f"  {one_line(node):<{width}}  {n:>8,} events"))
    if report.groups:
        console.print(f"divergence groups ({len(report.groups)}):")
        shown = report.groups[:groups]
        for g, same in zip(shown, _same_events_as_above(shown), strict=True):
            # A group over the same events as the one above is the same finding at another path.
            lead = ("  same events:", "dim") if same else ("  " + f"{g.count:,} events", "bold")
            console.print(Text.assemble(lead, f"  {one_line(mask(g.node))}  {one_line(g.kind)}  ", text(mask(g.path), "cyan")))
            console.print(
                Text.assemble(
                    "      legacy: ", (_short(g.example.get("legacy"), redactor=red), "red"),
                    "  candidate: ", (_short(g.example.get("candidate"), redactor=red), "green"),
                )
            )
            if not same:  # on a line of its own, so a terminal never wraps the id in two
                console.print(text(f"      first event {one_line(g.first_event)}"))
        if len(report.groups) > groups:
            console.print(f"  … and {len(report.groups) - groups} more groups (see --json)")
    if report.noise:
        console.print(f"learned noise, ignored in comparisons ({len(report.noise)}):")
        for row in report.noise[:groups]:
            console.print(
                text(f"  {row['event_type']}: {mask(str(row['path']))}  differed in {row['differed']:,} of {row['samples']:,} legacy re-runs")
            )
        if len(report.noise) > groups:
            console.print(f"  … and {len(report.noise) - groups} more (see --json)")
    for s in report.skipped[:10]:
        console.print(text(f"  skipped line {s.line}: {mask(s.reason)}", "yellow"))


def latency_breakdown_lines(report: ReplayReport) -> list[str]:
    """Where each path's time goes per event, as plain lines (mean ms per part)."""
    from migration_kit.report.report import breakdown_view

    if report.evidence is None:
        return []
    view = breakdown_view(report.evidence)
    lines = []
    for path in ("candidate", "legacy"):
        b = view.get(path)
        if not b:
            continue
        parts = " + ".join(f"{p['label']} {p['mean'] * 1000:,.2f}" for p in b["parts"])
        lines.append(f"  {path:<9} {b['mean'] * 1000:>8,.2f} ms = {parts}")
    c = view.get("candidate")
    if c and c["served"]["p50"] is not None:
        lines.append(
            f"  served after cutover (what the latency contracts judge): p50 {c['served']['p50'] * 1000:,.2f} ms, "
            f"p99 {c['served']['p99'] * 1000:,.2f} ms: node compute + runtime at its CPU cost + modelled production checkpoints"
        )
    return lines


def print_latency_breakdown(report: ReplayReport, console: Console | None = None) -> None:
    """Print where each path's time goes per event (mean, in ms)."""
    lines = latency_breakdown_lines(report)
    if not lines:
        return
    console = console or Console(highlight=False, soft_wrap=True)
    console.print("latency per event (mean ms):")
    for line in lines:
        console.print(Text(line))


def _same_events_as_above(groups: Any) -> list[bool]:
    from migration_kit.report.report import related_ids

    ids = related_ids(groups)
    return [i > 0 and ids[i] == ids[i - 1] for i in range(len(ids))]
