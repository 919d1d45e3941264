"""Latency that says where the time goes, and a default policy that judges what users pay after cutover."""

from __future__ import annotations

import itertools
import subprocess
import time
from pathlib import Path

import pytest

from examples.orders import app as orders
from graph_flows import flow_from_bus
from legacy_bus import Event, EventLog
from migration_kit import Evidence, Migration, default_policy
from migration_kit.report.console import latency_breakdown_lines
from migration_kit.decide.latency import TimedSaver, breakdown, production_checkpoint
from migration_kit.compare.outcome import NodeRun, Outcome
from checkpoints import open_checkpointer

LOG = Path(orders.__file__).with_name("events.jsonl")
LATENCY_RULES = ("latency-p50", "latency-p99", "node-latency")


@pytest.fixture(scope="module")
def busy():
    """Four CPU-bound processes beside the test (`yes > /dev/null`), as on a loaded CI machine."""
    procs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(4)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)


def _entries(n: int):
    return list(itertools.islice(EventLog(LOG), n))


def _fired(decision, rules=LATENCY_RULES) -> list[str]:
    """The latency rules that fired (a rule that fired is followed by the action it leads to)."""
    return [r for r in decision.reasons if r.split(":")[0] in rules and ": passed," not in r]


def test_an_identical_wrapped_graph_on_the_default_sqlite_store_under_cpu_load_is_never_held_for_latency(busy, tmp_path):
    m = Migration("orders", legacy=orders.bus, candidate=flow_from_bus(orders.bus), store=f"sqlite:///{tmp_path}/store.sqlite")
    with m:
        report = m.replay(_entries(150))
    assert report.divergent == 0
    assert report.decision.action in ("continue", "promote"), report.decision.reasons
    assert _fired(report.decision) == []


def test_30ms_added_in_one_node_is_caught_under_the_same_load(busy, tmp_path):
    def slow_validate(e, ctx):
        time.sleep(0.030)
        return orders.validate_order(e, ctx)

    flow = flow_from_bus(orders.bus).replace("validate_order", slow_validate)
    m = Migration("orders", legacy=orders.bus, candidate=flow, store=f"sqlite:///{tmp_path}/store.sqlite")
    with m:
        report = m.replay(_entries(80))
    assert report.divergent == 0
    assert report.decision.action == "hold"
    fired = _fired(report.decision)
    assert fired and any("validate_order" in r or r.startswith("latency-p50") for r in fired), report.decision.reasons


def test_the_report_splits_each_paths_time_into_its_parts_in_json_html_and_terminal(tmp_path):
    m = Migration("orders", legacy=orders.bus, candidate=flow_from_bus(orders.bus), store=f"sqlite:///{tmp_path}/s.sqlite")
    with m:
        report = m.replay(_entries(30))
    view = report.to_dict()["latency"]["breakdown"]
    assert [p["part"] for p in view["candidate"]["parts"]] == ["node", "runtime", "checkpoint"]
    assert [p["part"] for p in view["legacy"]["parts"]] == ["handler", "bus"]
    for path in ("legacy", "candidate"):
        # The parts are a split of the wall time: their means add up to the mean total.
        assert sum(p["mean"] for p in view[path]["parts"]) == pytest.approx(view[path]["mean"], rel=1e-6)
    parts = {p["part"]: p["mean"] for p in view["candidate"]["parts"]}
    assert parts["node"] > 0 and parts["runtime"] > 0
    assert parts["checkpoint"] == 0  # a sandboxed replay runs without checkpoints: none charged to the candidate
    page = tmp_path / "r.html"
    report.write_html(page)
    html = page.read_text()
    assert 'aria-label="where the time goes per event"' in html and "LangGraph runtime" in html and "checkpoint store" in html
    lines = latency_breakdown_lines(report)
    assert any("node compute" in x and "LangGraph runtime" in x and "checkpoint store" in x for x in lines)
    assert any("handler compute" in x and "bus overhead" in x for x in lines)


def test_served_time_charges_a_production_checkpointer_not_the_store_the_replay_used():
    event = Event(type="Ping", payload={})
    run = NodeRun("pong", 0, 0, (), (), None, 0.002)
    slow_store = Outcome("candidate", event, trace=(run,), duration=0.600, checkpoint=0.500, cpu=0.004, steps=2)
    b = breakdown(slow_store)
    assert b.parts == pytest.approx({"node": 0.002, "runtime": 0.098, "checkpoint": 0.500})
    # node compute + the runtime at its CPU cost (4 ms < its 98 ms of wall time) + the modelled production store
    assert b.served == pytest.approx(0.002 + 0.004 + production_checkpoint(2))
    assert production_checkpoint(2) > 0


def test_a_rule_that_passed_is_not_worded_like_a_failure():
    ev = Evidence()
    for _ in range(1200):
        ev.observe(legacy=0.001, candidate=0.004)
    reasons = default_policy().evaluate(ev).reasons
    assert reasons[0].startswith("no-evidence: passed, 1,200 events compared")
    assert any(r.startswith("minimum-evidence: passed,") for r in reasons)
    assert any(r.startswith("ready-to-promote: not yet,") for r in reasons)


def test_the_timing_wrapper_charges_saver_calls_to_the_thread_they_are_for():
    flow = flow_from_bus(orders.bus)
    saver = TimedSaver(open_checkpointer("memory://"))
    graph = flow.compile(checkpointer=saver)
    entry = _entries(1)[0]
    with saver.measure("t1") as spent, saver.measure("other") as other:
        from legacy_bus import Sandbox

        with Sandbox(entry.effects):
            graph.invoke({"event": entry.event.to_dict()}, {"configurable": {"thread_id": "t1"}})
    assert spent.calls > 2 and spent.seconds > 0 and spent.step >= 1
    assert other.calls == 0


def test_the_embedded_sqlite_store_runs_wal_with_synchronous_normal_and_hides_deferred_deletes(tmp_path):
    saver = open_checkpointer(f"sqlite:///{tmp_path}/c.sqlite")
    try:
        assert saver.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert saver.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        graph = flow_from_bus(orders.bus).compile(checkpointer=saver)
        entry = _entries(1)[0]
        config = {"configurable": {"thread_id": "t"}}
        from legacy_bus import Sandbox

        with Sandbox(entry.effects):
            graph.invoke({"event": entry.event.to_dict()}, config, durability="exit")
        assert saver.get_tuple(config) is not None
        saver.delete_thread("t")
        assert saver.get_tuple(config) is None
        assert saver.conn.execute("SELECT COUNT(*) FROM checkpoints WHERE thread_id='t'").fetchone()[0] == 0
    finally:
        saver.close()


def test_groups_over_the_same_events_are_shown_together(tmp_path):
    from legacy_bus import EventBus

    bus = EventBus("shop")

    @bus.effect("mail.send", stub=lambda to, text: {"ok": True})
    def send(to, text):  # pragma: no cover - replays are sandboxed
        raise AssertionError("a replay sent mail")

    @bus.on("Order")
    def confirm(e):
        send(e.payload["to"], f"total {e.payload['n'] * 2}")
        return Event(type="Confirmed", payload={"total": e.payload["n"] * 2})

    @bus.on("Other")
    def other(e):
        return Event(type="Seen", payload={"k": e.payload["k"] + 1})

    def confirm_v2(e):
        total = e.payload["n"] * 2 + (1 if e.payload["n"] % 2 else 0)
        send(e.payload["to"], f"total {total}")
        return Event(type="Confirmed", payload={"total": total})

    def other_v2(e):
        return Event(type="Seen", payload={"k": e.payload["k"] + (2 if e.payload["k"] % 3 == 0 else 1)})

    events = [Event(type="Order", payload={"n": i, "to": "a@example.com"}) for i in range(12)]
    events += [Event(type="Other", payload={"k": i}) for i in range(12)]
    flow = flow_from_bus(bus).replace("confirm", confirm_v2).replace("other", other_v2)
    report = Migration("shop", legacy=bus, candidate=flow).replay(events)
    groups = report.to_dict()["groups"]
    kinds = {(g["node"], g["kind"]) for g in groups}
    assert {("confirm", "effect_arguments"), ("confirm", "value_changed")} <= kinds
    confirm_rows = [i for i, g in enumerate(groups) if g["node"] == "confirm"]
    assert confirm_rows == list(range(confirm_rows[0], confirm_rows[0] + len(confirm_rows)))  # adjacent
    assert len({groups[i]["related"] for i in confirm_rows}) == 1  # one finding, seen at two paths
    other_rows = [g for g in groups if g["node"] == "other"]
    assert other_rows and all(g["related"] != groups[confirm_rows[0]]["related"] for g in other_rows)
    page = tmp_path / "r.html"
    report.write_html(page)
    assert page.read_text().count('<tr class="related">') == len(confirm_rows) - 1
