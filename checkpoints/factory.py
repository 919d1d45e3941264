"""``open_checkpointer(url)``: a ready LangGraph checkpointer for a store URL.

It returns a **saver**, not a context manager, so callers can hand it straight
to ``StateGraph.compile(checkpointer=...)``. Every saver it returns has a
``close()`` and is also a context manager that closes on exit::

    saver = open_checkpointer("redis://localhost:6379/0")
    try:
        graph = builder.compile(checkpointer=saver)
        ...
    finally:
        saver.close()

    with open_checkpointer("sqlite:///state.db") as saver:
        ...

- ``memory://`` → ``InMemorySaver`` (``close()`` does nothing).
- ``sqlite:///path`` → LangGraph's ``SqliteSaver`` on a connection opened with
  ``check_same_thread=False`` (LangGraph runs checkpoint writes in worker
  threads), in WAL mode with ``synchronous=NORMAL`` (see ``SqliteCheckpointer``
  for what that guarantees); missing parent directories are created. Its async methods run the
  sync ones in a worker thread, so ``ainvoke`` works too.
- ``redis://`` / ``rediss://`` → ``RedisSaver`` (cluster detected or forced with
  ``?cluster=true``); ``ttl``, ``key_prefix`` and ``serde`` are passed through.

Every saver it returns reads checkpoints with the strict serializer of
``checkpoints/serde.py`` (no pickle, LangGraph's safe types plus
``allowed_types``), and encrypts them when ``encryption_key=`` or
``MIGRATION_KIT_CHECKPOINT_KEY`` gives a key.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Unpack

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from checkpoints.core import SaverOptions, check_options, prepared_options
from checkpoints.redis_saver import RedisSaver
from checkpoints.threaded import ThreadedAsync
from migration_errors import ConfigurationError, StoreUnavailable
from redis_connect.urls import SUPPORTED, mask_url, scheme_of, sqlite_path

__all__ = ["MemoryCheckpointer", "SqliteCheckpointer", "open_checkpointer"]


class MemoryCheckpointer(InMemorySaver):
    """``InMemorySaver`` with the ``close()`` every ``open_checkpointer`` result has."""

    def close(self) -> None:
        """Nothing to release; kept for a uniform interface."""


class SqliteCheckpointer(ThreadedAsync, SqliteSaver):
    """LangGraph's ``SqliteSaver`` that owns its connection, closes it, and offers async methods.

    Tuned for the embedded default store: WAL with ``synchronous=NORMAL`` (a
    commit is not fsynced; WAL keeps the file consistent, so a killed process
    loses nothing committed and a power loss at most the last commits), and
    ``delete_thread`` deferred into the next write's transaction, so a replay
    run with ``durability="exit"`` makes one write transaction per event
    (the finished event's thread is dropped when the next event's checkpoint
    is written, or on ``close()``).
    """

    def __init__(self, conn: sqlite3.Connection, **kwargs: Any) -> None:
        super().__init__(conn, **kwargs)
        self._doomed: list[str] = []

    @contextmanager
    def cursor(self, transaction: bool = True) -> Iterator[sqlite3.Cursor]:
        """A cursor as ``SqliteSaver``'s, after carrying out the deferred thread deletes."""
        with super().cursor(transaction) as cur:
            if self._doomed:
                self._drop(cur)
                if not transaction:  # a read: commit the deletes first, so it never sees them
                    self.conn.commit()
            yield cur

    def _drop(self, cur: sqlite3.Cursor) -> None:
        doomed, self._doomed = self._doomed, []
        rows = [(t,) for t in dict.fromkeys(doomed)]
        cur.executemany("DELETE FROM checkpoints WHERE thread_id = ?", rows)
        cur.executemany("DELETE FROM writes WHERE thread_id = ?", rows)

    def delete_thread(self, thread_id: str) -> None:
        """Delete a thread's checkpoints and writes, in the next write transaction (reads never see them)."""
        with self.lock:
            self._doomed.append(str(thread_id))

    def flush(self) -> None:
        """Carry out the deferred thread deletes now."""
        if self._doomed:
            with self.cursor() as cur:
                pass

    def close(self) -> None:
        """Carry out deferred deletes and close the SQLite connection."""
        try:
            self.flush()
        except sqlite3.Error:  # noqa: S110 - closing must not fail over cleanup
            pass
        self.conn.close()

    def __enter__(self) -> SqliteCheckpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_checkpointer(url: str, **options: Unpack[SaverOptions]) -> BaseCheckpointSaver:
    """Open the checkpoint saver a store URL names; the caller closes it with ``close()``.

    Args:
        url: ``memory://``, ``sqlite:///path`` or ``redis://host:port/db`` (``rediss://`` for TLS).
        ttl: Redis only: seconds a thread lives after its last write.
        key_prefix: Redis only: prefix of every key.
        serde: Serializer (all stores); the strict ``StrictSerializer`` when ``None``.
        allowed_types: Extra types checkpoints may rebuild (classes or
            ``(module, name)``) beside LangGraph's safe ones.
        encryption_key: AES key (16/24/32 bytes, or hex/base64 text) that
            encrypts checkpoints at rest; ``None`` reads ``MIGRATION_KIT_CHECKPOINT_KEY``.

    Returns:
        A ``BaseCheckpointSaver`` with ``close()``, usable as a context manager.

    Raises:
        ConfigurationError: unknown scheme or malformed URL.
        StoreUnavailable: the store cannot be reached or opened.
    """
    check_options("open_checkpointer", options)
    scheme = scheme_of(url)
    prepared = prepared_options("open_checkpointer", options)
    serde = prepared["serde"]
    if scheme == "memory":
        return MemoryCheckpointer(serde=serde)
    if scheme == "sqlite":
        path = sqlite_path(url)
        try:
            if path != ":memory:":
                parent = os.path.dirname(os.path.abspath(path))
                os.makedirs(parent, exist_ok=True)
            conn = sqlite3.connect(path, check_same_thread=False, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as e:
            raise StoreUnavailable(
                f"cannot open the SQLite checkpoint store {mask_url(url)!r} ({e}); check that the directory exists and is writable"
            ) from None
        saver = SqliteCheckpointer(conn, serde=serde)
        try:
            saver.setup()
        except sqlite3.Error as e:
            conn.close()
            raise StoreUnavailable(f"cannot set up the SQLite checkpoint store {mask_url(url)!r} ({e}); is it a SQLite database?") from None
        return saver
    if scheme in ("redis", "rediss"):
        return RedisSaver.from_url(url, **prepared)
    raise ConfigurationError(f"unsupported checkpoint store URL {mask_url(url)!r}: expected {SUPPORTED}")
