"""When the candidate serves, a handler's exception reaches the caller as the bus would raise it."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

import pytest
from pyee import EventEmitter

from graph_flows import flow_from_bus, handler_exception
from legacy_bus.adapters import message_bus, pyee_bus
from migration_kit import Migration


class InvalidSku(Exception):
    pass


@dataclass(frozen=True)
class Allocate:
    orderid: str
    sku: str


def _app():
    def allocate(cmd):
        if cmd.sku == "BAD":
            raise InvalidSku(f"Invalid sku {cmd.sku}", cmd.sku)
        return "batch-1"

    async def aallocate(cmd):
        return allocate(cmd)

    return message_bus("alloc", {Allocate: allocate}), message_bus("aalloc", {Allocate: aallocate})


def _primary(bus, redis_url):
    m = Migration(f"cutover-{bus.name}", legacy=bus, candidate=flow_from_bus(bus), store="memory://")
    handle = m.attach(redis_url)
    m.promote(to="primary")
    return m, handle


def test_a_handlers_exception_keeps_its_class_args_and_traceback_when_the_candidate_serves(redis_url):
    bus, _ = _app()
    m, handle = _primary(bus, redis_url)
    try:
        with pytest.raises(InvalidSku) as err:
            bus.handle(Allocate("o1", "BAD"))
        assert handle.stats()["served"]["candidate"] == 1
        assert err.value.args == ("Invalid sku BAD", "BAD")
        frames = [f.name for f in traceback.extract_tb(err.value.__traceback__)]
        assert "allocate" in frames  # the handler's own frame, chained to the caller's
        assert bus.handle(Allocate("o2", "LAMP")) is not None
    finally:
        handle.close()


async def test_async_a_handlers_exception_keeps_its_class_and_args_when_the_candidate_serves(redis_url):
    _, abus = _app()
    m, handle = _primary(abus, redis_url)
    try:
        with pytest.raises(InvalidSku) as err:
            await abus.ahandle(Allocate("o1", "BAD"))
        assert handle.stats()["served"]["candidate"] == 1
        assert err.value.args == ("Invalid sku BAD", "BAD")
    finally:
        handle.close()


def test_pyee_listener_exception_reaches_emit_unchanged_when_the_candidate_serves(redis_url):
    ee = EventEmitter()

    @ee.on("charge")
    def charge(amount):
        raise ValueError("card declined", amount)

    bus = pyee_bus(ee)
    m, handle = _primary(bus, redis_url)
    try:
        with pytest.raises(ValueError) as err:
            ee.emit("charge", 5)
        assert err.value.args == ("card declined", 5) and handle.stats()["served"]["candidate"] == 1
    finally:
        handle.close()


def test_the_graphs_error_channel_keeps_the_error_as_data_and_rebuilds_it_in_another_process():
    bus, _ = _app()
    final = flow_from_bus(bus).compile().invoke({"event": bus.codec.to_event(Allocate("o1", "BAD"))})
    (error,) = final["errors"]
    assert error["type"].endswith("InvalidSku") and error["message"] == "('Invalid sku BAD', 'BAD')"
    assert error["args"] == ["Invalid sku BAD", "BAD"] and error["class"].endswith(":InvalidSku")
    rebuilt = handler_exception(error)  # no live object to hand back: the same class, the same args
    assert type(rebuilt) is InvalidSku and rebuilt.args == ("Invalid sku BAD", "BAD")
    assert "raised by handler 'allocate' in the graph" in str(rebuilt.__cause__)


def test_handle_and_send_return_the_handlers_own_values_when_the_candidate_serves(redis_url):
    import blinker

    from legacy_bus.adapters import blinker_bus

    bus, _ = _app()
    m, handle = _primary(bus, redis_url)
    try:
        assert bus.handle(Allocate("o1", "LAMP")) == ["batch-1"]
    finally:
        handle.close()
    ns = blinker.Namespace()
    placed = ns.signal("placed")

    def price(sender, qty):
        return qty * 3

    placed.connect(price)
    sbus = blinker_bus(placed)
    m, handle = _primary(sbus, redis_url)
    try:
        assert placed.send("shop", qty=2) == [(price, 6)]
        assert handle.stats()["served"]["candidate"] == 1
    finally:
        handle.close()
