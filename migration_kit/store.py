"""The migration's store: one URL for everything a migration keeps.

``memory://`` (the API's default), ``sqlite:///path`` (the CLI's default: an
embedded file in the working directory, so commands see each other's state)
or ``redis://host:port/db``. It holds the candidate's LangGraph checkpoints
(``Store.checkpointer``) and, beside them, the migration's own records
(``Store.records``): small JSON documents with versions for optimistic
concurrency (the phase), append-only lists (the audit history) and counters
(results).

Record layout, per backend, for a migration named ``M``:

* redis:  ``mk:{M}:doc:<key>`` hash {value: JSON, version: int};
          ``mk:{M}:list:<key>`` list of JSON; ``mk:{M}:count:<key>`` hash of ints.
          The ``{M}`` hash tag keeps one migration's records in one cluster slot.
* sqlite: tables ``mk_docs(ns, key, value, version)``, ``mk_lists(ns, key, idx,
          value)``, ``mk_counters(ns, key, field, value)`` in the store's file.
* memory: the same shapes in dicts, for one process.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import threading
from collections import defaultdict
from typing import Any, Callable, Protocol


from migration_errors import ConfigurationError, MigrationKitError, StoreUnavailable, VersionConflict
from redis_connect.urls import mask_url, scheme_of, sqlite_path

__all__ = [
    "API_DEFAULT_STORE",
    "CLI_DEFAULT_STORE",
    "MemoryRecords",
    "Records",
    "RedisRecords",
    "SqliteRecords",
    "Store",
    "UNCHANGED",
    "VersionConflict",
]

API_DEFAULT_STORE = "memory://"
CLI_DEFAULT_STORE = "sqlite:///migration-kit.sqlite"
_SCHEMES = ("memory", "sqlite", "redis", "rediss")
# Seconds any one Redis call of the store may take (connect, send, reply): where the candidate
# serves, store calls run on the publisher's thread, and this is their deadline. A URL's own
# ?socket_timeout= wins.
STORE_TIMEOUT = 1.0


UNCHANGED: Any = object()  # returned by a ``Store.update`` change: leave the record as it is


class Records(Protocol):
    """What a migration keeps besides checkpoints; every value is JSON."""

    def get(self, key: str) -> tuple[Any, int]:
        """The document at ``key`` and its version (``(None, 0)`` when absent)."""
        ...

    def put(self, key: str, value: Any, *, version: int | None = None) -> int:
        """Write a document; with ``version``, only if it is still at that version (0: absent).

        Returns the new version. Raises ``VersionConflict`` otherwise.
        """
        ...

    def append(self, key: str, item: Any) -> int:
        """Append to a list; returns its new length."""
        ...

    def items(self, key: str, start: int = 0, stop: int | None = None) -> list[Any]:
        """A slice of a list (``stop`` exclusive; None: to the end)."""
        ...

    def trim(self, key: str, keep: int) -> None:
        """Keep only the newest ``keep`` items of a list (a cap on what a list keeps)."""
        ...

    def incr(self, key: str, amounts: dict[str, int]) -> dict[str, int]:
        """Add to named counters atomically; returns their new values."""
        ...

    def counters(self, key: str) -> dict[str, int]:
        """All counters under ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Remove the document, list and counters under ``key``."""
        ...

    def close(self) -> None:
        """Release the backend's connections."""
        ...


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class MemoryRecords:
    """Records in this process's memory."""

    def __init__(self) -> None:
        self._docs: dict[str, tuple[Any, int]] = {}
        self._lists: dict[str, list[str]] = defaultdict(list)
        self._counts: dict[str, dict[str, int]] = defaultdict(dict)
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[Any, int]:
        """The document at ``key`` and its version (``(None, 0)`` when absent)."""
        raw, version = self._docs.get(key, (None, 0))
        return (None if raw is None else json.loads(raw)), version

    def put(self, key: str, value: Any, *, version: int | None = None) -> int:
        """Write a document, with ``version`` only if it is still at that version; returns the new version."""
        with self._lock:
            current = self._docs.get(key, (None, 0))[1]
            if version is not None and version != current:
                raise VersionConflict(key, version, current)
            self._docs[key] = (_dump(value), current + 1)
            return current + 1

    def append(self, key: str, item: Any) -> int:
        """Append to a list; returns its new length."""
        with self._lock:
            self._lists[key].append(_dump(item))
            return len(self._lists[key])

    def items(self, key: str, start: int = 0, stop: int | None = None) -> list[Any]:
        """A slice of a list (``stop`` exclusive; None: to the end)."""
        return [json.loads(x) for x in self._lists.get(key, [])[start:stop]]

    def trim(self, key: str, keep: int) -> None:
        """Keep only the newest ``keep`` items of a list."""
        with self._lock:
            if key in self._lists:
                del self._lists[key][: max(0, len(self._lists[key]) - keep)]

    def incr(self, key: str, amounts: dict[str, int]) -> dict[str, int]:
        """Add to named counters atomically; returns their new values."""
        with self._lock:
            counts = self._counts[key]
            for field, n in amounts.items():
                counts[field] = counts.get(field, 0) + n
            return {f: counts[f] for f in amounts}

    def counters(self, key: str) -> dict[str, int]:
        """All counters under ``key``."""
        return dict(self._counts.get(key, {}))

    def delete(self, key: str) -> None:
        """Remove the document, list and counters under ``key``."""
        with self._lock:
            self._docs.pop(key, None)
            self._lists.pop(key, None)
            self._counts.pop(key, None)

    def close(self) -> None:
        """Nothing to release (the records stay in memory)."""
        pass


class SqliteRecords:
    """Records in the store's SQLite file (WAL mode, so several processes share it)."""

    def __init__(self, path: str, namespace: str) -> None:
        self.ns = namespace
        self.path = path
        if path != ":memory:":
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
        try:
            self._conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # WAL commits need no fsync to stay consistent: a killed process loses nothing
            # committed; a power loss at most the last commits (README, "Durability").
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.executescript(
                """
                CREATE TABLE IF NOT EXISTS mk_docs (ns TEXT, key TEXT, value TEXT, version INTEGER, PRIMARY KEY (ns, key));
                CREATE TABLE IF NOT EXISTS mk_lists (ns TEXT, key TEXT, idx INTEGER, value TEXT, PRIMARY KEY (ns, key, idx));
                CREATE TABLE IF NOT EXISTS mk_counters (ns TEXT, key TEXT, field TEXT, value INTEGER, PRIMARY KEY (ns, key, field));
                """
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the SQLite store at {path} ({exc}); check the path and its permissions") from None
        self._lock = threading.Lock()

    def _tx(self):  # noqa: ANN202
        return _Immediate(self._conn, self._lock)

    def get(self, key: str) -> tuple[Any, int]:
        """The document at ``key`` and its version (``(None, 0)`` when absent)."""
        row = self._conn.execute("SELECT value, version FROM mk_docs WHERE ns=? AND key=?", (self.ns, key)).fetchone()
        return (None, 0) if row is None else (json.loads(row[0]), row[1])

    def put(self, key: str, value: Any, *, version: int | None = None) -> int:
        """Write a document, with ``version`` only if it is still at that version; returns the new version."""
        with self._tx() as c:
            row = c.execute("SELECT version FROM mk_docs WHERE ns=? AND key=?", (self.ns, key)).fetchone()
            current = 0 if row is None else row[0]
            if version is not None and version != current:
                raise VersionConflict(key, version, current)
            c.execute(
                "INSERT INTO mk_docs (ns, key, value, version) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (ns, key) DO UPDATE SET value=excluded.value, version=excluded.version",
                (self.ns, key, _dump(value), current + 1),
            )
            return current + 1

    def append(self, key: str, item: Any) -> int:
        """Append to a list; returns its new length."""
        with self._tx() as c:
            # idx grows past trimmed items (MAX + 1), so the list stays in order after a trim
            n, top = c.execute("SELECT COUNT(*), MAX(idx) FROM mk_lists WHERE ns=? AND key=?", (self.ns, key)).fetchone()
            c.execute("INSERT INTO mk_lists (ns, key, idx, value) VALUES (?, ?, ?, ?)", (self.ns, key, 0 if top is None else top + 1, _dump(item)))
            return n + 1

    def items(self, key: str, start: int = 0, stop: int | None = None) -> list[Any]:
        """A slice of a list (``stop`` exclusive; None: to the end)."""
        limit = -1 if stop is None else max(0, stop - start)
        rows = self._conn.execute(
            "SELECT value FROM mk_lists WHERE ns=? AND key=? ORDER BY idx LIMIT ? OFFSET ?",
            (self.ns, key, limit, start),
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def trim(self, key: str, keep: int) -> None:
        """Keep only the newest ``keep`` items of a list."""
        with self._tx() as c:
            c.execute(
                "DELETE FROM mk_lists WHERE ns=? AND key=? AND idx < (SELECT MIN(idx) FROM "
                "(SELECT idx FROM mk_lists WHERE ns=? AND key=? ORDER BY idx DESC LIMIT ?))",
                (self.ns, key, self.ns, key, max(1, keep)),
            )
            if keep <= 0:
                c.execute("DELETE FROM mk_lists WHERE ns=? AND key=?", (self.ns, key))

    def incr(self, key: str, amounts: dict[str, int]) -> dict[str, int]:
        """Add to named counters atomically; returns their new values."""
        with self._tx() as c:
            out = {}
            for field, n in amounts.items():
                c.execute(
                    "INSERT INTO mk_counters (ns, key, field, value) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (ns, key, field) DO UPDATE SET value=value+excluded.value",
                    (self.ns, key, field, n),
                )
                out[field] = c.execute(
                    "SELECT value FROM mk_counters WHERE ns=? AND key=? AND field=?", (self.ns, key, field)
                ).fetchone()[0]
            return out

    def counters(self, key: str) -> dict[str, int]:
        """All counters under ``key``."""
        rows = self._conn.execute("SELECT field, value FROM mk_counters WHERE ns=? AND key=?", (self.ns, key)).fetchall()
        return dict(rows)

    def delete(self, key: str) -> None:
        """Remove the document, list and counters under ``key``."""
        with self._tx() as c:
            for table in ("mk_docs", "mk_lists", "mk_counters"):
                c.execute(f"DELETE FROM {table} WHERE ns=? AND key=?", (self.ns, key))  # noqa: S608 - fixed names

    def close(self) -> None:
        """Close the SQLite connection."""
        self._conn.close()


class _Immediate:
    """A write transaction taken up front (BEGIN IMMEDIATE), so read-then-write is atomic across processes."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self.conn, self.lock = conn, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        try:
            self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self.lock.release()


_CAS = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local want = tonumber(ARGV[2])
if want >= 0 and want ~= cur then return {0, cur} end
redis.call('HSET', KEYS[1], 'value', ARGV[1], 'version', cur + 1)
return {1, cur + 1}
"""


class RedisRecords:
    """Records in Redis (standalone or cluster), one hash tag per migration."""

    def __init__(self, url: str, namespace: str) -> None:
        from redis_connect.connection import connect

        # Credentials and TLS options come from the URL or MIGRATION_KIT_REDIS_* (see
        # redis_connect/urls.py); only the masked URL is kept, for messages and the repr.
        self.url = mask_url(url)
        self.client = connect(url, socket_timeout=STORE_TIMEOUT, socket_connect_timeout=STORE_TIMEOUT)
        self._tag = f"mk:{{{namespace}}}"
        self._cas = self.client.register_script(_CAS)

    def __repr__(self) -> str:
        return f"RedisRecords({self.url!r})"

    def _k(self, kind: str, key: str) -> str:
        return f"{self._tag}:{kind}:{key}"

    def get(self, key: str) -> tuple[Any, int]:
        """The document at ``key`` and its version (``(None, 0)`` when absent)."""
        value, version = self.client.hmget(self._k("doc", key), ["value", "version"])
        return (None, 0) if value is None else (json.loads(value), int(version))

    def put(self, key: str, value: Any, *, version: int | None = None) -> int:
        """Write a document, with ``version`` only if it is still at that version; returns the new version."""
        ok, new = self._cas(keys=[self._k("doc", key)], args=[_dump(value), -1 if version is None else version])
        if not ok:
            raise VersionConflict(key, version if version is not None else -1, int(new))
        return int(new)

    def append(self, key: str, item: Any) -> int:
        """Append to a list; returns its new length."""
        return int(self.client.rpush(self._k("list", key), _dump(item)))

    def items(self, key: str, start: int = 0, stop: int | None = None) -> list[Any]:
        """A slice of a list (``stop`` exclusive; None: to the end)."""
        end = -1 if stop is None else stop - 1
        if stop is not None and stop <= start:
            return []
        return [json.loads(x) for x in self.client.lrange(self._k("list", key), start, end)]

    def trim(self, key: str, keep: int) -> None:
        """Keep only the newest ``keep`` items of a list."""
        if keep <= 0:
            self.client.unlink(self._k("list", key))
        else:
            self.client.ltrim(self._k("list", key), -keep, -1)

    def incr(self, key: str, amounts: dict[str, int]) -> dict[str, int]:
        """Add to named counters atomically; returns their new values."""
        pipe = self.client.pipeline(transaction=True)
        for field, n in amounts.items():
            pipe.hincrby(self._k("count", key), field, n)
        return dict(zip(amounts, (int(v) for v in pipe.execute()), strict=True))

    def counters(self, key: str) -> dict[str, int]:
        """All counters under ``key``."""
        return {k.decode(): int(v) for k, v in self.client.hgetall(self._k("count", key)).items()}

    def delete(self, key: str) -> None:
        """Remove the document, list and counters under ``key``."""
        self.client.delete(self._k("doc", key), self._k("list", key), self._k("count", key))

    def close(self) -> None:
        """Close the Redis client."""
        self.client.close()


def _with_deadline(url: str) -> str:
    """``url`` with ``socket_timeout`` / ``socket_connect_timeout`` = ``STORE_TIMEOUT`` unless it sets them."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    have = {k.lower() for k, _ in query}
    query += [(k, str(STORE_TIMEOUT)) for k in ("socket_timeout", "socket_connect_timeout") if k not in have]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


class Store:
    """Opens what a migration keeps at ``url``, lazily, once.

    Args:
        url: the store URL.
        namespace: whose records these are (the migration's name).
    """

    def __init__(self, url: str | None = None, namespace: str = "default") -> None:
        url = url or API_DEFAULT_STORE
        if not isinstance(url, str):
            raise ConfigurationError(f"a store is a URL string, not {type(url).__name__}")
        scheme = scheme_of(url)
        if scheme not in _SCHEMES:
            raise ConfigurationError(
                f"unsupported store URL {mask_url(url)!r}: use memory://, sqlite:///path or redis://host:port/db"
            )
        self.url = url
        self.scheme = scheme
        self.namespace = namespace
        self._checkpointer: Any = None
        self._records: Records | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({mask_url(self.url)!r})"

    @property
    def display_url(self) -> str:
        """The URL with any password masked."""
        return mask_url(self.url)

    @property
    def checkpointer(self) -> Any:
        """The LangGraph checkpoint saver on this store (opened on first use)."""
        if self._checkpointer is None:
            with self._lock:
                if self._checkpointer is None:
                    from checkpoints import open_checkpointer

                    self._checkpointer = open_checkpointer(_with_deadline(self.url) if self.scheme in ("redis", "rediss") else self.url)
        return self._checkpointer

    @property
    def records(self) -> Records:
        """The migration's own records on this store (opened on first use)."""
        if self._records is None:
            with self._lock:
                if self._records is None:
                    if self.scheme == "memory":
                        self._records = MemoryRecords()
                    elif self.scheme == "sqlite":
                        self._records = SqliteRecords(sqlite_path(self.url), self.namespace)
                    else:
                        self._records = RedisRecords(self.url, self.namespace)
        return self._records

    @property
    def checkpointer_opened(self) -> bool:
        """Whether the store's checkpointer has been opened (or installed) yet."""
        return self._checkpointer is not None

    def install_checkpointer(self, saver: Any) -> bool:
        """Use ``saver`` as this store's checkpointer if none was opened yet; True if it was installed.

        A shadow worker runs the candidate on a write-behind Redis saver this way
        (``migration_kit.live.worker``); ``uninstall_checkpointer`` puts things back.
        """
        with self._lock:
            if self._checkpointer is not None:
                return False
            self._checkpointer = saver
            return True

    def uninstall_checkpointer(self, saver: Any) -> bool:
        """Stop using ``saver`` (installed by ``install_checkpointer``); True if it was this store's."""
        with self._lock:
            if self._checkpointer is not saver:
                return False
            self._checkpointer = None
            return True

    def seal(self, value: Any) -> dict[str, str]:
        """Saga state for the store's records, through the checkpointer's serializer: encrypted at
        rest exactly when checkpoints are (``MIGRATION_KIT_CHECKPOINT_KEY``), never pickled."""
        kind, data = self.checkpointer.serde.dumps_typed(value)
        return {"sealed": kind, "data": base64.b64encode(data).decode()}

    def unseal(self, doc: Any) -> Any:
        """What ``seal`` made, back (a document saved before sealing existed is returned as it is)."""
        if isinstance(doc, dict) and "sealed" in doc:
            return self.checkpointer.serde.loads_typed((doc["sealed"], base64.b64decode(doc["data"])))
        return doc

    def update(self, key: str, change: Callable[[Any], Any], *, tries: int = 20, what: str | None = None) -> Any:
        """Compare-and-set ``key``: ``change(current)`` returns the new value, written only if ``key`` did not
        change meanwhile (retried up to ``tries`` times); returns what was written.

        ``change`` may return ``UNCHANGED`` to write nothing. The one loop every read-modify-write of a
        shared record goes through (evidence, noise, phases, sagas).
        """
        records = self.records
        for _ in range(tries):
            current, version = records.get(key)
            new = change(current)
            if new is UNCHANGED:
                return current
            try:
                records.put(key, new, version=version)
            except VersionConflict:
                continue
            return new
        raise MigrationKitError(f"could not update {what or f'record {key!r}'}: the store kept changing under it ({tries} tries)")

    def reopen(self) -> None:
        """Open anew on next use, leaving the connections held now alone (in a forked process, closing
        them could disturb the parent's: SQLite may checkpoint its WAL away, Redis sockets would shut down)."""
        with self._lock:
            self._checkpointer = None
            self._records = None

    def close(self) -> None:
        """Close the checkpointer and the records this store opened."""
        cp, self._checkpointer = self._checkpointer, None
        close = getattr(cp, "close", None)
        if callable(close):
            close()
        rec, self._records = self._records, None
        if rec is not None:
            rec.close()
