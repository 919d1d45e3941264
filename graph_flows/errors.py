"""A handler's exception through the graph: kept as data, raised again as itself.

The graph's ``errors`` channel holds each handler error as data (``node``,
``type``, ``message``, and ``class`` / ``args`` when its arguments encode
exactly), so a checkpoint never holds a live object. When the graph serves
production, its caller must see what the bus would have raised:
``handler_exception(error)`` returns the very exception object the handler
raised, when this process ran it (its traceback intact), else a new instance
of the same class with the same arguments, whose ``__cause__`` says where it
came from.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from threading import Lock
from typing import Any

from legacy_bus.codec import class_name, decode, encode
from migration_errors import HandlerError

__all__ = ["error_data", "handler_exception", "remember"]

# Live exceptions of recent graph runs in this process, by (event id, node);
# bounded: a run's caller asks right after the run ends.
_LIVE: OrderedDict[tuple[str, str], BaseException] = OrderedDict()
_LIVE_CAP = 1024
_lock = Lock()


def remember(event_id: str, node: str, exc: BaseException) -> None:
    """Keep the live exception a node raised, for ``handler_exception`` (bounded)."""
    with _lock:
        _LIVE[(event_id, node)] = exc
        while len(_LIVE) > _LIVE_CAP:
            _LIVE.popitem(last=False)


def error_data(exc: BaseException | None) -> dict[str, Any]:
    """``class`` and exactly encoded ``args`` of an exception (``args`` left out when they do not encode)."""
    if exc is None:
        return {}
    out: dict[str, Any] = {"class": class_name(type(exc))}
    try:
        out["args"] = encode(list(exc.args))
    except TypeError:
        pass
    return out


def _class(name: str) -> type | None:
    module, _, qual = name.partition(":")
    obj: Any = sys.modules.get(module)
    for part in qual.split("."):
        obj = getattr(obj, part, None) if obj is not None else None
    return obj if isinstance(obj, type) and issubclass(obj, BaseException) else None


def handler_exception(error: dict[str, Any], event_id: str | None = None) -> BaseException:
    """The exception a graph error entry stands for: the handler's own, or the same class and args.

    Falls back to ``HandlerError`` only when the class is not loaded here or
    cannot be built from its arguments.
    """
    node = str(error.get("node", "?"))
    if event_id is not None:
        with _lock:
            live = _LIVE.pop((event_id, node), None)
        if live is not None:
            return live
    where = HandlerError(f"raised by handler {node!r} in the graph: {error.get('type')}: {error.get('message')}")
    cls = _class(str(error.get("class") or ""))
    if cls is not None and "args" in error:
        try:
            exc = cls(*decode(error["args"]))
        except Exception:  # noqa: BLE001 - a class whose constructor differs from its args: say so instead
            exc = None
        if exc is not None:
            exc.__cause__ = where
            return exc
    return where
