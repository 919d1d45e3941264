"""``Dispatch``: what one root message caused on a bus, the record every bus and adapter returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from legacy_bus.event import Event
from legacy_bus.records import EffectCall, ErrorInfo, Step

__all__ = ["Dispatch"]


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Everything one root publish caused: the cascade's events, steps and effects."""

    root: Event
    emitted: tuple[Event, ...]
    emitted_by: tuple[str, ...]
    steps: tuple[Step, ...]
    error: ErrorInfo | None = None
    state: dict[str, Any] | None = None
    duration: float = 0.0
    exception: BaseException | None = field(default=None, compare=False, repr=False)
    #: what the bus's own publish call returned (an adapter's ``emit`` / ``send`` result)
    value: Any = field(default=None, compare=False, repr=False)
    writes: tuple[Any, ...] = ()  # rows written through declared databases (legacy_bus.database.RowWrite)

    @property
    def effects(self) -> tuple[EffectCall, ...]:
        """Every effect call of the cascade, in the order they happened."""
        return tuple(call for step in self.steps for call in step.effects)
