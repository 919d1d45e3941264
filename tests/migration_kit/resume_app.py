"""A small legacy app for resume tests: sagas across events, an effect port, a candidate that can be held inside a node.

Environment (read by the candidate's nodes only):
    MK_MARKERS  a file the candidate's ``price`` node appends "<order>" to on every run
    MK_HOLD_AT  an order number: the candidate's ``charge`` node creates MK_HOLD_FILE and sleeps
    MK_KILL_AT  ``<node>:<order>``: the candidate's node (price, charge, ship) SIGKILLs its own process
                when it handles that order (a kill inside a node, at a known event)
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from migration_kit import Migration

bus = EventBus("resumable")


@bus.effect("payments.charge", stub=lambda order, amount: {"ok": amount % 7 != 0})
def pay(order, amount):  # pragma: no cover - replays are sandboxed
    raise AssertionError("a replay ran a real payment")


@bus.on("Order")
def price(e, ctx):
    ctx.state["total"] = e.payload["n"] * 3
    ctx.state["status"] = "priced"
    ctx.publish("Priced", {"order": e.payload["n"]})


@bus.on("Priced")
def charge(e, ctx):
    receipt = pay(e.payload["order"], ctx.state["total"])
    ctx.state["status"] = "paid" if receipt["ok"] else "declined"
    return Event(type="Charged", payload={"order": e.payload["order"], "ok": receipt["ok"]})


@bus.on("Charged")
def ship(e):
    if e.payload["ok"]:
        return Event(type="Shipped", payload={"order": e.payload["order"], "queue": "heavy" if e.payload["order"] % 5 == 2 else "std"})
    return None


@bus.on("Refund")
def refund(e, ctx):
    was = ctx.state.get("status", "unknown")
    ctx.state["status"] = "refunded"
    return Event(type="Refunded", payload={"order": e.payload["order"], "was": was, "total": ctx.state.get("total")})


def _kill_point(node: str, order: int) -> None:
    if os.environ.get("MK_KILL_AT") == f"{node}:{order}":
        os.kill(os.getpid(), signal.SIGKILL)


def _price_candidate(e, ctx):
    _kill_point("price", e.payload["n"])
    markers = os.environ.get("MK_MARKERS")
    if markers:
        with open(markers, "a") as fh:
            fh.write(f"{e.payload['n']}\n")
    price(e, ctx)


def _charge_candidate(e, ctx):
    _kill_point("charge", e.payload["order"])
    hold = os.environ.get("MK_HOLD_AT")
    if hold and int(hold) == e.payload["order"]:
        Path(os.environ["MK_HOLD_FILE"]).touch()
        time.sleep(120)
    return charge(e, ctx)


def _ship_candidate(e):
    _kill_point("ship", e.payload["order"])
    out = ship(e)
    if out is not None and e.payload["order"] % 50 == 7:
        return Event(type="Shipped", payload={**out.payload, "queue": "freight"})
    return out


def migration(store: str | None = None) -> Migration:
    flow = flow_from_bus(bus)
    flow.replace("price", _price_candidate).replace("charge", _charge_candidate).replace("ship", _ship_candidate)
    return Migration("resumable", legacy=bus, candidate=flow, store=store)


def events(n: int):
    for i in range(1, n + 1):
        if i % 10 == 0:
            yield Event(type="Refund", payload={"order": i - 5}, correlation_id=f"order-{i - 5}", id=f"refund-{i}", timestamp="2026-01-01T00:00:00Z")
        else:
            yield Event(type="Order", payload={"n": i}, correlation_id=f"order-{i}", id=f"order-{i}", timestamp="2026-01-01T00:00:00Z")
