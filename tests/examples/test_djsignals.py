"""The Django-signals billing app: its own tests pass on Django alone, through the adapter, and with
the derived graph serving; replay and live shadow show parity; a changed receiver is caught."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import pytest

from examples.djsignals.app import Marketplace, Shop, build, email_invoice_v2
from migration_kit.testing import assert_parity

sys.path.insert(0, str(Path(__file__).parent))
from example_paths import live_shadow, served_by, twin_migration  # noqa: E402


@pytest.fixture(params=["django", "bus", "graph"])
def app(request):
    app = build()
    if request.param == "django":
        app.bus.close()
        yield app
        return
    with served_by(request.param, app.bus, lambda: request.getfixturevalue("redis_url")):
        yield app


def test_a_paid_shop_order_is_invoiced_booked_and_emailed(app):
    app.pay(Shop, "o1", Decimal("19.999"))
    assert app.invoices == 1 and app.ledger == {"Shop": Decimal("19.999")}
    assert app.emails == [("o1@customers.example", "Invoice INV-o1: 20.00")]


def test_marketplace_orders_are_invoiced_but_not_emailed(app):
    app.pay(Marketplace, "m1", Decimal("5"))
    assert app.invoices == 1 and app.emails == []


def _payments(app, n=8):
    return [
        app.bus.codec.to_event(("order_paid", ((Shop, Marketplace)[i % 2],), {"order": f"o{i}", "amount": Decimal(f"{i}.25")}))
        for i in range(n)
    ]


def test_replay_of_payments_shows_parity():
    live, m = twin_migration(build)
    assert_parity(m, _payments(live))


def test_a_changed_invoice_email_is_caught_and_localized_to_its_receiver():
    def change(flow, twin):
        flow.replace("email_invoice", twin.bus.wrap("invoice_issued", email_invoice_v2(twin)))

    live, m = twin_migration(build, change=change)
    report = m.replay(_payments(live))
    assert report.divergent == 4 and report.by_node == {"email_invoice": 4}  # only Shop orders are e-mailed


def test_live_shadow_of_payments_shows_parity(redis_url):
    live, m = twin_migration(build, store=redis_url)

    def traffic():
        for i in range(6):
            live.pay(Shop, f"o{i}", Decimal("3.10"))
        return 6

    status = live_shadow(m, redis_url, traffic)
    assert (status["compared"], status["divergent"], status["errors"]) == (6, 0, 0)
