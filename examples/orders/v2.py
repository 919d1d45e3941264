"""orders-svc v2: shipping scheduled by a native LangGraph node.

The first handler moved off the bus is ``schedule_shipment`` (on
``PaymentCaptured``). Its native rewrite, ``plan_shipment``, takes a
``NodeInput`` and returns a ``NodeOutput`` (see ``graph_flows.state``) and
carries one deliberate behaviour change: logistics opened a cross-dock for
France, so heavy parcels to France are picked into their own queue.

Exactly which events diverge from the legacy app (``examples.orders.app``):

* an ``OrderPlaced`` whose ``payload.ship_to.country == "FR"`` and whose total
  weight ``round(sum(line.weight_kg * line.qty for line in payload.items), 3)``
  (in kg, to the gram, as ``validate_order`` computes it) is **strictly
  greater than 20**, *and* that gets as far as shipping (the
  legacy cascade emits a ``ShipmentScheduled``: the order is valid, in stock,
  not held for fraud review and its payment is approved);
* the one differing field is the ``ShipmentScheduled`` event's queue,
  ``emitted[k].payload.queue`` where ``k`` is that event's index in the
  cascade (node ``schedule_shipment``): legacy says ``"bulky"`` (20-31.5 kg)
  or ``"freight"`` (over 31.5 kg), v2 says ``"bulky-fr"``.

Nothing else differs: carrier, service, ETA, parcels, the saga state, the
e-mails and every other event are the same, and ``OrderCancelled`` events
never diverge.
"""

from __future__ import annotations

from typing import Any

from graph_flows import NodeInput, NodeOutput, flow_from_bus

from examples.orders.app import (
    BULKY_KG,
    bus,
    carrier_for,
    eta_days,
    parcels_for,
    picking_queue,
)

__all__ = ["DIVERGENT_QUEUE", "REWRITTEN", "bus", "flow", "migration", "plan_shipment", "predicts_divergence"]

REWRITTEN = "schedule_shipment"
DIVERGENT_QUEUE = "bulky-fr"
CROSS_DOCK_COUNTRY = "FR"  # Lille cross-dock, live since the v2 cutover


def queue_for(country: str, zone: str, weight_kg: float, tier: str) -> str:
    if country == CROSS_DOCK_COUNTRY and weight_kg > BULKY_KG:
        return DIVERGENT_QUEUE
    return picking_queue(zone, weight_kg, tier)


def plan_shipment(inp: NodeInput) -> NodeOutput:
    """Native node replacing ``schedule_shipment``: PaymentCaptured -> ShipmentScheduled."""
    state: dict[str, Any] = dict(inp["state"])
    order = state["order"]
    zone, weight, tier = order["zone"], order["weight_kg"], order["tier"]
    carrier, service = carrier_for(zone, weight)
    days = eta_days(zone, weight, tier)
    state["status"] = "shipping_scheduled"
    state["shipment"] = {"carrier": carrier, "service": service, "eta_days": days}
    shipment = {
        "order_id": order["order_id"],
        "carrier": carrier,
        "service": service,
        "queue": queue_for(order["country"], zone, weight, tier),
        "country": order["country"],
        "weight_kg": weight,
        "parcels": parcels_for(weight),
        "eta_days": days,
    }
    return {"emit": [{"type": "ShipmentScheduled", "payload": shipment}], "state": state}


def predicts_divergence(order_placed: dict[str, Any]) -> bool:
    """The payload test of the docstring (the order must also reach shipping on the legacy path)."""
    weight = round(sum(line["weight_kg"] * line["qty"] for line in order_placed.get("items") or ()), 3)
    return (order_placed.get("ship_to") or {}).get("country") == CROSS_DOCK_COUNTRY and weight > BULKY_KG


flow = flow_from_bus(bus)
flow.replace(REWRITTEN, plan_shipment, native=True)


def migration(store: str | None = None):
    from migration_kit import Migration

    return Migration("orders-v2", legacy=bus, candidate=flow, store=store)
