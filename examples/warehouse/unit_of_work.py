"""An in-memory repository and unit of work that collects the events of the products it saw."""

from __future__ import annotations

from collections.abc import Iterator

from examples.warehouse.model import Product


class Repository:
    """Products by sku, remembering which were loaded (their events are collected)."""

    def __init__(self) -> None:
        self.products: dict[str, Product] = {}
        self.seen: set[str] = set()

    def add(self, product: Product) -> None:
        self.products[product.sku] = product
        self.seen.add(product.sku)

    def get(self, sku: str) -> Product | None:
        product = self.products.get(sku)
        if product is not None:
            self.seen.add(sku)
        return product

    def for_batch(self, ref: str) -> Product:
        product = next(p for p in self.products.values() if any(b.ref == ref for b in p.batches))
        self.seen.add(product.sku)
        return product


class UnitOfWork:
    """Commits are counted; new events come from every product the handlers touched."""

    def __init__(self) -> None:
        self.products = Repository()
        self.commits = 0

    def commit(self) -> None:
        self.commits += 1

    def collect_new_events(self) -> Iterator[object]:
        for sku in sorted(self.products.seen):
            product = self.products.products[sku]
            while product.events:
                yield product.events.pop(0)
