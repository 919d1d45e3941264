"""The reference in-process event bus, written the way legacy teams write theirs.

Dispatch is a breadth-first cascade: the root event's handlers run in
subscription order, one at a time; every event they publish joins the back of
a FIFO queue and is handled the same way, until the queue is empty. The depth
of the cascade is bounded (``max_depth``) so an accidental cycle of event
types ends with an error that names the cycle.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from time import perf_counter
from typing import Any, Literal, TypeVar

from migration_errors import ConfigurationError, CycleError, FanoutError

from legacy_bus.cascade import arun_cascade, run_cascade
from legacy_bus.codec import EventCodec
from legacy_bus.copying import deep_copy
from legacy_bus.context import ACTIVE
from legacy_bus.dispatch import Dispatch  # re-exported: it lived here
from legacy_bus.effects import EffectPort, Sandbox
from legacy_bus.database import dispatch_writes
from legacy_bus.event import Event, make_event
from legacy_bus.ports import PortsMixin
from legacy_bus.protocol import Discipline
from legacy_bus.records import ErrorInfo, Step
from legacy_bus.state import InMemoryStateStore, StateStore
from legacy_bus.subscription import Subscription

__all__ = ["Dispatch", "EventBus", "OnError", "cut_at_depth"]

OnError = Literal["raise", "record"]
F = TypeVar("F", bound=Callable[..., Any])


def cycle_of(types: list[str]) -> list[str]:
    """The repeating cycle at the end of a chain of event types (the whole chain if none)."""
    last = types[-1]
    for i in range(len(types) - 2, -1, -1):
        if types[i] == last:
            return types[i:]
    return types


def depth_error(chain: list[str], max_depth: int) -> CycleError:
    """The error for a cascade cut at ``max_depth``, naming the cycle of event types."""
    cycle = cycle_of(chain)
    return CycleError(
        f"cascade from {chain[0]!r} exceeded max_depth={max_depth}: event cycle "
        f"{' -> '.join(cycle)}; break the cycle, or raise EventBus(max_depth=...) if the chain is meant to be this long",
        cycle=cycle,
    )


def cut_at_depth(step: Step, max_depth: int, chain: Callable[[], list[str]], max_fanout: int | None = None) -> Step:
    """Apply the cascade bounds to a finished step: too deep or too wide makes it fail.

    Children beyond ``max_depth`` (a ``CycleError`` naming the cycle) or more
    than ``max_fanout`` children from one handler (a ``FanoutError``) drop
    the step's children and make it fail; the bus and every graph derived
    from it use this one rule. ``chain`` gives the event types from the root
    to the step's event.
    """
    if not step.published:
        return step
    if max_fanout is not None and len(step.published) > max_fanout:
        exc: Exception = FanoutError(
            f"handler {step.node!r} published {len(step.published)} events while handling {step.event.type!r}, "
            f"more than max_fanout={max_fanout}; raise EventBus(max_fanout=...) if that is intended"
        )
        return replace(step, published=(), error=ErrorInfo.of(exc), exception=exc)
    if step.depth + 1 <= max_depth:
        return step
    exc = depth_error(chain() + [step.published[0].type], max_depth)
    return replace(step, published=(), error=ErrorInfo.of(exc), exception=exc)


class _Cascade:
    """The bookkeeping of one breadth-first dispatch (a ``Cascade``), shared by the sync and async drivers."""

    __slots__ = (
        "bus",
        "emitted",
        "emitted_by",
        "error",
        "exception",
        "queue",
        "root",
        "started",
        "states",
        "steps",
        "stop_on_error",
        "types",
        "writes",
    )

    def __init__(self, bus: EventBus, root: Event, states: StateStore | None) -> None:
        self.bus = bus
        self.root = root
        self.states = states if states is not None else bus.state_store
        self.stop_on_error = bus.on_error == "raise"
        self.started = 0.0
        self.writes: Callable[[], tuple[Any, ...]] | None = None
        self.queue: deque[tuple[Event, int]] = deque([(root, 0)])
        self.types: dict[str, tuple[str, str | None]] = {root.id: (root.type, None)}
        self.emitted: list[Event] = []
        self.emitted_by: list[str] = []
        self.steps: list[Step] = []
        self.error: ErrorInfo | None = None
        self.exception: BaseException | None = None

    def deliveries(self) -> Iterator[tuple[Subscription, Event, int, dict[str, Any]]]:
        subs = self.bus._subscriptions
        while self.queue:
            event, depth = self.queue.popleft()
            for sub in subs.get(event.type, ()):
                yield sub, event, depth, self.states.load(event.saga_key)
                if self.exception is not None and self.stop_on_error:
                    return

    def chain(self, event_id: str) -> list[str]:
        out: list[str] = []
        cur: str | None = event_id
        while cur is not None:
            etype, cur = self.types[cur]
            out.append(etype)
        return out[::-1]

    def record(self, step: Step, state: dict[str, Any]) -> None:
        self.states.save(step.event.saga_key, state)
        depth = step.depth + 1
        step = cut_at_depth(step, self.bus.max_depth, lambda: self.chain(step.event.id), self.bus.max_fanout)
        for child in step.published:
            self.types[child.id] = (child.type, step.event.id)
            self.emitted.append(child)
            self.emitted_by.append(step.node)
            self.queue.append((child, depth))
        self.steps.append(step)
        if step.exception is not None:
            if self.error is None:
                self.error, self.exception = step.error, step.exception

    @contextmanager
    def running(self, sandbox: Sandbox | None) -> Iterator[None]:
        """While the handlers run: effect calls sandboxed if asked, declared databases' writes collected."""
        self.started = perf_counter()
        with sandbox if sandbox is not None else _nullcontext(), dispatch_writes(self.bus, sandbox) as writes:
            self.writes = writes  # read once the sandbox is closed
            yield

    def outcome(self, capture: bool) -> Dispatch:
        """The dispatch; a handler's exception is raised instead when the bus raises and ``capture`` is off."""
        result = self.result(self.started, self.writes)
        if result.exception is not None and self.stop_on_error and not capture:
            raise result.exception
        return result

    def result(self, started: float, writes: Any = None) -> Dispatch:
        state = self.states.peek(self.root.saga_key)
        return Dispatch(
            root=self.root,
            emitted=tuple(self.emitted),
            emitted_by=tuple(self.emitted_by),
            steps=tuple(self.steps),
            error=self.error,
            state=deep_copy(state) if state else None,
            duration=perf_counter() - started,
            exception=self.exception,
            writes=writes() if writes is not None else (),
        )


class EventBus(PortsMixin):
    """An in-process publish/subscribe bus.

    Args:
        name: a label for graphs, traces and reports.
        max_depth: how deep a cascade may go (the root is depth 0); the graph
            derived from this bus uses the same bound.
        max_fanout: how many events one handler may publish while handling
            one event (bounds a cascade that would emit without end).
        on_error: what a handler's exception does: ``raise`` stops the
            cascade and propagates to the publisher (the exception unchanged);
            ``record`` keeps it on the dispatch and carries on.
        state_store: where ``ctx.state`` lives between events (in memory by
            default).
    """

    def __init__(
        self,
        name: str = "bus",
        *,
        max_depth: int = 32,
        max_fanout: int = 1000,
        on_error: OnError = "raise",
        state_store: StateStore | None = None,
    ) -> None:
        if on_error not in ("raise", "record"):
            raise ConfigurationError(f"EventBus(on_error={on_error!r}): expected 'raise' or 'record'")
        if max_depth < 1:
            raise ConfigurationError(f"EventBus(max_depth={max_depth}): must be at least 1")
        self.name = name
        self.max_depth = max_depth
        if max_fanout < 1:
            raise ConfigurationError(f"EventBus(max_fanout={max_fanout}): must be at least 1")
        self.max_fanout = max_fanout
        self.on_error: OnError = on_error
        self.discipline: Discipline = "breadth_first"
        self.codec = EventCodec()
        self.state_store: StateStore = state_store if state_store is not None else InMemoryStateStore()
        self._subscriptions: dict[str, list[Subscription]] = {}
        self._names: dict[str, Subscription] = {}
        self._ports: dict[str, EffectPort] = {}
        self._databases: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<EventBus {self.name!r}: {len(self._names)} handlers, {len(self._ports)} effect ports>"

    # -- wiring ---------------------------------------------------------------

    def subscribe(self, event_type: str, handler: Callable[..., Any], *, name: str | None = None) -> Callable[..., Any]:
        """Subscribe ``handler`` to ``event_type``; its node name is ``name`` or its ``__name__``.

        Returns the handler unchanged. Raises ``ConfigurationError`` when the
        name is taken, suggesting ``name=``.
        """
        if not isinstance(event_type, str) or not event_type:
            raise ConfigurationError(f"subscribe(): event_type must be a non-empty string, not {event_type!r}")
        if not callable(handler):
            raise ConfigurationError(f"subscribe({event_type!r}, ...): the handler {handler!r} is not callable")
        node = name if name is not None else getattr(handler, "__name__", None)
        if not node:
            raise ConfigurationError(
                f"subscribe({event_type!r}, {handler!r}): the handler has no __name__; pass name='...'"
            )
        if node.startswith("__") or ":" in node:
            raise ConfigurationError(f"handler name {node!r} is reserved (names may not start with '__' or contain ':')")
        if node in self._names:
            prev = self._names[node]
            raise ConfigurationError(
                f"a handler named {node!r} is already subscribed (to {prev.event_type!r}); "
                f"node names must be unique: subscribe(..., name='{node}_{event_type.lower()}')"
            )
        sub = Subscription.of(event_type, handler, node)
        self._subscriptions.setdefault(event_type, []).append(sub)
        self._names[node] = sub
        return handler

    def on(self, event_type: str, *, name: str | None = None) -> Callable[[F], F]:
        """Decorator form of ``subscribe``: ``@bus.on("OrderPlaced")``."""

        def decorate(handler: F) -> F:
            self.subscribe(event_type, handler, name=name)
            return handler

        return decorate

    # -- introspection ---------------------------------------------------------

    @property
    def subscriptions(self) -> list[Subscription]:
        """Every subscription, in the order they were made."""
        return list(self._names.values())

    def handlers_for(self, event_type: str) -> list[Subscription]:
        """The subscriptions of one event type, in subscription order."""
        return list(self._subscriptions.get(event_type, ()))

    @property
    def event_types(self) -> list[str]:
        """The event types some handler is subscribed to, in first-subscription order."""
        return list(self._subscriptions)

    def stops_on_error(self, event_type: str) -> bool:
        """Whether a handler error stops the cascade (``on_error='raise'``), for every event type."""
        return self.on_error == "raise"

    # -- dispatch --------------------------------------------------------------

    def publish(self, event_or_type: Event | str, payload: dict[str, Any] | None = None, **fields: Any) -> Dispatch | Event:
        """Publish an event.

        Outside a handler this dispatches the whole cascade and returns its
        ``Dispatch``. Inside one of this bus's handlers it adds the event to
        the running cascade (as a child of the event being handled) and
        returns the child event.
        """
        active = ACTIVE.get()
        if active is not None and active.bus is self:
            return active.publish(event_or_type, payload, **fields)
        return self.dispatch(make_event(event_or_type, payload, **fields))

    async def apublish(
        self, event_or_type: Event | str, payload: dict[str, Any] | None = None, **fields: Any
    ) -> Dispatch | Event:
        """Async twin of ``publish``: async handlers are awaited on the running loop."""
        active = ACTIVE.get()
        if active is not None and active.bus is self:
            return active.publish(event_or_type, payload, **fields)
        return await self.adispatch(make_event(event_or_type, payload, **fields))

    def dispatch(
        self, event: Event, *, sandbox: Sandbox | None = None, states: StateStore | None = None, capture: bool = False
    ) -> Dispatch:
        """Run the cascade of one root event.

        Args:
            event: the root event.
            sandbox: when given, effect calls are recorded and answered, never
                real (the migration's own runs).
            states: the saga state store to use instead of the bus's own
                (an ``OverlayStateStore`` keeps a sandboxed run from changing
                live state).
            capture: return handler errors on the ``Dispatch`` instead of
                raising them, even when ``on_error='raise'``; the cascade still
                stops where the live bus would.
        """
        return run_cascade(self, _Cascade(self, event, states), sandbox, capture)

    async def adispatch(
        self, event: Event, *, sandbox: Sandbox | None = None, states: StateStore | None = None, capture: bool = False
    ) -> Dispatch:
        """Async twin of ``dispatch``."""
        return await arun_cascade(self, _Cascade(self, event, states), sandbox, capture)


class _nullcontext:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
