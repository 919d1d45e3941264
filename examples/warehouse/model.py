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


@dataclass(unsafe_hash=True)
class OrderLine:
    """A line of an order (a row of ``order_lines``); a value: equal when its fields are."""

    orderid: str
    sku: str
    qty: int


@dataclass(eq=False)
class Allocation:
    """An order line allocated to a batch (a row of ``allocations``)."""

    line: OrderLine


class Batch:
    """Stock of one sku: purchased, allocated to order lines (``allocated_quantity`` kept with the row)."""

    def __init__(self, ref: str, sku: str, qty: int, eta: dt.date | None = None) -> None:
        self.reference = ref
        self.sku = sku
        self.eta = eta
        self.purchased_quantity = qty
        self.allocated_quantity = 0
        self.allocations: list[Allocation] = []

    @property
    def ref(self) -> str:
        return self.reference

    @property
    def available(self) -> int:
        return self.purchased_quantity - self.allocated_quantity

    def can_allocate(self, line: OrderLine) -> bool:
        return self.sku == line.sku and self.available >= line.qty

    def allocate(self, line: OrderLine) -> None:
        if not any(a.line == line for a in self.allocations):
            self.allocations.append(Allocation(line))
            self.allocated_quantity += line.qty

    def deallocate_one(self) -> OrderLine:
        line = self.allocations.pop().line
        self.allocated_quantity -= line.qty
        return line


class Product:
    """The aggregate: a sku's batches; ``version_number`` goes up with every allocation (optimistic locking)."""

    def __init__(self, sku: str, batches: list[Batch] | None = None, version_number: int = 0) -> None:
        self.sku = sku
        self.batches = batches if batches is not None else []
        self.version_number = version_number
        self.events: list = []

    def allocate(self, line: OrderLine) -> str | None:
        # in-stock batches (no eta) first, then by eta, as the book does
        for batch in sorted(self.batches, key=lambda b: (b.eta is not None, b.eta or dt.date.min)):
            if batch.can_allocate(line):
                batch.allocate(line)
                self.version_number += 1
                self.events.append(Allocated(line.orderid, line.sku, line.qty, batch.reference))
                return batch.reference
        self.events.append(OutOfStock(line.sku))
        return None

    def change_batch_quantity(self, ref: str, qty: int) -> None:
        batch = next(b for b in self.batches if b.reference == ref)
        batch.purchased_quantity = qty
        while batch.available < 0:
            line = batch.deallocate_one()
            self.events.append(Deallocated(line.orderid, line.sku, line.qty))


class AllocationView:
    """A row of the ``allocations_view`` read model: which batch an order's line went to."""

    def __init__(self, orderid: str, sku: str, batchref: str) -> None:
        self.orderid, self.sku, self.batchref = orderid, sku, batchref
