"""Billing on Django signals: a paid order issues an invoice; receivers connect per sender class."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

import django
from django.conf import settings

if not settings.configured:  # no database, no apps: only the signal dispatcher is used
    settings.configure(DEBUG=False, USE_TZ=True, INSTALLED_APPS=[])
    django.setup()

from django.dispatch import Signal  # noqa: E402

from legacy_bus import EffectPort  # noqa: E402
from legacy_bus.adapters import django_bus  # noqa: E402


class Shop:
    """The sender of shop orders."""


class Marketplace:
    """The sender of marketplace orders (no invoice e-mail: the marketplace sends its own)."""


@dataclass(frozen=True)
class Invoice:
    number: str
    order: str
    total: Decimal
    issued: dt.date


@dataclass
class Billing:
    order_paid: Signal
    invoice_issued: Signal
    bus: object = None
    ledger: dict[str, Decimal] = field(default_factory=dict)
    emails: list = field(default_factory=list)
    invoices: int = 0
    email: object = None

    def pay(self, sender: type, order: str, amount: Decimal) -> None:
        """The app's entry point: Django's ``send``, as it always was."""
        self.order_paid.send(sender=sender, order=order, amount=amount)


def build() -> Billing:
    """The app: its signals, its receivers, and the adapter over them."""
    order_paid, invoice_issued = Signal(), Signal()
    app = Billing(order_paid, invoice_issued)
    email = app.email = EffectPort("email.send", lambda to, subject: app.emails.append((to, subject)))

    def issue_invoice(sender, order, amount, **kwargs):
        app.invoices += 1
        # numbered by order, not by a counter: a re-run (the migration re-runs legacy to learn noise) is the same
        invoice = Invoice(f"INV-{order}", order, amount.quantize(Decimal("0.01")), dt.date(2026, 12, 1))
        invoice_issued.send(sender=sender, invoice=invoice)

    def book_revenue(sender, order, amount, **kwargs):
        app.ledger[sender.__name__] = app.ledger.get(sender.__name__, Decimal("0")) + amount

    def email_invoice(sender, invoice, **kwargs):
        email(f"{invoice.order}@customers.example", f"Invoice {invoice.number}: {invoice.total}")

    order_paid.connect(issue_invoice, weak=False, dispatch_uid="issue_invoice")
    order_paid.connect(book_revenue, weak=False, dispatch_uid="book_revenue")
    invoice_issued.connect(email_invoice, sender=Shop, weak=False, dispatch_uid="email_invoice")
    app.bus = django_bus(order_paid, invoice_issued, names={order_paid: "order_paid", invoice_issued: "invoice_issued"}, name="billing")
    return app


def email_invoice_v2(app: Billing):
    """v2 of ``email_invoice``: rounds the total in the subject (a change the replay must catch)."""

    def email_invoice(sender, invoice, **kwargs):
        app.email(f"{invoice.order}@customers.example", f"Invoice {invoice.number}: {round(invoice.total)}")

    return email_invoice
