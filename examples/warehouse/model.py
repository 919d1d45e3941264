"""The domain: products own batches; allocating an order line raises events."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal


class Command:
    """Base of everything the app is asked to do."""


class Event:
    """Base of everything that happened."""


@dataclass(frozen=True)
class CreateBatch(Command):
    ref: str
    sku: str
    qty: int
    eta: dt.date | None = None


@dataclass(frozen=True)
class Allocate(Command):
    orderid: str
    sku: str
    qty: int
    price: Decimal = Decimal("0")


@dataclass(frozen=True)
class ChangeBatchQuantity(Command):
    ref: str
    qty: int


@dataclass(frozen=True)
class Allocated(Event):
    orderid: str
    sku: str
    qty: int
    batchref: str


@dataclass(frozen=True)
class Deallocated(Event):
    orderid: str
    sku: str
    qty: int


@dataclass(frozen=True)
class OutOfStock(Event):
    sku: str


class InvalidSku(Exception):
    """The order names a product the warehouse does not stock."""


@dataclass(frozen=True)
class OrderLine:
    orderid: str
    sku: str
    qty: int


@dataclass
class Batch:
    ref: str
    sku: str
    purchased: int
    eta: dt.date | None = None
    allocations: list[OrderLine] = field(default_factory=list)

    @property
    def available(self) -> int:
        return self.purchased - sum(line.qty for line in self.allocations)

    def can_allocate(self, line: OrderLine) -> bool:
        return self.sku == line.sku and self.available >= line.qty


@dataclass
class Product:
    sku: str
    batches: list[Batch] = field(default_factory=list)
    events: list = field(default_factory=list)

    def allocate(self, line: OrderLine) -> str | None:
        # in-stock batches (no eta) first, then by eta, as the book does
        for batch in sorted(self.batches, key=lambda b: (b.eta is not None, b.eta or dt.date.min)):
            if batch.can_allocate(line):
                if line not in batch.allocations:
                    batch.allocations.append(line)
                self.events.append(Allocated(line.orderid, line.sku, line.qty, batch.ref))
                return batch.ref
        self.events.append(OutOfStock(line.sku))
        return None

    def change_batch_quantity(self, ref: str, qty: int) -> None:
        batch = next(b for b in self.batches if b.ref == ref)
        batch.purchased = qty
        while batch.available < 0:
            line = batch.allocations.pop()
            self.events.append(Deallocated(line.orderid, line.sku, line.qty))
