"""Handler return values of graph runs that served the app, for the publish call that started them.

When the candidate serves, the app's ``send`` / ``handle`` still returns what
its handlers returned. A graph node runs the app's own handler, so the
adapter keeps each authoritative (unsandboxed) node's return value here, in
this process, by the saga of the event, and the publish call takes them when
the run ends. Bounded: a publish takes its values right after its run.
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock
from typing import Any

from legacy_bus.effects import current_sandbox
from legacy_bus.event import Event

__all__ = ["keep", "take"]

_CAP = 1024
_SERVED: OrderedDict[str, list[tuple[str, str, Any]]] = OrderedDict()
_lock = Lock()


def keep(event: Event, node: str, value: Any) -> None:
    """Remember what ``node`` returned for ``event`` in an authoritative graph run (sandboxed runs are skipped)."""
    if current_sandbox() is not None:
        return
    with _lock:
        _SERVED.setdefault(event.saga_key, []).append((event.id, node, value))
        _SERVED.move_to_end(event.saga_key)
        while len(_SERVED) > _CAP:
            _SERVED.popitem(last=False)


def take(saga_key: str) -> list[tuple[str, str, Any]]:
    """(event id, node, value) of every kept return value of this saga, in run order; forgets them."""
    with _lock:
        return _SERVED.pop(saga_key, [])
