"""The warehouse's migration onto LangGraph, and a v2 handler to prove against production."""

from __future__ import annotations

from examples.warehouse import model
from examples.warehouse.bootstrap import App, bootstrap
from graph_flows import flow_from_bus
from migration_kit import Migration


def publish_allocated_event_v2(event: model.Allocated, publish) -> None:
    """v2 publishes a smaller message: only the order and the batch (a change the replay must catch)."""
    publish("line_allocated", {"orderid": event.orderid, "batchref": event.batchref})


def migration(app: App | None = None, *, v2: bool = False, store: str = "memory://") -> Migration:
    """The warehouse's migration: its bus as legacy, the derived graph (optionally with v2) as candidate."""
    app = app or bootstrap()
    flow = flow_from_bus(app.bus)
    if v2:
        # the same wiring (decoding, injection, collection) around the new function
        flow.replace("publish_allocated_event", app.bus.wrap(publish_allocated_event_v2))
    return Migration("warehouse", legacy=app.bus, candidate=flow, store=store)
