"""Cosmic Python's SQLAlchemy repository and unit of work: ``with uow: ...; uow.commit()``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import select

from examples.warehouse import model


class SqlAlchemyRepository:
    """Products by sku in one session, remembering which were seen (their events are collected)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.seen: list[model.Product] = []

    def add(self, product: model.Product) -> None:
        self.session.add(product)
        self._saw(product)

    def get(self, sku: str) -> model.Product | None:
        product = self.session.get(model.Product, sku)
        if product is not None:
            self._saw(product)
        return product

    def for_batch(self, ref: str) -> model.Product:
        product = self.session.scalars(select(model.Product).join(model.Batch).where(model.Batch.reference == ref)).one()
        self._saw(product)
        return product

    def order_line(self, orderid: str, sku: str, qty: int) -> model.OrderLine:
        """The order line ``(orderid, sku)``: the one on record (a line reallocated), else a new one."""
        line = self.session.get(model.OrderLine, (orderid, sku))
        if line is None:
            line = model.OrderLine(orderid, sku, qty)
            self.session.add(line)
        return line

    def _saw(self, product: model.Product) -> None:
        if all(p is not product for p in self.seen):
            self.seen.append(product)


class SqlAlchemyUnitOfWork:
    """One session per ``with`` block; leaving it without ``commit()`` rolls back.

    The session lives per thread: a graph may run two handlers of one event on
    two threads, each in its own unit of work, as two requests would.
    """

    def __init__(self, session_factory: Callable[[], Any]) -> None:
        self.session_factory = session_factory
        self._local = threading.local()

    @property
    def session(self) -> Any:
        return self._local.session

    @property
    def products(self) -> SqlAlchemyRepository:
        return self._local.products

    def __enter__(self) -> SqlAlchemyUnitOfWork:
        self._local.session = self.session_factory()
        self._local.products = SqlAlchemyRepository(self._local.session)
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.rollback()
        self.session.close()

    def commit(self) -> None:
        self.session.commit()

    def collect_new_events(self) -> Iterator[object]:
        """The events raised by every product the last ``with`` block on this thread saw."""
        repo = getattr(self._local, "products", None)
        for product in repo.seen if repo is not None else ():
            while product.events:
                yield product.events.pop(0)
