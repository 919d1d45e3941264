"""A subscription: one handler for one event type, and how to run it once."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from legacy_bus.aio import run_sync
from legacy_bus.context import ACTIVE, HandlerContext
from legacy_bus.event import Event
from legacy_bus.records import ErrorInfo, Step

__all__ = ["Subscription", "wants_context"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def wants_context(handler: Callable[..., Any]) -> bool:
    """True when the handler has a second required positional parameter (it takes a ctx)."""
    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.kind in _POSITIONAL and p.default is inspect.Parameter.empty]
    return len(required) >= 2


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """True for ``async def`` functions, and objects whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


@dataclass(frozen=True, slots=True)
class Subscription:
    """``handler`` subscribed to ``event_type`` under the node name ``name``."""

    event_type: str
    name: str
    handler: Callable[..., Any]
    wants_ctx: bool
    is_async: bool

    @classmethod
    def of(cls, event_type: str, handler: Callable[..., Any], name: str) -> Subscription:
        """A subscription whose context and async flags are read from the handler's signature."""
        return cls(event_type, name, handler, wants_context(handler), is_async_callable(handler))

    def _start(self, bus: Any, event: Event, state: dict[str, Any], depth: int) -> HandlerContext:
        return HandlerContext(bus, self.name, event, state, depth)

    def _call(self, ctx: HandlerContext) -> Any:
        return self.handler(ctx.event, ctx) if self.wants_ctx else self.handler(ctx.event)

    def _finish(
        self, ctx: HandlerContext, depth: int, result: Any, exc: BaseException | None, started: float
    ) -> Step:
        duration = perf_counter() - started
        published = ctx.published
        if exc is None and result is not None:
            try:
                published.extend([ctx.event.child(ev) for ev in _returned_events(self.name, result)])
            except Exception as e:  # a malformed return value is the handler's error
                exc = e
        return Step(
            node=self.name,
            event=ctx.event,
            depth=depth,
            published=tuple(published),
            effects=tuple(ctx.effects),
            error=None if exc is None else ErrorInfo.of(exc),
            started=started,
            duration=duration,
            exception=exc,
        )

    def _run(self, bus: Any, event: Event, depth: int, state: dict[str, Any]) -> Generator[Any, Any, Step]:
        """One run of the handler, sans-IO: yields what an async handler returned, to be awaited by a driver."""
        ctx = self._start(bus, event, state, depth)
        token = ACTIVE.set(ctx)
        started = perf_counter()
        result: Any = None
        exc: BaseException | None = None
        try:
            result = self._call(ctx)
            if result is not None and inspect.isawaitable(result):  # most handlers return None
                result = yield result
        except Exception as e:  # the handler's own failure, recorded on the step
            exc = e
        finally:
            ACTIVE.reset(token)
        return self._finish(ctx, depth, result, exc, started)

    def invoke(self, bus: Any, event: Event, depth: int, state: dict[str, Any]) -> Step:
        """Run the handler once, synchronously, capturing everything it publishes and calls.

        The handler's exception is caught and kept on the step; it is the
        caller's choice (``on_error``) whether it propagates.
        """
        run = self._run(bus, event, depth, state)
        try:
            pending = run.send(None)
        except StopIteration as done:  # the common case: nothing to await
            return done.value
        return _settle(run, *run_sync(_outcome(pending)))

    async def ainvoke(self, bus: Any, event: Event, depth: int, state: dict[str, Any]) -> Step:
        """Like ``invoke``, awaiting an async handler on the running loop."""
        run = self._run(bus, event, depth, state)
        try:
            pending = run.send(None)
        except StopIteration as done:
            return done.value
        return _settle(run, *await _outcome(pending))


def _settle(run: Generator[Any, Any, Step], ok: bool, value: Any) -> Step:
    """Hand the awaited result (or the exception awaiting raised) back to the run; returns its step."""
    try:
        (run.send if ok else run.throw)(value)
    except StopIteration as done:
        return done.value
    raise RuntimeError("a handler run yields one awaitable at most")


async def _outcome(awaitable: Any) -> tuple[bool, Any]:
    """``(True, result)`` or ``(False, exception)``: what awaiting gave, for the run to take back in its own context."""
    try:
        return True, await awaitable
    except BaseException as e:  # noqa: BLE001 - thrown back into the run, which re-raises what it does not keep
        return False, e


def _returned_events(node: str, result: Any) -> Iterable[Event]:
    if isinstance(result, Event):
        return (result,)
    if isinstance(result, (list, tuple)):
        for item in result:
            if not isinstance(item, Event):
                raise TypeError(f"handler {node!r} returned a {type(item).__name__} in its list; return Events or None")
        return result
    raise TypeError(f"handler {node!r} returned {type(result).__name__}; a handler returns None, an Event or a list of Events")
