"""An allocation service in Cosmic Python's style, on ``EventBus``, its state in a SQL database.

Tables ``batches``, ``order_lines``, ``allocations`` (the aggregate, through a
SQLAlchemy repository and unit of work) and ``allocations_view`` (a read
model written by an event handler). Commands and events::

    CreateBatch {ref, sku, qty}             -> add_batch                 (inserts a batch)
    Allocate    {orderid, sku, qty}         -> allocate                  -> Allocated {orderid, sku, batchref}
                                                                         |  OutOfStock {orderid, sku}
    Allocated                               -> add_allocation_to_read_model (inserts into allocations_view)

``build(url, declare=True)`` makes a fresh bus on the database at ``url``
(with ``declare=False`` the unit of work uses the engine's own sessionmaker:
the state is not declared). ``allocate_v2`` is the one changed handler: it
picks the batch with the *most* stock left instead of the first by reference.
Worker subprocesses load ``db_app:migration`` with ``DB_APP_URL`` set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from migration_kit import Comparator, Migration

TABLES = ("batches", "order_lines", "allocations", "allocations_view")


class Base(DeclarativeBase):
    pass


class Batch(Base):
    __tablename__ = "batches"
    reference: Mapped[str] = mapped_column(String(40), primary_key=True)
    sku: Mapped[str] = mapped_column(String(40), index=True)
    purchased_quantity: Mapped[int] = mapped_column(Integer)
    allocated_quantity: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def available(self) -> int:
        return self.purchased_quantity - self.allocated_quantity


class OrderLine(Base):
    __tablename__ = "order_lines"
    orderid: Mapped[str] = mapped_column(String(40), primary_key=True)
    sku: Mapped[str] = mapped_column(String(40), primary_key=True)
    qty: Mapped[int] = mapped_column(Integer)


class Allocation(Base):
    __tablename__ = "allocations"
    orderid: Mapped[str] = mapped_column(String(40), primary_key=True)
    sku: Mapped[str] = mapped_column(String(40), primary_key=True)
    batchref: Mapped[str] = mapped_column(ForeignKey("batches.reference"))


class AllocationView(Base):
    __tablename__ = "allocations_view"
    orderid: Mapped[str] = mapped_column(String(40), primary_key=True)
    sku: Mapped[str] = mapped_column(String(40), primary_key=True)
    batchref: Mapped[str] = mapped_column(String(40))


class SqlAlchemyRepository:
    """The batches of one unit of work's session."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def add(self, batch: Batch) -> None:
        self.session.add(batch)

    def for_sku(self, sku: str) -> list[Batch]:
        return list(self.session.scalars(select(Batch).where(Batch.sku == sku).order_by(Batch.reference)))


class SqlAlchemyUnitOfWork:
    """Cosmic Python's unit of work: ``with uow: ...; uow.commit()``; leaving without commit rolls back."""

    def __init__(self, session_factory: Any) -> None:
        self.session_factory = session_factory

    def __enter__(self) -> SqlAlchemyUnitOfWork:
        self.session = self.session_factory()
        self.batches = SqlAlchemyRepository(self.session)
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.rollback()
        self.session.close()

    def commit(self) -> None:
        self.session.commit()


@dataclass
class App:
    """One wired service: its bus, engine and unit of work."""

    bus: EventBus
    engine: Any
    uow: SqlAlchemyUnitOfWork
    url: str

    def create(self, ref: str, sku: str, qty: int) -> Any:
        return self.bus.publish("CreateBatch", {"ref": ref, "sku": sku, "qty": qty})

    def allocate(self, orderid: str, sku: str, qty: int) -> Any:
        return self.bus.publish("Allocate", {"orderid": orderid, "sku": sku, "qty": qty})


def choose_first(batches: list[Batch], qty: int) -> Batch | None:
    return next((b for b in batches if b.available >= qty), None)


def choose_most_stock(batches: list[Batch], qty: int) -> Batch | None:
    fits = [b for b in batches if b.available >= qty]
    return max(fits, key=lambda b: (b.available, b.reference)) if fits else None


def handlers(uow: SqlAlchemyUnitOfWork, choose: Any = choose_first) -> dict[str, Any]:
    """The service's handlers on one unit of work (``choose`` picks the batch)."""

    def add_batch(event: Event) -> None:
        p = event.payload
        with uow:
            uow.batches.add(Batch(reference=p["ref"], sku=p["sku"], purchased_quantity=p["qty"], allocated_quantity=0))
            uow.commit()

    def allocate(event: Event) -> Event:
        p = event.payload
        with uow:
            batch = choose(uow.batches.for_sku(p["sku"]), p["qty"])
            if batch is None:
                return Event(type="OutOfStock", payload={"orderid": p["orderid"], "sku": p["sku"]})
            uow.session.add(OrderLine(orderid=p["orderid"], sku=p["sku"], qty=p["qty"]))
            uow.session.add(Allocation(orderid=p["orderid"], sku=p["sku"], batchref=batch.reference))
            batch.allocated_quantity += p["qty"]
            ref = batch.reference
            uow.commit()
        return Event(type="Allocated", payload={"orderid": p["orderid"], "sku": p["sku"], "batchref": ref})

    def add_allocation_to_read_model(event: Event) -> None:
        p = event.payload
        with uow:
            uow.session.add(AllocationView(orderid=p["orderid"], sku=p["sku"], batchref=p["batchref"]))
            uow.commit()

    return {"add_batch": add_batch, "allocate": allocate, "add_allocation_to_read_model": add_allocation_to_read_model}


def build(url: str, *, declare: bool = True, create: bool = True) -> App:
    """A fresh bus for the allocation service on the database at ``url``."""
    engine = create_engine(url)
    if create:
        Base.metadata.create_all(engine)
    bus = EventBus("allocation")
    factory = sessionmaker(engine, expire_on_commit=False)
    sessions = bus.database("inventory", factory) if declare else factory
    uow = SqlAlchemyUnitOfWork(sessions)
    hs = handlers(uow)
    bus.subscribe("CreateBatch", hs["add_batch"], name="add_batch")
    bus.subscribe("Allocate", hs["allocate"], name="allocate")
    bus.subscribe("Allocated", hs["add_allocation_to_read_model"], name="add_allocation_to_read_model")
    return App(bus, engine, uow, url)


def v2_allocate(app: App) -> Any:
    """The rewritten ``allocate`` (most stock first), on the same unit of work."""
    return handlers(app.uow, choose_most_stock)["allocate"]


def rows(engine: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every production table's rows, sorted: what "production data unchanged" is checked against."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for t in TABLES:
            table = Base.metadata.tables[t]
            out[t] = sorted(tuple(r) for r in conn.execute(select(table)))
    return out


def counts(engine: Any) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(select(func.count()).select_from(Base.metadata.tables[t])).scalar_one() for t in TABLES}


def reset(engine: Any) -> None:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)


def migration(store: str | None = None, *, v2: bool = False, noise: bool = True) -> Migration:
    """The worker subprocesses' app: the service on ``DB_APP_URL``, its own graph (``DB_APP_V2=1``: v2)."""
    app = build(os.environ["DB_APP_URL"], create=False)
    flow = flow_from_bus(app.bus)
    if v2 or os.environ.get("DB_APP_V2") == "1":
        flow = flow.replace("allocate", v2_allocate(app))
    return Migration("allocation", legacy=app.bus, candidate=flow, store=store, comparator=Comparator(noise=noise))


def undeclared_migration(store: str | None = None) -> Migration:
    """The service on ``DB_APP_URL`` with its unit of work on the bare sessionmaker (the database undeclared)."""
    app = build(os.environ["DB_APP_URL"], declare=False, create=False)
    return Migration("allocation", legacy=app.bus, candidate=flow_from_bus(app.bus), store=store)
