"""A payments app whose events carry a card number, an e-mail address and a ``<script>``: redaction tests.

``PaymentRequested`` -> ``authorize`` (saga state keeps the card; the
``gateway.charge`` port is called with it and echoes it back) ->
``PaymentAuthorized`` -> ``receipt`` (the ``mail.send`` port, to the e-mail
address). The candidate changes the card number it publishes, appends to the
note, and its receipt node fails with a message quoting the card number.
"""

from __future__ import annotations

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from migration_kit import Migration

CARD = "4111 1111 1111 1111"  # Visa's test number: 16 digits, Luhn-valid
CARD_DIGITS = CARD.replace(" ", "")
OTHER_CARD = "5555 5555 5555 4444"  # Mastercard's test number: what the candidate publishes instead
EMAIL = "ada.lovelace@example.org"
XSS = "<script>alert(1)</script><img src=x onerror=alert(2) id=xss-img><b id=xss-b>bold</b>"
RULES = ["payload.card.number", "payload.*.email", "state.card"]
SECRETS = (CARD, CARD_DIGITS, OTHER_CARD, OTHER_CARD.replace(" ", ""), EMAIL)
REAL_CHARGES: list[str] = []

bus = EventBus("pay")


@bus.effect("gateway.charge", stub=lambda card, amount: {"status": "stub"})
def charge(card: str, amount: int) -> dict:
    REAL_CHARGES.append(card)
    return {"status": "approved", "card": card, "amount": amount}


@bus.effect("mail.send", stub={"sent": False})
def send(to: str, subject: str) -> dict:
    return {"sent": True}


def _authorized(e, ctx, published_card: str, note_suffix: str) -> Event:
    card = e.payload["card"]["number"]
    ctx.state["card"] = card
    receipt = charge(card, e.payload["amount"])
    return Event(
        type="PaymentAuthorized",
        payload={
            "card": {"number": published_card},
            "customer": {"email": e.payload["customer"]["email"]},
            "note": e.payload["note"] + note_suffix,
            "status": receipt["status"],
        },
    )


@bus.on("PaymentRequested")
def authorize(e, ctx):
    return _authorized(e, ctx, e.payload["card"]["number"], "")


@bus.on("PaymentAuthorized")
def receipt(e):
    send(e.payload["customer"]["email"], "your receipt")


def authorize_v2(e, ctx):
    return _authorized(e, ctx, OTHER_CARD, " (v2)")


def receipt_v2(e):
    raise ValueError(f"no receipt template for card {e.payload['card']['number']}")


def receipt_quoting_email(e):
    raise ValueError(f"mailbox {e.payload['customer']['email']} unknown")


def payment(i: int = 1) -> Event:
    """A root event holding the card number, the e-mail address and the script."""
    return Event(
        type="PaymentRequested",
        payload={"order": f"o{i}", "amount": 10 * i, "card": {"number": CARD, "exp": "12/30"}, "customer": {"email": EMAIL}, "note": XSS},
    )


def migration(store: str | None = None) -> Migration:
    """Legacy vs the candidate that changes the card number, redacted by rule."""
    flow = flow_from_bus(bus).replace("authorize", authorize_v2).replace("receipt", receipt_v2)
    return Migration("pay", legacy=bus, candidate=flow, store=store, redact=RULES)


def migration_quoting_email(store: str | None = None) -> Migration:
    """A candidate whose receipt fails with a message quoting the e-mail address (only a rule knows it is secret)."""
    flow = flow_from_bus(bus).replace("receipt", receipt_quoting_email)
    return Migration("pay-mail", legacy=bus, candidate=flow, store=store, redact=RULES)


def leaks(text: str) -> list[str]:
    """Which of the secrets appear in ``text`` (an empty list when none)."""
    return [s for s in SECRETS if s in text]
