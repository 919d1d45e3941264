"""The error hierarchy shared by every migration-kit package.

It lives in its own tiny package so that the lower layers (``legacy_bus``,
``graph_flows``, ``checkpoints``) can raise subclasses of the one root,
``MigrationKitError``, without importing ``migration_kit`` (dependencies point
one way). ``migration_kit`` re-exports all of them, and the modules that raise
one keep re-exporting it under its old name (``legacy_bus.limits.LimitExceeded``,
``migration_kit.store.VersionConflict``, ...).

Every class carries ``kind``, a short stable string a caller (a log line, a
metric label, a JSON report) can use without importing the class, the way
redis-py's exceptions name their reply's error code.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AppNotFound",
    "BadEventLog",
    "BadShadowEntry",
    "ConfigurationError",
    "CycleError",
    "FanoutError",
    "HandlerError",
    "InvalidTransition",
    "LimitExceeded",
    "MigrationKitError",
    "PhaseConflict",
    "PolicyViolation",
    "RecordedEffectError",
    "ReplayInterrupted",
    "StateSerializationError",
    "StoreUnavailable",
    "UndeclaredStateWrite",
    "UnisolatedNoiseLearning",
    "VersionConflict",
]


class MigrationKitError(Exception):
    """Root of every error raised by migration-kit."""

    kind: ClassVar[str] = "error"


class ConfigurationError(MigrationKitError):
    """The user's configuration is wrong: a bad URL, an unknown app, a duplicate handler name."""

    kind: ClassVar[str] = "configuration"


class StoreUnavailable(MigrationKitError):
    """A store (Redis, SQLite) cannot be reached; the message names the URL (without secrets) and what to check."""

    kind: ClassVar[str] = "store_unavailable"


class BadEventLog(MigrationKitError):
    """An event log or stream entry cannot be read; the message names the line (or entry) and why."""

    kind: ClassVar[str] = "bad_event_log"

    def __init__(self, message: str, *, line: int | None = None, source: str | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.source = source


class CycleError(MigrationKitError):
    """A cascade exceeded the bus's depth bound; the message names the cycle of event types."""

    kind: ClassVar[str] = "cycle"

    def __init__(self, message: str, *, cycle: list[str] | None = None) -> None:
        super().__init__(message)
        self.cycle = cycle or []


class FanoutError(MigrationKitError):
    """One handler published more events than the bus's ``max_fanout`` allows."""

    kind: ClassVar[str] = "fanout"


class HandlerError(MigrationKitError):
    """Wraps a handler's exception when a caller asked for it to be wrapped (never on the legacy path)."""

    kind: ClassVar[str] = "handler"


class PolicyViolation(MigrationKitError):
    """A policy or phase transition is not allowed."""

    kind: ClassVar[str] = "policy"


class PhaseConflict(PolicyViolation):
    """Another process changed the migration phase first (optimistic concurrency)."""

    kind: ClassVar[str] = "phase_conflict"


class UndeclaredStateWrite(MigrationKitError):
    """A sandboxed run tried to write a database no bus declared; it was stopped before the write."""

    kind: ClassVar[str] = "undeclared_state_write"

    def __init__(self, message: str, *, database: str = "", statement: str = "", node: str | None = None) -> None:
        super().__init__(message)
        self.database = database
        self.statement = statement
        self.node = node


class UnisolatedNoiseLearning(UndeclaredStateWrite):
    """Noise learning refused to re-run the legacy path: it writes state that cannot be isolated."""

    kind: ClassVar[str] = "unisolated_noise_learning"


class AppNotFound(ConfigurationError):
    """``--app`` does not name an importable ``Migration`` (or a factory of one)."""

    kind: ClassVar[str] = "app_not_found"


class LimitExceeded(MigrationKitError, ValueError):
    """A line or entry breaks one of the ``InputLimits``; the message says which and how to raise it.

    Still a ``ValueError``, as it was before it joined the root.
    """

    kind: ClassVar[str] = "limit_exceeded"


class BadShadowEntry(BadEventLog):
    """A stream entry that is not a valid shadow entry (it is dead-lettered, never compared)."""

    kind: ClassVar[str] = "bad_shadow_entry"


class InvalidTransition(PolicyViolation):
    """A phase transition the state machine does not allow (the message says what is allowed)."""

    kind: ClassVar[str] = "invalid_transition"


class RecordedEffectError(MigrationKitError):
    """Raised in a sandbox where the authoritative call being replayed had raised.

    ``error`` is the recorded call's ``legacy_bus.records.ErrorInfo`` (its ``type`` and ``message``).
    """

    kind: ClassVar[str] = "recorded_effect"

    def __init__(self, error: Any) -> None:
        super().__init__(f"{error.type}: {error.message}")
        self.error = error


class ReplayInterrupted(MigrationKitError):
    """A replay stopped early (Ctrl-C); its progress is saved and ``resume`` continues it."""

    kind: ClassVar[str] = "replay_interrupted"

    def __init__(self, message: str, *, line: int, total: int) -> None:
        super().__init__(message)
        self.line, self.total = line, total


class StateSerializationError(MigrationKitError, TypeError):
    """Saga state that ``RedisStateStore`` cannot keep as JSON, or a stored value that is not a JSON object.

    The message names the saga key and, for a value JSON cannot carry, where
    in the state it is (``state['order']['at']``) and what it is.
    """

    kind: ClassVar[str] = "state_serialization"


class VersionConflict(MigrationKitError):
    """A versioned write found another version than it expected (someone wrote first)."""

    kind: ClassVar[str] = "version_conflict"

    def __init__(self, key: str, expected: int, found: int) -> None:
        super().__init__(f"record {key!r} is at version {found}, not {expected}: another process changed it first")
        self.key, self.expected, self.found = key, expected, found
