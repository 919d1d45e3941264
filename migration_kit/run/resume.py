"""Resumable replays: what a replay saves as it goes, and how a later run picks it up.

A replay of a file saves its progress in the migration's store every
``every`` events (and when interrupted): the log's identity and the offset
after the last event whose result is counted, the tally and evidence so far,
the policy monitor, both paths' saga scratch state and the noise learned.
Resuming restores all of it and reads on from that offset, so an
interrupted and resumed replay reports what an uninterrupted one would: the
events after the last save are replayed again (sandboxed: nothing real
happens twice) and counted once; the one cut off inside the graph resumes
from its checkpoint on the store.

A log changed since (truncated, or any byte before the resume point edited)
is refused, naming what changed: the saved identity keeps a running SHA-256
of the replayed prefix, digests at up to ``MAX_POINTS`` spread-out lines to
say where it changed, and the size.

Records (in ``Store.records``): ``replay:<sha1 of the log's absolute path>``
holds one replay's progress; ``replay:last`` names the last replay started.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migration_errors import BadEventLog, MigrationKitError, ReplayInterrupted, StoreUnavailable

__all__ = ["LogIdentity", "ReplayInterrupted", "STORE_ERRORS", "progress_key", "store_failed", "MAX_POINTS"]

MAX_POINTS = 64
_BLOCK = 1 << 20


def _store_errors() -> tuple[type[BaseException], ...]:
    import sqlite3

    from redis.exceptions import RedisError

    return (StoreUnavailable, RedisError, sqlite3.Error, ConnectionError, TimeoutError)


#: What a store failing looks like from inside a replay (the CLI turns it into a resume hint).
STORE_ERRORS = _store_errors()


def store_failed(outcome: Any, store: str) -> None:
    """Raise ``StoreUnavailable`` if ``outcome`` is a crash of the store under the graph, not of the candidate.

    A replay must stop there (and be resumed) rather than count the event as a candidate error.
    """
    if not getattr(outcome, "store_down", False) or not outcome.errors:
        return  # ``Outcome.crash`` classified the exception by its class where it was caught
    err = outcome.errors[0]
    raise StoreUnavailable(f"the candidate's checkpoints in {store} could not be read or written ({err.type}: {err.message})")


def progress_key(path: str | Path) -> str:
    """The record key of a log's replay progress."""
    return "replay:" + hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()


def _prefix_digests(path: Path, offsets: list[int]) -> tuple[list[str], Any]:
    """SHA-256 of the file's first ``o`` bytes for each offset (ascending), in one pass; and the hasher."""
    out: list[str] = []
    h = hashlib.sha256()
    pos = 0
    with open(path, "rb") as fh:
        for target in offsets:
            while pos < target:
                chunk = fh.read(min(_BLOCK, target - pos))
                if not chunk:
                    return out, h
                h.update(chunk)
                pos += len(chunk)
            out.append(h.hexdigest())
    return out, h


@dataclass
class LogIdentity:
    """Who a log is: its path, and digests of the prefix already replayed."""

    path: str
    offset: int = 0  # bytes replayed (the next line starts here)
    line: int = 0  # lines replayed
    digest: str = hashlib.sha256().hexdigest()  # of the first ``offset`` bytes
    points: list[list[Any]] = field(default_factory=list)  # [line, offset, digest], spread out

    @classmethod
    def start(cls, path: str | Path) -> LogIdentity:
        """The identity of a log not yet read, at its start."""
        return cls(str(Path(path).resolve()))

    def __post_init__(self) -> None:
        self._hasher: Any = None  # the running SHA-256 of the prefix (rebuilt by verify() on resume)

    def advance(self, line: int, offset: int) -> None:
        """Extend the identity to the first ``offset`` bytes (up to ``line``), reading only the new part."""
        if offset <= self.offset:
            return
        if self._hasher is None:
            if self.offset:
                raise RuntimeError("LogIdentity.advance() after from_dict() needs verify() first")
            self._hasher = hashlib.sha256()
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            remaining = offset - self.offset
            while remaining:
                chunk = fh.read(min(_BLOCK, remaining))
                if not chunk:
                    break
                self._hasher.update(chunk)
                remaining -= len(chunk)
        self.offset, self.line, self.digest = offset, line, self._hasher.hexdigest()
        self.points.append([line, offset, self.digest])
        if len(self.points) > MAX_POINTS:
            self.points = self.points[1::2]

    def to_dict(self) -> dict[str, Any]:
        """The identity as JSON-ready data (``from_dict`` reads it back)."""
        return {"path": self.path, "offset": self.offset, "line": self.line, "digest": self.digest, "points": self.points}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogIdentity:
        """An identity from ``to_dict()`` data."""
        return cls(data["path"], int(data["offset"]), int(data["line"]), data["digest"], [list(p) for p in data.get("points", [])])

    def verify(self) -> None:
        """Refuse a log that changed before the resume point, naming what changed."""
        path = Path(self.path)
        try:
            size = os.path.getsize(path)
        except OSError:
            raise BadEventLog(f"cannot resume: the event log {path} is gone", source=str(path)) from None
        if size < self.offset:
            raise BadEventLog(
                f"cannot resume: event log {path} is now {size:,} bytes, shorter than the {self.offset:,} bytes "
                f"(line {self.line:,}) already replayed: it was truncated or rewritten; replay it from the start",
                source=str(path),
            )
        offsets = [p[1] for p in self.points] + [self.offset]
        digests, hasher = _prefix_digests(path, offsets)
        expected = [p[2] for p in self.points] + [self.digest]
        previous_line = 0
        for (line, digest_now, digest_then) in zip([p[0] for p in self.points] + [self.line], digests, expected, strict=False):
            if digest_now != digest_then:
                raise BadEventLog(
                    f"cannot resume: event log {path} changed since the interrupted run: "
                    f"lines {previous_line + 1:,} to {line:,} are not what was replayed; replay it from the start",
                    line=previous_line + 1,
                    source=str(path),
                )
            previous_line = line
        self._hasher = hasher
