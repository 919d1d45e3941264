"""The testing kit's contract suites: every backend we ship passes, a broken one fails naming its clause."""

from __future__ import annotations

import re
from typing import Any

import pytest

from legacy_bus import InMemoryStateStore, RedisStateStore
from migration_kit.store import MemoryRecords, RedisRecords, SqliteRecords
from migration_kit.testing import check_records, check_state_store

# -- every shipped backend passes ------------------------------------------------------------------


def test_memory_records_keep_the_records_contract() -> None:
    check_records(MemoryRecords)


def test_sqlite_records_keep_the_records_contract(tmp_path) -> None:
    check_records(lambda: SqliteRecords(str(tmp_path / "records.sqlite"), "contract"))


def test_redis_records_keep_the_records_contract(redis_url: str) -> None:
    check_records(lambda: RedisRecords(redis_url, "contract"))


def test_in_memory_state_store_keeps_the_state_store_contract() -> None:
    check_state_store(InMemoryStateStore)


def test_redis_state_store_keeps_the_state_store_contract(redis_url: str) -> None:
    check_state_store(lambda: RedisStateStore(redis_url, namespace="contract"))


# -- broken Records: each check fails naming its clause --------------------------------------------


class IgnoresVersion(MemoryRecords):
    """A put that writes whatever version it is given: no compare-and-set."""

    def put(self, key: str, value: Any, *, version: int | None = None) -> int:
        return super().put(key, value)


class MissingIsMinusOne(MemoryRecords):
    """Reports an absent key at version -1."""

    def get(self, key: str) -> tuple[Any, int]:
        value, version = super().get(key)
        return (value, version) if version else (None, -1)


class StopInclusive(MemoryRecords):
    """Slices with ``stop`` inclusive (the Redis LRANGE mistake)."""

    def items(self, key: str, start: int = 0, stop: int | None = None) -> list[Any]:
        return super().items(key, start, None if stop is None else stop + 1)


class TrimsTheNewest(MemoryRecords):
    """Keeps the oldest items instead of the newest."""

    def trim(self, key: str, keep: int) -> None:
        kept = self.items(key)[:keep]
        super().delete(key)
        for item in kept:
            self.append(key, item)


class PrependsItems(MemoryRecords):
    """Appends at the front: the list comes back newest first."""

    def items(self, key: str, start: int = 0, stop: int | None = None) -> list[Any]:
        return list(reversed(super().items(key)))[start:stop]


class IncrReturnsAll(MemoryRecords):
    """Returns every counter of the key from incr, not the ones named."""

    def incr(self, key: str, amounts: dict[str, int]) -> dict[str, int]:
        super().incr(key, amounts)
        return self.counters(key)


class DeleteKeepsCounters(MemoryRecords):
    """Deletes the document and list but forgets the counters."""

    def delete(self, key: str) -> None:
        counts = self.counters(key)
        super().delete(key)
        if counts:
            super().incr(key, counts)


class FloatsAsText(MemoryRecords):
    """Stores every float as its text (not JSON-exact)."""

    @staticmethod
    def _text(value: Any) -> Any:
        if isinstance(value, float):
            return repr(value)
        if isinstance(value, dict):
            return {k: FloatsAsText._text(v) for k, v in value.items()}
        if isinstance(value, list):
            return [FloatsAsText._text(v) for v in value]
        return value

    def put(self, key: str, value: Any, *, version: int | None = None) -> int:
        return super().put(key, self._text(value), version=version)


@pytest.mark.parametrize(
    ("broken", "clause"),
    [
        (IgnoresVersion, "versioned-put"),
        (MissingIsMinusOne, "get-missing"),
        (StopInclusive, "items-bounds"),
        (TrimsTheNewest, "trim"),
        (PrependsItems, "append-order"),
        (IncrReturnsAll, "incr-counters"),
        (DeleteKeepsCounters, "delete"),
        (FloatsAsText, "json-exact"),
    ],
)
def test_check_records_fails_a_broken_backend_naming_the_clause(broken: type, clause: str) -> None:
    with pytest.raises(AssertionError, match=f"clause {re.escape(repr(clause))} broken"):
        check_records(broken)


# -- broken state stores: each check fails naming its clause ---------------------------------------


class PeekCreates(InMemoryStateStore):
    """A peek that creates an empty saga (as ``load`` + ``save`` would)."""

    def peek(self, key: str) -> dict[str, Any] | None:
        return self._states.setdefault(key, {})


class SharedEmpty(InMemoryStateStore):
    """Hands every new saga the same empty dict."""

    def __init__(self) -> None:
        super().__init__()
        self._empty = {}

    def load(self, key: str) -> dict[str, Any]:
        return self.peek(key) or self._empty


class KeepsEmpty(InMemoryStateStore):
    """Keeps a saga saved as empty (it should be forgotten)."""

    def save(self, key: str, state: dict[str, Any]) -> None:
        self._states[key] = state

    def peek(self, key: str) -> dict[str, Any] | None:
        return self._states.get(key)


class OneSaga(InMemoryStateStore):
    """Keeps all sagas under one key: they see each other's state."""

    def load(self, key: str) -> dict[str, Any]:
        return super().load("all")

    def save(self, key: str, state: dict[str, Any]) -> None:
        super().save("all", state)

    def peek(self, key: str) -> dict[str, Any] | None:
        return super().peek("all")


class KeysRemembersDeleted(InMemoryStateStore):
    """``keys()`` lists every saga ever saved, deleted ones too."""

    def __init__(self) -> None:
        super().__init__()
        self.ever: list[str] = []

    def save(self, key: str, state: dict[str, Any]) -> None:
        if key not in self.ever:
            self.ever.append(key)
        super().save(key, state)

    def keys(self):  # noqa: ANN201
        return iter(list(self.ever))


class LosesNesting(InMemoryStateStore):
    """Keeps only the top level of a state (nested values dropped)."""

    def save(self, key: str, state: dict[str, Any]) -> None:
        super().save(key, {k: v for k, v in state.items() if not isinstance(v, (dict, list))})


class NoPeek:
    """Has load and save, no peek."""

    def load(self, key: str) -> dict[str, Any]:
        return {}

    def save(self, key: str, state: dict[str, Any]) -> None:
        pass


@pytest.mark.parametrize(
    ("broken", "clause"),
    [
        (PeekCreates, "peek-missing"),
        (SharedEmpty, "isolation"),
        (KeepsEmpty, "save-empty"),
        (OneSaga, "isolation"),
        (KeysRemembersDeleted, "keys"),
        (LosesNesting, "save-peek"),
        (NoPeek, "protocol"),
    ],
)
def test_check_state_store_fails_a_broken_store_naming_the_clause(broken: type, clause: str) -> None:
    with pytest.raises(AssertionError, match=f"clause {re.escape(repr(clause))} broken"):
        check_state_store(broken)


def test_check_records_closes_the_backend_it_was_given() -> None:
    made: list[Any] = []

    class Tracked(MemoryRecords):
        closed = False

        def close(self) -> None:
            self.closed = True

    def make() -> MemoryRecords:
        made.append(Tracked())
        return made[-1]

    check_records(make)
    assert len(made) == 1 and made[0].closed
