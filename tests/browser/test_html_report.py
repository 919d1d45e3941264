"""The HTML report renders in a real browser: decision first, plots drawn, values escaped."""

from __future__ import annotations

from PIL import Image

from examples.orders import v2
from examples.orders.generate import generate
from migration_kit.html import render_report


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
