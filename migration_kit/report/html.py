"""The HTML report: one self-contained page (inline CSS and SVG; no script, no network).

Rendered from a report's JSON form (``ReplayReport.to_dict()``), so a saved
JSON report renders the same page later (``migration-kit report``). The page
leads with the decision and its reasons, then the divergence groups with both
values side by side, the divergence rate over time with its bound and the
policy's threshold, where each event's time goes (a stacked bar per path), latency per path and per node, the derived graph, and the
noise the migration learned. Every value that came from an event is masked
by the migration's redactor (``migration_kit.observe.redaction``) and escaped, and a
Content Security Policy forbids scripts and remote loads.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from migration_kit.observe.redaction import Redactor, default_redactor

__all__ = ["render_report"]

LEGACY, CANDIDATE, BOUND, LIMIT = "#5b6b7f", "#1f77b4", "#f0a35e", "#c62828"


def _e(value: Any) -> str:
    if not isinstance(value, str):
        value = json.dumps(value, default=str, sort_keys=True, ensure_ascii=False)
    return html.escape(value, quote=True)


def _short(value: Any, n: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True, ensure_ascii=False)
    # Cutting a long digit run can leave a card-shaped prefix: mask what is shown.
    return text if len(text) <= n else default_redactor().text(text[: n - 1]) + "…"


def _fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} µs"


# -- charts -------------------------------------------------------------------------


def _axis_label(x: float, y: float, text: str, anchor: str = "end", size: int = 11) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="#444">{_e(text)}</text>'


def rate_chart(timeline: list[dict[str, Any]], threshold: float | None, width: int = 760, height: int = 240) -> str:
    """Divergence rate over the events compared, with its upper bound and the policy threshold."""
    if not timeline:
        return '<p class="muted">No timeline recorded.</p>'
    left, right, top, bottom = 56, 16, 14, 34
    w, h = width - left - right, height - top - bottom
    xmax = max(p["events"] for p in timeline) or 1
    ys = [p.get("rate", 0.0) for p in timeline] + [p.get("upper", 0.0) or 0.0 for p in timeline] + [threshold or 0.0]
    ymax = max(ys) * 1.15 or 0.01
    ymax = min(1.0, ymax) if ymax > 0 else 0.01

    def X(v: float) -> float:
        return left + w * v / xmax

    def Y(v: float) -> float:
        return top + h - h * min(v, ymax) / ymax

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="divergence rate over time">']
    for i in range(5):
        v = ymax * i / 4
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#eee"/>')
        parts.append(_axis_label(left - 6, Y(v) + 4, f"{v:.2%}"))
    for i in range(5):
        v = xmax * i / 4
        parts.append(_axis_label(X(v), top + h + 16, f"{v:,.0f}", "middle"))
    parts.append(_axis_label(left + w / 2, height - 2, "events compared", "middle"))
    upper = [p for p in timeline if p.get("upper") is not None]
    if upper:
        band = " ".join(f"{X(p['events']):.1f},{Y(p['upper']):.1f}" for p in upper)
        band += " " + " ".join(f"{X(p['events']):.1f},{Y(p.get('lower') or 0):.1f}" for p in reversed(upper))
        parts.append(f'<polygon points="{band}" fill="{BOUND}" fill-opacity="0.25" stroke="none"/>')
        line = " ".join(f"{X(p['events']):.1f},{Y(p['upper']):.1f}" for p in upper)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{BOUND}" stroke-width="1.5"/>')
    line = " ".join(f"{X(p['events']):.1f},{Y(p.get('rate', 0.0)):.1f}" for p in timeline)
    parts.append(f'<polyline points="{line}" fill="none" stroke="{CANDIDATE}" stroke-width="2"/>')
    if threshold is not None:
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{Y(threshold):.1f}" y2="{Y(threshold):.1f}" stroke="{LIMIT}" stroke-dasharray="6 4" stroke-width="1.5"/>')
        parts.append(f'<text x="{left + w - 4}" y="{Y(threshold) - 5:.1f}" font-size="11" text-anchor="end" fill="{LIMIT}">policy limit {threshold:.2%}</text>')
    parts.append("</svg>")
    return "".join(parts)


def node_latency_chart(nodes: dict[str, dict[str, dict[str, float]]], width: int = 760) -> str:
    """Per node, legacy vs candidate p50 bars with a p95 whisker (log-free, shared scale)."""
    names = sorted(nodes, key=lambda n: -max(nodes[n].get(p, {}).get("p50", 0.0) for p in ("legacy", "candidate")))
    if not names:
        return '<p class="muted">No per-node latency recorded.</p>'
    row, right, top = 34, 90, 8
    left = max(190, int(6.4 * max(len(n) for n in names)) + 16)  # labels are never cut
    width = max(width, left + right + 300)
    height = top + row * len(names) + 24
    w = width - left - right
    vmax = max(nodes[n].get(p, {}).get("p95", nodes[n].get(p, {}).get("p50", 0.0)) for n in names for p in ("legacy", "candidate")) or 1e-6
    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="latency per node">']
    for i, n in enumerate(names):
        y = top + i * row
        parts.append(_axis_label(left - 8, y + 17, n))
        for j, (path, color) in enumerate((("legacy", LEGACY), ("candidate", CANDIDATE))):
            q = nodes[n].get(path)
            if not q:
                continue
            bw = w * q.get("p50", 0.0) / vmax
            by = y + 4 + j * 13
            parts.append(f'<rect x="{left}" y="{by}" width="{max(bw, 1):.1f}" height="11" fill="{color}"><title>{_e(path)} p50 {_fmt_s(q.get("p50", 0.0))}</title></rect>')
            if "p95" in q:
                px = left + w * q["p95"] / vmax
                parts.append(f'<line x1="{left + bw:.1f}" x2="{px:.1f}" y1="{by + 5.5}" y2="{by + 5.5}" stroke="{color}" stroke-width="1"/>')
                parts.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{by + 2}" y2="{by + 9}" stroke="{color}"/>')
            parts.append(f'<text x="{left + w + 6}" y="{by + 10}" font-size="10" fill="{color}">{_fmt_s(q.get("p50", 0.0))}</text>')
    parts.append(f'<text x="{left}" y="{height - 6}" font-size="11" fill="{LEGACY}">■ legacy</text>')
    parts.append(f'<text x="{left + 80}" y="{height - 6}" font-size="11" fill="{CANDIDATE}">■ candidate</text>')
    parts.append(f'<text x="{left + 190}" y="{height - 6}" font-size="11" fill="#666">bar: p50, whisker: p95</text>')
    parts.append("</svg>")
    return "".join(parts)


PART_COLORS = {
    "handler": "#5b6b7f", "bus": "#a9b4c2",
    "node": "#1f77b4", "runtime": "#9ecae9", "checkpoint": "#f0a35e",
}


def breakdown_chart(view: dict[str, Any], width: int = 760) -> str:
    """One stacked bar per path: where an event's time goes (mean per part), on a shared scale."""
    rows = [(p, view[p]) for p in ("legacy", "candidate") if view.get(p)]
    if not rows:
        return '<p class="muted">No latency breakdown recorded.</p>'
    left, right, row = 90, 110, 40
    height = 12 + row * len(rows) + 6
    w = width - left - right
    vmax = max(max(b.get("mean") or 0.0, (b.get("served") or {}).get("mean") or 0.0) for _, b in rows) or 1e-6
    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="where the time goes per event">']
    legend: list[tuple[str, str]] = []
    for i, (path, b) in enumerate(rows):
        y = 8 + i * row
        parts.append(_axis_label(left - 8, y + 18, path))
        x = float(left)
        for seg in b.get("parts") or []:
            mean = float(seg.get("mean") or 0.0)
            color = PART_COLORS.get(seg.get("part"), "#ccc")
            legend.append((str(seg.get("label")), color))
            bw = w * mean / vmax
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 4}" width="{max(bw, 0.5):.1f}" height="22" fill="{color}">'
                f'<title>{_e(seg.get("label"))}: {_fmt_s(mean)} per event (mean)</title></rect>'
            )
            x += bw
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 20}" font-size="11" fill="#333">{_fmt_s(float(b.get("mean") or 0.0))}</text>')
        served = (b.get("served") or {}).get("mean")
        if path == "candidate" and served:
            sx = left + w * served / vmax
            parts.append(f'<line x1="{sx:.1f}" x2="{sx:.1f}" y1="{y}" y2="{y + 30}" stroke="{LIMIT}" stroke-width="2" stroke-dasharray="3 2">'
                         f'<title>served after cutover (what the default contracts judge): {_fmt_s(served)} mean</title></line>')
            legend.append((f"served after cutover {_fmt_s(served)}", LIMIT))
    parts.append("</svg>")
    # The legend is HTML, so it wraps between entries instead of running off the drawing.
    keys = "".join(
        f'<span class="key"><span class="swatch" style="background:{color}"></span>{_e(label)}</span>'
        for label, color in dict.fromkeys(legend)
    )
    return "".join(parts) + f'<div class="legend">{keys}</div>'


def distribution_chart(paths: dict[str, list[list[float]]], width: int = 760, height: int = 240) -> str:
    """Latency distribution per path as cumulative curves on a log time axis."""
    series = {p: [(float(s), float(q)) for q, s in pts if s > 0] for p, pts in paths.items() if pts}
    if not series:
        return '<p class="muted">No latency distribution recorded.</p>'
    left, right, top, bottom = 56, 16, 14, 34
    w, h = width - left - right, height - top - bottom
    lo = min(s for pts in series.values() for s, _ in pts)
    hi = max(s for pts in series.values() for s, _ in pts)
    lo, hi = math.log10(lo), math.log10(hi if hi > lo else lo * 10)
    if hi - lo < 0.5:
        lo, hi = lo - 0.25, hi + 0.25

    def X(s: float) -> float:
        return left + w * (math.log10(s) - lo) / (hi - lo)

    def Y(q: float) -> float:
        return top + h - h * q

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="latency distribution">']
    for q in (0, 0.5, 0.9, 0.99, 1.0):
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{Y(q):.1f}" y2="{Y(q):.1f}" stroke="#eee"/>')
        parts.append(_axis_label(left - 6, Y(q) + 4, f"p{q * 100:g}"))
    for e in range(math.floor(lo), math.ceil(hi) + 1):
        if lo <= e <= hi:
            parts.append(_axis_label(X(10**e), top + h + 16, _fmt_s(10**e), "middle"))
    parts.append(_axis_label(left + w / 2, height - 2, "time per event (log scale)", "middle"))
    for path, color in (("legacy", LEGACY), ("candidate", CANDIDATE)):
        pts = series.get(path)
        if pts:
            line = " ".join(f"{X(s):.1f},{Y(q):.1f}" for s, q in sorted(pts))
            parts.append(f'<polyline points="{line}" fill="none" stroke="{color}" stroke-width="2"><title>{_e(path)}</title></polyline>')
    parts.append(f'<text x="{left + w - 150}" y="{top + h - 10}" font-size="11" fill="{LEGACY}">— legacy</text>')
    parts.append(f'<text x="{left + w - 80}" y="{top + h - 10}" font-size="11" fill="{CANDIDATE}">— candidate</text>')
    parts.append("</svg>")
    return "".join(parts)


def graph_chart(graph: dict[str, Any], highlight: dict[str, int] | None = None, width: int = 980) -> str:
    """The derived graph: event types (rounded) feeding handler nodes (boxes), left to right."""
    types = graph.get("types") or []
    nodes = graph.get("nodes") or []
    edges = [tuple(e) for e in graph.get("edges") or []]
    if not nodes:
        return '<p class="muted">No graph recorded.</p>'
    ids = [f"t:{t}" for t in types] + [f"n:{n['name']}" for n in nodes]
    succ: dict[str, list[str]] = {i: [] for i in ids}
    indeg: dict[str, int] = {i: 0 for i in ids}
    for a, b in edges:
        if a in succ and b in succ:
            succ[a].append(b)
            indeg[b] += 1
    # Longest-path layers over the graph with back edges (cycles) ignored.
    layer: dict[str, int] = {}
    roots = [i for i in ids if indeg[i] == 0] or ids[:1]
    stack = [(r, 0, frozenset([r])) for r in roots]
    while stack:
        cur, d, seen = stack.pop()
        if layer.get(cur, -1) >= d:
            continue
        layer[cur] = d
        for nxt in succ[cur]:
            if nxt not in seen and d < 40:
                stack.append((nxt, d + 1, seen | {nxt}))
    for i in ids:
        layer.setdefault(i, 0)
    columns: dict[int, list[str]] = {}
    for i in ids:
        columns.setdefault(layer[i], []).append(i)
    ncol = max(columns) + 1

    def box(i: str) -> float:  # a box wide enough for its whole label (10px text, ~6.2px a glyph)
        return max(100.0, 6.2 * len(i[2:]) + 16)

    colws = [max((box(i) for i in columns.get(c, [])), default=100.0) + 30 for c in range(ncol)]
    spare = max(0.0, (width - 20 - sum(colws)) / ncol)
    colws = [c + spare for c in colws]
    rowh = 44
    height = 20 + rowh * max(len(c) for c in columns.values())
    pos = {}
    x0 = 10.0
    for c in range(ncol):
        for r, i in enumerate(columns.get(c, [])):
            pos[i] = (x0 + colws[c] / 2, 20 + r * rowh + 12)
        x0 += colws[c]
    colw = x0 / max(ncol, 1)
    native = {n["name"] for n in nodes if n.get("native")}
    parts = [f'<svg viewBox="0 0 {max(width, ncol * colw + 20):.0f} {height}" width="100%" role="img" aria-label="derived graph">',
             '<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#888"/></marker></defs>']
    for a, b in edges:
        if a in pos and b in pos:
            (x1, y1), (x2, y2) = pos[a], pos[b]
            dash = ' stroke-dasharray="4 3"' if a.startswith("n:") else ""
            parts.append(f'<line x1="{x1 + box(a) / 2:.1f}" y1="{y1:.1f}" x2="{x2 - box(b) / 2 - 2:.1f}" y2="{y2:.1f}" stroke="#999"{dash} marker-end="url(#arrow)"/>')
    for i, (x, y) in pos.items():
        label = i[2:]
        short = label  # never cut: the box is as wide as its label
        half = box(i) / 2
        if i.startswith("t:"):
            parts.append(f'<rect x="{x - half:.1f}" y="{y - 12:.1f}" width="{2 * half:.1f}" height="24" rx="12" fill="#f4f4f4" stroke="#bbb"><title>{_e(label)}</title></rect>')
        else:
            hits = (highlight or {}).get(label, 0)
            fill = "#fdecea" if hits else ("#e6f4ea" if label in native else "#fff")
            stroke = LIMIT if hits else ("#2e7d32" if label in native else "#555")
            tip = f"{label}: first divergent node of {hits} events" if hits else label
            parts.append(f'<rect x="{x - half:.1f}" y="{y - 12:.1f}" width="{2 * half:.1f}" height="24" rx="3" fill="{fill}" stroke="{stroke}" stroke-width="{2 if hits else 1}"><title>{_e(tip)}</title></rect>')
        parts.append(f'<text x="{x:.1f}" y="{y + 4:.1f}" font-size="10" text-anchor="middle">{_e(short)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# -- page ---------------------------------------------------------------------------


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1b1b1b;background:#fff}
main{max-width:1040px;margin:0 auto;padding:1.5rem 2rem 3rem}
h1{font-size:1.35rem;margin:.2rem 0 1rem} h2{font-size:1.05rem;margin:2rem 0 .6rem;border-bottom:1px solid #e3e3e3;padding-bottom:.25rem}
.decision{border-left:8px solid var(--c);padding:.7rem 1.1rem;background:#fafafa;border-radius:4px}
.action{font-weight:700;color:var(--c);font-size:1.3rem;text-transform:uppercase;letter-spacing:.04em}
.decision ol{margin:.4rem 0 0 1.1rem;padding:0}
.stats{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.stat{background:#f6f8fa;border-radius:6px;padding:.5rem .9rem;min-width:7.5rem}
.stat b{display:block;font-size:1.25rem}
table{border-collapse:collapse;width:100%;margin:.4rem 0} td,th{border-bottom:1px solid #e6e6e6;padding:.35rem .55rem;text-align:left;vertical-align:top}
th{font-weight:600;background:#fafafa} .num{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px/1.35 ui-monospace,SFMono-Regular,Menlo,monospace;overflow-wrap:anywhere}
code.tok{white-space:nowrap;overflow-wrap:normal;word-break:keep-all}
.wide{overflow-x:auto}
.legend{display:flex;flex-wrap:wrap;gap:.3rem 1.2rem;font-size:12px;margin:.2rem 0 .6rem 90px}
.key{white-space:nowrap} .swatch{display:inline-block;width:10px;height:10px;margin-right:.35rem;vertical-align:-1px} tr.related td{border-top:none} tr.related td.same{color:transparent}
.legacy{background:#fbeeee} .candidate{background:#eef6ee}
.muted{color:#777} svg text{font-family:system-ui,sans-serif}
"""


def _tok(value: Any) -> str:
    """An id or a path as one unbreakable token, except after its separators (``.``, ``]``, ``/``, ``:``)."""
    text = _e(value if isinstance(value, str) else str(value))
    for sep in (".", "]", "/", ":"):
        text = text.replace(sep, sep + "<wbr>")
    return f'<code class="tok">{text}</code>'


def _example_row(ex: dict[str, Any]) -> str:
    event = ex.get("event") or {}
    diffs = "".join(
        f"<div>{_tok(x['path'])}: <span class=legacy><code>{_e(_short(x['legacy'], 80))}</code></span>"
        f" → <span class=candidate><code>{_e(_short(x['candidate'], 80))}</code></span></div>"
        for x in (ex.get("differences") or [])[:6]
    )
    return (
        f'<tr><td>{_tok(event.get("id", ""))}<br><span class="muted">{_e(event.get("type", ""))}, line {_e(ex.get("line", ""))}</span></td>'
        f'<td>{_e(ex.get("first_divergent_node") or "")}</td><td>{diffs}</td><td>{_tok(ex.get("trace_id") or "")}</td></tr>'
    )


def _group_row(g: dict[str, Any], i: int, groups: list[dict[str, Any]]) -> str:
    # A group over the same events as the row above (one finding seen at several paths, e.g. an
    # effect's arguments and the value that changed them) joins it: count, node and event shown once.
    same = i > 0 and g.get("related", i) == groups[i - 1].get("related", i - 1)
    cls = ' class="related"' if same else ""
    dim = ' class="num same"' if same else ' class="num"'
    return (
        f'<tr{cls}><td{dim}>{g["count"]:,}</td><td{" class=same" if same else ""}>{_e(g["node"])}</td><td>{_e(g["kind"])}</td><td>{_tok(g["path"])}</td>'
        f'<td class="legacy"><code>{_e(_short((g.get("example") or {}).get("legacy")))}</code></td>'
        f'<td class="candidate"><code>{_e(_short((g.get("example") or {}).get("candidate")))}</code></td>'
        f'<td>{"" if same else _tok(g.get("first_event", ""))}</td></tr>'
    )


def render_report(data: dict[str, Any], *, redactor: Redactor | None = None) -> str:
    """The whole page for a report's ``to_dict()``, masked by ``redactor`` (default: the built-in rules)."""
    data = (redactor or default_redactor()).report(data)
    d = data.get("decision") or {}
    action = str(d.get("action", "?"))
    ok = action in ("continue", "promote")
    color = "#2e7d32" if ok else "#c62828"
    reasons = "".join(f"<li>{_e(r)}</li>" for r in d.get("reasons") or [])
    total, divergent = int(data.get("total", 0)), int(data.get("divergent", 0))
    stats = [
        ("events compared", f"{total:,}"),
        ("divergent", f"{divergent:,}" + (f" ({divergent / total:.2%})" if total else "")),
        ("candidate errors", f"{int(data.get('errors', 0)):,}"),
        ("lines skipped", f"{len(data.get('skipped') or []):,}"),
        ("events / s", f"{float(data.get('events_per_second', 0)):,.0f}"),
    ]
    stat_html = "".join(f'<div class="stat"><b>{_e(v)}</b>{_e(k)}</div>' for k, v in stats)
    by_node = data.get("by_node") or {}
    node_rows = "".join(f'<tr><td>{_e(n)}</td><td class="num">{c:,}</td></tr>' for n, c in by_node.items()) or '<tr><td colspan="2" class="muted">no divergence</td></tr>'
    groups = data.get("groups") or []
    group_rows = "".join(_group_row(g, i, groups) for i, g in enumerate(groups[:200])) or '<tr><td colspan="7" class="muted">no divergence</td></tr>'
    other = data.get("groups_other") or {}
    if other.get("count"):  # findings past the tally's cap on groups
        group_rows += f'<tr><td class="num">{int(other.get("events", 0)):,}</td><td colspan="6" class="muted">other: {int(other["count"]):,} findings past the cap on groups</td></tr>'
    examples = data.get("examples") or []
    example_rows = "".join(_example_row(ex) for ex in examples[:20]) or '<tr><td colspan="4" class="muted">none</td></tr>'
    latency = data.get("latency") or {}
    policy = data.get("policy") or {}
    threshold = policy.get("divergence_limit")
    noise = data.get("noise") or []
    noise_rows = "".join(
        f'<tr><td>{_e(r["event_type"])}</td><td>{_tok(r["path"])}</td><td class="num">{r["differed"]:,} / {r["samples"]:,}</td>'
        f'<td><code>{_e(_short(r.get("example"), 120))}</code></td></tr>'
        for r in noise[:200]
    ) or '<tr><td colspan="4" class="muted">no noise learned (or learning was off)</td></tr>'
    path_rows = "".join(
        f'<tr><td>{_e(p)}</td>' + "".join(f'<td class="num">{_fmt_s(q.get(k, 0.0))}</td>' for k in ("p50", "p95", "p99")) + "</tr>"
        for p, q in (latency.get("paths") or {}).items()
    )
    title = f"{data.get('migration', '')}: replay of {data.get('source', '')}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{_e(title)}</title><style>{CSS}</style></head>
<body><main>
<h1>{_e(data.get('migration', ''))}: replay of {_tok(data.get('source', ''))}</h1>
<section class="decision" style="--c:{color}"><div>Decision: <span class="action">{_e(action)}</span></div><ol>{reasons}</ol></section>
<div class="stats">{stat_html}</div>
<h2>Where divergence starts</h2>
<table><tr><th>first divergent node</th><th class="num">events</th></tr>{node_rows}</table>
<h2>Divergence groups</h2>
<div class="wide"><table><tr><th class="num">events</th><th>node</th><th>kind</th><th>path</th><th>legacy</th><th>candidate</th><th>first event</th></tr>{group_rows}</table></div>
<h2>Divergence rate over time</h2>
{rate_chart(data.get("timeline") or [], threshold)}
<p class="muted">Blue: observed divergence rate; orange band: its confidence bounds; red dashes: the policy's limit.</p>
<h2>Latency</h2>
<h3>Where the time goes, per event</h3>
{breakdown_chart(latency.get("breakdown") or {})}
<p class="muted">Mean per event. Candidate: node compute, the LangGraph runtime around it, and its checkpoint store (none in a sandboxed replay: an event cut off mid-run is run again, so it writes no checkpoints); legacy: handler compute and the bus's own dispatch. Red dashes: the time served after cutover, what the default latency contracts judge (node compute, the runtime at its CPU cost, and a production checkpointer's cost per superstep; not this replay's store).</p>
{('<table><tr><th>path</th><th class="num">p50</th><th class="num">p95</th><th class="num">p99</th></tr>' + path_rows + '</table>') if path_rows else ''}
{distribution_chart(latency.get("distribution") or {})}
<h3>Per node</h3>
{node_latency_chart(latency.get("nodes") or {})}
<h2>The derived graph</h2>
{graph_chart(data.get("graph") or {}, by_node)}
<p class="muted">Rounded: event types; boxes: handler nodes (green: native, red: where divergence starts); dashed: events a node publishes.</p>
<h2>Examples</h2>
<div class="wide"><table><tr><th>event</th><th>first divergent node</th><th>differences</th><th>trace</th></tr>{example_rows}</table></div>
<h2>Learned noise (ignored in comparisons)</h2>
<table><tr><th>event type</th><th>path</th><th class="num">differed / samples</th><th>example</th></tr>{noise_rows}</table>
</main></body></html>
"""
