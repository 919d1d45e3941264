"""The warehouse (Cosmic Python's allocation service, its state in SQLAlchemy on a SQLite file): its own
tests pass on its own bus, on the adapter, and through the derived graph serving; replay and live shadow
show parity and write no rows; a changed handler is caught at its node. PostgreSQL end to end:
test_warehouse_postgres.py."""

from __future__ import annotations

import datetime as dt
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from examples.warehouse import model
from examples.warehouse import orm
from examples.warehouse.bootstrap import bootstrap
from examples.warehouse.handlers import allocations as read_allocations
from examples.warehouse.migration import migration
from migration_kit.testing import assert_parity

sys.path.insert(0, str(Path(__file__).parent))
from example_paths import live_shadow, served_by  # noqa: E402

TODAY = dt.date(2026, 12, 1)


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'warehouse.sqlite'}"


@pytest.fixture(params=["own", "bus", "graph"])
def app(request, db_url):
    """The app on its own MessageBus, on message_bus(), and with the derived graph serving."""
    if request.param == "own":
        app = bootstrap(own_bus=True, db_url=db_url)
        yield app
        app.engine.dispose()
        return
    app = bootstrap(db_url=db_url)
    with served_by(request.param, app.bus, lambda: request.getfixturevalue("redis_url")):
        yield app
    app.engine.dispose()


def allocations(app, orderid):
    return read_allocations(orderid, app.uow)


def available(app, sku):
    """What each batch of ``sku`` has left, read back from the database in a unit of work of its own."""
    with app.uow:
        return {b.reference: b.available for b in app.uow.products.get(sku).batches}


# -- the app's own tests (as the book writes them) ----------------------------------------------


def test_add_batch_for_new_product(app):
    app.bus.handle(model.CreateBatch("b1", "CRUNCHY-ARMCHAIR", 100))
    assert available(app, "CRUNCHY-ARMCHAIR") == {"b1": 100}


def test_allocates_to_the_in_stock_batch_before_the_shipment(app):
    app.bus.handle(model.CreateBatch("ship", "LAMP", 100, TODAY))
    app.bus.handle(model.CreateBatch("stock", "LAMP", 100))
    app.bus.handle(model.Allocate("o1", "LAMP", 10, Decimal("19.99")))
    assert available(app, "LAMP") == {"stock": 90, "ship": 100}


def test_errors_for_invalid_sku(app):
    app.bus.handle(model.CreateBatch("b1", "AREALSKU", 100))
    with pytest.raises(model.InvalidSku, match="Invalid sku NONEXISTENTSKU"):
        app.bus.handle(model.Allocate("o1", "NONEXISTENTSKU", 10))


def test_sends_email_on_out_of_stock_error(app):
    app.bus.handle(model.CreateBatch("b1", "POPULAR-CURTAINS", 9))
    app.bus.handle(model.Allocate("o1", "POPULAR-CURTAINS", 10))
    assert ("stock@made.com", "Out of stock for POPULAR-CURTAINS") in app.outbox.sent


def test_the_read_model_lists_an_orders_allocations(app):
    app.bus.handle(model.CreateBatch("b1", "SOFA", 9))
    app.bus.handle(model.CreateBatch("b2", "CHAIR", 9))
    app.bus.handle(model.Allocate("o1", "SOFA", 2))
    app.bus.handle(model.Allocate("o1", "CHAIR", 1))
    assert allocations(app, "o1") == [{"sku": "CHAIR", "batchref": "b2"}, {"sku": "SOFA", "batchref": "b1"}]


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
    assert available(app, "TABLE") == {"b1": 5, "b2": 30}
    assert allocations(app, "o2") == [{"sku": "TABLE", "batchref": "b2"}]  # the read model followed


def test_a_large_deallocation_is_reallocated_line_by_line_with_no_added_fanout_limit(app):
    # Every line is a commit to the SQLite file: 40 lines make the cascade's point at test speed.
    app.bus.handle(model.CreateBatch("small", "PEG", 40))
    app.bus.handle(model.CreateBatch("big", "PEG", 100, TODAY))
    for i in range(40):
        app.bus.handle(model.Allocate(f"o{i}", "PEG", 1))
    app.bus.handle(model.ChangeBatchQuantity("small", 0))
    assert available(app, "PEG") == {"small": 0, "big": 60}
    assert {a["batchref"] for i in range(40) for a in allocations(app, f"o{i}")} == {"big"}


# -- the migration ----------------------------------------------------------------------------------


def _stocked(db_url):
    app = bootstrap(db_url=db_url)
    for sku in ("LAMP", "RUG", "TABLE"):
        app.bus.handle(model.CreateBatch(f"{sku}-1", sku, 1000))
    return app


def _orders(app, n=12):
    skus = ["LAMP", "RUG", "TABLE", "NOPE"]  # NOPE: an invalid sku, which raises on both paths
    return [app.bus.codec.to_event(model.Allocate(f"o{i}", skus[i % 4], 1 + i % 3, Decimal("4.50"))) for i in range(n)]


def rows(engine):
    """Every table's rows, sorted: what "no rows added" is checked against."""
    from sqlalchemy import select

    with engine.connect() as conn:
        return {t: sorted(tuple(r) for r in conn.execute(select(orm.metadata.tables[t]))) for t in orm.TABLES}


def test_replay_of_the_warehouse_shows_parity_and_writes_no_rows(db_url):
    app = _stocked(db_url)
    before = rows(app.engine)
    assert_parity(migration(app), _orders(app))
    report = migration(app).replay(_orders(app))
    assert (report.total, report.divergent) == (12, 0)
    assert rows(app.engine) == before


def test_a_changed_handler_is_caught_and_localized_to_its_node(db_url):
    app = _stocked(db_url)
    report = migration(app, v2=True).replay(_orders(app))
    assert report.divergent == 9  # every valid allocation publishes; the invalid ones raise before
    assert report.by_node == {"publish_allocated_event": 9}


def test_live_shadow_of_the_warehouse_shows_parity(redis_url, db_url):
    app = _stocked(db_url)
    m = migration(app, store=redis_url)

    def traffic():
        for i in range(9):
            app.bus.handle(model.Allocate(f"live{i}", ["LAMP", "RUG", "TABLE"][i % 3], 1))
        return 9

    status = live_shadow(m, redis_url, traffic)
    assert (status["compared"], status["divergent"], status["errors"]) == (9, 0, 0)
