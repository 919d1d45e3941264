"""``pyee_bus(emitter)``: a pyee ``EventEmitter`` the app already has, observed as a ``LegacyBus``.

The app keeps calling ``emitter.emit(...)`` and ``@emitter.on(...)``. pyee's
own ``emit`` runs every dispatch; the adapter hooks the emitter instance's
``emit`` and ``_emit_run`` (pyee's per-listener call), and ``close()`` puts
them back. pyee's semantics stay: listeners in the order they were added,
nested emits depth-first, ``emit`` returns whether anyone listened, a
listener's exception propagates out of ``emit`` and ends it. pyee's own
``new_listener`` and ``error`` events are left alone (never subscriptions,
never dispatched by the adapter). Listeners added later are picked up by the
bus; a graph derived before them refuses to run until derived again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from migration_errors import ConfigurationError

import legacy_bus.adapters.served as served
from legacy_bus.adapters.observed import ObservedBus
from legacy_bus.dispatch import Dispatch
from legacy_bus.codec import CallCodec
from legacy_bus.state import StateStore

__all__ = ["PyeeBus", "pyee_bus"]

INTERNAL = frozenset({"new_listener", "error"})


class PyeeBus(ObservedBus):
    """A pyee ``EventEmitter`` as a depth-first ``LegacyBus``; made by ``pyee_bus``."""

    internal = INTERNAL

    def __init__(self, emitter: Any, *, name: str = "pyee", state_store: StateStore | None = None) -> None:
        if not hasattr(emitter, "_events") or not hasattr(emitter, "_emit_run"):
            raise ConfigurationError(f"pyee_bus() takes a pyee EventEmitter, not {type(emitter).__name__}")
        if getattr(emitter, "_migration_kit_bus", None) is not None:
            raise ConfigurationError(f"this emitter is already wrapped by {emitter._migration_kit_bus!r}; close() it first")
        super().__init__(name, CallCodec(), state_store=state_store)
        self.emitter = emitter
        self._emit = emitter.emit  # the emitter's own (bound) emit, as it was
        self.original_run = emitter._emit_run  # pyee's own per-listener call, as it was before the hook
        bus = self

        def emit(event: str, *args: Any, **kwargs: Any) -> Any:
            if event in INTERNAL:
                return bus._emit(event, *args, **kwargs)
            return bus.observe_publish((event, args, kwargs), lambda: bus._emit(event, *args, **kwargs))

        def _emit_run(f: Callable[..., Any], args: Any, kwargs: Any) -> Any:
            listener = bus._listener_of(f)
            if listener is None:
                return bus.original_run(f, args, kwargs)
            return bus.observe_listener(listener, lambda: bus.original_run(f, args, kwargs))

        emit.__wrapped__ = self._emit  # type: ignore[attr-defined]
        self._patch(emitter, "emit", emit)
        self._patch(emitter, "_emit_run", _emit_run)
        self._patch(emitter, "_migration_kit_bus", self)

    # pyee's own internals, read under pyee's own lock: its public API cannot do this. ``event_names()``
    # is a set (event order, and so node names, would change from run to run), and ``listeners()`` gives
    # the registered functions, not what ``_emit_run`` receives (``once`` registers a wrapper).
    def _listeners(self) -> list[tuple[str, Callable[..., Any]]]:
        emitter = self.emitter
        with emitter._lock:
            return [(e, k) for e, od in emitter._events.items() if e not in INTERNAL for k in od]

    def _listener_of(self, f: Callable[..., Any]) -> Callable[..., Any] | None:
        """The listener pyee registered under ``f`` (``once`` wraps it) for the event being observed."""
        event = self.observed_event()
        if event is None:
            return None
        with self.emitter._lock:
            od = self.emitter._events.get(event.type) or {}
            return next((k for k, v in od.items() if v is f), None)

    def _invoke(self, listener: Callable[..., Any], message: Any) -> Any:
        _, args, kwargs = message
        return listener(*args, **kwargs)

    def _run_library(self, message: Any) -> Any:
        name, args, kwargs = message
        return self._emit(name, *args, **kwargs)

    def _nested_value(self, message: Any) -> Any:
        return bool(self.handlers_for(message[0]))

    def _value(self, dispatch: Dispatch) -> Any:
        if dispatch.value is not None:
            return dispatch.value
        served.take(dispatch.root.saga_key)  # pyee's emit returns no listener's value
        return bool(self.handlers_for(dispatch.root.type))  # the candidate served: pyee's "was it handled"

    def emit(self, event: str, *args: Any, **kwargs: Any) -> Any:
        """Emit through the wrapped emitter (the same as ``emitter.emit``)."""
        return self.emitter.emit(event, *args, **kwargs)


def pyee_bus(emitter: Any, *, name: str = "pyee", state_store: StateStore | None = None) -> PyeeBus:
    """Wrap a pyee ``EventEmitter`` the app already has; the app keeps calling ``emit``."""
    return PyeeBus(emitter, name=name, state_store=state_store)
