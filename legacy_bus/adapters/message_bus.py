"""``message_bus(...)``: the handler-registry bus most teams wrote themselves (Cosmic Python's pattern).

Message classes map to their handlers; a handler's dependencies are injected
by parameter name; after each handler the follow-up messages are collected
(``collect``, e.g. a unit of work's new events from the aggregates it saw,
plus any messages the handler returned) and join the back of the queue; an
error policy per message kind decides what a handler's exception does:
``"raise"`` ends the dispatch and reaches the caller unchanged (Cosmic's
commands), ``"log"`` logs it and the cascade goes on (Cosmic's events).

The app's bootstrap changes one line, from ``MessageBus(uow, EVENT_HANDLERS,
COMMAND_HANDLERS)`` to ``message_bus("allocation", {**EVENT_HANDLERS,
**COMMAND_HANDLERS}, dependencies={"uow": uow}, collect=lambda uow:
uow.collect_new_events(), errors={Event: "log", Command: "raise"})``, and the
app keeps calling ``bus.handle(message)``. No handler changes. No cascade
bounds are added (``max_depth`` / ``max_fanout`` only when asked). A unit of
work on SQLAlchemy builds on ``bus.database(name, sessionmaker)`` (as on every
bus: ``legacy_bus.database.DatabasesMixin``), so replays and shadows roll back.
"""

from __future__ import annotations

import copy
import inspect
from contextlib import contextmanager, nullcontext
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from time import perf_counter
from typing import Any, Literal

from migration_errors import ConfigurationError

import legacy_bus.adapters.served as served
from legacy_bus.ports import PortsMixin
from legacy_bus.bus import Dispatch, cut_at_depth
from legacy_bus.cascade import arun_cascade, run_cascade
from legacy_bus.codec import ClassCodec
from legacy_bus.database import dispatch_writes
from legacy_bus.context import HandlerContext
from legacy_bus.effects import EffectPort, Sandbox
from legacy_bus.event import Event
from legacy_bus.records import Step
from legacy_bus.state import InMemoryStateStore, StateStore
from legacy_bus.subscription import Subscription

__all__ = ["MessageBus", "message_bus"]

logger = logging.getLogger("legacy_bus.message_bus")

Policy = Literal["raise", "log"]
# Handler return values of the running root dispatch (what handle() returns).
_RESULTS: ContextVar[list[Any] | None] = ContextVar("legacy_bus_message_results", default=None)


def _injected(fn: Callable[..., Any], dependencies: Mapping[str, Any], first: bool) -> dict[str, Any]:
    """The dependencies ``fn`` asks for by parameter name (after its message, when ``first``)."""
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return {}
    if first:
        params = params[1:]
    return {name: dependencies[name] for name in params if name in dependencies}


class _Loop:
    """The bookkeeping of one breadth-first dispatch (a ``Cascade``), shared by the sync and async drivers."""

    __slots__ = ("bus", "emitted", "emitted_by", "exception", "queue", "results", "root", "started", "states", "steps", "writes")

    def __init__(self, bus: MessageBus, root: Event, states: StateStore) -> None:
        self.bus, self.root, self.states = bus, root, states
        self.queue: deque[tuple[Event, int]] = deque([(root, 0)])
        self.emitted: list[Event] = []
        self.emitted_by: list[str] = []
        self.steps: list[Step] = []
        self.exception: BaseException | None = None
        self.results: list[Any] = []
        self.writes: Callable[[], tuple[Any, ...]] | None = None
        self.started = perf_counter()

    def deliveries(self) -> Iterator[tuple[Subscription, Event, int, dict[str, Any]]]:
        while self.queue:
            event, depth = self.queue.popleft()
            for sub in self.bus._routes.get(event.type, ()):
                yield sub, event, depth, self.states.load(event.saga_key)
                if self.exception is not None:
                    return

    def record(self, step: Step, state: dict[str, Any]) -> None:
        self.states.save(step.event.saga_key, state)
        bus = self.bus
        if bus.max_depth is not None or bus.max_fanout is not None:
            step = cut_at_depth(step, bus.max_depth or 1 << 62, lambda: [self.root.type, step.event.type], bus.max_fanout)
        for child in step.published:
            self.emitted.append(child)
            self.emitted_by.append(step.node)
            self.queue.append((child, step.depth + 1))
        self.steps.append(step)
        if step.exception is not None:
            if bus.stops_on_error(step.event.type):
                self.exception = step.exception
            else:
                logger.error("Exception handling %s with %s", step.event.type, step.node, exc_info=step.exception)

    @contextmanager
    def running(self, sandbox: Sandbox | None) -> Iterator[None]:
        """While the handlers run: their plain return values and writes are collected, effects sandboxed if asked."""
        token = _RESULTS.set(self.results)
        self.started = perf_counter()
        try:
            with sandbox if sandbox is not None else nullcontext(), dispatch_writes(self.bus, sandbox) as writes:
                self.writes = writes  # read once the sandbox is closed: what declared databases were given
                yield
        finally:
            _RESULTS.reset(token)

    def outcome(self, capture: bool) -> Dispatch:
        """The dispatch; a "raise" kind's exception is raised unless ``capture``."""
        if self.exception is not None and not capture:
            raise self.exception
        error = next((s.error for s in self.steps if s.error is not None), None)
        state = self.states.peek(self.root.saga_key)
        return Dispatch(
            root=self.root,
            emitted=tuple(self.emitted),
            emitted_by=tuple(self.emitted_by),
            steps=tuple(self.steps),
            error=error,
            state=copy.deepcopy(state) if state else None,
            duration=perf_counter() - self.started,
            exception=self.exception,
            value=self.results,
            writes=self.writes() if self.writes is not None else (),
        )


class MessageBus(PortsMixin):
    """A handler-registry message bus as a breadth-first ``LegacyBus``; made by ``message_bus``.

    Args:
        name: a label for graphs, traces and reports.
        handlers: message class -> a handler or a list of handlers (run in order).
        dependencies: name -> value, injected into each handler (and ``collect``)
            that has a parameter of that name.
        collect: called after each handler, with the dependencies it names;
            returns the follow-up messages (a unit of work's new events).
            Messages a handler returns are follow-ups too.
        errors: message class (or base class) -> ``"raise"`` (the default) or ``"log"``.
        state_store: where saga state lives between messages (in memory by default).
        max_depth, max_fanout: cascade bounds, off unless given.
    """

    discipline = "breadth_first"
    on_error = "raise"  # a "raise" kind's exception reaches the caller; "log" kinds never set one

    def __init__(
        self,
        name: str,
        handlers: Mapping[type, Callable[..., Any] | Iterable[Callable[..., Any]]],
        *,
        dependencies: Mapping[str, Any] | None = None,
        collect: Callable[..., Iterable[Any]] | None = None,
        errors: Mapping[type, Policy] | None = None,
        state_store: StateStore | None = None,
        max_depth: int | None = None,
        max_fanout: int | None = None,
    ) -> None:
        if not isinstance(handlers, Mapping) or not handlers:
            raise ConfigurationError(f"message_bus({name!r}, handlers): handlers maps message classes to their handlers")
        for cls, policy in (errors or {}).items():
            if policy not in ("raise", "log"):
                raise ConfigurationError(f"message_bus(errors={{{cls.__name__}: {policy!r}}}): a policy is 'raise' or 'log'")
        self.name = name
        self.dependencies = dict(dependencies or {})
        self.collect = collect
        self.errors = dict(errors or {})
        self.max_depth = max_depth
        self.max_fanout = max_fanout
        self.state_store: StateStore = state_store if state_store is not None else InMemoryStateStore()
        self.codec = ClassCodec(handlers)
        self._ports: dict[str, EffectPort] = {}
        self._routes: dict[str, list[Subscription]] = {}
        self._subs: list[Subscription] = []
        self._policy: dict[str, Policy] = {}
        taken: set[str] = set()
        for cls, hs in handlers.items():
            if not isinstance(cls, type):
                raise ConfigurationError(f"message_bus({name!r}): handler keys are message classes, not {cls!r}")
            for h in [hs] if callable(hs) else list(hs):
                if not callable(h):
                    raise ConfigurationError(f"message_bus({name!r}): the handler {h!r} of {cls.__name__} is not callable")
                node = h.__name__ if h.__name__ not in taken else f"{h.__name__}_{cls.__name__}"
                if node in taken:
                    raise ConfigurationError(f"message_bus({name!r}): handler {h.__name__!r} is listed twice for {cls.__name__}")
                taken.add(node)
                sub = Subscription.of(cls.__name__, self.wrap(h), node)
                self._routes.setdefault(cls.__name__, []).append(sub)
                self._subs.append(sub)
            self._policy[cls.__name__] = self._policy_of(cls)

    def __repr__(self) -> str:
        return f"<MessageBus {self.name!r}: {len(self._subs)} handlers>"

    def _policy_of(self, cls: type) -> Policy:
        for base in cls.__mro__:
            if base in self.errors:
                return self.errors[base]
        return "raise"

    def wrap(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """The handler-protocol callable a handler runs as, on the bus and in a graph node.

        ``flow.replace(name, bus.wrap(new_handler))`` tries a rewritten handler
        written in the app's own style (message, dependencies by name).
        """
        codec, bus = self.codec, self
        deps = _injected(handler, self.dependencies, first=True)

        def follow_ups(event: Event, ctx: HandlerContext, result: Any) -> list[Event]:
            items = result if isinstance(result, (list, tuple)) else [result]
            out = [m for m in items if codec.classes.get(type(m).__name__) is type(m)]
            if result is not None and not out:  # a plain return value (a batch ref): what handle() returns
                results = _RESULTS.get()
                if results is not None:
                    results.append(result)
                else:  # a graph node: kept for handle(), when the graph serves it
                    served.keep(event, ctx.node, result)
            if bus.collect is not None:
                out.extend(bus.collect(**_injected(bus.collect, bus.dependencies, first=False)))
            return [codec.to_event(m) for m in out]

        if inspect.iscoroutinefunction(handler):

            async def arun(event: Event, ctx: HandlerContext) -> list[Event]:
                return follow_ups(event, ctx, await handler(codec.from_event(event), **deps))

            arun.__listener__ = handler  # type: ignore[attr-defined]
            return arun

        def run(event: Event, ctx: HandlerContext) -> list[Event]:
            return follow_ups(event, ctx, handler(codec.from_event(event), **deps))

        run.__listener__ = handler  # type: ignore[attr-defined]
        return run

    # -- LegacyBus ---------------------------------------------------------------------

    @property
    def subscriptions(self) -> list[Subscription]:
        """Every handler, message class by message class, in registration order."""
        return list(self._subs)

    @property
    def event_types(self) -> list[str]:
        """The message kinds (class names) with handlers."""
        return list(self._routes)

    def handlers_for(self, event_type: str) -> list[Subscription]:
        """The handlers of one message kind, in order."""
        return list(self._routes.get(event_type, ()))

    def stops_on_error(self, event_type: str) -> bool:
        """``errors`` says ``"raise"`` for this message kind (the default) rather than ``"log"``."""
        return self._policy.get(event_type, "raise") == "raise"

    def dispatch(
        self, event: Event, *, sandbox: Sandbox | None = None, states: StateStore | None = None, capture: bool = False
    ) -> Dispatch:
        """Handle one root message: its handlers, then every follow-up, breadth-first."""
        return run_cascade(self, _Loop(self, event, states if states is not None else self.state_store), sandbox, capture)

    async def adispatch(
        self, event: Event, *, sandbox: Sandbox | None = None, states: StateStore | None = None, capture: bool = False
    ) -> Dispatch:
        """Async twin of ``dispatch``: async handlers are awaited on the running loop."""
        loop = _Loop(self, event, states if states is not None else self.state_store)
        return await arun_cascade(self, loop, sandbox, capture)

    # -- the app's entry point -----------------------------------------------------------

    def handle(self, message: Any) -> list[Any]:
        """Handle ``message`` and everything it leads to; returns what handlers returned besides messages.

        A ``"raise"`` kind's exception reaches the caller unchanged, as in the
        app's own bus. Goes through ``dispatch`` (so ``attach()`` sees it).
        """
        return self._results(self.dispatch(self.codec.to_event(message)))

    def _results(self, dispatch: Dispatch) -> list[Any]:
        if dispatch.value is not None:
            return list(dispatch.value)
        return [value for _, _, value in served.take(dispatch.root.saga_key)]  # the candidate served

    async def ahandle(self, message: Any) -> list[Any]:
        """Async twin of ``handle``."""
        return self._results(await self.adispatch(self.codec.to_event(message)))


def message_bus(
    name: str, handlers: Mapping[type, Callable[..., Any] | Iterable[Callable[..., Any]]], **options: Any
) -> MessageBus:
    """A handler-registry bus: message classes -> handlers, dependencies by parameter name, follow-ups collected.

    ``MessageBus(name, handlers, **options)``; the options (``dependencies``,
    ``collect``, ``errors``, ``state_store``, ``max_depth``, ``max_fanout``) are
    documented on ``MessageBus``.
    """
    return MessageBus(name, handlers, **options)
