"""The HTML report renders in a real browser: decision first, plots drawn, values escaped."""

from __future__ import annotations

from PIL import Image

from examples.orders import v2
from examples.orders.generate import generate
from migration_kit.report.html import render_report


def test_the_report_renders_the_decision_the_divergent_node_and_plots(tmp_path, browser):
    report = v2.migration().replay(list(generate(300)))
    assert report.divergent > 0
    page = tmp_path / "report.html"
    page.write_text(render_report(report.to_dict()), encoding="utf-8")
    dom = browser.dom(page)
    assert "HOLD" in dom.upper() and "schedule_shipment" in dom
    assert dom.count("<svg") >= 3  # rate over time, latency, the derived graph
    shot = browser.screenshot(page, tmp_path / "report.png")
    image = Image.open(shot).convert("RGB")
    colors = image.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # text, bars and lines, not a blank page
    non_white = sum(n for n, c in colors if c != (255, 255, 255))
    assert non_white > 0.01 * image.width * image.height


def test_the_report_of_a_100k_event_replay_stays_under_2_mb(tmp_path):
    """Everything in the page is bounded: groups, examples, the timeline, noise rows."""
    from legacy_bus import Event
    from migration_kit.compare.comparator import Comparison, Difference
    from migration_kit.decide.decision import Decision
    from migration_kit.compare.outcome import Emission, Outcome
    from migration_kit.report.report import ReplayTally

    tally = ReplayTally()
    root = Event(type="OrderPlaced", id="root")
    legacy = Outcome("legacy", root, (Emission("ship", "Shipped", {"q": "a"}, {}, "<root>", 1, "x"),), duration=0.001)
    candidate = Outcome("candidate", root, (Emission("ship", "Shipped", {"q": "b"}, {}, "<root>", 1, "y"),), duration=0.008)
    long_value = "v" * 400
    for i in range(100_000):
        diffs = (Difference(f"emitted[0].payload.f{i % 1500}", "value_changed", long_value, long_value + "!", "ship"),) if i % 7 == 0 else ()
        tally.add(Comparison(root, legacy, candidate, diffs, "ship" if diffs else None), i + 1)
    report = tally.freeze(Decision("hold", ("r",)), migration="big", source="big.jsonl", skipped=[], duration=100.0)
    out = tmp_path / "big.html"
    report.write_html(out)
    size = out.stat().st_size
    assert report.total == 100_000 and len(report.groups) == 1000
    assert size < 2 * 1024 * 1024, size
