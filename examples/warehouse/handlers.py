"""The service layer: one function per message, dependencies by parameter name."""

from __future__ import annotations

from examples.warehouse import model
from examples.warehouse.unit_of_work import UnitOfWork


def add_batch(cmd: model.CreateBatch, uow: UnitOfWork) -> None:
    product = uow.products.get(cmd.sku)
    if product is None:
        product = model.Product(cmd.sku)
        uow.products.add(product)
    product.batches.append(model.Batch(cmd.ref, cmd.sku, cmd.qty, cmd.eta))
    uow.commit()


def allocate(cmd: model.Allocate, uow: UnitOfWork) -> str | None:
    product = uow.products.get(cmd.sku)
    if product is None:
        raise model.InvalidSku(f"Invalid sku {cmd.sku}")
    ref = product.allocate(model.OrderLine(cmd.orderid, cmd.sku, cmd.qty))
    uow.commit()
    return ref


def change_batch_quantity(cmd: model.ChangeBatchQuantity, uow: UnitOfWork) -> None:
    uow.products.for_batch(cmd.ref).change_batch_quantity(cmd.ref, cmd.qty)
    uow.commit()


def reallocate(event: model.Deallocated, uow: UnitOfWork) -> None:
    allocate(model.Allocate(event.orderid, event.sku, event.qty), uow)


def send_out_of_stock_notification(event: model.OutOfStock, notifications) -> None:
    notifications.send("stock@made.com", f"Out of stock for {event.sku}")


def publish_allocated_event(event: model.Allocated, publish) -> None:
    publish("line_allocated", event)


EVENT_HANDLERS = {
    model.Allocated: [publish_allocated_event],
    model.Deallocated: [reallocate],
    model.OutOfStock: [send_out_of_stock_notification],
}
COMMAND_HANDLERS = {
    model.CreateBatch: add_batch,
    model.Allocate: allocate,
    model.ChangeBatchQuantity: change_batch_quantity,
}
