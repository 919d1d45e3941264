"""The example orders app: a realistic legacy bus app, its wrapped graph, its v2 rewrite and its log."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from examples.orders import app, v2
from examples.orders.generate import generate, main
from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus, EventLog, OverlayStateStore, Sandbox

LOG = Path(app.__file__).with_name("events.jsonl")
PAYMENT = "payments.charge"


def _order(order_id: str, **overrides) -> Event:
    payload = {
        "order_id": order_id,
        "customer": {"id": "C1", "name": "Ada Lovelace", "email": "ada@example.com", "tier": "gold", "orders": 4},
        "items": [
            {"sku": "MONITOR-27", "qty": 1, "price": 279.0, "weight_kg": 6.4},
            {"sku": "CABLE-USBC-2M", "qty": 2, "price": 9.99, "weight_kg": 0.08},
        ],
        "currency": "EUR",
        "ship_to": {"country": "DE"},
        "billing_country": "DE",
        "payment_token": "tok_visa_4242",
    }
    payload.update(overrides)
    return Event(type="OrderPlaced", payload=payload, correlation_id=order_id)


def _sandboxed(event: Event):
    return app.bus.dispatch(event, sandbox=Sandbox(), states=OverlayStateStore())


def _pairs(events) -> list[tuple[str, dict]]:
    return [(e.type, e.payload) if isinstance(e, Event) else (e["type"], e["payload"]) for e in events]


@pytest.fixture(scope="module")
def log_events() -> list[Event]:
    return list(EventLog(LOG).events())


# -- shape of the legacy app ---------------------------------------------------------


def test_the_app_is_a_module_level_bus_with_many_handlers():
    assert isinstance(app.bus, EventBus) and app.bus.name == "orders"
    names = [s.name for s in app.bus.subscriptions]
    assert len(names) >= 6
    for expected in ("validate_order", "reserve_inventory", "charge_payment", "schedule_shipment", "cancel_order"):
        assert expected in names
    assert {"payments.charge", "payments.refund", "mail.send"} <= set(app.bus.ports)


def test_payment_captured_fans_out_to_three_handlers():
    fan = [s.name for s in app.bus.handlers_for("PaymentCaptured")]
    assert fan == ["schedule_shipment", "award_loyalty_points", "send_receipt"]
    d = _sandboxed(_order("ORD-T-FAN"))
    by = dict(zip(d.emitted_by, (e.type for e in d.emitted)))
    assert by["schedule_shipment"] == "ShipmentScheduled"
    assert by["award_loyalty_points"] == "LoyaltyPointsAwarded"
    assert [s.node for s in d.steps if s.event.type == "PaymentCaptured"] == fan


def test_an_async_handler_runs_on_the_sync_bus():
    sub = next(s for s in app.bus.subscriptions if s.name == "send_receipt")
    assert sub.is_async and inspect.iscoroutinefunction(sub.handler)
    d = _sandboxed(_order("ORD-T-ASYNC"))
    receipts = [c for c in d.effects if c.node == "send_receipt"]
    assert [(c.port, c.args[1]) for c in receipts] == [("mail.send", "receipt")]
    assert d.state["receipt_message_id"] == "<receipt.test@mail.shop.example>"


def test_all_three_publishing_styles_are_used_and_captured():
    risky = _order(
        "ORD-T-RISK",
        customer={"id": "C2", "name": "Eve", "email": "eve@mailinator.com", "tier": "standard", "orders": 0},
        items=[{"sku": "GPU-RTX-4090", "qty": 1, "price": 1899.0, "weight_kg": 2.4}],
        billing_country="US",
    )
    d = _sandboxed(risky)
    emitted = list(zip(d.emitted_by, (e.type for e in d.emitted)))
    # ctx.publish in an (event, ctx) handler
    assert ("validate_order", "OrderValidated") in emitted
    assert "ctx.publish(" in inspect.getsource(app.validate_order)
    # bus.publish inside a handler
    assert ("score_fraud", "OrderFlaggedForReview") in emitted
    assert "bus.publish(" in inspect.getsource(app.score_fraud)
    # returned events
    assert ("reserve_inventory", "InventoryReserved") in emitted
    assert ("charge_payment", "PaymentDeferred") in emitted
    assert "return Event(" in inspect.getsource(app.reserve_inventory)
    # the flag in saga state, set by score_fraud, kept charge_payment from charging
    assert d.state["hold"] is True and d.state["status"] == "on_hold"
    assert not [c for c in d.effects if c.port == PAYMENT]


def test_saga_state_carries_the_order_from_handler_to_handler_and_across_events():
    states = OverlayStateStore()
    placed = app.bus.dispatch(_order("ORD-T-SAGA"), sandbox=Sandbox(), states=states)
    assert placed.state["status"] == "shipping_scheduled"
    assert placed.state["order"]["total_cents"] == placed.emitted[0].payload["total_cents"]
    cancel = Event(
        type="OrderCancelled", payload={"order_id": "ORD-T-SAGA", "reason": "changed_mind"}, correlation_id="ORD-T-SAGA"
    )
    d = app.bus.dispatch(cancel, sandbox=Sandbox(), states=states)
    assert [e.type for e in d.emitted] == ["RefundIssued", "ShipmentCancellationRequested"]
    assert d.emitted[0].payload["amount_cents"] == placed.state["order"]["total_cents"]
    assert d.state["status"] == "cancelled"
    unknown = app.bus.dispatch(cancel, sandbox=Sandbox(), states=OverlayStateStore())
    assert _pairs(unknown.emitted) == [("CancellationRejected", {"order_id": "ORD-T-SAGA", "reason": "unknown_order"})]


def test_handlers_are_deterministic():
    event = _order("ORD-T-DET")
    assert _pairs(_sandboxed(event).emitted) == _pairs(_sandboxed(event).emitted)


def test_a_live_publish_charges_the_card_exactly_once_for_real():
    live = app.bus.publish(_order("ORD-T-LIVE"))
    charges = [c for c in live.effects if c.port == PAYMENT]
    assert len(charges) == 1
    (charge,) = charges
    assert charge.mode == "real" and charge.node == "charge_payment"
    assert charge.response["status"] == "approved" and charge.response["charge_id"].startswith("ch_")
    assert not charge.response["charge_id"].startswith("ch_test_")  # not the stub
    assert {c.mode for c in live.effects} == {"real"}
    assert app.bus.state_for("ORD-T-LIVE")["charge_id"] == charge.response["charge_id"]
    # a sandboxed run of the same order never runs it for real
    shadow = _sandboxed(_order("ORD-T-LIVE"))
    assert [c.mode for c in shadow.effects if c.port == PAYMENT] == ["stub"]


def test_a_live_decline_goes_to_the_customer():
    live = app.bus.publish(_order("ORD-T-DECLINE", payment_token="tok_chargeDeclined"))
    assert [e.type for e in live.emitted][-1] == "PaymentDeclined"
    mails = [(c.node, c.args[1]) for c in live.effects if c.port == "mail.send"]
    assert mails == [("email_payment_declined", "payment_failed")]


# -- the generator and the committed log -------------------------------------------------


def test_the_generator_is_deterministic():
    a = [e.model_dump_json() for e in generate(150, seed=11)]
    b = [e.model_dump_json() for e in generate(150, seed=11)]
    assert a == b
    assert a != [e.model_dump_json() for e in generate(150, seed=12)]
    assert len({e.id for e in generate(150, seed=11)}) == 150


def test_the_generator_cli_writes_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "log.jsonl"
    assert main(["40", str(out), "--seed", "3"]) == 0
    assert out.read_text().splitlines() == [e.model_dump_json() for e in generate(40, seed=3)]
    assert main(["10", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["10", str(out), "--overwrite"]) == 0
    assert len(out.read_text().splitlines()) == 10


def test_the_committed_log_parses_and_is_reproducible(log_events):
    assert len(log_events) >= 1000
    assert {e.type for e in log_events} == {"OrderPlaced", "OrderCancelled"}
    lines = LOG.read_text().splitlines()
    assert lines == [e.model_dump_json() for e in generate(len(lines), seed=7)]


def test_the_log_exercises_every_branch(log_events):
    states = OverlayStateStore()
    seen: set[str] = set()
    for event in log_events:
        seen.update(e.type for e in app.bus.dispatch(event, sandbox=Sandbox(), states=states).emitted)
    assert {
        "OrderRejected", "OutOfStock", "OrderFlaggedForReview", "PaymentDeferred", "PaymentCaptured",
        "ShipmentScheduled", "LoyaltyPointsAwarded", "RefundIssued", "CancellationRejected",
    } <= seen  # fmt: skip


# -- the wrapped graph, and the v2 rewrite ---------------------------------------------------------


def test_the_wrapped_graph_emits_what_the_bus_emits(log_events):
    graph = flow_from_bus(app.bus).compile()
    for event in log_events[:200]:
        legacy = _sandboxed(event)
        with Sandbox():
            final = graph.invoke({"event": event})
        assert _pairs(final["emitted"]) == _pairs(legacy.emitted), event.id


def test_v2_diverges_exactly_where_its_docstring_says(log_events):
    assert v2.flow.replaced == [v2.REWRITTEN] == ["schedule_shipment"]
    graph = v2.flow.compile()
    predicted, divergent = set(), set()
    for event in log_events:
        legacy = _pairs(_sandboxed(event).emitted)
        with Sandbox():
            candidate = _pairs(graph.invoke({"event": event})["emitted"])
        if event.type == "OrderPlaced" and v2.predicts_divergence(event.payload):
            if any(t == "ShipmentScheduled" for t, _ in legacy):
                predicted.add(event.id)
        if candidate == legacy:
            continue
        divergent.add(event.id)
        assert len(candidate) == len(legacy)
        for (lt, lp), (ct, cp) in zip(legacy, candidate):
            if (lt, lp) != (ct, cp):
                assert lt == ct == "ShipmentScheduled"
                assert {k for k in lp if lp[k] != cp.get(k)} == {"queue"} and lp.keys() == cp.keys()
                assert lp["queue"] in ("bulky", "freight") and cp["queue"] == v2.DIVERGENT_QUEUE
                assert lp["country"] == "FR" and lp["weight_kg"] > 20
    assert divergent == predicted
    assert 0.05 <= len(divergent) / len(log_events) <= 0.15


# -- the migration factories (the CLI's --app targets) -------------------------------------------------


def test_the_migration_factories():
    migration_kit = pytest.importorskip("migration_kit")
    m = app.migration()
    assert isinstance(m, migration_kit.Migration) and m.name == "orders" and m.legacy is app.bus
    heavy_fr = _order(
        "ORD-T-V2",
        items=[{"sku": "BOOKCASE-5", "qty": 1, "price": 129.0, "weight_kg": 24.0}],
        ship_to={"country": "FR"},
    )
    assert not m.compare(heavy_fr).divergent
    m.close()
    m2 = v2.migration()
    assert m2.name == "orders-v2" and m2.legacy is app.bus
    comparison = m2.compare(heavy_fr)
    assert comparison.divergent and comparison.first_divergent_node == "schedule_shipment"
    assert [(d.path, d.legacy, d.candidate) for d in comparison.differences] == [
        ("emitted[3].payload.queue", "bulky", "bulky-fr")
    ]
    assert re.fullmatch(r"emitted\[\d+\]\.payload\.queue", comparison.differences[0].path)
    m2.close()
