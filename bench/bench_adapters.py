"""Benchmark: what observing a library's own dispatch costs the app's live publish, per adapter.

    .venv/bin/python bench/bench_adapters.py [--publishes N] [--rounds R]

For pyee, blinker and Django signals: one app (a root event, two listeners,
one nested emit with one listener) published N times through the library
alone and through its adapter (the library's own dispatch, observed: a step
per listener call), in interleaved rounds in one process; for the
handler-registry bus, Cosmic Python's own loop against ``message_bus``.
Prints the medians over rounds of the paired ratios adapter / library (time
per publish): with nothing attached (the app's call goes straight to the
library) and observed (as under ``attach()``, without the tap's own work).
No goal is asserted: the ratio is the price of observing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import blinker
from django.dispatch import Signal
from pyee import EventEmitter

from legacy_bus.adapters import blinker_bus, django_bus, message_bus, pyee_bus


def pyee_app():
    ee = EventEmitter()
    ee.on("a", lambda n: ee.emit("b", n))
    ee.on("a", lambda n: None)
    ee.on("b", lambda n: None)
    return (lambda: ee.emit("a", 1)), (lambda: pyee_bus(ee))


def blinker_app():
    ns = blinker.Namespace()
    a, b = ns.signal("a"), ns.signal("b")
    keep = [lambda s, n: b.send(s, n=n), lambda s, n: None, lambda s, n: None]
    a.connect(keep[0])
    a.connect(keep[1])
    b.connect(keep[2])
    return (lambda: (keep, a.send("x", n=1))), (lambda: blinker_bus(a, b))


def django_app():
    a, b = Signal(), Signal()
    a.connect(lambda sender, n, **k: b.send(sender=sender, n=n), weak=False)
    a.connect(lambda sender, n, **k: None, weak=False)
    b.connect(lambda sender, n, **k: None, weak=False)
    return (lambda: a.send(sender="x", n=1)), (lambda: django_bus(a, b, names={a: "a", b: "b"}))


@dataclass(frozen=True)
class A:
    n: int


@dataclass(frozen=True)
class B:
    n: int


def cosmic_app():
    def cosmic(message):  # Cosmic Python's loop, reduced
        queue = [message]
        while queue:
            m = queue.pop(0)
            for h in handlers[type(m)]:
                out = h(m)
                queue.extend(out or [])

    handlers = {A: [lambda m: [B(m.n)], lambda m: None], B: [lambda m: None]}
    bus = message_bus("bench", handlers)
    return (lambda: cosmic(A(1))), (lambda: bus)


def timed(fn, n):
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--publishes", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    for label, make in (("pyee", pyee_app), ("blinker", blinker_app), ("django", django_app), ("message_bus", cosmic_app)):
        idle, observing, bases = [], [], []
        for _ in range(args.rounds):
            raw, wrap = make()
            base = timed(raw, args.publishes)
            bus = wrap()
            if label == "message_bus":
                idle.append(timed(lambda: bus.handle(A(1)), args.publishes) / base)
                observing.append(idle[-1])  # the bus is its own loop: always observed
            else:
                idle.append(timed(raw, args.publishes) / base)  # the app's own call, adapter on, nothing attached
                bus.dispatch = type(bus).dispatch.__get__(bus)  # what attach() does, minus the tap's own work
                observing.append(timed(raw, args.publishes) / base)
                bus.close()
            bases.append(base)
        print(
            f"{label:12s} library alone {statistics.median(bases) * 1e6:6.1f} us/publish; adapter/library: "
            f"nothing attached {statistics.median(idle):.2f}x, observed {statistics.median(observing):.1f}x (median of {args.rounds} paired rounds)"
        )


if __name__ == "__main__":
    main()
