"""What migration-kit needs from any event bus: the ``LegacyBus`` Protocol.

Teams migrate from the bus they run. A bus is usable as ``Migration(legacy=...)``
and by ``flow_from_bus`` when it offers:

* ``name``; ``subscriptions`` (every handler as a ``Subscription``, in the
  order the bus would run them) and ``event_types``;
* ``dispatch(event, *, sandbox=None, states=None, capture=False)`` and its
  twin ``adispatch``: one root message through the bus's *own* dispatch code,
  observed, returning a ``Dispatch`` (emitted messages with the handler that
  emitted each, effect calls, state, error). ``dispatch`` / ``adispatch`` are
  also the live entry point ``attach()`` hooks: an adapter routes the app's own
  calls (``emit``, ``send``, ``handle``) through them, looked up on the
  instance each time, so the tap sees every live root publish;
* ``discipline``: ``"breadth_first"`` (a FIFO queue, as ``EventBus`` and
  Cosmic Python's ``MessageBus``) or ``"depth_first"`` (a nested emit runs to
  completion before the next listener, as pyee, blinker and Django signals);
* ``stops_on_error(event_type)``: whether a handler error on this message kind
  stops the cascade and reaches the publisher (else it is recorded and the
  cascade goes on); ``on_error`` is ``"raise"`` when a dispatch's
  ``exception`` is meant to reach the caller;
* ``max_depth`` / ``max_fanout``: the bus's own cascade bounds, ``None`` when
  it has none (the derived graph then adds none);
* ``codec``: a ``MessageCodec`` between the bus's messages and ``Event`` that
  round-trips exactly;
* ``state_store``: where saga state lives between messages.

``EventBus`` is one implementation; ``legacy_bus.adapters`` has the others.
``migration_kit.testing.check_legacy_bus`` is the contract suite for an adapter
you write yourself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from migration_errors import ConfigurationError

if TYPE_CHECKING:
    from legacy_bus.dispatch import Dispatch
    from legacy_bus.effects import Sandbox
    from legacy_bus.event import Event
    from legacy_bus.state import StateStore
    from legacy_bus.subscription import Subscription

__all__ = ["DISCIPLINES", "Discipline", "LegacyBus", "MessageCodec", "require_legacy_bus"]

Discipline = Literal["breadth_first", "depth_first"]
DISCIPLINES: tuple[str, ...] = ("breadth_first", "depth_first")


@runtime_checkable
class MessageCodec(Protocol):
    """Turns a bus's own message into an ``Event`` and back, exactly."""

    def to_event(self, message: Any) -> Event:
        """The ``Event`` carrying ``message`` (type and payload; ids are generated)."""
        ...

    def from_event(self, event: Event) -> Any:
        """The bus's message an ``Event`` carries (equal to the one encoded)."""
        ...


@runtime_checkable
class LegacyBus(Protocol):
    """What migration-kit needs from any event bus (see the module docstring)."""

    name: str
    discipline: Discipline
    on_error: str
    max_depth: int | None
    max_fanout: int | None
    codec: MessageCodec
    state_store: StateStore

    @property
    def subscriptions(self) -> list[Subscription]:
        """Every handler, in the order the bus runs them."""
        ...

    @property
    def event_types(self) -> list[str]:
        """The message kinds some handler subscribes to."""
        ...

    def stops_on_error(self, event_type: str) -> bool:
        """Whether a handler error on this message kind stops the cascade and reaches the publisher."""
        ...

    def dispatch(
        self, event: Event, *, sandbox: Sandbox | None = None, states: StateStore | None = None, capture: bool = False
    ) -> Dispatch:
        """One root message through the bus's own dispatch, observed."""
        ...

    async def adispatch(
        self, event: Event, *, sandbox: Sandbox | None = None, states: StateStore | None = None, capture: bool = False
    ) -> Dispatch:
        """Async twin of ``dispatch``."""
        ...


_MEMBERS: Sequence[str] = (
    "name",
    "discipline",
    "on_error",
    "max_depth",
    "max_fanout",
    "codec",
    "state_store",
    "subscriptions",
    "event_types",
    "stops_on_error",
    "dispatch",
    "adispatch",
)


def missing_members(bus: Any) -> list[str]:
    """The ``LegacyBus`` members ``bus`` lacks (empty when it is one)."""
    return [m for m in _MEMBERS if not hasattr(bus, m)]


def require_legacy_bus(bus: Any, where: str) -> Any:
    """Return ``bus`` when it is a ``LegacyBus``; else a ``ConfigurationError`` naming what is missing."""
    missing = missing_members(bus)
    if missing:
        raise ConfigurationError(
            f"{where} takes a LegacyBus (an EventBus, or an adapter from legacy_bus.adapters), "
            f"not {type(bus).__name__}: it lacks {', '.join(missing)}; wrap your bus with message_bus(), "
            f"pyee_bus(), blinker_bus() or django_bus(), or implement legacy_bus.LegacyBus"
        )
    if bus.discipline not in DISCIPLINES:
        raise ConfigurationError(f"{where}: bus {bus.name!r} has discipline {bus.discipline!r}; expected one of {DISCIPLINES}")
    return bus
