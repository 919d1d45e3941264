"""What a handler run leaves behind: errors, effect calls and steps.

These are the raw records both paths produce; ``migration_kit`` turns them
into ``Outcome`` values and compares them. They are frozen so a record can be
shared between a trace, a comparison and a report without copies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from legacy_bus.event import Event

__all__ = ["EffectCall", "ErrorInfo", "Step", "call_key"]

EffectMode = Literal["real", "recorded", "stub"]


def _jsonable(value: Any) -> Any:
    """Round-trip a value through JSON so both paths record identical, serializable shapes."""
    return json.loads(json.dumps(value, default=str))


def call_key(port: str, args: Any, kwargs: Any) -> str:
    """The canonical identity of an effect call: its port and its arguments, as sorted JSON."""
    return json.dumps([port, args, kwargs], sort_keys=True, default=str, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An exception as data: its type's qualified name and its message."""

    type: str
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        """The error info of an exception: qualified type name (bare for builtins) and message."""
        t = type(exc)
        name = t.__qualname__ if t.__module__ in ("builtins", "__main__") else f"{t.__module__}.{t.__qualname__}"
        return cls(type=name, message=str(exc))

    def to_dict(self) -> dict[str, str]:
        """The error as JSON data."""
        return {"type": self.type, "message": self.message}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ErrorInfo | None:
        """Rebuild from ``to_dict``'s data; ``None`` stays ``None`` (no error)."""
        return None if data is None else cls(type=str(data["type"]), message=str(data["message"]))


@dataclass(frozen=True, slots=True)
class EffectCall:
    """One call of an effect port: arguments, the answer, and whether it ran for real.

    ``mode`` is ``real`` (the port's function ran), ``recorded`` (a sandboxed
    call answered with the response of the matching authoritative call) or
    ``stub`` (a sandboxed call with no match, answered by the port's stub).
    """

    port: str
    args: list[Any]
    kwargs: dict[str, Any]
    response: Any = None
    error: ErrorInfo | None = None
    mode: EffectMode = "real"
    node: str | None = None

    @property
    def key(self) -> str:
        """The call's identity (port and arguments) that matches it with an authoritative answer."""
        return call_key(self.port, self.args, self.kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The call as JSON data (a response JSON cannot hold is kept as its ``str``)."""
        return {
            "port": self.port,
            "args": self.args,
            "kwargs": self.kwargs,
            "response": _jsonable(self.response),
            "error": None if self.error is None else self.error.to_dict(),
            "mode": self.mode,
            "node": self.node,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EffectCall:
        """Rebuild a call from ``to_dict``'s data (a log line's ``effects`` entry)."""
        return cls(
            port=str(data["port"]),
            args=list(data.get("args") or []),
            kwargs=dict(data.get("kwargs") or {}),
            response=data.get("response"),
            error=ErrorInfo.from_dict(data.get("error")),
            mode=data.get("mode", "real"),
            node=data.get("node"),
        )


@dataclass(frozen=True, slots=True)
class Step:
    """One handler (node) handling one event: what it published, called and raised.

    ``published`` holds the children in the order the handler produced them
    (``bus.publish`` / ``ctx.publish`` calls first, in call order, then the
    events it returned). ``exception`` is the live exception object, kept so
    a live dispatch can re-raise it unchanged; it never leaves the process.
    """

    node: str
    event: Event
    depth: int
    published: tuple[Event, ...] = ()
    effects: tuple[EffectCall, ...] = ()
    error: ErrorInfo | None = None
    state: dict[str, Any] | None = None
    started: float = 0.0
    duration: float = 0.0
    exception: BaseException | None = field(default=None, compare=False, repr=False)
