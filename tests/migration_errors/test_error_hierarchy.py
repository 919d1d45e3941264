"""Every error class of the project lives in ``migration_errors`` under one root, with a kind."""

from __future__ import annotations

import importlib
import sqlite3

import pytest
import redis

import migration_errors
from legacy_bus import Event
from migration_errors import MigrationKitError
from migration_kit.compare.outcome import Outcome
from migration_kit.run.resume import store_failed
from redis_connect.connection import missing_group

# Where each class used to be defined; users' imports from there must keep working.
OLD_HOMES = {
    "LimitExceeded": "legacy_bus.limits",
    "RecordedEffectError": "legacy_bus.effects",
    "StateSerializationError": "legacy_bus.state",
    "InvalidTransition": "migration_kit.decide.phases",
    "BadShadowEntry": "migration_kit.live.tap",
    "ReplayInterrupted": "migration_kit.run.resume",
    "AppNotFound": "migration_kit.cli.app",
    "VersionConflict": "migration_kit.store",
}


def _classes() -> list[type[BaseException]]:
    return [getattr(migration_errors, name) for name in migration_errors.__all__]


def test_every_error_class_is_under_the_root_and_has_its_own_kind() -> None:
    kinds = [cls.kind for cls in _classes()]
    assert all(issubclass(cls, MigrationKitError) for cls in _classes())
    assert all(isinstance(k, str) and k for k in kinds)
    assert len(set(kinds)) == len(kinds)


@pytest.mark.parametrize("name", sorted(OLD_HOMES))
def test_an_error_moved_to_migration_errors_still_imports_from_its_old_module(name: str) -> None:
    assert getattr(importlib.import_module(OLD_HOMES[name]), name) is getattr(migration_errors, name)


def test_errors_that_were_builtin_subclasses_still_are() -> None:
    assert issubclass(migration_errors.LimitExceeded, ValueError)
    assert issubclass(migration_errors.StateSerializationError, TypeError)


def _crash(exc: BaseException) -> Outcome:
    return Outcome.crash("candidate", Event(type="t", payload={}), exc, 0.0)


@pytest.mark.parametrize("exc", [redis.ConnectionError("down"), sqlite3.OperationalError("locked"), TimeoutError()])
def test_a_store_crash_is_classified_by_its_class_where_it_is_caught(exc: BaseException) -> None:
    outcome = _crash(exc)
    assert outcome.store_down
    with pytest.raises(migration_errors.StoreUnavailable, match="checkpoints in redis://x"):
        store_failed(outcome, "redis://x")


def test_a_candidate_crash_named_like_a_store_error_is_still_a_candidate_error() -> None:
    class ConnectionRefusedErrorLookalike(Exception):
        pass

    # Recorded as "ConnectionRefusedError", which the old type-name match took for a store failure.
    ConnectionRefusedErrorLookalike.__module__, ConnectionRefusedErrorLookalike.__qualname__ = "builtins", "ConnectionRefusedError"
    outcome = _crash(ConnectionRefusedErrorLookalike("not a store"))
    assert outcome.errors[0].type == "ConnectionRefusedError"
    assert not outcome.store_down
    store_failed(outcome, "redis://x")  # does not raise


def test_missing_group_tells_redis_nogroup_reply_apart_from_other_replies(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with pytest.raises(redis.ResponseError) as nogroup:
        client.xreadgroup("no-such-group", "c", {"no-such-stream": ">"}, count=1)
    client.xadd("s", {"f": "v"})
    with pytest.raises(redis.ResponseError) as busy:
        client.xgroup_create("s", "g")
        client.xgroup_create("s", "g")  # BUSYGROUP
    assert missing_group(nogroup.value)
    assert not missing_group(busy.value)
    assert not missing_group(ConnectionError("NOGROUP"))  # only a Redis reply says so
