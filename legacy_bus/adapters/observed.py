"""The shared core of adapters that observe a library's own dispatch loop (pyee, blinker, Django).

Such a library calls its listeners itself, depth-first: a listener that emits
runs the nested emit to completion before the next listener. An adapter
hooks two places, reversibly, on the app's own object:

* the publish call (``emit`` / ``send``): from the app, outside any dispatch,
  it becomes ``bus.dispatch(event)`` (looked up on the instance, so
  ``attach()`` sees it); inside a running listener it records a child event
  and, on the legacy path, lets the library run the nested emit as it would;
* the per-listener call inside the library's loop: each call becomes a
  ``Step`` (what the listener emitted, its effect calls, its error).

In a graph node the listener runs alone: its nested emits are recorded as
children and not run (the graph runs their listeners as the next nodes).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from migration_errors import ConfigurationError

import legacy_bus.adapters.served as served
from legacy_bus.ports import PortsMixin
from legacy_bus.context import ACTIVE, HandlerContext
from legacy_bus.dispatch import Dispatch
from legacy_bus.database import dispatch_writes
from legacy_bus.effects import EffectPort, Sandbox
from legacy_bus.event import Event
from legacy_bus.records import ErrorInfo, Step
from legacy_bus.state import InMemoryStateStore, StateStore
from legacy_bus.subscription import Subscription

__all__ = ["ObservedBus"]


@dataclass(slots=True)
class _Observation:
    """One root dispatch being observed: the steps so far, in the order listeners started."""

    bus: ObservedBus
    states: StateStore
    event: Event  # the event whose listeners the library is calling now
    depth: int = 0
    steps: list[Step | None] = field(default_factory=list)
    emitted: list[Event] = field(default_factory=list)
    emitted_by: list[str] = field(default_factory=list)
    raised: set[int] = field(default_factory=set)


_OBSERVING: ContextVar[_Observation | None] = ContextVar("legacy_bus_observing", default=None)


class ObservedBus(PortsMixin):
    """A ``LegacyBus`` over a library whose own dispatch loop runs, observed (subclasses bind the library)."""

    discipline = "depth_first"
    on_error = "raise"  # the library's exception reaches the publisher, as it always did
    max_depth: int | None = None
    max_fanout: int | None = None
    internal: frozenset[str] = frozenset()

    def __init__(self, name: str, codec: Any, *, state_store: StateStore | None = None) -> None:
        self.name = name
        self.codec = codec
        self.state_store: StateStore = state_store if state_store is not None else InMemoryStateStore()
        self._ports: dict[str, EffectPort] = {}
        self._subs: dict[tuple[str, int], Subscription] = {}
        self._patches: list[tuple[Any, str, Any, bool]] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self.subscriptions)} listeners>"

    # -- what subclasses provide -------------------------------------------------------

    def _listeners(self) -> list[tuple[str, Callable[..., Any]]]:
        """(event type, listener) for every listener, each type's in the library's call order."""
        raise NotImplementedError

    def _invoke(self, listener: Callable[..., Any], message: Any) -> Any:
        """Call one listener with the decoded message, as the library would."""
        raise NotImplementedError

    def _run_library(self, message: Any) -> Any:
        """Publish ``message`` through the library's own (unpatched) publish call; returns its value."""
        raise NotImplementedError

    def _nested_value(self, message: Any) -> Any:
        """What a nested publish returns in a graph node, where its listeners do not run here."""
        return None

    # -- LegacyBus ---------------------------------------------------------------------

    @property
    def subscriptions(self) -> list[Subscription]:
        """Every listener as a ``Subscription``, read from the library each time (later listeners included)."""
        out: list[Subscription] = []
        taken: set[str] = set()
        for etype, listener in self._listeners():
            key = (etype, id(listener))
            sub = self._subs.get(key)
            if sub is None or sub.handler.__listener__ is not listener or sub.name in taken:  # type: ignore[attr-defined]
                sub = Subscription.of(etype, self.wrap(etype, listener), self._fresh_name(etype, listener, taken, key))
                self._subs[key] = sub
            taken.add(sub.name)
            out.append(sub)
        return out

    def _fresh_name(self, etype: str, listener: Callable[..., Any], taken: set[str], key: tuple[str, int]) -> str:
        """A node name for a listener: its ``__name__``, else qualified by event type (names stay unique)."""
        base = re.sub(r"\W", "_", getattr(listener, "__name__", None) or type(listener).__name__).strip("_") or "listener"
        kind = re.sub(r"\W", "_", etype)
        used = taken | {s.name for k, s in self._subs.items() if k != key}
        for name in (base, f"{base}_{kind}", *(f"{base}_{kind}_{n}" for n in range(2, 10_000))):
            if name not in used:
                return name
        raise ConfigurationError(f"cannot name listener {listener!r} of {etype!r}: too many of that name")

    @property
    def event_types(self) -> list[str]:
        """The event types (signal or event names) some listener is connected to."""
        return list(dict.fromkeys(t for t, _ in self._listeners()))

    def handlers_for(self, event_type: str) -> list[Subscription]:
        """The subscriptions of one event type, in call order."""
        return [s for s in self.subscriptions if s.event_type == event_type]

    def stops_on_error(self, event_type: str) -> bool:
        """A listener's exception propagates out of the library's publish call, ending it."""
        return True

    def dispatch(
        self, event: Event, *, sandbox: Sandbox | None = None, states: StateStore | None = None, capture: bool = False
    ) -> Dispatch:
        """Publish ``event`` through the library's own dispatch, observing every listener call."""
        obs = _Observation(self, states if states is not None else self.state_store, event)
        token = _OBSERVING.set(obs)
        started = perf_counter()
        value: Any = None
        exc: BaseException | None = None
        writes: Callable[[], tuple[Any, ...]] | None = None
        try:
            with sandbox if sandbox is not None else _null(), dispatch_writes(self, sandbox) as writes:
                value = self._run_library(self.codec.from_event(event))
        except Exception as e:  # the library's own propagation; re-raised below unless captured
            exc = e
        finally:
            _OBSERVING.reset(token)
        steps = tuple(s for s in obs.steps if s is not None)
        error = next((s.error for s in steps if s.error is not None), None)
        if exc is not None and error is None:
            error = ErrorInfo.of(exc)
        state = obs.states.peek(event.saga_key)
        result = Dispatch(
            root=event,
            emitted=tuple(obs.emitted),
            emitted_by=tuple(obs.emitted_by),
            steps=steps,
            error=error,
            state=copy.deepcopy(state) if state else None,
            duration=perf_counter() - started,
            exception=exc,
            value=value,
            writes=writes() if writes is not None else (),
        )
        if exc is not None and not capture:
            raise exc
        return result

    async def adispatch(
        self, event: Event, *, sandbox: Sandbox | None = None, states: StateStore | None = None, capture: bool = False
    ) -> Dispatch:
        """Async twin of ``dispatch``: the library's publish call is synchronous, so it runs inline."""
        return self.dispatch(event, sandbox=sandbox, states=states, capture=capture)

    # -- the two hooks a subclass patches into the library ------------------------------

    def observe_publish(self, message: Any, original: Callable[[], Any]) -> Any:
        """Hook for the app's publish call (``original`` runs the library's own): a root dispatch, a nested emit, or a graph node's child.

        A subclass routes the library's publish call (``emit`` / ``send``) of
        ``message`` (in the codec's form) through here and returns what this returns.
        """
        ctx = ACTIVE.get()
        if ctx is None or ctx.bus is not self:
            if _OBSERVING.get() is not None or ctx is not None:
                return original()  # another bus's dispatch is running: not ours to observe
            if "dispatch" not in vars(self):
                return original()  # nothing attached: no one to tell, so the library runs exactly as before
            return self._value(self.dispatch(self.codec.to_event(message)))
        child = ctx.publish(self.codec.to_event(message))
        obs = _OBSERVING.get()
        if obs is None or obs.bus is not self:
            return self._nested_value(message)
        obs.emitted.append(child)
        obs.emitted_by.append(ctx.node)
        outer, outer_depth = obs.event, obs.depth
        obs.event, obs.depth = child, ctx.depth + 1
        try:
            return original()
        finally:
            obs.event, obs.depth = outer, outer_depth

    def observed_event(self) -> Event | None:
        """The event whose listeners the library is calling now in this bus's dispatch (None when none runs here)."""
        obs = _OBSERVING.get()
        return None if obs is None or obs.bus is not self else obs.event

    def _value(self, dispatch: Dispatch) -> Any:
        """What the app's publish call returns, from a dispatch (the library's own value on the legacy path)."""
        return dispatch.value

    def observe_listener(self, listener: Callable[..., Any], call: Callable[[], Any]) -> Any:
        """Hook for one listener call inside the library's loop: ``call()`` runs, recorded as a step of the running dispatch.

        A subclass routes the library's per-listener call through here (``listener``
        is the function the app registered, ``call`` makes the library's own call).
        """
        obs = _OBSERVING.get()
        if obs is None or obs.bus is not self:
            return call()
        event, depth = obs.event, obs.depth
        sub = self._sub_for(event.type, listener)
        state = obs.states.load(event.saga_key)
        ctx = HandlerContext(self, sub.name, event, state, depth)
        index = len(obs.steps)
        obs.steps.append(None)  # reserved: steps are listed in the order listeners start
        token = ACTIVE.set(ctx)
        started = perf_counter()
        exc: BaseException | None = None
        try:
            return call()
        except Exception as e:
            exc = e
            raise
        finally:
            ACTIVE.reset(token)
            # An exception propagating out of a nested emit is the nested listener's, not this one's.
            own = exc if exc is not None and id(exc) not in obs.raised else None
            if exc is not None:
                obs.raised.add(id(exc))
            obs.states.save(event.saga_key, state)
            obs.steps[index] = Step(
                node=sub.name,
                event=event,
                depth=depth,
                published=tuple(ctx.published),
                effects=tuple(ctx.effects),
                error=None if own is None else ErrorInfo.of(own),
                started=started,
                duration=perf_counter() - started,
                exception=own,
            )

    def _sub_for(self, etype: str, listener: Callable[..., Any]) -> Subscription:
        sub = self._subs.get((etype, id(listener)))
        if sub is None:
            self.subscriptions  # noqa: B018 - a listener added since: name it now
            sub = self._subs[(etype, id(listener))]
        return sub

    def wrap(self, etype: str, listener: Callable[..., Any]) -> Callable[..., Any]:
        """The handler-protocol callable a graph node runs: the listener alone, with the decoded message.

        ``flow.replace(name, bus.wrap(event_type, new_listener))`` tries a
        rewritten listener written in the app's own style.
        """

        def handler(event: Event, ctx: HandlerContext) -> None:
            result = self._invoke(listener, self.codec.from_event(event))
            served.keep(event, ctx.node, result)  # for the app's publish call, when the graph serves it

        handler.__listener__ = listener  # type: ignore[attr-defined]
        handler.__name__ = getattr(listener, "__name__", etype)
        return handler

    # -- reversible patching -----------------------------------------------------------

    def _patch(self, obj: Any, attr: str, fn: Any) -> None:
        had = attr in vars(obj)
        self._patches.append((obj, attr, vars(obj).get(attr), had))
        setattr(obj, attr, fn)

    def close(self) -> None:
        """Unwrap: the app's objects are exactly as they were before the adapter."""
        while self._patches:
            obj, attr, old, had = self._patches.pop()
            if had:
                setattr(obj, attr, old)
            else:
                delattr(obj, attr)

    def __enter__(self) -> ObservedBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def _null() -> Iterator[None]:
    yield
