"""The context a legacy handler may take as its second argument."""

from __future__ import annotations

from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from legacy_bus.event import Event

if TYPE_CHECKING:
    from legacy_bus.records import EffectCall

__all__ = ["ACTIVE", "HandlerContext"]


class HandlerContext:
    """What a running handler sees besides its event: the bus, its saga state, a publisher.

    ``ctx.publish(...)`` takes the same arguments as ``bus.publish`` and adds
    the child to the running cascade, with ``causation_id`` and
    ``correlation_id`` set from the event being handled.
    """

    __slots__ = ("bus", "depth", "effects", "event", "node", "published", "state")

    # ``bus`` is whichever bus runs the handler (``EventBus`` or an adapter): typed loosely, so the
    # context sits below every bus module instead of importing one.
    def __init__(self, bus: Any, node: str, event: Event, state: MutableMapping[str, Any], depth: int = 0) -> None:
        self.bus = bus
        self.depth = depth
        self.node = node
        self.event = event
        self.state = state
        self.published: list[Event] = []
        self.effects: list[EffectCall] = []

    @property
    def correlation_id(self) -> str:
        """The saga this event belongs to."""
        return self.event.saga_key

    def publish(self, event_or_type: Event | str, payload: dict[str, Any] | None = None, **fields: Any) -> Event:
        """Publish a child event onto the running cascade; returns it."""
        child = self.event.child(event_or_type, payload, **fields)
        self.published.append(child)
        return child

    def __repr__(self) -> str:
        return f"<HandlerContext node={self.node!r} event={self.event.type!r}>"


#: The handler running in this context, whose step records its effect calls (None outside handlers).
ACTIVE: ContextVar[HandlerContext | None] = ContextVar("legacy_bus_active_handler", default=None)
