"""Saga state: a mutable mapping kept per correlation id across events."""

from __future__ import annotations

import copy
from typing import Any, Protocol, runtime_checkable

__all__ = ["BoundedStateStore", "InMemoryStateStore", "OverlayStateStore", "StateStore"]


@runtime_checkable
class StateStore(Protocol):
    """Where a bus keeps ``ctx.state`` between events, one mapping per saga key."""

    def load(self, key: str) -> dict[str, Any]:
        """The saga's state (an empty dict for a new saga); the caller may mutate it."""
        ...

    def save(self, key: str, state: dict[str, Any]) -> None:
        """Persist the saga's state after a handler ran."""
        ...

    def peek(self, key: str) -> dict[str, Any] | None:
        """The stored state, or None when the saga has none; never creates one."""
        ...


class InMemoryStateStore:
    """The reference store: a dict of dicts in this process."""

    def __init__(self) -> None:
        self._states: dict[str, dict[str, Any]] = {}

    def load(self, key: str) -> dict[str, Any]:
        state = self._states.get(key)
        if state is None:
            state = {}
        return state

    def save(self, key: str, state: dict[str, Any]) -> None:
        if state:
            self._states[key] = state
        else:
            self._states.pop(key, None)

    def peek(self, key: str) -> dict[str, Any] | None:
        return self._states.get(key)

    def __len__(self) -> int:
        return len(self._states)


class OverlayStateStore:
    """Reads through to a base store, writes only to itself: a sandbox for saga state.

    The migration's own runs of the legacy path use one, so replaying or
    shadowing an event never changes the live saga state.
    """

    def __init__(self, base: StateStore | None = None) -> None:
        self._base = base
        self._states: dict[str, dict[str, Any]] = {}

    def load(self, key: str) -> dict[str, Any]:
        state = self._states.get(key)
        if state is None:
            base = self._base.peek(key) if self._base is not None else None
            state = copy.deepcopy(base) if base else {}
        return state

    def save(self, key: str, state: dict[str, Any]) -> None:
        self._states[key] = state

    def peek(self, key: str) -> dict[str, Any] | None:
        if key in self._states:
            return self._states[key] or None
        return self._base.peek(key) if self._base is not None else None

    def forget(self, key: str) -> None:
        """Drop a saga from the overlay (its base value shows through again)."""
        self._states.pop(key, None)


class BoundedStateStore:
    """An in-memory store that keeps at most ``capacity`` sagas, least recently used out first.

    Used for the scratch saga state of long replays, so memory stays flat
    over any length of log; ``evicted`` counts sagas dropped.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        from collections import OrderedDict

        self.capacity = capacity
        self._states: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.evicted = 0

    def load(self, key: str) -> dict[str, Any]:
        state = self._states.get(key)
        if state is None:
            return {}
        self._states.move_to_end(key)
        return state

    def save(self, key: str, state: dict[str, Any]) -> None:
        if not state:
            self._states.pop(key, None)
            return
        self._states[key] = state
        self._states.move_to_end(key)
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)
            self.evicted += 1

    def peek(self, key: str) -> dict[str, Any] | None:
        return self._states.get(key)

    def __len__(self) -> int:
        return len(self._states)

    def snapshot(self) -> dict[str, Any]:
        """The sagas kept, least recently used first, and the eviction count (JSON)."""
        return {"states": [[k, v] for k, v in self._states.items()], "evicted": self.evicted}

    def restore(self, snapshot: dict[str, Any] | None) -> None:
        """Replace the content with a ``snapshot()``."""
        from collections import OrderedDict

        self._states = OrderedDict((k, v) for k, v in (snapshot or {}).get("states", []))
        self.evicted = int((snapshot or {}).get("evicted", 0))
