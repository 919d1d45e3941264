"""Deep copies of the JSON-shaped values events and saga states hold, without ``copy.deepcopy``'s cost.

A replay copies every event (legacy handlers may mutate payloads in place)
and every saga state it hands over; ``copy.deepcopy`` spends most of its time
on memo bookkeeping these plain trees do not need. ``deep_copy`` gives the
same result for them and hands anything else to ``copy.deepcopy`` whole, so
the result is always what ``copy.deepcopy`` would return.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

from legacy_bus.event import Event

__all__ = ["copy_event", "deep_copy"]

T = TypeVar("T")

# Immutable leaves copy.deepcopy returns as they are (exact types: a subclass may carry state).
_ATOMIC = frozenset({str, int, float, bool, type(None)})


class _NotPlain(Exception):
    """The value holds something other than dicts, lists and atomic leaves, or shares a container."""


def deep_copy(value: T) -> T:
    """``copy.deepcopy(value)``: fast for trees of dicts, lists, str, int, float, bool and None."""
    if type(value) in _ATOMIC:
        return value
    try:
        return _plain(value, set())
    except (_NotPlain, RecursionError):
        # A set, a datetime, a class instance, a subclass, or a container seen twice (deepcopy
        # keeps such sharing and cycles): the general copy, from the start.
        return copy.deepcopy(value)


def _plain(value: Any, seen: set[int]) -> Any:
    kind = type(value)
    if kind is dict:
        if id(value) in seen:
            raise _NotPlain
        seen.add(id(value))
        out = {}
        for k, v in value.items():
            if type(k) not in _ATOMIC:
                raise _NotPlain
            out[k] = v if type(v) in _ATOMIC else _plain(v, seen)
        return out
    if kind is list:
        if id(value) in seen:
            raise _NotPlain
        seen.add(id(value))
        return [v if type(v) in _ATOMIC else _plain(v, seen) for v in value]
    if kind in _ATOMIC:
        return value
    raise _NotPlain


def copy_event(event: Event) -> Event:
    """``event.model_copy(deep=True)``: a private copy whose payload and headers a handler may mutate."""
    if type(event) is not Event:  # a subclass may have fields of its own to copy
        return event.model_copy(deep=True)
    mine = event.model_copy()  # shallow: its own __dict__ and fields-set, nothing revalidated
    fields = mine.__dict__
    # The other fields are str, None and an aware datetime: immutable, shared safely.
    fields["payload"] = deep_copy(fields["payload"])
    fields["headers"] = deep_copy(fields["headers"])
    return mine
