"""Driving a breadth-first cascade: the one loop every breadth-first bus runs, sync and async.

A bus keeps the bookkeeping of one dispatch in its own ``Cascade`` (which
handlers get which event, what stops the cascade, what the ``Dispatch`` says):
``EventBus``'s and ``MessageBus``'s differ. The loop that runs the handlers is
the same for both, written here once per driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from legacy_bus.dispatch import Dispatch
    from legacy_bus.effects import Sandbox
    from legacy_bus.event import Event
    from legacy_bus.records import Step
    from legacy_bus.subscription import Subscription

__all__ = ["Cascade", "arun_cascade", "run_cascade"]


class Cascade(Protocol):
    """The bookkeeping of one breadth-first dispatch, I/O-free: who runs next, what each step changes, the result."""

    def running(self, sandbox: Sandbox | None) -> AbstractContextManager[None]:
        """The context the handlers run in (the sandbox, declared databases' writes collected)."""
        ...

    def deliveries(self) -> Iterator[tuple[Subscription, Event, int, dict[str, Any]]]:
        """(subscription, event, depth, saga state) for each handler to run, in order, until the cascade ends."""
        ...

    def record(self, step: Step, state: dict[str, Any]) -> None:
        """Take a finished step: its saga state, its children queued, its error."""
        ...

    def outcome(self, capture: bool) -> Dispatch:
        """The dispatch, or the error that reaches the publisher unless ``capture``."""
        ...


def run_cascade(bus: Any, cascade: Cascade, sandbox: Sandbox | None, capture: bool) -> Dispatch:
    """Run a cascade's handlers one at a time, blocking (an async handler is run to completion)."""
    with cascade.running(sandbox):
        for sub, event, depth, state in cascade.deliveries():
            cascade.record(sub.invoke(bus, event, depth, state), state)
    return cascade.outcome(capture)


async def arun_cascade(bus: Any, cascade: Cascade, sandbox: Sandbox | None, capture: bool) -> Dispatch:
    """Run a cascade's handlers one at a time, awaiting async handlers on the running loop."""
    with cascade.running(sandbox):
        for sub, event, depth, state in cascade.deliveries():
            cascade.record(await sub.ainvoke(bus, event, depth, state), state)
    return cascade.outcome(capture)
