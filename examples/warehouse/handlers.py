"""The service layer: one function per message, dependencies by parameter name, state through the unit of work."""

from __future__ import annotations

from sqlalchemy import select

from examples.warehouse import model
from examples.warehouse.unit_of_work import SqlAlchemyUnitOfWork


def add_batch(cmd: model.CreateBatch, uow: SqlAlchemyUnitOfWork) -> None:
    with uow:
        product = uow.products.get(cmd.sku)
        if product is None:
            product = model.Product(cmd.sku)
            uow.products.add(product)
        product.batches.append(model.Batch(cmd.ref, cmd.sku, cmd.qty, cmd.eta))
        uow.commit()


def allocate(cmd: model.Allocate, uow: SqlAlchemyUnitOfWork) -> str | None:
    with uow:
        product = uow.products.get(cmd.sku)
        if product is None:
            raise model.InvalidSku(f"Invalid sku {cmd.sku}")
        ref = product.allocate(uow.products.order_line(cmd.orderid, cmd.sku, cmd.qty))
        uow.commit()
    return ref


def change_batch_quantity(cmd: model.ChangeBatchQuantity, uow: SqlAlchemyUnitOfWork) -> None:
    with uow:
        uow.products.for_batch(cmd.ref).change_batch_quantity(cmd.ref, cmd.qty)
        uow.commit()


def reallocate(event: model.Deallocated, uow: SqlAlchemyUnitOfWork) -> None:
    allocate(model.Allocate(event.orderid, event.sku, event.qty), uow)


def add_allocation_to_read_model(event: model.Allocated, uow: SqlAlchemyUnitOfWork) -> None:
    with uow:
        uow.session.add(model.AllocationView(event.orderid, event.sku, event.batchref))
        uow.commit()


def remove_allocation_from_read_model(event: model.Deallocated, uow: SqlAlchemyUnitOfWork) -> None:
    with uow:
        row = uow.session.get(model.AllocationView, (event.orderid, event.sku))
        if row is not None:
            uow.session.delete(row)
        uow.commit()


def send_out_of_stock_notification(event: model.OutOfStock, notifications) -> None:
    notifications.send("stock@made.com", f"Out of stock for {event.sku}")


def publish_allocated_event(event: model.Allocated, publish) -> None:
    publish("line_allocated", event)


def allocations(orderid: str, uow: SqlAlchemyUnitOfWork) -> list[dict]:
    """The read side (Cosmic's ``views.allocations``): an order's lines and their batches, from the read model."""
    with uow:
        rows = uow.session.scalars(select(model.AllocationView).where(model.AllocationView.orderid == orderid).order_by(model.AllocationView.sku))
        return [{"sku": r.sku, "batchref": r.batchref} for r in rows]


EVENT_HANDLERS = {
    model.Allocated: [publish_allocated_event, add_allocation_to_read_model],
    model.Deallocated: [remove_allocation_from_read_model, reallocate],
    model.OutOfStock: [send_out_of_stock_notification],
}
COMMAND_HANDLERS = {
    model.CreateBatch: add_batch,
    model.Allocate: allocate,
    model.ChangeBatchQuantity: change_batch_quantity,
}
