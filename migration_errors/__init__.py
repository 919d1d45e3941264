"""The error hierarchy shared by every migration-kit package.

It lives in its own tiny package so that the lower layers (``legacy_bus``,
``graph_flows``, ``checkpoints``) can raise subclasses of the one root,
``MigrationKitError``, without importing ``migration_kit`` (dependencies point
one way). ``migration_kit`` re-exports all of them.
"""

from __future__ import annotations

__all__ = [
    "BadEventLog",
    "ConfigurationError",
    "CycleError",
    "FanoutError",
    "HandlerError",
    "MigrationKitError",
    "PhaseConflict",
    "PolicyViolation",
    "StoreUnavailable",
    "UndeclaredStateWrite",
    "UnisolatedNoiseLearning",
]


class MigrationKitError(Exception):
    """Root of every error raised by migration-kit."""


class ConfigurationError(MigrationKitError):
    """The user's configuration is wrong: a bad URL, an unknown app, a duplicate handler name."""


class StoreUnavailable(MigrationKitError):
    """A store (Redis, SQLite) cannot be reached; the message names the URL (without secrets) and what to check."""


class BadEventLog(MigrationKitError):
    """An event log or stream entry cannot be read; the message names the line (or entry) and why."""

    def __init__(self, message: str, *, line: int | None = None, source: str | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.source = source


class CycleError(MigrationKitError):
    """A cascade exceeded the bus's depth bound; the message names the cycle of event types."""

    def __init__(self, message: str, *, cycle: list[str] | None = None) -> None:
        super().__init__(message)
        self.cycle = cycle or []


class FanoutError(MigrationKitError):
    """One handler published more events than the bus's ``max_fanout`` allows."""


class HandlerError(MigrationKitError):
    """Wraps a handler's exception when a caller asked for it to be wrapped (never on the legacy path)."""


class PolicyViolation(MigrationKitError):
    """A policy or phase transition is not allowed."""


class PhaseConflict(PolicyViolation):
    """Another process changed the migration phase first (optimistic concurrency)."""


class UndeclaredStateWrite(MigrationKitError):
    """A sandboxed run tried to write a database no bus declared; it was stopped before the write."""

    def __init__(self, message: str, *, database: str = "", statement: str = "", node: str | None = None) -> None:
        super().__init__(message)
        self.database = database
        self.statement = statement
        self.node = node


class UnisolatedNoiseLearning(UndeclaredStateWrite):
    """Noise learning refused to re-run the legacy path: it writes state that cannot be isolated."""
