"""The warehouse (Cosmic Python's allocation service): its own tests pass on its own bus, on the
adapter, and through the derived graph serving; replay and live shadow show parity; a changed
handler is caught at its node."""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from examples.warehouse import model
from examples.warehouse.bootstrap import bootstrap
from examples.warehouse.migration import migration
from migration_kit.testing import assert_parity

sys.path.insert(0, str(Path(__file__).parent))
from example_paths import live_shadow, served_by  # noqa: E402

TODAY = dt.date(2026, 12, 1)


@pytest.fixture(params=["own", "bus", "graph"])
def app(request):
    """The app on its own MessageBus, on message_bus(), and with the derived graph serving."""
    if request.param == "own":
        yield bootstrap(own_bus=True)
        return
    app = bootstrap()
    with served_by(request.param, app.bus, lambda: request.getfixturevalue("redis_url")):
        yield app


# -- the app's own tests (as the book writes them) ----------------------------------------------


def test_add_batch_for_new_product(app):
    app.bus.handle(model.CreateBatch("b1", "CRUNCHY-ARMCHAIR", 100))
    assert app.uow.products.get("CRUNCHY-ARMCHAIR") is not None
    assert app.uow.commits == 1


def test_allocates_to_the_in_stock_batch_before_the_shipment(app):
    app.bus.handle(model.CreateBatch("ship", "LAMP", 100, TODAY))
    app.bus.handle(model.CreateBatch("stock", "LAMP", 100))
    app.bus.handle(model.Allocate("o1", "LAMP", 10, Decimal("19.99")))
    batches = {b.ref: b for b in app.uow.products.get("LAMP").batches}
    assert batches["stock"].available == 90 and batches["ship"].available == 100


def test_errors_for_invalid_sku(app):
    app.bus.handle(model.CreateBatch("b1", "AREALSKU", 100))
    with pytest.raises(model.InvalidSku, match="Invalid sku NONEXISTENTSKU"):
        app.bus.handle(model.Allocate("o1", "NONEXISTENTSKU", 10))


def test_sends_email_on_out_of_stock_error(app):
    app.bus.handle(model.CreateBatch("b1", "POPULAR-CURTAINS", 9))
    app.bus.handle(model.Allocate("o1", "POPULAR-CURTAINS", 10))
    assert ("stock@made.com", "Out of stock for POPULAR-CURTAINS") in app.outbox.sent


def test_publishes_the_allocation(app):
    app.bus.handle(model.CreateBatch("b1", "RUG", 9))
    app.bus.handle(model.Allocate("o1", "RUG", 2))
    assert ("line_allocated", model.Allocated("o1", "RUG", 2, "b1")) in app.outbox.sent


def test_changing_a_batch_quantity_reallocates_its_lines(app):
    app.bus.handle(model.CreateBatch("b1", "TABLE", 50))
    app.bus.handle(model.CreateBatch("b2", "TABLE", 50, TODAY))
    app.bus.handle(model.Allocate("o1", "TABLE", 20))
    app.bus.handle(model.Allocate("o2", "TABLE", 20))
    app.bus.handle(model.ChangeBatchQuantity("b1", 25))
    batches = {b.ref: b for b in app.uow.products.get("TABLE").batches}
    assert batches["b1"].available == 5 and batches["b2"].available == 30


def test_a_large_deallocation_is_reallocated_line_by_line_with_no_added_fanout_limit(app):
    app.bus.handle(model.CreateBatch("small", "PEG", 300))
    app.bus.handle(model.CreateBatch("big", "PEG", 1000, TODAY))
    for i in range(300):
        app.bus.handle(model.Allocate(f"o{i}", "PEG", 1))
    app.bus.handle(model.ChangeBatchQuantity("small", 0))
    batches = {b.ref: b for b in app.uow.products.get("PEG").batches}
    assert batches["small"].available == 0 and batches["big"].available == 700


# -- the migration ----------------------------------------------------------------------------------


def _stocked():
    app = bootstrap()
    for sku in ("LAMP", "RUG", "TABLE"):
        app.bus.handle(model.CreateBatch(f"{sku}-1", sku, 1000))
    return app


def _orders(app, n=12):
    skus = ["LAMP", "RUG", "TABLE", "NOPE"]  # NOPE: an invalid sku, which raises on both paths
    return [app.bus.codec.to_event(model.Allocate(f"o{i}", skus[i % 4], 1 + i % 3, Decimal("4.50"))) for i in range(n)]


def test_replay_of_the_warehouse_shows_parity():
    app = _stocked()
    assert_parity(migration(app), _orders(app))
    report = migration(app).replay(_orders(app))
    assert (report.total, report.divergent) == (12, 0)


def test_a_changed_handler_is_caught_and_localized_to_its_node():
    app = _stocked()
    report = migration(app, v2=True).replay(_orders(app))
    assert report.divergent == 9  # every valid allocation publishes; the invalid ones raise before
    assert report.by_node == {"publish_allocated_event": 9}


def test_live_shadow_of_the_warehouse_shows_parity(redis_url):
    app = _stocked()
    m = migration(app, store=redis_url)

    def traffic():
        for i in range(9):
            app.bus.handle(model.Allocate(f"live{i}", ["LAMP", "RUG", "TABLE"][i % 3], 1))
        return 9

    status = live_shadow(m, redis_url, traffic)
    assert (status["compared"], status["divergent"], status["errors"]) == (9, 0, 0)
