"""The tables, and the domain classes mapped onto them imperatively (the model imports no SQLAlchemy).

``products`` (the aggregate, with its version number), ``batches``,
``order_lines``, ``allocations`` (a line in a batch) and ``allocations_view``
(the read model the event handlers keep). Every key is natural (references,
order ids, skus), so two runs of one event name the same rows.
"""

from __future__ import annotations

import threading

from sqlalchemy import Column, Date, ForeignKey, ForeignKeyConstraint, Integer, MetaData, String, Table, event
from sqlalchemy.orm import registry, relationship

from examples.warehouse import model

metadata = MetaData()

products = Table(
    "products", metadata,
    Column("sku", String(255), primary_key=True),
    Column("version_number", Integer, nullable=False),
)  # fmt: skip
batches = Table(
    "batches", metadata,
    Column("reference", String(255), primary_key=True),
    Column("sku", ForeignKey("products.sku"), nullable=False),
    Column("purchased_quantity", Integer, nullable=False),
    Column("allocated_quantity", Integer, nullable=False),
    Column("eta", Date, nullable=True),
)  # fmt: skip
order_lines = Table(
    "order_lines", metadata,
    Column("orderid", String(255), primary_key=True),
    Column("sku", String(255), primary_key=True),
    Column("qty", Integer, nullable=False),
)  # fmt: skip
allocations = Table(
    "allocations", metadata,
    Column("orderid", String(255), primary_key=True),
    Column("sku", String(255), primary_key=True),
    Column("batchref", ForeignKey("batches.reference"), nullable=False),
    ForeignKeyConstraint(["orderid", "sku"], ["order_lines.orderid", "order_lines.sku"]),
)  # fmt: skip
allocations_view = Table(
    "allocations_view", metadata,
    Column("orderid", String(255), primary_key=True),
    Column("sku", String(255), primary_key=True),
    Column("batchref", String(255), nullable=False),
)  # fmt: skip

TABLES = ("products", "batches", "order_lines", "allocations", "allocations_view")

mapper_registry = registry()
_lock = threading.Lock()
_started = False


def start_mappers() -> None:
    """Map the domain classes onto the tables, once per process (mappings are global to a class)."""
    global _started
    with _lock:
        if _started:
            return
        mapper_registry.map_imperatively(model.OrderLine, order_lines)
        mapper_registry.map_imperatively(model.Allocation, allocations, properties={"line": relationship(model.OrderLine, lazy="joined")})
        mapper_registry.map_imperatively(
            model.Batch, batches,
            properties={"allocations": relationship(model.Allocation, cascade="all, delete-orphan", order_by=allocations.c.orderid)},
        )  # fmt: skip
        mapper_registry.map_imperatively(model.Product, products, properties={"batches": relationship(model.Batch, order_by=batches.c.reference, lazy="selectin")})
        mapper_registry.map_imperatively(model.AllocationView, allocations_view)
        event.listen(model.Product, "load", _fresh_events)
        _started = True


def _fresh_events(product: model.Product, _context: object) -> None:
    """A loaded product has raised no events yet (loading does not call ``__init__``)."""
    product.events = []
