"""For random topologies in each library's style, the bus's observed dispatch and the derived graph
run the same listeners, with the same arguments, in the same order as the library's own dispatch."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import blinker
from django.dispatch import Signal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyee import EventEmitter

from graph_flows import flow_from_bus
from legacy_bus.adapters import blinker_bus, django_bus, message_bus, pyee_bus

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
N = 4  # event kinds e0..e3; a listener of e_i emits only e_j with j > i, so every cascade ends

# A listener: (kind it listens to, [(kind it emits, sender index)], whether it raises after emitting)
listener = st.integers(0, N - 2).flatmap(
    lambda i: st.tuples(
        st.just(i),
        st.lists(st.tuples(st.integers(i + 1, N - 1), st.integers(0, 1)), max_size=2),
        st.booleans(),
    )
)
topologies = st.lists(listener, min_size=1, max_size=6)
SENDERS = ("x", "y")


def _graph_run(bus, event):
    return flow_from_bus(bus).compile().invoke({"event": event})


# -- pyee -----------------------------------------------------------------------------------


def _pyee_app(topology, log):
    ee = EventEmitter()
    for k, (kind, emits, _) in enumerate(topology):

        def make(k=k, emits=emits):
            def fn(n):
                log.append((f"l{k}", n))
                for target, _ in emits:
                    ee.emit(f"e{target}", n * 10 + k)

            fn.__name__ = f"l{k}"
            return fn

        ee.on(f"e{kind}", make())
    return ee


@SETTINGS
@given(topologies)
def test_pyee_graph_and_bus_run_listeners_in_pyees_own_depth_first_order(topology):
    own: list = []
    _pyee_app(topology, own).emit("e0", 1)  # pyee alone, never wrapped
    observed: list = []
    bus = pyee_bus(_pyee_app(topology, observed))
    dispatch = bus.dispatch(bus.codec.to_event(("e0", (1,), {})))
    assert observed == own
    assert [(s.node, s.event.payload["args"][0]) for s in dispatch.steps] == own
    graphed: list = []
    gbus = pyee_bus(_pyee_app(topology, graphed))
    final = _graph_run(gbus, gbus.codec.to_event(("e0", (1,), {})))
    assert graphed == own
    assert [(e["type"], e["payload"]) for e in final["emitted"]] == [(e.type, e.payload) for e in dispatch.emitted]


# -- blinker -------------------------------------------------------------------------------


def _blinker_app(topology, log, senders):
    ns = blinker.Namespace()
    signals = [ns.signal(f"e{i}") for i in range(N)]
    keep = []  # blinker holds receivers weakly
    for k, (kind, emits, _) in enumerate(topology):

        def make(k=k, emits=emits):
            def fn(sender, n):
                log.append((f"l{k}", sender, n))
                for target, s in emits:
                    signals[target].send(SENDERS[s], n=n * 10 + k)
                return k

            fn.__name__ = f"l{k}"
            return fn

        fn = make()
        keep.append(fn)
        only = senders[k % len(senders)]
        signals[kind].connect(fn, sender=blinker.ANY if only is None else only)
    return signals, keep


@SETTINGS
@given(topologies, st.lists(st.sampled_from([None, "x", "y"]), min_size=1, max_size=3))
def test_blinker_graph_and_bus_run_receivers_in_blinkers_own_order_per_sender(topology, senders):
    # blinker's order is its own (a set of receiver ids per sender), so all three runs use one app
    log: list = []
    signals, _keep = _blinker_app(topology, log, senders)
    own_result = signals[0].send("x", n=1)
    own = log[:]
    bus = blinker_bus(*signals)
    log.clear()
    result = signals[0].send("x", n=1)  # the app's own call, through the adapter (nothing attached)
    assert log == own
    assert result == own_result  # [(receiver, return value)], the app's own receivers
    log.clear()
    observed = bus.dispatch(bus.codec.to_event(("e0", ("x",), {"n": 1})))  # blinker's send, observed
    assert log == own and observed.value == own_result
    assert [(s.node, s.event.payload["args"][0], s.event.payload["kwargs"]["n"]) for s in observed.steps] == own
    log.clear()
    _graph_run(bus, bus.codec.to_event(("e0", ("x",), {"n": 1})))
    assert log == own
    bus.close()
    log.clear()
    assert signals[0].send("x", n=1) == own_result and log == own  # unwrapped: blinker exactly as before


# -- Django signals --------------------------------------------------------------------------


def _django_app(topology, log, senders):
    signals = [Signal() for _ in range(N)]
    keep = []
    for k, (kind, emits, _) in enumerate(topology):

        def make(k=k, emits=emits):
            def fn(sender, n, **kwargs):
                log.append((f"l{k}", sender, n))
                for target, s in emits:
                    signals[target].send(sender=SENDERS[s], n=n * 10 + k)
                return k

            fn.__name__ = f"l{k}"
            return fn

        fn = make()
        keep.append(fn)
        signals[kind].connect(fn, sender=senders[k % len(senders)], weak=False)
    return signals, keep


@SETTINGS
@given(topologies, st.lists(st.sampled_from([None, "x", "y"]), min_size=1, max_size=3))
def test_django_graph_and_bus_run_receivers_in_djangos_own_order_per_sender(topology, senders):
    log: list = []
    signals, _keep = _django_app(topology, log, senders)
    own_result = signals[0].send(sender="x", n=1)
    own = log[:]
    bus = django_bus(*signals, names={s: f"e{i}" for i, s in enumerate(signals)})
    log.clear()
    result = signals[0].send(sender="x", n=1)
    assert log == own
    assert result == own_result
    log.clear()
    observed = bus.dispatch(bus.codec.to_event(("e0", ("x",), {"n": 1})))  # Django's send, observed
    assert log == own and observed.value == own_result
    assert [(s.node, s.event.payload["args"][0], s.event.payload["kwargs"]["n"]) for s in observed.steps] == own
    log.clear()
    _graph_run(bus, bus.codec.to_event(("e0", ("x",), {"n": 1})))
    assert log == own
    bus.close()
    assert "send" not in vars(signals[0])  # unwrapped: the class's own send again


# -- the handler-registry bus, against Cosmic Python's own MessageBus loop ----------------------


class Message:
    pass


@dataclass(frozen=True)
class E0(Message):
    n: int


@dataclass(frozen=True)
class E1(Message):
    n: int


@dataclass(frozen=True)
class E2(Message):
    n: int


@dataclass(frozen=True)
class E3(Message):
    n: int


KINDS = [E0, E1, E2, E3]


@dataclass
class UnitOfWork:
    """Cosmic Python's unit of work, reduced to what the bus sees: new events to collect."""

    pending: list = field(default_factory=list)

    def collect_new_events(self):
        while self.pending:
            yield self.pending.pop(0)


class CosmicMessageBus:
    """Cosmic Python's ``MessageBus`` (cosmicpython/code, src/allocation/service_layer/messagebus.py), events only."""

    def __init__(self, uow, event_handlers):
        self.uow = uow
        self.event_handlers = event_handlers

    def handle(self, message):
        self.queue = [message]
        while self.queue:
            message = self.queue.pop(0)
            for handler in self.event_handlers[type(message)]:
                try:
                    handler(message)
                    self.queue.extend(self.uow.collect_new_events())
                except Exception:
                    logging.getLogger("cosmic").exception("Exception handling event %s", message)
                    continue


def _handlers(topology, log):
    handlers: dict = {k: [] for k in KINDS}
    for k, (kind, emits, raises) in enumerate(topology):

        def make(k=k, emits=emits, raises=raises):
            def fn(message, uow):
                log.append((f"h{k}", type(message).__name__, message.n))
                uow.pending.extend(KINDS[t](message.n * 10 + k) for t, _ in emits)
                if raises:
                    raise ValueError(f"h{k} failed")

            fn.__name__ = f"h{k}"
            return fn

        handlers[KINDS[kind]].append(make())
    return handlers


@SETTINGS
@given(topologies)
def test_message_bus_graph_and_bus_handle_messages_in_cosmic_pythons_own_order(topology):
    own: list = []
    uow = UnitOfWork()
    hs = _handlers(topology, own)
    CosmicMessageBus(uow, {k: [lambda m, h=h: h(m, uow) for h in v] for k, v in hs.items()}).handle(E0(1))

    def build(log):
        uow = UnitOfWork()
        return message_bus(
            "p", _handlers(topology, log), dependencies={"uow": uow}, collect=lambda uow: uow.collect_new_events(), errors={Message: "log"}
        )

    observed: list = []
    bus = build(observed)
    bus.handle(E0(1))
    assert observed == own
    graphed: list = []
    gbus = build(graphed)
    final = _graph_run(gbus, gbus.codec.to_event(E0(1)))
    assert graphed == own
    assert [(e["type"], e["payload"]) for e in final["emitted"]] == [
        (e.type, e.payload) for e in build([]).dispatch(gbus.codec.to_event(E0(1))).emitted
    ]
