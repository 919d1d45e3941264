"""Recorded event streams as JSON Lines, read and written one line at a time.

A line is either an event (``Event.model_dump_json()``) or a record of a
live dispatch: ``{"event": {...}, "effects": [...]}`` where ``effects`` are
the authoritative effect calls made while handling it (their responses are
what a replay answers sandboxed calls with). Nothing is ever unpickled or
evaluated: every line is JSON validated by pydantic.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import ValidationError

from migration_errors import BadEventLog

from legacy_bus.event import Event
from legacy_bus.limits import DEFAULT_LIMITS, InputLimits, LimitExceeded
from legacy_bus.records import EffectCall

__all__ = ["EventLog", "LogEntry", "SkippedLine"]

DEFAULT_MAX_LINE_BYTES = DEFAULT_LIMITS.max_bytes


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One event read from a log, with the line it came from and any recorded effect calls."""

    line: int
    event: Event
    effects: tuple[EffectCall, ...] = ()
    offset: int = 0  # where the line starts in the file
    end: int = 0  # where the next line starts (resume from here)


@dataclass(frozen=True, slots=True)
class SkippedLine:
    """A line that could not be read, and why."""

    line: int
    reason: str


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "line"
    return f"{where}: {first['msg']}"


@dataclass
class EventLog:
    """A JSON Lines event log at ``path``.

    Iterating yields ``LogEntry`` values lazily (constant memory over any
    length of log). A line that is not a valid event raises ``BadEventLog``
    naming the file and line number, or, with ``on_error="skip"``, is
    recorded in ``skipped`` and passed over.

    Args:
        path: the log file.
        on_error: ``raise`` (default) or ``skip``.
        max_line_bytes: a longer line is rejected (bounded input).
        max_depth: a line nesting objects or arrays deeper is rejected.
        max_int_digits: a line with a longer integer is rejected.
    """

    path: Path | str
    on_error: Literal["raise", "skip"] = "raise"
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    skipped: list[SkippedLine] = field(default_factory=list)
    max_depth: int = DEFAULT_LIMITS.max_depth
    max_int_digits: int = DEFAULT_LIMITS.max_int_digits

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def __iter__(self) -> Iterator[LogEntry]:
        return self.entries()

    def entries(self, *, start_offset: int = 0, start_line: int = 1) -> Iterator[LogEntry]:
        """Yield entries from a byte offset (for resuming), numbering lines from ``start_line``."""
        path = Path(self.path)
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            raise BadEventLog(f"event log {path} does not exist", source=str(path)) from None
        except OSError as exc:
            raise BadEventLog(f"event log {path} cannot be opened: {exc.strerror}", source=str(path)) from None
        with handle:
            if start_offset:
                handle.seek(start_offset)
            offset = start_offset
            lineno = start_line - 1
            while True:
                raw = handle.readline(self.max_line_bytes + 1)
                if not raw:
                    return
                lineno += 1
                start = offset
                offset += len(raw)
                if len(raw) > self.max_line_bytes and not raw.endswith(b"\n"):
                    # Skip the rest of the oversized line without holding it in memory.
                    while raw and not raw.endswith(b"\n"):
                        raw = handle.readline(self.max_line_bytes + 1)
                        offset += len(raw)
                    self._bad(lineno, f"is longer than {self.max_line_bytes} bytes (raise max_line_bytes to accept it)")
                    continue
                if not raw.strip():
                    continue
                try:
                    entry = self._parse(raw, lineno, start, offset, self._limits())
                except _LineError as err:
                    self._bad(lineno, str(err))
                    continue
                yield entry

    def _limits(self) -> InputLimits:
        return InputLimits(self.max_line_bytes, self.max_depth, self.max_int_digits)

    def events(self) -> Iterator[Event]:
        """Just the events, in order."""
        for entry in self:
            yield entry.event

    def _bad(self, lineno: int, reason: str) -> None:
        if self.on_error == "skip":
            self.skipped.append(SkippedLine(lineno, reason))
            return
        raise BadEventLog(f"event log {self.path} line {lineno} {reason}", line=lineno, source=str(self.path))

    @staticmethod
    def _parse(raw: bytes, lineno: int, offset: int, end: int = 0, limits: InputLimits = DEFAULT_LIMITS) -> LogEntry:
        try:
            data = limits.loads(raw)
        except LimitExceeded as exc:
            raise _LineError(str(exc)) from None
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _LineError(
                f"is not JSON ({exc.__class__.__name__}: {exc}); expected one object per line with 'type' and 'payload'"
            ) from None
        if not isinstance(data, dict):
            raise _LineError(f"is a JSON {type(data).__name__}, not an object with 'type' and 'payload'")
        effects: tuple[EffectCall, ...] = ()
        if "event" in data and "type" not in data:
            record = data
            data = record["event"]
            if not isinstance(data, dict):
                raise _LineError("has an 'event' that is not an object")
            try:
                effects = tuple(EffectCall.from_dict(c) for c in record.get("effects") or ())
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise _LineError(f"has a malformed effect record ({exc})") from None
        try:
            event = Event.model_validate(data)
        except ValidationError as exc:
            raise _LineError(f"is not a valid event ({_describe(exc)})") from None
        except (RecursionError, ValueError, TypeError) as exc:
            raise _LineError(f"is not a valid event ({type(exc).__name__})") from None
        return LogEntry(lineno, event, effects, offset, end)

    # -- writing ---------------------------------------------------------------

    def write(self, events: Iterable[Event | LogEntry], *, overwrite: bool = False) -> int:
        """Write events (or entries with their effect records) to the log; returns how many.

        Refuses to replace an existing file unless ``overwrite=True``, so
        nothing already recorded is lost by accident.
        """
        with self.writer(overwrite=overwrite) as out:
            n = 0
            for item in events:
                out.append(item)
                n += 1
        return n

    def writer(self, *, overwrite: bool = False, append: bool = False) -> LogWriter:
        """A context manager that appends events to the log one line at a time."""
        path = Path(self.path)
        if path.exists() and not (overwrite or append):
            raise BadEventLog(
                f"event log {path} already exists; choose another path, or pass overwrite=True to replace it",
                source=str(path),
            )
        return LogWriter(path, "ab" if append else "wb")


class LogWriter:
    """Writes JSON Lines; each line is flushed whole so a crash leaves whole lines only."""

    def __init__(self, path: Path, mode: str) -> None:
        self.path = path
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = open(path, mode)

    def append(self, item: Event | LogEntry, effects: Iterable[EffectCall] = ()) -> None:
        """Write one event (with its recorded effect calls, if any) as one JSON line."""
        if isinstance(item, LogEntry):
            effects = item.effects
            item = item.event
        calls = [c.to_dict() for c in effects]
        if calls:
            line = json.dumps({"event": item.to_dict(), "effects": calls}, separators=(",", ":"), default=str)
            self._fh.write(line.encode() + b"\n")
        else:
            self._fh.write(item.model_dump_json().encode() + b"\n")

    def flush(self) -> None:
        """Push what was written to disk (``fsync``), so a crash after it loses none of it."""
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the file (without an ``fsync``: call ``flush`` first when it must be durable)."""
        self._fh.close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.flush()
        self.close()


class _LineError(Exception):
    pass


def entry_from_json(data: Any) -> LogEntry:
    """Parse one already-decoded log record (used by streams that carry the same shapes)."""
    return EventLog._parse(json.dumps(data).encode(), 0, 0)
