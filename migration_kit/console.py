"""Terminal rendering of reports (rich); plain text when stdout is not a terminal."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from migration_kit.report import ReplayReport

__all__ = ["print_replay"]


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


def print_replay(report: ReplayReport, console: Console | None = None, *, groups: int = 10) -> None:
    """Print a replay's parity summary, where divergence starts, and the top groups."""
    console = console or Console(highlight=False)
    d = report.decision
    style = "bold green" if d.ok else "bold red"
    head = Text.assemble(
        (f"{report.migration}", "bold"),
        f": {report.total:,} events replayed from {report.source}, ",
        (f"{report.divergent:,} divergent", "red" if report.divergent else "green"),
        f", {report.errors:,} candidate errors",
        f", {len(report.skipped):,} lines skipped" if report.skipped else "",
        f" ({report.events_per_second:,.0f} events/s)",
    )
    console.print(head)
    console.print(Text.assemble("decision: ", (d.action.upper(), style)))
    for reason in d.reasons:
        console.print(f"  - {reason}")
    if report.by_node:
        table = Table(title="first divergent node", title_justify="left", show_edge=False)
        table.add_column("node")
        table.add_column("events", justify="right")
        for node, n in report.by_node.items():
            table.add_row(node, f"{n:,}")
        console.print(table)
    if report.groups:
        table = Table(title="divergence groups", title_justify="left", show_edge=False)
        for col in ("node", "kind", "path", "events", "legacy", "candidate", "first event"):
            table.add_column(col, justify="right" if col == "events" else "left", overflow="fold")
        for g in report.groups[:groups]:
            table.add_row(
                g.node,
                g.kind,
                g.path,
                f"{g.count:,}",
                _short(g.example.get("legacy")),
                _short(g.example.get("candidate")),
                g.first_event,
            )
        console.print(table)
        if len(report.groups) > groups:
            console.print(f"  … and {len(report.groups) - groups} more groups (see --json)")
    for s in report.skipped[:10]:
        console.print(f"  skipped line {s.line}: {s.reason}", style="yellow")
