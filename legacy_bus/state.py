"""Saga state: a mutable mapping kept per correlation id across events.

``InMemoryStateStore`` (the default) keeps it in this process;
``RedisStateStore`` keeps it in Redis as JSON, so several processes (a legacy
bus here, a graph or another bus there) share one saga's state.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from migration_errors import ConfigurationError, MigrationKitError, StateSerializationError, StoreUnavailable

__all__ = [
    "BoundedStateStore",
    "InMemoryStateStore",
    "OverlayStateStore",
    "RedisStateStore",
    "StateSerializationError",
    "StateStore",
]


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
        """The saga's state (a new empty dict when it has none); mutated in place by the handler."""
        state = self._states.get(key)
        if state is None:
            state = {}
        return state

    def save(self, key: str, state: dict[str, Any]) -> None:
        """Keep the saga's state; an empty state is dropped."""
        if state:
            self._states[key] = state
        else:
            self._states.pop(key, None)

    def peek(self, key: str) -> dict[str, Any] | None:
        """The stored state, or None; never creates one."""
        return self._states.get(key)

    def delete(self, key: str) -> None:
        """Forget a saga's state (nothing happens when it has none)."""
        self._states.pop(key, None)

    def keys(self) -> Iterator[str]:
        """The saga keys that have state (a snapshot: deleting while iterating is safe)."""
        return iter(list(self._states))

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
        """The overlay's state, else a deep copy of the base's (the base is never mutated)."""
        state = self._states.get(key)
        if state is None:
            base = self._base.peek(key) if self._base is not None else None
            state = copy.deepcopy(base) if base else {}
        return state

    def save(self, key: str, state: dict[str, Any]) -> None:
        """Keep the state in the overlay only (empty too: it hides the base's)."""
        self._states[key] = state

    def peek(self, key: str) -> dict[str, Any] | None:
        """The overlay's state when it has the saga, else the base's."""
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
        """The saga's state (empty when absent), marking it recently used."""
        state = self._states.get(key)
        if state is None:
            return {}
        self._states.move_to_end(key)
        return state

    def save(self, key: str, state: dict[str, Any]) -> None:
        """Keep the state as most recently used, evicting the least recently used over ``capacity``."""
        if not state:
            self._states.pop(key, None)
            return
        self._states[key] = state
        self._states.move_to_end(key)
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)
            self.evicted += 1

    def peek(self, key: str) -> dict[str, Any] | None:
        """The stored state, or None; does not count as a use."""
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


def _first_non_json(value: Any, path: str, active: set[int]) -> tuple[str, str] | None:
    """Where ``value`` holds something JSON cannot carry, and what: ``(path, description)``, or None."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"the float {value!r} (JSON has no NaN or Infinity)")
    if isinstance(value, (dict, list, tuple)):
        if id(value) in active:
            return path, f"a {type(value).__name__} that contains itself"
        active.add(id(value))
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    return path, f"a dict with a {type(k).__name__} key (JSON object keys are strings)"
                found = _first_non_json(v, f"{path}[{k!r}]", active)
                if found is not None:
                    return found
        else:
            for i, v in enumerate(value):
                found = _first_non_json(v, f"{path}[{i}]", active)
                if found is not None:
                    return found
        active.discard(id(value))
        return None
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return path, f"a {name}"


def _glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis ``MATCH`` glob pattern."""
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


class RedisStateStore:
    """Saga state in Redis, one JSON string per saga, so buses in different processes share it.

    Args:
        url_or_client: a ``redis://`` / ``rediss://`` URL (credentials and TLS
            options as ``redis_connect`` reads them: from the URL or the
            ``MIGRATION_KIT_REDIS_*`` environment; Redis Cluster detected, or
            forced with ``?cluster=true``), or an open sync redis-py client
            (``redis.Redis`` or ``redis.cluster.RedisCluster``), which stays
            the caller's to close.
        namespace: separates the sagas of different buses sharing one Redis.
        prefix: the first part of every key.

    A saga's state lives at ``{prefix}:state:{namespace}:{saga_key}`` as the
    JSON text of its dict; saving an empty dict deletes the key. Every
    operation touches one key, so it works the same on Redis Cluster. State
    must be JSON: dicts with string keys, lists, strings, finite numbers,
    booleans and None (a tuple is kept as a list); anything else raises
    ``StateSerializationError`` naming the saga and where in its state the
    value is. Nothing is ever pickled.

    Each ``load`` and ``save`` is one round trip and the last ``save`` of a
    saga wins: two processes handling events of the *same* saga at the same
    time can overwrite each other's changes, exactly as two threads sharing an
    ``InMemoryStateStore`` dict without a lock would. Route one saga's events
    to one process at a time.

    Raises:
        StoreUnavailable: Redis cannot be reached, refuses the credentials or
            forbids a command (at construction or in any later call); the
            message names the URL with its password masked and what to check.
        ConfigurationError: the URL is malformed, or the client is not a sync
            redis-py client.
    """

    def __init__(self, url_or_client: Any, *, namespace: str = "legacy", prefix: str = "mk") -> None:
        for label, part in (("namespace", namespace), ("prefix", prefix)):
            if not isinstance(part, str) or not part:
                raise ConfigurationError(f"RedisStateStore({label}={part!r}): must be a non-empty string")
            if "{" in part or "}" in part:
                raise ConfigurationError(
                    f"RedisStateStore({label}={part!r}): braces would make a Redis Cluster hash tag "
                    "and put every saga in one slot; choose a name without '{' or '}'"
                )
        self.namespace = namespace
        self.prefix = prefix
        self._base = f"{prefix}:state:{namespace}:"
        self._url: str | None = None
        if isinstance(url_or_client, str):
            if not url_or_client.lower().startswith(("redis://", "rediss://")):
                from redis_connect.urls import mask_url

                raise ConfigurationError(
                    f"RedisStateStore({mask_url(url_or_client)!r}): expected a redis://host:port/db "
                    "or rediss:// URL, or a redis client"
                )
            from redis_connect.connection import connect

            try:
                self._client = connect(url_or_client)
            except StoreUnavailable as e:
                raise StoreUnavailable(_reword(str(e))) from None
            self._url = url_or_client
            self._owns = True
        else:
            missing = [m for m in ("get", "set", "delete", "scan_iter") if not callable(getattr(url_or_client, m, None))]
            if missing:
                raise ConfigurationError(
                    f"RedisStateStore({type(url_or_client).__name__} object): expected a redis:// URL or a sync "
                    f"redis-py client (redis.Redis, redis.cluster.RedisCluster); it has no {', '.join(missing)}"
                )
            if inspect.iscoroutinefunction(getattr(url_or_client, "execute_command", None)):
                raise ConfigurationError(
                    "RedisStateStore(...) got an asyncio redis client; the bus loads and saves saga state "
                    "synchronously: pass a sync redis.Redis / RedisCluster, or a URL"
                )
            self._client = url_or_client
            self._owns = False

    # -- the StateStore protocol -------------------------------------------------

    def load(self, key: str) -> dict[str, Any]:
        """The saga's state (an empty dict for a new saga), a fresh dict the caller may mutate."""
        return self._read(key) or {}

    def save(self, key: str, state: dict[str, Any]) -> None:
        """Persist the saga's state; an empty state deletes the saga's key."""
        if not state:
            self.delete(key)
            return
        text = self._encode(key, state)
        self._run(self._client.set, self.redis_key(key), text)

    def peek(self, key: str) -> dict[str, Any] | None:
        """The stored state, or None when the saga has none; never creates one."""
        return self._read(key) or None

    # -- beyond the protocol -------------------------------------------------------

    def delete(self, key: str) -> None:
        """Forget a saga's state (nothing happens when it has none)."""
        self._run(self._client.delete, self.redis_key(key))

    def keys(self) -> Iterator[str]:
        """The saga keys that have state, found with ``SCAN`` (every master of a cluster).

        Each key is yielded once; sagas saved or deleted during the walk may
        or may not appear, as with ``SCAN`` itself. Deleting while iterating
        is safe.
        """
        base = self._base
        seen: set[str] = set()
        found = self._client.scan_iter(match=_glob_escape(base) + "*", count=1000)
        while True:
            try:
                raw = next(found)
            except StopIteration:
                return
            except Exception as e:
                self._reraise(e)
                raise
            name = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else str(raw)
            if name.startswith(base) and name not in seen:
                seen.add(name)
                yield name[len(base) :]

    def redis_key(self, key: str) -> str:
        """The Redis key that holds ``key``'s state."""
        return self._base + key

    @property
    def client(self) -> Any:
        """The redis-py client in use."""
        return self._client

    def close(self) -> None:
        """Close the client if this store opened it from a URL (a client passed in stays open)."""
        if self._owns:
            self._client.close()

    def __enter__(self) -> RedisStateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RedisStateStore {self._where()} keys {self._base}*>"

    # -- internals ---------------------------------------------------------------------

    def _read(self, key: str) -> dict[str, Any] | None:
        rkey = self.redis_key(key)
        raw = self._run(self._client.get, rkey)
        if raw is None:
            return None
        try:
            state = json.loads(raw)
        except ValueError as e:
            raise StateSerializationError(
                f"the state of saga {key!r} (Redis key {rkey!r}) is not JSON ({e}); "
                "was it written by something other than RedisStateStore?"
            ) from None
        if not isinstance(state, dict):
            raise StateSerializationError(
                f"the state of saga {key!r} (Redis key {rkey!r}) is a JSON {type(state).__name__}, not an object; "
                "was it written by something other than RedisStateStore?"
            )
        return state

    @staticmethod
    def _encode(key: str, state: dict[str, Any]) -> str:
        if not isinstance(state, dict):
            raise StateSerializationError(f"the state of saga {key!r} is a {type(state).__name__}, not a dict")
        bad = _first_non_json(state, "state", set())
        if bad is not None:
            path, what = bad
            raise StateSerializationError(
                f"cannot save the state of saga {key!r}: {path} is {what}, which JSON cannot carry. "
                "RedisStateStore keeps saga state as JSON (never pickle): store dicts with string keys, lists, "
                "strings, finite numbers, booleans and None (e.g. a datetime as .isoformat(), an Event as "
                ".model_dump(mode='json'))"
            )
        return json.dumps(state, separators=(",", ":"), allow_nan=False)

    def _run(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as e:
            self._reraise(e)
            raise

    def _reraise(self, error: Exception) -> None:
        """Raise ``StoreUnavailable`` for an error that means Redis cannot be reached or used."""
        import redis
        from redis.exceptions import NoPermissionError, RedisClusterException

        if isinstance(error, (redis.ConnectionError, redis.TimeoutError, RedisClusterException, NoPermissionError, OSError)):
            from redis_connect.connection import unavailable

            raise StoreUnavailable(_reword(str(unavailable(self._url or self._where(), error)))) from None

    def _where(self) -> str:
        """The store's URL with its password masked (for a client passed in: its host, port and db)."""
        if self._url is not None:
            from redis_connect.urls import mask_url

            return mask_url(self._url)
        client = self._client
        try:
            if hasattr(client, "get_default_node"):  # redis.cluster.RedisCluster
                node = client.get_default_node()
                return f"redis://{node.host}:{node.port}"
            kwargs = client.connection_pool.connection_kwargs
            scheme = "rediss" if "ssl" in getattr(client.connection_pool.connection_class, "__name__", "").lower() else "redis"
            if "path" in kwargs:
                return f"unix://{kwargs['path']}"
            return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
        except Exception:
            return f"<{type(client).__name__} client>"


def _reword(message: str) -> str:
    """``redis_connect.connection``'s wording, for this store."""
    return message.replace("Redis checkpoint store", "Redis saga-state store (legacy_bus.RedisStateStore)", 1)
