"""An orders saga of three root events per order, for the cutover and rollback tests.

``OrderPlaced`` -> ``open_order`` (state ``placed``) -> ``StockReserved`` -> ``reserve`` (``reserved``);
``PaymentReceived`` -> ``take_payment``: the order must be ``reserved``, else it is a
wrong-state payment (recorded in ``VIOLATIONS``); charges the card (effect
``payments.charge``), state ``paid``, publishes ``ReceiptDue`` -> ``send_receipt`` (``mail.send``);
``OrderShipped`` -> ``ship``: the order must be ``paid``; effect ``shipping.book``; ``shipped``.

Every real effect call is appended to ``LEDGER`` (one process's real side
effects), and every event handled by a handler to ``HANDLED``, so a test can
check that nothing ran twice and nothing ran in the wrong state.
``build()`` returns a fresh bus with its own ledgers, so a pure-legacy run and
a migrated run can sit side by side in one process.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from legacy_bus import Event, EventBus, StateStore


@dataclass
class Shop:
    bus: EventBus
    ledger: list[tuple[Any, ...]] = field(default_factory=list)
    handled: list[tuple[str, str]] = field(default_factory=list)
    violations: list[tuple[str, str, str]] = field(default_factory=list)


def build(state_store: StateStore | None = None, ledger_path: str | None = None) -> Shop:
    """A fresh shop; ``ledger_path`` also appends every real effect to that file (survives a kill -9)."""
    bus = EventBus("saga-shop", state_store=state_store)
    shop = Shop(bus)
    if ledger_path:
        class FileLedger(list):
            def append(self, item: tuple[Any, ...]) -> None:
                super().append(item)
                with open(ledger_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(item) + "\n")

        shop.ledger = FileLedger()

    @bus.effect("payments.charge", stub=lambda order, amount: {"status": "stub"})
    def charge(order: str, amount: int) -> dict:
        shop.ledger.append(("charge", order, amount))
        return {"status": "approved", "auth": f"auth-{order}-{amount}"}

    @bus.effect("mail.send", stub=lambda to, template: {"status": "stub"})
    def send(to: str, template: str) -> dict:
        shop.ledger.append(("mail", to, template))
        return {"status": "queued"}

    @bus.effect("shipping.book", stub=lambda order: {"status": "stub"})
    def book(order: str) -> dict:
        shop.ledger.append(("ship", order))
        return {"status": "booked", "tracking": f"trk-{order}"}

    def expect(ctx: Any, event: Event, status: str) -> bool:
        shop.handled.append((event.type, event.id))
        found = ctx.state.get("status")
        if found != status:
            shop.violations.append((event.payload["order"], event.type, f"found {found!r}, expected {status!r}"))
            return False
        return True

    @bus.on("OrderPlaced")
    def open_order(e, ctx):
        shop.handled.append((e.type, e.id))
        if ctx.state:
            shop.violations.append((e.payload["order"], e.type, "placed twice"))
            return None
        ctx.state.update(status="placed", order=e.payload["order"], amount=e.payload["amount"], history=["placed"])
        ctx.publish("StockReserved", {"order": e.payload["order"]})

    @bus.on("StockReserved")
    def reserve(e, ctx):
        if expect(ctx, e, "placed"):
            ctx.state["status"] = "reserved"
            ctx.state["history"].append("reserved")

    @bus.on("PaymentReceived")
    def take_payment(e, ctx):
        if not expect(ctx, e, "reserved"):
            return None
        receipt = charge(e.payload["order"], ctx.state["amount"])
        ctx.state.update(status="paid", auth=receipt["auth"])
        ctx.state["history"].append("paid")
        ctx.publish("ReceiptDue", {"order": e.payload["order"]})

    @bus.on("ReceiptDue")
    def send_receipt(e, ctx):
        send(f"{e.payload['order']}@example.com", "receipt")
        ctx.state["receipts"] = ctx.state.get("receipts", 0) + 1

    @bus.on("OrderShipped")
    def ship(e, ctx):
        if not expect(ctx, e, "paid"):
            return None
        booking = book(e.payload["order"])
        ctx.state.update(status="shipped", tracking=booking["tracking"])
        ctx.state["history"].append("shipped")

    return shop


def events(orders: int, seed: int = 7) -> list[Event]:
    """Three root events per order (placed, paid, shipped), orders interleaved at random, each in order."""
    rng = random.Random(seed)
    pending = {f"o{i:05d}": 0 for i in range(orders)}
    kinds = ["OrderPlaced", "PaymentReceived", "OrderShipped"]
    out = []
    while pending:
        order = rng.choice(list(pending))
        step = pending[order]
        payload: dict[str, Any] = {"order": order}
        if step == 0:
            payload["amount"] = 100 + int(order[1:]) % 900
        out.append(Event(type=kinds[step], payload=payload, correlation_id=order, id=f"{order}-{step}"))
        if step == 2:
            del pending[order]
        else:
            pending[order] = step + 1
    return out
