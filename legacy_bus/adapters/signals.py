"""``blinker_bus(*signals)`` and ``django_bus(*signals)``: signals the app already sends, observed.

The app keeps calling ``signal.send(sender, **kwargs)`` and connecting
receivers as it does. The library's own ``send`` runs every dispatch: the
adapter hooks, on each signal instance, ``send`` and the method ``send``
takes its receivers from (blinker's ``receivers_for``, Django's
``_live_receivers``), handing it the receivers wrapped so each call is
observed; ``send`` still returns ``[(receiver, result)]`` with the app's own
receivers. Order (the library's, per sender), nested sends depth-first, an
exception propagating out of ``send`` are all the library's. ``close()``
restores the signals. Receivers connected later are picked up; a graph derived
before them refuses to run until derived again.

In a graph node a receiver runs alone, so a nested ``send`` there returns
``[(receiver, None)]`` (its receivers run as the graph's next nodes); once
the candidate serves, a root ``send`` still returns each receiver's own value
(kept by the graph's nodes, ``legacy_bus.adapters.served``).
Async receivers (Django's ``asend`` path) are not observed.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from typing import Any

from migration_errors import ConfigurationError

import legacy_bus.adapters.served as served
from legacy_bus.adapters.observed import ObservedBus
from legacy_bus.dispatch import Dispatch
from legacy_bus.codec import CallCodec, decode
from legacy_bus.event import Event
from legacy_bus.state import StateStore

__all__ = ["BlinkerBus", "DjangoBus", "blinker_bus", "django_bus"]


def _unwrap(results: Any) -> Any:
    if not isinstance(results, list):
        return results
    return [(getattr(r, "__wrapped_receiver__", r), v) for r, v in results]


class _SignalBus(ObservedBus):
    """Common ground of blinker and Django signals: one event type per signal, sender + kwargs as payload."""

    library = "signals"

    def __init__(self, signals: tuple[Any, ...], names: dict[Any, str] | None, *, name: str, state_store: StateStore | None) -> None:
        if not signals:
            raise ConfigurationError(f"{self.library}_bus() takes at least one signal")
        super().__init__(name, CallCodec(), state_store=state_store)
        self.signals: dict[str, Any] = {}
        self._send: dict[str, Callable[..., Any]] = {}
        self._receivers: dict[str, Callable[..., Any]] = {}
        for signal in signals:
            sname = (names or {}).get(signal) or self._name_of(signal)
            if sname in self.signals:
                raise ConfigurationError(f"{self.library}_bus(): two signals are named {sname!r}; pass names={{signal: 'name'}}")
            self.signals[sname] = signal
            self._hook(sname, signal)

    def _name_of(self, signal: Any) -> str:
        name = getattr(signal, "name", None)
        if isinstance(name, str) and name:
            return name
        # A module-level signal is known by the name it is bound to.
        for mod_name, mod in list(sys.modules.items()):
            for attr, value in list(getattr(mod, "__dict__", {}).items()):
                if value is signal and not attr.startswith("_"):
                    return attr
        raise ConfigurationError(f"{self.library}_bus(): cannot name signal {signal!r}; pass names={{signal: 'name'}}")

    def _hook(self, sname: str, signal: Any) -> None:
        bus = self
        send = signal.send
        self._send[sname] = send

        if self.library == "django":

            def patched_send(sender: Any, **kwargs: Any) -> Any:  # Django's send(sender, **named)
                return bus.observe_publish((sname, (sender,), kwargs), lambda: _unwrap(send(sender=sender, **kwargs)))

        else:

            def patched_send(sender: Any = None, /, **kwargs: Any) -> Any:  # blinker's send(sender=None, /, **kwargs)
                return bus.observe_publish((sname, (sender,), kwargs), lambda: _unwrap(send(sender, **kwargs)))

        patched_send.__wrapped__ = send  # type: ignore[attr-defined]
        self._patch(signal, "send", patched_send)
        attr = self.receivers_attr
        original = getattr(signal, attr)
        self._receivers[sname] = original
        self._patch(signal, attr, self._observing_receivers(original))

    def _wrap(self, receiver: Callable[..., Any]) -> Callable[..., Any]:
        bus = self

        def observed(*args: Any, **kwargs: Any) -> Any:
            return bus.observe_listener(receiver, lambda: receiver(*args, **kwargs))

        observed.__wrapped_receiver__ = receiver  # type: ignore[attr-defined]
        return observed

    def _run_library(self, message: Any) -> Any:
        name, (sender,), kwargs = message
        if self.library == "django":
            return _unwrap(self._send[name](sender=sender, **kwargs))
        return _unwrap(self._send[name](sender, **kwargs))

    def _nested_value(self, message: Any) -> Any:
        name, (sender,), _ = message
        return [(r, None) for r in self._live(name, sender)]

    def _value(self, dispatch: Dispatch) -> Any:
        if dispatch.value is not None:
            return dispatch.value
        # the candidate served: the receivers' own return values, from the graph's nodes
        root = dispatch.root
        results = {node: value for eid, node, value in served.take(root.saga_key) if eid == root.id}
        _, (sender,), _ = self.codec.from_event(root)
        return [(r, results.get(self._sub_for(root.type, r).name)) for r in self._live(root.type, sender)]

    def _listeners(self) -> list[tuple[str, Callable[..., Any]]]:
        return [(sname, r) for sname, signal in self.signals.items() for r in self._all(signal)]

    def handler_names_for(self, event: dict[str, Any] | Event) -> list[str]:
        """The nodes an event reaches, in the library's call order for its sender."""
        ev = event if isinstance(event, Event) else Event.model_validate(event)
        args = ev.payload.get("args") or [None]
        sender = decode(args[0])
        return [self._sub_for(ev.type, r).name for r in self._live(ev.type, sender)]

    # library specifics
    receivers_attr = ""

    def _observing_receivers(self, original: Callable[..., Any]) -> Callable[..., Any]:
        raise NotImplementedError

    def _live(self, name: str, sender: Any) -> list[Callable[..., Any]]:
        raise NotImplementedError

    def _all(self, signal: Any) -> list[Callable[..., Any]]:
        raise NotImplementedError


class BlinkerBus(_SignalBus):
    """blinker signals as a depth-first ``LegacyBus``; made by ``blinker_bus``."""

    library = "blinker"
    receivers_attr = "receivers_for"

    def _observing_receivers(self, original: Callable[..., Any]) -> Callable[..., Any]:
        bus = self

        def receivers_for(sender: Any) -> Any:
            for receiver in original(sender):
                yield bus._wrap(receiver)

        return receivers_for

    def _live(self, name: str, sender: Any) -> list[Callable[..., Any]]:
        return list(self._receivers[name](sender))

    def _all(self, signal: Any) -> list[Callable[..., Any]]:
        out = []
        for ref in list(signal.receivers.values()):
            r = ref() if isinstance(ref, weakref.ref) else ref
            if r is not None:
                out.append(r)
        return out

    def _invoke(self, listener: Callable[..., Any], message: Any) -> Any:
        _, (sender,), kwargs = message
        return listener(sender, **kwargs)


class DjangoBus(_SignalBus):
    """Django signals as a depth-first ``LegacyBus``; made by ``django_bus``."""

    library = "django"
    receivers_attr = "_live_receivers"

    def _observing_receivers(self, original: Callable[..., Any]) -> Callable[..., Any]:
        bus = self

        def _live_receivers(sender: Any) -> Any:
            sync, asyncs = original(sender)
            return [bus._wrap(r) for r in sync], asyncs

        return _live_receivers

    def _live(self, name: str, sender: Any) -> list[Callable[..., Any]]:
        return list(self._receivers[name](sender)[0])

    def _all(self, signal: Any) -> list[Callable[..., Any]]:
        out = []
        for _key, ref, is_async in list(signal.receivers):
            r = ref() if isinstance(ref, weakref.ref) else ref
            if r is not None and not is_async:
                out.append(r)
        return out

    def _invoke(self, listener: Callable[..., Any], message: Any) -> Any:
        name, (sender,), kwargs = message
        return listener(signal=self.signals[name], sender=sender, **kwargs)


def blinker_bus(*signals: Any, names: dict[Any, str] | None = None, name: str = "blinker", state_store: StateStore | None = None) -> BlinkerBus:
    """Wrap blinker signals the app already sends; the app keeps calling ``send``."""
    return BlinkerBus(signals, names, name=name, state_store=state_store)


def django_bus(*signals: Any, names: dict[Any, str] | None = None, name: str = "django", state_store: StateStore | None = None) -> DjangoBus:
    """Wrap Django signals the app already sends; the app keeps calling ``send``."""
    return DjangoBus(signals, names, name=name, state_store=state_store)
