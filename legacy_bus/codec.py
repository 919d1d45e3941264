"""Exact codecs: a bus's messages and effect values as JSON, and back, unchanged.

``encode(value)`` turns a value into JSON-shaped data that ``decode`` turns
back into an equal value of the same type: plain JSON passes through as it
is; everything else becomes a tagged object ``{"$": tag, ...}``:

* ``tuple``, ``set``, ``frozenset``, ``bytes``, dicts whose keys are not all
  strings (or that hold the key ``"$"``);
* ``datetime``, ``date``, ``time``, ``timedelta``, ``Decimal``, ``UUID``;
* enum members, dataclasses, attrs classes and pydantic models (nested
  freely), named by ``module:qualname``;
* a class itself (a Django ``sender=User``).

Decoding a class name never imports anything: the class must be registered
(``register``; message codecs register their message classes and every class
their fields name) or already be loaded in ``sys.modules``, and be one of the
kinds above, so a hostile log cannot make the process import or build
arbitrary objects.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import sys
import typing
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from migration_errors import ConfigurationError

from legacy_bus.event import Event

__all__ = ["ClassCodec", "EventCodec", "class_name", "decode", "encode", "register"]

TAG = "$"
_REGISTRY: dict[str, type] = {}

try:  # optional: attrs classes round-trip when attrs is installed
    import attrs as _attrs
except ImportError:  # pragma: no cover - depends on the environment
    _attrs = None  # type: ignore[assignment]

try:
    from pydantic import BaseModel as _BaseModel
except ImportError:  # pragma: no cover
    _BaseModel = None  # type: ignore[assignment,misc]


def class_name(cls: type) -> str:
    """``module:qualname`` of a class, as encoded values name it."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_record_class(cls: Any) -> bool:
    return isinstance(cls, type) and (
        dataclasses.is_dataclass(cls)
        or (_attrs is not None and _attrs.has(cls))
        or (_BaseModel is not None and issubclass(cls, _BaseModel))
        or issubclass(cls, enum.Enum)
    )


def register(*classes: type) -> None:
    """Allow ``decode`` to build these classes, and every record class their fields name."""
    todo = list(classes)
    while todo:
        cls = todo.pop()
        if not isinstance(cls, type):
            continue
        key = class_name(cls)
        if _REGISTRY.get(key) is cls:
            continue
        _REGISTRY[key] = cls
        todo.extend(_field_classes(cls))


def _field_classes(cls: type) -> list[type]:
    """Classes named in a record class's field annotations (for nested records)."""
    if not _is_record_class(cls) or issubclass(cls, enum.Enum):
        return []
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: nested classes register when encoded
        return []
    found: list[type] = []

    def walk(t: Any) -> None:
        if isinstance(t, type) and _is_record_class(t):
            found.append(t)
        for arg in typing.get_args(t):
            walk(arg)

    for t in hints.values():
        walk(t)
    return found


def _lookup(name: str) -> type:
    cls = _REGISTRY.get(name)
    if cls is not None:
        return cls
    module, _, qual = name.partition(":")
    mod = sys.modules.get(module)
    obj: Any = mod
    for part in qual.split("."):
        obj = getattr(obj, part, None) if obj is not None else None
    if not isinstance(obj, type):
        raise ConfigurationError(
            f"cannot decode a value of class {name!r}: it is not registered and module {module!r} is not loaded; "
            f"import it, or pass it to legacy_bus.codec.register()"
        )
    return obj


def _fields(value: Any) -> dict[str, Any]:
    cls = type(value)
    if dataclasses.is_dataclass(cls):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}
    if _attrs is not None and _attrs.has(cls):
        return {f.name: getattr(value, f.name) for f in _attrs.fields(cls) if f.init}
    return {k: getattr(value, k) for k in type(value).model_fields}


def encode(value: Any) -> Any:
    """``value`` as JSON-shaped data that ``decode`` turns back into an equal value."""
    # Exact JSON types first (every effect call encodes its arguments and answer): what the
    # chain below returns for them, without its isinstance checks.
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is list:
        return [encode(v) for v in value]
    if kind is dict and TAG not in value and all(type(k) is str for k in value):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        cls = type(value)
        _REGISTRY.setdefault(class_name(cls), cls)
        return {TAG: "enum", "cls": class_name(cls), "v": encode(value.value)}
    if isinstance(value, (int, float)):
        if type(value) in (int, float):
            return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and TAG not in value:
            return {k: encode(v) for k, v in value.items()}
        return {TAG: "dict", "v": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return {TAG: "tuple", "v": [encode(v) for v in value]}
    if isinstance(value, (set, frozenset)):
        items = [encode(v) for v in value]
        items.sort(key=repr)  # a set has no order; a sorted one makes the encoding stable
        return {TAG: "frozenset" if isinstance(value, frozenset) else "set", "v": items}
    if isinstance(value, bytes):
        return {TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dt.datetime):
        return {TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {TAG: "time", "v": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, Decimal):
        return {TAG: "decimal", "v": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "v": str(value)}
    if isinstance(value, type):
        _REGISTRY.setdefault(class_name(value), value)
        return {TAG: "class", "v": class_name(value)}
    cls = type(value)
    if _is_record_class(cls):
        _REGISTRY.setdefault(class_name(cls), cls)
        return {TAG: "obj", "cls": class_name(cls), "v": {k: encode(v) for k, v in _fields(value).items()}}
    raise TypeError(
        f"cannot encode a {cls.__module__}.{cls.__qualname__} exactly; use JSON values, dataclasses, attrs classes, "
        f"pydantic models, enums, dates, decimals or UUIDs"
    )


_SCALARS: dict[str, Callable[[Any], Any]] = {
    "tuple": lambda v: tuple(decode(x) for x in v),
    "set": lambda v: {decode(x) for x in v},
    "frozenset": lambda v: frozenset(decode(x) for x in v),
    "bytes": lambda v: base64.b64decode(v),
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "dict": lambda v: {decode(k): decode(x) for k, x in v},
}


def decode(data: Any) -> Any:
    """The value ``encode`` made ``data`` from."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(TAG)
    if tag is None:
        return {k: decode(v) for k, v in data.items()}
    if tag in _SCALARS:
        return _SCALARS[tag](data["v"])
    if tag == "class":
        return _lookup(data["v"])
    cls = _lookup(data["cls"])
    if not _is_record_class(cls):
        raise ConfigurationError(f"cannot decode class {data['cls']!r}: not a dataclass, attrs class, pydantic model or enum")
    if tag == "enum":
        return cls(decode(data["v"]))
    fields = {k: decode(v) for k, v in data["v"].items()}
    if _BaseModel is not None and issubclass(cls, _BaseModel):
        return cls.model_validate(fields)
    return cls(**fields)


class EventCodec:
    """The identity codec of a bus whose messages already are ``Event``s (``EventBus``)."""

    def to_event(self, message: Any) -> Event:
        """``message`` itself (it is an ``Event``)."""
        if not isinstance(message, Event):
            raise TypeError(f"this bus carries Events, not {type(message).__name__}")
        return message

    def from_event(self, event: Event) -> Event:
        """``event`` itself."""
        return event


class ClassCodec:
    """Messages that are instances of known classes (dataclasses, attrs, pydantic): type = the class's name.

    Args:
        classes: the message classes; their ``__name__`` is the event type, so
            two classes of one name are refused.
    """

    def __init__(self, classes: Iterable[type]) -> None:
        self.classes: dict[str, type] = {}
        for cls in classes:
            prev = self.classes.get(cls.__name__)
            if prev is not None and prev is not cls:
                raise ConfigurationError(
                    f"two message classes are named {cls.__name__!r} ({class_name(prev)} and {class_name(cls)}); "
                    f"message kinds are named by class, so rename one"
                )
            self.classes[cls.__name__] = cls
        register(*self.classes.values())

    def to_event(self, message: Any) -> Event:
        """The ``Event`` whose type is the message's class name and payload its encoded fields."""
        cls = type(message)
        if self.classes.get(cls.__name__) is not cls:
            raise ConfigurationError(f"{class_name(cls)} is not a message class this bus handles; register a handler for it")
        return Event(type=cls.__name__, payload={k: encode(v) for k, v in _fields(message).items()})

    def from_event(self, event: Event) -> Any:
        """The message instance ``event`` carries."""
        cls = self.classes.get(event.type)
        if cls is None:
            raise ConfigurationError(f"event type {event.type!r} is no message class of this bus; known: {sorted(self.classes)}")
        fields = {k: decode(v) for k, v in event.payload.items()}
        if _BaseModel is not None and issubclass(cls, _BaseModel):
            return cls.model_validate(fields)
        return cls(**fields)


class CallCodec:
    """Messages that are calls: an event name (or signal) with positional and keyword arguments.

    ``to_event(name, args, kwargs)`` / ``from_event(event) -> (name, args, kwargs)``;
    the payload is ``{"args": [...], "kwargs": {...}}`` with every value encoded.
    """

    def to_event(self, message: Any) -> Event:
        """``message`` is ``(name, args, kwargs)``."""
        name, args, kwargs = message
        return Event(type=name, payload={"args": [encode(a) for a in args], "kwargs": {k: encode(v) for k, v in kwargs.items()}})

    def from_event(self, event: Event) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        """``(name, args, kwargs)`` of the call ``event`` carries."""
        payload = event.payload
        return (
            event.type,
            tuple(decode(a) for a in payload.get("args") or ()),
            {k: decode(v) for k, v in (payload.get("kwargs") or {}).items()},
        )
