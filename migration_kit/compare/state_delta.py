"""Saga state as a delta: what one event changed, so a stream entry does not carry the state twice.

A shadow entry carries the saga's state before the event (the shadow path
starts from it) and the serving path's outcome, whose state is the state
after. Written in full, an entry carries the state twice; here the state
after is written as a delta against the state before, and the entry is
about one state plus what the event changed.

A delta mirrors the state's shape: ``{"=": {key: new value}, "-": [removed
key, ...], "~": {key: delta of a nested object}}``; lists and other values are
replaced whole. ``patched(before, delta(before, after)) == after`` for all
JSON objects (a property test checks it).
"""

from __future__ import annotations

from typing import Any

__all__ = ["delta", "patched"]


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What turns ``before`` into ``after`` (both JSON objects)."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        if key not in before:
            out.setdefault("=", {})[key] = value
            continue
        old = before[key]
        if type(old) is type(value) and old == value:
            continue
        if isinstance(old, dict) and isinstance(value, dict):
            out.setdefault("~", {})[key] = delta(old, value)
        else:
            out.setdefault("=", {})[key] = value
    gone = [key for key in before if key not in after]
    if gone:
        out["-"] = gone
    return out


def patched(before: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``before`` with ``change`` (a ``delta``) applied; ``before`` itself is not modified."""
    out = dict(before)
    for key in change.get("-", ()):
        out.pop(key, None)
    for key, sub in (change.get("~") or {}).items():
        out[key] = patched(out.get(key) if isinstance(out.get(key), dict) else {}, sub)
    out.update(change.get("=") or {})
    return out
