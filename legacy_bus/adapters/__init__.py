"""Adapters: the buses teams already run, as ``LegacyBus``es, unchanged.

* ``message_bus(name, handlers, ...)``: the handler-registry bus (Cosmic Python's pattern);
* ``pyee_bus(emitter)``: a pyee ``EventEmitter``;
* ``blinker_bus(*signals)``: blinker signals;
* ``django_bus(*signals)``: Django signals.

Each keeps its library's semantics: order, return values, errors, no added limits.
"""

from legacy_bus.adapters.message_bus import MessageBus, message_bus
from legacy_bus.adapters.observed import ObservedBus
from legacy_bus.adapters.pyee import PyeeBus, pyee_bus
from legacy_bus.adapters.signals import BlinkerBus, DjangoBus, blinker_bus, django_bus

__all__ = [
    "BlinkerBus",
    "DjangoBus",
    "MessageBus",
    "ObservedBus",
    "PyeeBus",
    "blinker_bus",
    "django_bus",
    "message_bus",
    "pyee_bus",
]
