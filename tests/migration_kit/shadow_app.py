"""A small legacy app for shadow-traffic tests: worker subprocesses load it with ``--app shadow_app:...``.

Checkout cascade: ``OrderPlaced`` -> ``validate`` (saga state) -> ``OrderValidated``
-> ``pay`` (the ``payments.charge`` effect port) -> ``PaymentCaptured`` ->
``ship``. ``SHADOW_APP_WORK`` (an int) makes each handler burn that many
hash rounds of CPU, so benchmarks compare a worker-bound candidate.
"""

from __future__ import annotations

import hashlib
import os

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from migration_kit import Migration

WORK = int(os.environ.get("SHADOW_APP_WORK", "0"))
REAL_CHARGES: list[str] = []


def burn(seed: str) -> str:
    digest = seed.encode()
    for _ in range(WORK):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:8]


bus = EventBus("shop")


@bus.effect("payments.charge", stub=lambda order, amount: {"status": "stub", "amount": amount})
def charge(order: str, amount: int) -> dict:
    REAL_CHARGES.append(order)
    return {"status": "approved", "amount": amount, "auth": f"auth-{order}"}


@bus.on("OrderPlaced")
def validate(e, ctx):
    burn(e.id)
    ctx.state["orders"] = ctx.state.get("orders", 0) + 1
    ctx.state["total"] = e.payload["amount"]
    ctx.publish("OrderValidated", {"order": e.payload["order"], "weight": e.payload["weight"]})


@bus.on("OrderValidated")
def pay(e, ctx):
    burn(e.id)
    receipt = charge(e.payload["order"], ctx.state["total"])
    return Event(type="PaymentCaptured", payload={"order": e.payload["order"], "auth": receipt["auth"], "weight": e.payload["weight"]})


@bus.on("PaymentCaptured")
def ship(e):
    burn(e.id)
    queue = "heavy" if e.payload["weight"] > 20 else "standard"
    return Event(type="ShipmentScheduled", payload={"order": e.payload["order"], "queue": queue})


def ship_v2(e):
    burn(e.id)
    queue = "freight" if e.payload["weight"] > 25 else ("heavy" if e.payload["weight"] > 20 else "standard")
    return Event(type="ShipmentScheduled", payload={"order": e.payload["order"], "queue": queue})


def crash_v2(e):
    raise RuntimeError("v2 shipping service misconfigured")


def order(i: int, **payload: object) -> Event:
    return Event(type="OrderPlaced", payload={"order": f"o{i}", "amount": 10 + i, "weight": i % 31, **payload}, correlation_id=f"c{i % 50}")


def migration(store: str | None = None) -> Migration:
    """Parity: the bus and its own derived graph."""
    return Migration("shop", legacy=bus, candidate=flow_from_bus(bus), store=store)


def migration_v2(store: str | None = None) -> Migration:
    """Diverges on heavy parcels (weight 26..30) at ``ship``."""
    return Migration("shop", legacy=bus, candidate=flow_from_bus(bus).replace("ship", ship_v2), store=store)


def migration_crash(store: str | None = None) -> Migration:
    """The candidate's ``ship`` raises on every event."""
    return Migration("shop", legacy=bus, candidate=flow_from_bus(bus).replace("ship", crash_v2), store=store)


def two_step_bus() -> tuple[EventBus, list[str]]:
    """A fresh bus of two chained nodes (``A`` -> first -> ``B`` -> second), and the list of nodes run, in order."""
    bus = EventBus("resume")
    runs: list[str] = []

    @bus.on("A")
    def first(e):
        runs.append("first")
        return Event(type="B", payload={"x": e.payload["x"] + 1})

    @bus.on("B")
    def second(e):
        runs.append("second")
        return Event(type="C", payload={"x": e.payload["x"] * 2})

    return bus, runs
