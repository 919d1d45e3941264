"""The warehouse's migration onto LangGraph, and v2 handlers to prove against production."""

from __future__ import annotations

import os

from examples.warehouse import model
from examples.warehouse.bootstrap import App, bootstrap
from examples.warehouse.unit_of_work import SqlAlchemyUnitOfWork
from graph_flows import flow_from_bus
from migration_kit import Migration


def publish_allocated_event_v2(event: model.Allocated, publish) -> None:
    """v2 publishes a smaller message: only the order and the batch (a change the replay must catch)."""
    publish("line_allocated", {"orderid": event.orderid, "batchref": event.batchref})


def add_allocation_to_read_model_v2(event: model.Allocated, uow: SqlAlchemyUnitOfWork) -> None:
    """v2 of the read model "normalizes" batch references to lower case: a change only its writes show."""
    with uow:
        uow.session.add(model.AllocationView(event.orderid, event.sku, event.batchref.lower()))
        uow.commit()


def migration(app: App | None = None, *, v2: bool = False, view_v2: bool = False, store: str = "memory://") -> Migration:
    """The warehouse's migration: its bus as legacy, the derived graph (optionally with a v2 handler) as candidate."""
    app = app or bootstrap()
    flow = flow_from_bus(app.bus)
    # the same wiring (decoding, injection, collection) around the new function
    if v2:
        flow.replace("publish_allocated_event", app.bus.wrap(publish_allocated_event_v2))
    if view_v2:
        flow.replace("add_allocation_to_read_model", app.bus.wrap(add_allocation_to_read_model_v2))
    return Migration("warehouse", legacy=app.bus, candidate=flow, store=store)


def worker_migration(store: str | None = None) -> Migration:
    """What ``migration-kit worker --app examples.warehouse.migration:worker_migration`` runs: the app on
    ``$WAREHOUSE_DB_URL`` (its tables already there), its own graph as candidate."""
    app = bootstrap(db_url=os.environ["WAREHOUSE_DB_URL"], create=False)
    return migration(app, store=store or "memory://")
