"""Each adapter keeps its library's semantics, and migration-kit accepts it as the legacy bus."""

from __future__ import annotations

import datetime as dt
import enum
import logging
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

import attrs
import blinker
import pydantic
import pytest
from django.dispatch import Signal
from hypothesis import given, settings
from hypothesis import strategies as st
from pyee import EventEmitter

from graph_flows import flow_from_bus
from legacy_bus import ConfigurationError, EventBus, LegacyBus
from legacy_bus.adapters import blinker_bus, django_bus, message_bus, pyee_bus
from legacy_bus.codec import ClassCodec, decode, encode
from migration_kit import Migration
from migration_kit.testing import assert_parity, check_legacy_bus

# -- the codec -----------------------------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Line:
    sku: str
    qty: int
    price: Decimal


@attrs.frozen
class Address:
    street: str
    since: dt.date


class Customer(pydantic.BaseModel):
    id: uuid.UUID
    address: Address | None = None
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)


@dataclass(frozen=True)
class Order:
    ref: uuid.UUID
    at: dt.datetime
    lines: tuple[Line, ...]
    colour: Colour
    customer: Customer
    tags: frozenset[str] = frozenset()
    notes: dict = field(default_factory=dict)


texts = st.text(max_size=8)
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**6, max_value=10**6)
lines = st.builds(Line, texts, st.integers(-5, 5), decimals)
addresses = st.builds(Address, texts, st.dates())
customers = st.builds(Customer, id=st.uuids(), address=st.none() | addresses)
orders = st.builds(
    Order,
    st.uuids(),
    st.datetimes(timezones=st.just(dt.UTC) | st.none()),
    st.lists(lines, max_size=3).map(tuple),
    st.sampled_from(Colour),
    customers,
    st.frozensets(texts, max_size=3),
    st.dictionaries(texts, st.integers() | texts | st.none(), max_size=3),
)


@settings(max_examples=60, deadline=None)
@given(orders)
def test_message_codec_round_trips_dataclasses_attrs_pydantic_dates_decimals_enums_uuids_exactly(order):
    codec = ClassCodec([Order])
    event = codec.to_event(order)
    back = codec.from_event(type(event).model_validate_json(event.model_dump_json()))  # through JSON, as a log holds it
    assert back == order
    assert type(back.customer) is Customer and type(back.customer.address) is type(order.customer.address)
    assert all(type(line) is Line and type(line.price) is Decimal for line in back.lines)


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | texts | decimals | st.uuids() | st.dates(), lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner) | st.dictionaries(st.integers() | texts, inner, max_size=3), max_leaves=12))
def test_value_codec_round_trips_nested_values_exactly(value):
    assert decode(encode(value)) == value


def test_decoding_a_class_that_is_not_loaded_is_refused_by_name():
    with pytest.raises(ConfigurationError, match="not registered and module 'no_such_module' is not loaded"):
        decode({"$": "obj", "cls": "no_such_module:Evil", "v": {}})


# -- the Protocol ------------------------------------------------------------------------------


def test_event_bus_and_every_adapter_are_legacy_buses():
    ee = EventEmitter()
    assert isinstance(EventBus("x"), LegacyBus)
    assert isinstance(pyee_bus(ee), LegacyBus)
    assert isinstance(blinker_bus(blinker.Namespace().signal("s")), LegacyBus)
    sig = Signal()
    assert isinstance(django_bus(sig, names={sig: "sig"}), LegacyBus)


def test_something_that_is_no_bus_is_refused_naming_what_it_lacks():
    class Half:
        name = "half"

        def dispatch(self, event):
            return None

    with pytest.raises(ConfigurationError, match="lacks discipline, on_error.*implement legacy_bus.LegacyBus"):
        flow_from_bus(Half())
    with pytest.raises(ConfigurationError, match=r"Migration\(legacy=...\) takes a LegacyBus"):
        Migration("m", legacy=Half(), candidate=flow_from_bus(EventBus("x")))


# -- message_bus: Cosmic Python's pattern -----------------------------------------------------------


class Command:
    pass


class DomainEvent:
    pass


@dataclass(frozen=True)
class Allocate(Command):
    orderid: str
    sku: str
    qty: int


@dataclass(frozen=True)
class Allocated(DomainEvent):
    orderid: str
    sku: str


@dataclass(frozen=True)
class Deallocated(DomainEvent):
    orderid: str
    sku: str
    qty: int


class InvalidSku(Exception):
    pass


@dataclass
class Uow:
    events: list = field(default_factory=list)
    done: list = field(default_factory=list)

    def collect_new_events(self):
        while self.events:
            yield self.events.pop(0)


def _warehouse(lines_per_deallocation=3):
    uow = Uow()

    def allocate(cmd, uow):
        if cmd.sku == "BAD":
            raise InvalidSku(f"Invalid sku {cmd.sku}", cmd.sku)
        uow.events.append(Allocated(cmd.orderid, cmd.sku))
        return f"batch-{cmd.sku}"

    def deallocate_all(event, uow):
        uow.events.extend(Deallocated(f"{event.orderid}-{i}", event.sku, 1) for i in range(lines_per_deallocation))

    def reallocate(event, uow):
        uow.done.append(event.orderid)

    def flaky(event):
        raise RuntimeError("read model down")

    bus = message_bus(
        "warehouse",
        {Allocate: allocate, Allocated: [flaky, deallocate_all], Deallocated: [reallocate]},
        dependencies={"uow": uow},
        collect=lambda uow: uow.collect_new_events(),
        errors={DomainEvent: "log", Command: "raise"},
    )
    return bus, uow


def test_message_bus_injects_dependencies_collects_follow_ups_and_returns_handler_results():
    bus, uow = _warehouse()
    assert bus.handle(Allocate("o1", "LAMP", 1)) == ["batch-LAMP"]
    assert uow.done == ["o1-0", "o1-1", "o1-2"]


def test_message_bus_command_errors_raise_unchanged_event_errors_are_logged_and_the_cascade_goes_on(caplog):
    bus, uow = _warehouse()
    with pytest.raises(InvalidSku) as err:
        bus.handle(Allocate("o1", "BAD", 1))
    assert err.value.args == ("Invalid sku BAD", "BAD")
    with caplog.at_level(logging.ERROR, logger="legacy_bus.message_bus"):
        bus.handle(Allocate("o2", "LAMP", 1))
    assert "flaky" in caplog.text and uow.done == ["o2-0", "o2-1", "o2-2"]  # flaky failed, deallocate_all still ran


def test_message_bus_adds_no_fanout_or_depth_limit_on_either_path():
    bus, uow = _warehouse(lines_per_deallocation=1100)
    bus.handle(Allocate("o1", "LAMP", 1))
    assert len(uow.done) == 1100
    assert bus.max_fanout is None and bus.max_depth is None
    uow.done.clear()
    final = flow_from_bus(bus).compile().invoke({"event": bus.codec.to_event(Allocate("o2", "LAMP", 1))}, {"recursion_limit": 10_000})
    assert len(uow.done) == 1100 and len(final["emitted"]) == 1101
    assert [e["node"] for e in final["errors"]] == ["flaky"] and final["errors"][0]["stop"] is False


def test_message_bus_passes_the_contract_and_parity():
    bus, _ = _warehouse()
    check_legacy_bus(bus, [bus.codec.to_event(Allocate("o1", "LAMP", 1)), bus.codec.to_event(Allocate("o2", "BAD", 1))])


# -- pyee -----------------------------------------------------------------------------------------


def _signup():
    ee = EventEmitter()
    seen = {"welcomed": False, "calls": [], "new": []}

    @ee.on("new_listener")
    def spy(event, fn):  # pyee's internal event, with a function argument
        seen["new"].append(event)

    @ee.on("user_created")
    def send_welcome(user):
        seen["calls"].append("send_welcome")
        ee.emit("welcome_sent", user)

    @ee.on("user_created")
    def check_welcomed(user):
        seen["calls"].append("check_welcomed")
        if not seen["welcomed"]:
            raise RuntimeError("not welcomed")

    @ee.on("welcome_sent")
    def mark(user):
        seen["calls"].append("mark")
        seen["welcomed"] = True

    return ee, seen


def test_pyee_adapter_runs_nested_emits_depth_first_returns_pyees_value_and_leaves_new_listener_alone():
    ee, seen = _signup()
    bus = pyee_bus(ee)
    assert [s.name for s in bus.subscriptions] == ["send_welcome", "check_welcomed", "mark"]  # no new_listener
    assert ee.emit("user_created", "ann") is True and ee.emit("nobody_listens") is False
    assert seen["calls"] == ["send_welcome", "mark", "check_welcomed"] and seen["welcomed"]
    flow = flow_from_bus(bus)
    seen.update(welcomed=False, calls=[])
    final = flow.compile().invoke({"event": bus.codec.to_event(("user_created", ("bob",), {}))})
    assert not final["errors"] and seen["calls"] == ["send_welcome", "mark", "check_welcomed"]


def test_pyee_listener_exception_propagates_out_of_emit_and_ends_it():
    ee = EventEmitter()
    calls = []
    ee.on("x", lambda: (_ for _ in ()).throw(ValueError("boom", 7)))
    ee.on("x", lambda: calls.append("second"))
    pyee_bus(ee)
    with pytest.raises(ValueError) as err:
        ee.emit("x")
    assert err.value.args == ("boom", 7) and calls == []


def test_pyee_listeners_added_later_are_picked_up_and_a_stale_graph_refuses_loudly():
    ee, seen = _signup()
    bus = pyee_bus(ee)
    graph = flow_from_bus(bus).compile()

    @ee.on("welcome_sent")
    def also(user):
        seen["calls"].append("also")

    assert "also" in [s.name for s in bus.subscriptions]
    seen["calls"].clear()
    ee.emit("user_created", "ann")
    assert seen["calls"] == ["send_welcome", "mark", "also", "check_welcomed"]
    with pytest.raises(ConfigurationError, match=r"handlers added: \['also'\].*flow_from_bus\(bus\)"):
        graph.invoke({"event": bus.codec.to_event(("user_created", ("bob",), {}))})


def test_pyee_adapter_closes_back_to_the_emitter_exactly():
    ee, _ = _signup()
    before = dict(vars(ee))
    bus = pyee_bus(ee)
    with pytest.raises(ConfigurationError, match="already wrapped"):
        pyee_bus(ee)
    bus.close()
    assert vars(ee) == before


def test_pyee_signup_passes_the_contract_and_parity():
    ee, seen = _signup()
    bus = pyee_bus(ee)
    seen["welcomed"] = True
    check_legacy_bus(bus, [bus.codec.to_event(("user_created", ("ann",), {}))])


# -- blinker and Django -----------------------------------------------------------------------------


def test_blinker_send_returns_the_apps_own_receivers_and_results():
    ns = blinker.Namespace()
    placed, shipped = ns.signal("placed"), ns.signal("shipped")

    @placed.connect
    def ship(sender, order):
        return shipped.send(sender, order=order)

    @shipped.connect
    def mail(sender, order):
        return f"mailed {order}"

    bus = blinker_bus(placed, shipped)
    assert placed.send("shop", order=3) == [(ship, [(mail, "mailed 3")])]
    check_legacy_bus(bus, [bus.codec.to_event(("placed", ("shop",), {"order": 3}))])
    bus.close()
    assert "send" not in vars(placed) and "receivers_for" not in vars(placed)


def test_django_send_keeps_its_return_value_sender_filter_and_error_propagation():
    paid = Signal()
    calls = []

    def receipt(sender, amount, **kwargs):
        calls.append(("receipt", sender, amount))
        return amount * 2

    def only_cards(sender, amount, **kwargs):
        raise ValueError("card declined", amount)

    paid.connect(receipt, weak=False)
    paid.connect(only_cards, sender="card", weak=False)
    bus = django_bus(paid, names={paid: "paid"})
    assert paid.send(sender="cash", amount=2) == [(receipt, 4)]
    with pytest.raises(ValueError) as err:
        paid.send(sender="card", amount=5)
    assert err.value.args == ("card declined", 5) and calls[-1] == ("receipt", "card", 5)
    assert bus.handler_names_for(bus.codec.to_event(("paid", ("cash",), {"amount": 1}))) == ["receipt"]
    check_legacy_bus(bus, [bus.codec.to_event(("paid", ("cash",), {"amount": 1})), bus.codec.to_event(("paid", ("card",), {"amount": 1}))])


# -- effect arguments through the codec ---------------------------------------------------------------


def test_an_effect_called_with_a_dataclass_records_the_same_exact_value_on_both_paths():
    ee = EventEmitter()
    bus = pyee_bus(ee)

    @bus.effect("ship", stub={"ok": True})
    def ship(line):
        return {"ok": True}

    @ee.on("order")
    def send(sku, qty):
        ship(Line(sku, qty, Decimal("9.90")))

    m = Migration("effects", legacy=bus, candidate=flow_from_bus(bus))
    (c,) = assert_parity(m, [bus.codec.to_event(("order", ("LAMP", 2), {}))])
    (call,) = c.legacy.effects
    assert decode(call.args[0]) == Line("LAMP", 2, Decimal("9.90"))
    assert call.to_dict()["args"] == c.candidate.effects[0].to_dict()["args"]
