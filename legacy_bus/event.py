"""The event model every bus, log and graph in migration-kit speaks."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["Event", "new_event_id"]


# The bits a version-4 (random) UUID fixes: the version nibble and the RFC 4122 variant.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_event_id() -> str:
    """Return a fresh event id (a uuid4 in hex)."""
    # uuid.uuid4().hex, built without the UUID object: ids are made for every published event.
    return "%032x" % (int.from_bytes(os.urandom(16), "big") & _UUID4_CLEAR | _UUID4_SET)


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """One immutable event: a type, a JSON payload and its place in a cascade.

    ``id`` and ``timestamp`` are generated when not given. A child published
    inside a handler gets ``causation_id`` = its parent's id and
    ``correlation_id`` = its parent's correlation id (or the root's id), so a
    whole saga can be followed by one key.

    A recorded log's simplest line is one ``Event.model_dump_json()``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(min_length=1)
    payload: dict[str, Any] = Field(default_factory=dict)
    id: str = Field(default_factory=new_event_id, min_length=1)
    correlation_id: str | None = None
    causation_id: str | None = None
    timestamp: AwareDatetime = Field(default_factory=_now)
    headers: dict[str, str] = Field(default_factory=dict)

    @property
    def saga_key(self) -> str:
        """The key of this event's saga: its correlation id, or its own id for a root."""
        return self.correlation_id or self.id

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-compatible dict of this event (what graph state and logs hold)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Validate a plain dict (from a log, a stream or graph state) into an ``Event``."""
        return cls.model_validate(data)

    def child(self, event_or_type: Event | str, payload: dict[str, Any] | None = None, **fields: Any) -> Event:
        """Make an event published while handling this one, with causation and correlation set."""
        if isinstance(event_or_type, Event):
            if payload is not None or fields:
                raise TypeError("publish(Event, ...) takes no payload or fields: set them on the Event")
            ev = event_or_type
            update: dict[str, Any] = {}
            if ev.causation_id is None:
                update["causation_id"] = self.id
            if ev.correlation_id is None:
                update["correlation_id"] = self.saga_key
            return ev.model_copy(update=update) if update else ev
        fields.setdefault("causation_id", self.id)
        fields.setdefault("correlation_id", self.saga_key)
        return Event(type=event_or_type, payload=payload if payload is not None else {}, **fields)


def make_event(event_or_type: Event | str, payload: dict[str, Any] | None = None, **fields: Any) -> Event:
    """Build a root event from ``publish``'s arguments."""
    if isinstance(event_or_type, Event):
        if payload is not None or fields:
            raise TypeError("publish(Event, ...) takes no payload or fields: set them on the Event")
        return event_or_type
    if not isinstance(event_or_type, str):
        raise TypeError(f"publish() takes an Event or an event type string, not {type(event_or_type).__name__}")
    return Event(type=event_or_type, payload=payload if payload is not None else {}, **fields)
