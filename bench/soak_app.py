"""The soak benchmark's app: a warehouse saga whose state keeps an inventory (one level per SKU).

``StockMoved {sku, qty}`` -> ``move`` (adds to ``state.inventory[sku]``, counts moves, publishes
``StockLevel``) -> ``watch`` (calls the ``alerts.low`` effect when a level goes under zero).
The number of SKUs (``SOAK_SKUS``, default 200) bounds the state: a saga's state grows over its
first SKUS events and then stays the same size, as a real inventory does.
"""

from __future__ import annotations

import os

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from migration_kit import Migration

SKUS = int(os.environ.get("SOAK_SKUS", "200"))
bus = EventBus("warehouse")


@bus.effect("alerts.low", stub={"sent": False})
def low(sku: str, level: int) -> dict:
    return {"sent": True}


@bus.on("StockMoved")
def move(e, ctx):
    inventory = ctx.state.setdefault("inventory", {})
    sku = e.payload["sku"]
    inventory[sku] = inventory.get(sku, 0) + e.payload["qty"]
    ctx.state["moves"] = ctx.state.get("moves", 0) + 1
    ctx.publish("StockLevel", {"sku": sku, "level": inventory[sku]})


@bus.on("StockLevel")
def watch(e):
    if e.payload["level"] < 0:
        low(e.payload["sku"], e.payload["level"])


def event(i: int, sagas: int = 1) -> Event:
    """The i-th move: SKUs cycle, quantities mostly positive, sagas round-robin."""
    return Event(type="StockMoved", payload={"sku": f"sku-{i % SKUS:04d}", "qty": (i % 7) - 2}, correlation_id=f"wh-{i % sagas:05d}")


def migration(store: str | None = None) -> Migration:
    """The warehouse migration on ``store`` (the CLI's ``--store`` overrides it)."""
    return Migration("soak", legacy=bus, candidate=flow_from_bus(bus), store=store or os.environ.get("SOAK_STORE", "memory://"))
