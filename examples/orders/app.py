"""Order processing service (orders-svc).

Everything that happens to an order after the storefront's checkout posts it
runs here, on our in-process event bus:

    OrderPlaced ──► validate_order ──► OrderValidated | OrderRejected
    OrderValidated ──► score_fraud (flags risky orders for manual review)
                   └─► reserve_inventory ──► InventoryReserved | OutOfStock
    InventoryReserved ──► charge_payment ──► PaymentCaptured | PaymentDeclined | PaymentDeferred
    PaymentCaptured ──► schedule_shipment ──► ShipmentScheduled
                    ├─► award_loyalty_points ──► LoyaltyPointsAwarded
                    └─► send_receipt (e-mail)
    ShipmentScheduled ──► notify_shipment (e-mail)
    OrderRejected / OutOfStock / PaymentDeclined ──► email_order_problem (e-mail)
    OrderCancelled ──► cancel_order ──► OrderVoided | RefundIssued | CancellationRejected

The order's saga state (``ctx.state``, one per correlation id: the storefront
sends the order number as correlation id) carries the validated totals, the
customer's contact data and the order's status from handler to handler.

Talking to the outside world goes through effect ports only: ``payments.charge``
and ``payments.refund`` (AcmePay) and ``mail.send`` (the transactional mailer).
In this repository the "provider" behind each port is a small deterministic
function, so the service runs anywhere without credentials.
"""

from __future__ import annotations

import hashlib

from legacy_bus import Event, EventBus

bus = EventBus("orders", max_depth=12)

# --------------------------------------------------------------------------
# reference data (nightly snapshot from the ERP; do not edit by hand)
# --------------------------------------------------------------------------

WAREHOUSE = "DE"  # Kassel fulfilment centre

# VAT in basis points, by destination. Exports outside the EU are zero-rated.
VAT_BP = {
    "DE": 1900, "AT": 2000, "FR": 2000, "NL": 2100, "BE": 2100,
    "IT": 2200, "ES": 2100, "PL": 2300, "GB": 0, "CH": 0, "US": 0,
}  # fmt: skip
EU = frozenset({"DE", "AT", "FR", "NL", "BE", "IT", "ES", "PL"})
SHIPPING_COUNTRIES = frozenset(VAT_BP)

# on hand per SKU at the last stock sync
STOCK = {
    "CABLE-USBC-2M": 5000,
    "TEE-ORG-M": 800,
    "MUG-CER-01": 1200,
    "HDPH-BT-200": 140,
    "BOOK-PY-3E": 300,
    "KETTLE-1L7": 90,
    "LAMP-DESK-LED": 75,
    "BLENDER-900": 60,
    "MONITOR-27": 40,
    "CHAIR-OAK": 35,
    "RUG-160x230": 25,
    "PLANTER-XL": 50,
    "BIKE-CITY-28": 12,
    "DUMBBELL-SET-20": 30,
    "BOOKCASE-5": 18,
    "DESK-STAND-140": 10,
    "SOFA-2S-GREY": 6,
    "TREADMILL-X2": 4,
    "GPU-RTX-4090": 3,
    "SPEAKER-MINI-V1": 0,  # discontinued, still listed on some marketplaces
}

MAX_QTY_PER_LINE = 50
MAX_ORDER_CENTS = 2_500_000
PARCEL_LIMIT_KG = 31.5  # above this it goes on a pallet
BULKY_KG = 20.0

# fraud rules v3 (risk team, see RISK-1142)
THROWAWAY_DOMAINS = frozenset({"mailinator.com", "trashmail.de", "10minutemail.com"})
REVIEW_THRESHOLD = 60

LOYALTY_MULTIPLIER = {"standard": 1, "silver": 2, "gold": 3}

SUPPORT_ADDRESS = "support@shop.example"


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def zone_of(country: str) -> str:
    if country == WAREHOUSE:
        return "domestic"
    if country in EU:
        return "eu"
    return "intl"


def shipping_fee_cents(zone: str, weight_kg: float, subtotal_cents: int, tier: str) -> int:
    if weight_kg > PARCEL_LIMIT_KG:
        return {"domestic": 7900, "eu": 12900, "intl": 24900}[zone]
    if weight_kg > BULKY_KG:
        return {"domestic": 2900, "eu": 4900, "intl": 9900}[zone]
    if zone == "domestic" and (subtotal_cents >= 10000 or tier == "gold"):
        return 0  # free domestic shipping over 100 EUR, always for gold members
    if weight_kg > 5:
        return {"domestic": 990, "eu": 1990, "intl": 4990}[zone]
    return {"domestic": 490, "eu": 990, "intl": 2490}[zone]


def carrier_for(zone: str, weight_kg: float) -> tuple[str, str]:
    """(carrier, service) for a parcel."""
    if weight_kg > PARCEL_LIMIT_KG:
        return "DB Schenker", "pallet"
    if zone == "domestic":
        return "DHL", "bulky" if weight_kg > BULKY_KG else "paket"
    if zone == "eu":
        return "DPD", "bulky" if weight_kg > BULKY_KG else "classic"
    return "UPS", "expedited"


def picking_queue(zone: str, weight_kg: float, tier: str) -> str:
    """The warehouse queue the pick list goes to."""
    if weight_kg > PARCEL_LIMIT_KG:
        return "freight"
    if weight_kg > BULKY_KG:
        return "bulky"
    if zone == "domestic":
        return "express-de" if tier == "gold" else "parcel-de"
    if zone == "eu":
        return "eu-road"
    return "intl-air"


def eta_days(zone: str, weight_kg: float, tier: str) -> int:
    days = {"domestic": 2, "eu": 4, "intl": 7}[zone]
    if weight_kg > PARCEL_LIMIT_KG:
        days += 3
    elif zone == "domestic" and tier == "gold" and weight_kg <= BULKY_KG:
        days = 1
    return days


def parcels_for(weight_kg: float) -> int:
    if weight_kg > PARCEL_LIMIT_KG:
        return 1  # one pallet
    return 1 if weight_kg <= BULKY_KG else 2


def fmt_money(cents: int, currency: str = "EUR") -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"


def _reject_reason(order: dict) -> str | None:
    items = order.get("items") or []
    if not items:
        return "no_items"
    for line in items:
        if not isinstance(line.get("qty"), int) or not 1 <= line["qty"] <= MAX_QTY_PER_LINE:
            return "bad_quantity"
        if not line.get("price") or line["price"] <= 0:
            return "bad_price"
    if order.get("currency") != "EUR":
        return "unsupported_currency"
    if (order.get("ship_to") or {}).get("country") not in SHIPPING_COUNTRIES:
        return "unsupported_country"
    if "@" not in (order.get("customer") or {}).get("email", ""):
        return "missing_email"
    return None


# --------------------------------------------------------------------------
# effect ports
# --------------------------------------------------------------------------


def _approved_stub(order_id, amount_cents, currency, payment_token):
    return {
        "status": "approved",
        "provider": "acmepay",
        "charge_id": f"ch_test_{order_id}",
        "amount_cents": amount_cents,
        "currency": currency,
    }


@bus.effect("payments.charge", stub=_approved_stub)
def charge_card(order_id, amount_cents, currency, payment_token):
    """Authorize and capture with AcmePay (POST /v2/charges)."""
    # The sandbox account behaves like production for the test tokens.
    digest = hashlib.sha256(f"{order_id}:{amount_cents}:{payment_token}".encode()).hexdigest()
    if payment_token == "tok_chargeDeclined" or amount_cents > 1_500_000:
        return {"status": "declined", "provider": "acmepay", "decline_code": "card_declined", "charge_id": None}
    return {
        "status": "approved",
        "provider": "acmepay",
        "charge_id": f"ch_{digest[:24]}",
        "amount_cents": amount_cents,
        "currency": currency,
    }


@bus.effect(
    "payments.refund",
    stub=lambda charge_id, amount_cents, reason: {"status": "succeeded", "refund_id": f"re_test_{charge_id}"},
)
def refund_charge(charge_id, amount_cents, reason):
    """Refund a captured charge with AcmePay (POST /v2/refunds)."""
    digest = hashlib.sha256(f"{charge_id}:{amount_cents}".encode()).hexdigest()
    return {"status": "succeeded", "refund_id": f"re_{digest[:24]}", "amount_cents": amount_cents}


@bus.effect(
    "mail.send",
    stub=lambda to, template, variables: {"status": "queued", "message_id": f"<{template}.test@mail.shop.example>"},
)
def send_email(to, template, variables):
    """Queue a transactional e-mail with the mailer (POST /messages)."""
    digest = hashlib.sha256(f"{to}|{template}|{sorted(variables.items())}".encode()).hexdigest()
    return {"status": "queued", "message_id": f"<{digest[:20]}@mail.shop.example>"}


# --------------------------------------------------------------------------
# handlers
# --------------------------------------------------------------------------


@bus.on("OrderPlaced")
def validate_order(event, ctx):
    order = event.payload
    customer = order.get("customer") or {}
    ship_to = order.get("ship_to") or {}
    country = ship_to.get("country")
    ctx.state["order"] = {
        "order_id": order["order_id"],
        "customer_id": customer.get("id"),
        "email": customer.get("email") or None,
        "name": customer.get("name"),
        "tier": customer.get("tier", "standard"),
    }

    reason = _reject_reason(order)
    if reason is None:
        subtotal = sum(round(line["price"] * 100) * line["qty"] for line in order["items"])
        if subtotal > MAX_ORDER_CENTS:
            reason = "over_order_limit"
    if reason is not None:
        ctx.state["status"] = "rejected"
        ctx.publish("OrderRejected", {"order_id": order["order_id"], "reason": reason})
        return

    weight = round(sum(line["weight_kg"] * line["qty"] for line in order["items"]), 3)
    zone = zone_of(country)
    tier = ctx.state["order"]["tier"]
    tax = (subtotal * VAT_BP[country] + 5000) // 10000
    shipping = shipping_fee_cents(zone, weight, subtotal, tier)
    ctx.state["order"].update(
        {
            "country": country,
            "zone": zone,
            "billing_country": order.get("billing_country", country),
            "first_order": customer.get("orders", 0) == 0,
            "weight_kg": weight,
            "units": sum(line["qty"] for line in order["items"]),
            "subtotal_cents": subtotal,
            "tax_cents": tax,
            "shipping_cents": shipping,
            "total_cents": subtotal + tax + shipping,
            "currency": order["currency"],
            "payment_token": order.get("payment_token"),
        }
    )
    ctx.state["status"] = "validated"
    ctx.publish(
        "OrderValidated",
        {
            "order_id": order["order_id"],
            "customer_id": customer.get("id"),
            "lines": [{"sku": line["sku"], "qty": line["qty"]} for line in order["items"]],
            "total_cents": subtotal + tax + shipping,
            "currency": order["currency"],
        },
    )


@bus.on("OrderValidated")
def score_fraud(event, ctx):
    # Runs before reserve_inventory on purpose: charge_payment looks at the hold flag.
    order = ctx.state["order"]
    score, signals = 0, []
    if order["first_order"] and order["total_cents"] > 100_000:
        score += 40
        signals.append("first_order_high_value")
    if order["billing_country"] != order["country"]:
        score += 30
        signals.append("billing_shipping_mismatch")
    if order["units"] > 10:
        score += 15
        signals.append("many_units")
    if order["email"] and order["email"].rsplit("@", 1)[-1] in THROWAWAY_DOMAINS:
        score += 25
        signals.append("throwaway_email")
    ctx.state["fraud_score"] = score
    if score >= REVIEW_THRESHOLD:
        ctx.state["hold"] = True
        bus.publish("OrderFlaggedForReview", {"order_id": order["order_id"], "score": score, "signals": signals})


@bus.on("OrderValidated")
def reserve_inventory(event, ctx):
    missing = [
        line["sku"] for line in event.payload["lines"] if STOCK.get(line["sku"], 0) < line["qty"]
    ]
    if missing:
        ctx.state["status"] = "out_of_stock"
        return Event(type="OutOfStock", payload={"order_id": event.payload["order_id"], "skus": missing})
    ctx.state["status"] = "reserved"
    return Event(
        type="InventoryReserved",
        payload={
            "order_id": event.payload["order_id"],
            "warehouse": WAREHOUSE,
            "lines": event.payload["lines"],
        },
    )


@bus.on("InventoryReserved")
def charge_payment(event, ctx):
    order = ctx.state["order"]
    if ctx.state.get("hold"):
        ctx.state["status"] = "on_hold"
        return [Event(type="PaymentDeferred", payload={"order_id": order["order_id"], "reason": "fraud_review"})]

    resp = charge_card(order["order_id"], order["total_cents"], order["currency"], order["payment_token"])
    if resp.get("status") != "approved":
        ctx.state["status"] = "payment_declined"
        return [
            Event(
                type="PaymentDeclined",
                payload={"order_id": order["order_id"], "code": resp.get("decline_code", "unknown")},
            )
        ]
    ctx.state["status"] = "paid"
    ctx.state["charge_id"] = resp["charge_id"]
    return [
        Event(
            type="PaymentCaptured",
            payload={
                "order_id": order["order_id"],
                "customer_id": order["customer_id"],
                "tier": order["tier"],
                "amount_cents": order["total_cents"],
                "currency": order["currency"],
                "charge_id": resp["charge_id"],
            },
        )
    ]


@bus.on("PaymentCaptured")
def schedule_shipment(event, ctx):
    order = ctx.state["order"]
    zone, weight, tier = order["zone"], order["weight_kg"], order["tier"]
    carrier, service = carrier_for(zone, weight)
    days = eta_days(zone, weight, tier)
    ctx.state["status"] = "shipping_scheduled"
    ctx.state["shipment"] = {"carrier": carrier, "service": service, "eta_days": days}
    ctx.publish(
        "ShipmentScheduled",
        {
            "order_id": order["order_id"],
            "carrier": carrier,
            "service": service,
            "queue": picking_queue(zone, weight, tier),
            "country": order["country"],
            "weight_kg": weight,
            "parcels": parcels_for(weight),
            "eta_days": days,
        },
    )


@bus.on("PaymentCaptured")
def award_loyalty_points(event):
    p = event.payload
    points = p["amount_cents"] // 100 * LOYALTY_MULTIPLIER.get(p["tier"], 1)
    if points <= 0:
        return None
    return Event(
        type="LoyaltyPointsAwarded",
        payload={"customer_id": p["customer_id"], "order_id": p["order_id"], "points": points},
    )


@bus.on("PaymentCaptured")
async def send_receipt(event, ctx):
    order = ctx.state["order"]
    resp = send_email(
        order["email"],
        "receipt",
        {
            "name": order["name"],
            "order_id": order["order_id"],
            "subtotal": fmt_money(order["subtotal_cents"]),
            "vat": fmt_money(order["tax_cents"]),
            "shipping": fmt_money(order["shipping_cents"]),
            "total": fmt_money(event.payload["amount_cents"], event.payload["currency"]),
        },
    )
    ctx.state["receipt_message_id"] = resp["message_id"]


@bus.on("ShipmentScheduled")
def notify_shipment(event, ctx):
    order = ctx.state["order"]
    send_email(
        order["email"],
        "shipment_scheduled",
        {
            "name": order["name"],
            "order_id": event.payload["order_id"],
            "carrier": event.payload["carrier"],
            "eta_days": event.payload["eta_days"],
        },
    )


# one mail template per problem; the handler is shared (hence name=)
_PROBLEM_TEMPLATES = {
    "OrderRejected": "order_rejected",
    "OutOfStock": "out_of_stock",
    "PaymentDeclined": "payment_failed",
}


@bus.on("OrderRejected", name="email_rejection")
@bus.on("OutOfStock", name="email_out_of_stock")
@bus.on("PaymentDeclined", name="email_payment_declined")
def email_order_problem(event, ctx):
    order = ctx.state.get("order") or {}
    if not order.get("email"):
        return  # nothing we can do; CS sees it in the back office
    details = {k: v for k, v in event.payload.items() if k != "order_id"}
    send_email(
        order["email"],
        _PROBLEM_TEMPLATES[event.type],
        {"name": order.get("name"), "order_id": event.payload["order_id"], "support": SUPPORT_ADDRESS, **details},
    )


@bus.on("OrderCancelled")
def cancel_order(event, ctx):
    order_id = event.payload["order_id"]
    status = ctx.state.get("status")
    if status is None:
        return Event(type="CancellationRejected", payload={"order_id": order_id, "reason": "unknown_order"})
    if status in ("on_hold", "validated", "reserved"):
        ctx.state["status"] = "cancelled"
        return Event(type="OrderVoided", payload={"order_id": order_id, "reason": event.payload.get("reason")})
    if status in ("paid", "shipping_scheduled"):
        order = ctx.state["order"]
        reason = event.payload.get("reason", "customer_request")
        resp = refund_charge(ctx.state["charge_id"], order["total_cents"], reason)
        ctx.state["status"] = "cancelled"
        ctx.state["refund_id"] = resp.get("refund_id")
        out = [
            Event(
                type="RefundIssued",
                payload={
                    "order_id": order_id,
                    "amount_cents": order["total_cents"],
                    "refund_id": resp.get("refund_id"),
                },
            )
        ]
        if status == "shipping_scheduled":
            out.append(
                Event(
                    type="ShipmentCancellationRequested",
                    payload={"order_id": order_id, "carrier": ctx.state["shipment"]["carrier"]},
                )
            )
        return out
    return Event(type="CancellationRejected", payload={"order_id": order_id, "reason": f"order_{status}"})


# --------------------------------------------------------------------------
# migration onto LangGraph (migration-kit): `--app examples.orders.app:migration`
# --------------------------------------------------------------------------


def make_migration(store: str | None = None):
    from migration_kit import Migration
    from graph_flows import flow_from_bus
    return Migration("orders", legacy=bus, candidate=flow_from_bus(bus), store=store)


def migration():
    return make_migration()
