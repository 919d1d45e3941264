"""Declared state: the databases a bus's handlers read and write, made safe to run twice.

Handlers keep their SQLAlchemy code. The team declares, once, beside the
effect ports, what that code writes through::

    engine = create_engine("postgresql+psycopg://...")
    sessions = bus.database("inventory", sessionmaker(engine))   # or bus.database("inventory", engine)
    uow = SqlAlchemyUnitOfWork(session_factory=sessions)        # a repository / unit of work built on it

``bus.database`` returns a ``DeclaredSessions`` (called like the sessionmaker:
it returns a ``Session``) or, for an engine, a ``DeclaredEngine`` whose
``connect()`` / ``begin()`` / ``session()`` handlers use instead of the engine's.
Who is calling decides what a session touches:

* a live, authoritative dispatch (no sandbox active): the real database,
  untouched: the same Session the factory always made;
* inside a ``Sandbox`` (everything the migration runs itself: replay, compare,
  noise re-runs, shadow workers, the legacy shadow after cutover): a Session
  joined to one connection per sandbox and database, inside an outer
  transaction, each ``commit()`` releasing a SAVEPOINT (SQLAlchemy's documented
  "join a session into an external transaction" recipe,
  ``join_transaction_mode="create_savepoint"``). The outer transaction is
  rolled back when the sandbox exits: nothing is ever committed, and every
  sandboxed run starts from the committed state, the same for both paths.

Writes are read from the unit of work as it flushes (``after_flush``: each
inserted, updated or deleted mapped row, keyed by its primary key or the
``keys=`` declared, with the columns it changed, before and after), kept once
the session commits (a rolled-back flush is dropped), and attached to the
dispatch (``Dispatch.writes``) or the sandbox (``Sandbox.writes``) as
``RowWrite`` records: the comparator compares them per row and column.

A live dispatch also keeps the rows its sessions loaded, as they were loaded
(``op="read"``, the first ``MAX_READS``). ``rewind(sandbox, writes)`` gives a
sandbox what a real run already did for the event being compared (the live
legacy run, tapped; or the candidate serving after cutover): its transaction
first puts back the rows that run read as it read them and undoes its writes
(before-images, newest first), so the sandboxed path starts from the state
that run saw before the event.

A sandboxed statement that writes through any other connection (a database
nobody declared, or a declared engine used directly) is stopped before it
runs, by a ``before_cursor_execute`` listener on the ``Engine`` class (it sees
every statement of every engine): it raises ``UndeclaredStateWrite`` naming
the database, the statement and the handler, and is recorded on the sandbox
as a ``RowWrite`` with ``op="blocked"``.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from migration_errors import ConfigurationError, MigrationKitError, UndeclaredStateWrite

from legacy_bus.context import ACTIVE
from legacy_bus.effects import SANDBOX, Sandbox, register_database

__all__ = [
    "Database",
    "DatabasesMixin",
    "DeclaredEngine",
    "DeclaredSessions",
    "RowWrite",
    "StateCapture",
    "capturing",
    "dispatch_writes",
    "rewind",
]

WriteOp = Literal["insert", "update", "delete", "blocked", "read"]

MAX_READS = 1000  # rows one live run's loads are kept for (what a sandbox restores before comparing)

# The capture collecting the writes of the run in this context (a dispatch, a graph run).
_CAPTURE: ContextVar[StateCapture | None] = ContextVar("legacy_bus_state_capture", default=None)

_WRITE_SQL = re.compile(
    r"^\s*(?:WITH\b.*?\)\s*)?(INSERT|UPDATE|DELETE|MERGE|REPLACE|UPSERT|CREATE|DROP|ALTER|TRUNCATE|GRANT|REVOKE|COPY|VACUUM|REINDEX)\b",
    re.IGNORECASE | re.DOTALL,
)
_TABLE_OF = re.compile(
    r"^\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO|TRUNCATE(?:\s+TABLE)?|(?:CREATE|DROP|ALTER)\s+\w+(?:\s+IF\s+(?:NOT\s+)?EXISTS)?)\s+\"?([\w.]+)",
    re.IGNORECASE,
)


def is_write(statement: str) -> bool:
    """True for SQL that changes data or schema (DML, DDL); reads and transaction control are not."""
    return _WRITE_SQL.match(statement) is not None


@dataclass(frozen=True, slots=True)
class RowWrite:
    """One row a run wrote (or, ``op="blocked"``, a write it was stopped from making).

    ``key`` names the row (its primary key or the declared ``keys=``),
    ``before`` / ``after`` its column values (None: the row did not exist
    before / does not after), ``changed`` the columns the run set. A blocked
    write has ``statement`` (the SQL refused) and ``database`` the undeclared
    one. ``op="read"`` is a row a live run loaded, as it loaded it (``before``):
    not a write, kept so that a sandbox can start from what the live run saw.
    """

    database: str
    table: str
    key: dict[str, Any]
    op: WriteOp
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    changed: tuple[str, ...] = ()
    node: str | None = None
    statement: str | None = None

    @property
    def key_text(self) -> str:
        """The row's key as it appears in a difference's path: ``reference=b1`` (``a=1,b=x`` for several)."""
        return ",".join(f"{k}={v}" for k, v in self.key.items())

    def to_dict(self) -> dict[str, Any]:
        """The write as plain JSON data (what ``from_dict`` reads back)."""
        return {
            "database": self.database,
            "table": self.table,
            "key": _plain(self.key),
            "op": self.op,
            "before": _plain(self.before),
            "after": _plain(self.after),
            "changed": list(self.changed),
            "node": self.node,
            "statement": self.statement,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RowWrite:
        """Rebuild a write from ``to_dict``'s data (a stored record or a log line)."""
        return cls(
            database=str(data["database"]),
            table=str(data["table"]),
            key=dict(data.get("key") or {}),
            op=data["op"],
            before=data.get("before"),
            after=data.get("after"),
            changed=tuple(data.get("changed") or ()),
            node=data.get("node"),
            statement=data.get("statement"),
        )


def _plain(value: Any) -> Any:
    """Column values as JSON-ready data (dates, decimals, uuids as text), so both paths record the same shapes."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def merge_writes(writes: Iterable[RowWrite]) -> list[RowWrite]:
    """One record per row: the first before-image, the last after-image, every column changed, the first writer."""
    rows: dict[tuple[str, str, str], RowWrite] = {}
    out: list[tuple[str, str, str]] = []
    blocked: list[RowWrite] = []
    reads: dict[tuple[str, str, str], RowWrite] = {}
    for w in writes:
        if w.op == "blocked":
            blocked.append(w)
            continue
        if w.op == "read":
            reads.setdefault((w.database, w.table, w.key_text), w)  # the first load: before the run changed it
            continue
        k = (w.database, w.table, w.key_text)
        prev = rows.get(k)
        if prev is None:
            rows[k] = w
            out.append(k)
            continue
        if prev.before is None and w.after is None:  # inserted, then deleted: nothing remains
            del rows[k]
            out.remove(k)
            continue
        op: WriteOp = "insert" if prev.before is None else ("delete" if w.after is None else "update")
        changed = tuple(dict.fromkeys(prev.changed + w.changed))
        rows[k] = RowWrite(w.database, w.table, w.key, op, prev.before, w.after, changed, prev.node)
    return [rows[k] for k in out] + blocked + [r for k, r in reads.items() if k not in rows]


class StateCapture:
    """The writes one run made through declared databases (and the writes it was stopped from making)."""

    __slots__ = ("_lock", "reads", "writes")

    def __init__(self) -> None:
        self.writes: list[RowWrite] = []
        self.reads = 0
        self._lock = threading.Lock()  # graph nodes may flush from worker threads

    def add(self, writes: Iterable[RowWrite]) -> None:
        """Keep a flush's rows (reads only up to ``MAX_READS``); safe from several threads."""
        with self._lock:
            for w in writes:
                if w.op == "read":
                    if self.reads >= MAX_READS:
                        continue  # bounded: a run that loads a whole table keeps its first rows
                    self.reads += 1
                self.writes.append(w)

    def result(self) -> tuple[RowWrite, ...]:
        """The writes, one per row, in the order rows were first written (blocked ones last)."""
        with self._lock:
            return tuple(merge_writes(self.writes))


class capturing:
    """Collect the writes made in this context (``with capturing() as cap: ...; cap.result()``)."""

    __slots__ = ("capture", "_token")

    def __init__(self, capture: StateCapture | None = None) -> None:
        self.capture = capture if capture is not None else StateCapture()

    def __enter__(self) -> StateCapture:
        self._token = _CAPTURE.set(self.capture)
        return self.capture

    def __exit__(self, *exc: object) -> None:
        _CAPTURE.reset(self._token)


# -- sandbox state -----------------------------------------------------------------------------------


class SandboxState:
    """What one sandbox holds per declared database: a connection in an outer transaction, never committed."""

    __slots__ = ("_lock", "blocked", "capture", "connections", "rewinds")

    def __init__(self) -> None:
        self.connections: dict[str, tuple[Any, Any]] = {}  # database name -> (Connection, outer Transaction)
        self.rewinds: list[RowWrite] = []
        self.blocked: list[RowWrite] = []
        self.capture = StateCapture()
        self._lock = threading.Lock()

    def connection(self, db: Database) -> Any:
        """This sandbox's connection to ``db``: opened on first use, rewound, inside a transaction to roll back."""
        with self._lock:
            held = self.connections.get(db.name)
            if held is not None:
                return held[0]
            conn = db.engine.connect()
            conn.info[_OWNED] = db.name
            outer = _outer_transaction(conn)
            self.connections[db.name] = (conn, outer)
            mine = [w for w in self.rewinds if w.database == db.name]
            if mine:
                try:
                    db.undo(conn, mine)
                except Exception as exc:
                    raise MigrationKitError(
                        f"could not put database {db.name!r} back to the state before the event being compared "
                        f"({type(exc).__name__}: {exc}); a row the real run changed may since be referenced or changed by "
                        "later events (see README, State in a database: limits)"
                    ) from exc
        return conn

    def close(self) -> None:
        """Roll back every outer transaction and return the connections: nothing a sandboxed run wrote stays."""
        with self._lock:
            held, self.connections = list(self.connections.values()), {}
        for conn, outer in held:
            try:
                if outer.is_active:
                    outer.rollback()
            finally:
                raw = conn.connection.dbapi_connection
                if _PYSQLITE_LEVEL in conn.info:
                    raw.isolation_level = conn.info.pop(_PYSQLITE_LEVEL)
                conn.info.pop(_OWNED, None)
                conn.close()


_PYSQLITE_LEVEL = "migration_kit_pysqlite_isolation_level"


def _outer_transaction(conn: Any) -> Any:
    """Begin the transaction a sandbox rolls back, with working SAVEPOINTs on every driver.

    pysqlite begins transactions itself, only before DML, and so ignores
    SAVEPOINTs (a "released" savepoint would be committed). SQLAlchemy's
    documented remedy, applied to this one connection while the sandbox holds
    it: driver-level autocommit and an explicit ``BEGIN``.
    """
    if conn.dialect.name == "sqlite" and conn.dialect.driver == "pysqlite":
        raw = conn.connection.dbapi_connection
        conn.info[_PYSQLITE_LEVEL] = raw.isolation_level
        raw.isolation_level = None
        conn.exec_driver_sql("BEGIN")
        return conn.get_transaction()
    outer = conn.begin()
    if conn.dialect.name == "postgresql":
        # Sandboxes take row locks on production rows until they roll back. One sandbox per
        # database at a time (a transaction-scoped advisory lock) keeps two from deadlocking each
        # other; a short lock_timeout afterwards makes a sandbox, never a live transaction, give
        # up when the two wait on each other (it fires long before deadlock_timeout).
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{SERIAL_WAIT_MS}ms'")
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(k)s)", {"k": _advisory_key(conn)})
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
    return outer


SERIAL_WAIT_MS = 60_000  # how long a sandbox waits for another one on the same PostgreSQL database
LOCK_TIMEOUT_MS = 200  # how long a sandboxed statement waits for a row lock a live transaction holds


def _advisory_key(conn: Any) -> int:
    import hashlib

    name = f"migration-kit sandbox {conn.engine.url.database}"
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


_OWNED = "migration_kit_sandbox"  # Connection.info key: this connection belongs to a sandbox (its writes roll back)


def sandbox_state(sandbox: Sandbox, *, create: bool = True) -> SandboxState | None:
    """The database state of a sandbox (made on first use)."""
    state = sandbox.state
    if state is None and create:
        state = sandbox.state = SandboxState()
    return state


def rewind(sandbox: Sandbox, writes: Iterable[RowWrite]) -> Sandbox:
    """Make ``sandbox`` start from the state before ``writes`` (committed by a real run of the same event).

    Each declared database the sandboxed run opens first undoes those rows, newest
    first, inside its transaction (rolled back with it). Returns the sandbox.
    """
    mine = [w for w in writes if w.op != "blocked"]
    if mine:
        state = sandbox_state(sandbox)
        assert state is not None
        state.rewinds.extend(mine)
    return sandbox


def sandbox_writes(sandbox: Sandbox) -> tuple[RowWrite, ...]:
    """The writes a sandboxed run made through declared databases, and those it was stopped from making."""
    state = sandbox_state(sandbox, create=False)
    if state is None:
        return ()
    return state.capture.result() + tuple(state.blocked)


# -- declarations ----------------------------------------------------------------------------------------


class Database:
    """A declared database: a name, its engine, how rows are keyed.

    Args:
        name: the label writes and reports use.
        engine: a SQLAlchemy ``Engine``.
        keys: per table, the columns naming a row when its primary key is
            generated (a sequence is not transactional: two paths inserting
            the same row get different ids): ``{"batches": ("reference",)}``.
    """

    def __init__(self, name: str, engine: Any, *, keys: Mapping[str, Iterable[str]] | None = None) -> None:
        self.name = name
        self.engine = engine
        self.keys = {t: tuple(cols) for t, cols in (keys or {}).items()}
        self._tables: dict[str, Any] = {}
        install_guard()

    def __repr__(self) -> str:
        return f"<Database {self.name!r} {self.engine.url.render_as_string(hide_password=True)}>"

    def connection(self) -> Any | None:
        """The active sandbox's connection to this database, or None on a live (real) dispatch."""
        sandbox = SANDBOX.get()
        if sandbox is None:
            return None
        state = sandbox_state(sandbox)
        assert state is not None
        return state.connection(self)

    def key_of(self, table: Any, values: Mapping[str, Any], pk: Iterable[str]) -> dict[str, Any]:
        """A row's identity: the columns declared in ``keys=`` for its table, else its primary key."""
        cols = self.keys.get(table.name) or tuple(pk)
        return {c: _plain(values.get(c)) for c in cols}

    def table(self, conn: Any, name: str) -> Any:
        """The ``Table`` named ``name`` (seen in a flush, else reflected once)."""
        t = self._tables.get(name)
        if t is None:
            from sqlalchemy import MetaData, Table

            t = self._tables[name] = Table(name, MetaData(), autoload_with=conn)
        return t

    def undo(self, conn: Any, writes: list[RowWrite]) -> None:
        """Put back, on ``conn`` (inside a sandbox's transaction), the rows as a real run found them.

        Rows it read get the values it read; rows it wrote their before-images
        (a row it inserted is deleted), newest write first, so the first
        before-image of each row wins.
        """
        from sqlalchemy import and_, delete

        written = {(w.table, w.key_text) for w in writes if w.op != "read"}
        for w in writes:
            if w.op == "read" and (w.table, w.key_text) not in written and w.before is not None:
                self._put(conn, w.table, w.key, w.before)
        for w in reversed([w for w in writes if w.op != "read"]):
            if w.before is None:
                t = self.table(conn, w.table)
                conn.execute(delete(t).where(and_(*(t.c[c] == v for c, v in w.key.items()))))
            else:
                self._put(conn, w.table, w.key, w.before)

    def _put(self, conn: Any, table: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        """Make the row ``key`` hold ``values``: update it, or insert it when it is gone."""
        from sqlalchemy import and_, insert, update

        t = self.table(conn, table)
        cols = {c: v for c, v in values.items() if c in t.c}
        done = conn.execute(update(t).where(and_(*(t.c[c] == v for c, v in key.items()))).values(**cols))
        if done.rowcount == 0:
            conn.execute(insert(t).values(**cols))

    def remember(self, table: Any) -> None:
        """Keep a ``Table`` seen in a flush, so rewinding it needs no reflection."""
        self._tables.setdefault(table.name, table)


class DeclaredSessions:
    """A declared session factory: called like the ``sessionmaker`` it wraps.

    Live, it returns the factory's own ``Session``. In a sandbox it returns a
    Session of the same class and options, joined to the sandbox's connection
    with ``join_transaction_mode="create_savepoint"``: ``commit()`` releases a
    savepoint, and the sandbox rolls the outer transaction back.
    """

    def __init__(self, database: Database, factory: Any) -> None:
        self.database = database
        self.factory = factory

    def __repr__(self) -> str:
        return f"<DeclaredSessions {self.database.name!r}>"

    def __call__(self, **kw: Any) -> Any:
        conn = self.database.connection()
        if conn is None:
            session = self.factory(**kw)
        else:
            session = self.factory(bind=conn, join_transaction_mode="create_savepoint", **kw)
        session.info[_DECLARED] = self.database
        return session

    @contextmanager
    def begin(self) -> Iterator[Any]:
        """``with sessions.begin() as session:``, as ``sessionmaker.begin()``: committed on success, else rolled back."""
        with self() as session, session.begin():
            yield session


class DeclaredEngine:
    """A declared engine: ``connect()``, ``begin()`` and ``session()`` for handlers to use instead of the engine's.

    Live they are the engine's own. In a sandbox ``connect()`` and ``begin()``
    give the sandbox's connection inside a SAVEPOINT (released on success,
    rolled back on error; the outer transaction is rolled back by the sandbox),
    and ``session()`` a Session joined to it. Other attributes are the engine's.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self.engine = database.engine
        from sqlalchemy.orm import sessionmaker

        self._sessions = DeclaredSessions(database, sessionmaker(self.engine))

    def __repr__(self) -> str:
        return f"<DeclaredEngine {self.database.name!r}>"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def session(self, **kw: Any) -> Any:
        """A Session on this database (live: the engine's; sandboxed: joined to the sandbox's transaction)."""
        return self._sessions(**kw)

    def connect(self) -> Any:
        """A connection for the handler: the engine's when live, the sandbox's (in a SAVEPOINT) when sandboxed."""
        conn = self.database.connection()
        return self.engine.connect() if conn is None else _SavepointConnection(conn)

    def begin(self) -> Any:
        """``engine.begin()`` for the handler: live, the engine's; sandboxed, a SAVEPOINT on the sandbox's connection."""
        conn = self.database.connection()
        return self.engine.begin() if conn is None else _SavepointConnection(conn, begin=True)


class _SavepointConnection:
    """The sandbox's connection, behaving as a handler's own connection would: its work in a SAVEPOINT.

    ``commit()`` releases the savepoint (the work stays in the sandbox's
    transaction, rolled back with it) and starts the next one; ``rollback()``
    undoes only this connection's work; leaving a ``connect()`` block without
    committing discards it, as closing a real connection would. The sandbox's
    outer transaction is never touched.
    """

    __slots__ = ("_begin", "_conn", "_nested")

    def __init__(self, conn: Any, *, begin: bool = False) -> None:
        self._conn = conn
        self._begin = begin  # engine.begin(): committed when the block succeeds
        self._nested = conn.begin_nested()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __enter__(self) -> _SavepointConnection:
        return self

    def __exit__(self, exc_type: Any, *rest: object) -> None:
        if self._nested.is_active:
            (self._nested.commit if self._begin and exc_type is None else self._nested.rollback)()

    def begin(self) -> Any:
        """``engine.begin()`` for the handler: live, the engine's; sandboxed, a SAVEPOINT on the sandbox's connection."""
        return self._conn.begin_nested()

    def commit(self) -> None:
        if self._nested.is_active:
            self._nested.commit()
        self._nested = self._conn.begin_nested()

    def rollback(self) -> None:
        if self._nested.is_active:
            self._nested.rollback()
        self._nested = self._conn.begin_nested()

    def close(self) -> None:
        """Discard what was not committed; the sandbox closes the connection itself."""
        if self._nested.is_active:
            self._nested.rollback()


def declare(name: str, target: Any, *, keys: Mapping[str, Iterable[str]] | None = None) -> tuple[Database, Any]:
    """The ``Database`` and the handle handlers use for ``target`` (an Engine or a sessionmaker)."""
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import sessionmaker

    if type(target).__module__.startswith("sqlalchemy.ext.asyncio"):  # not imported: it needs greenlet
        raise ConfigurationError(
            f"database({name!r}, ...): asyncio engines and session factories cannot be sandboxed yet; declare the "
            "sync engine (AsyncEngine.sync_engine) or run the migration with a sync session factory"
        )
    if isinstance(target, Engine):
        db = Database(name, target, keys=keys)
        return db, DeclaredEngine(db)
    if isinstance(target, sessionmaker):
        bind = target.kw.get("bind")
        if not isinstance(bind, Engine):
            raise ConfigurationError(
                f"database({name!r}, sessionmaker(...)): the session factory must be bound to an Engine "
                f"(sessionmaker(engine)), not {type(bind).__name__}"
            )
        db = Database(name, bind, keys=keys)
        return db, DeclaredSessions(db, target)
    raise ConfigurationError(
        f"database({name!r}, ...) takes a SQLAlchemy Engine or a sessionmaker bound to one, not {type(target).__name__}; "
        "build a repository or unit of work on the handle it returns"
    )


class DatabasesMixin:
    """``database`` / ``databases`` for any bus (``EventBus`` and every adapter); needs ``name``."""

    name: str

    def database(self, name: str, target: Any, *, keys: Mapping[str, Iterable[str]] | None = None) -> Any:
        """Declare the database handlers read and write: a SQLAlchemy ``Engine`` or ``sessionmaker``.

        Returns what handlers (or the repository / unit of work they use)
        should use instead: a ``DeclaredSessions`` factory for a sessionmaker,
        a ``DeclaredEngine`` for an engine. Live dispatches get the real
        database; sandboxed runs a transaction that is rolled back, and their
        writes are captured. ``keys`` names, per table, the columns that
        identify a row when its primary key is generated.
        """
        declared = self._declared()
        if name in declared:
            raise ConfigurationError(f"a database named {name!r} is already declared on bus {self.name!r}")
        db, handle = declare(name, target, keys=keys)
        declared[name] = db
        return handle

    @property
    def databases(self) -> dict[str, Database]:
        """The declared databases, by name."""
        return dict(self._declared())

    def _declared(self) -> dict[str, Database]:
        # Set on first use, so a bus class needs no constructor change to declare databases.
        return self.__dict__.setdefault("_databases", {})


class dispatch_writes:
    """Collect one dispatch's writes through declared databases: ``with dispatch_writes(bus, sandbox) as writes:``.

    ``writes`` is None on a live dispatch of a bus that declared none, else a
    callable giving the ``RowWrite``s (in a sandbox: what it wrote and what it
    was stopped from writing to undeclared databases), read after the block.
    """

    __slots__ = ("bus", "capture", "sandbox")

    def __init__(self, bus: Any, sandbox: Sandbox | None) -> None:
        self.bus = bus
        self.sandbox = sandbox
        self.capture: capturing | None = None

    def __enter__(self) -> Any:
        sandbox = self.sandbox if self.sandbox is not None else SANDBOX.get()
        if sandbox is not None:
            return lambda: sandbox.writes
        if not getattr(self.bus, "_databases", None):
            return None
        self.capture = capturing()
        return self.capture.__enter__().result

    def __exit__(self, *exc: object) -> None:
        if self.capture is not None:
            self.capture.__exit__(*exc)


# -- listeners -------------------------------------------------------------------------------------------

_DECLARED = "migration_kit_database"  # Session.info key: the declared Database this session writes
_PENDING = "migration_kit_pending"  # Session.info key: writes flushed, not yet committed
_GUARD_LOCK = threading.Lock()
_installed = False


def install_guard() -> None:
    """Listen, once per process, to every engine's statements and every session's flushes."""
    global _installed
    if _installed:  # every sandbox asks: answered without the lock once installed
        return
    with _GUARD_LOCK:
        if _installed:
            return
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.orm import Session

        event.listen(Engine, "before_cursor_execute", _guard)
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)
        from sqlalchemy.orm import Mapper

        event.listen(Mapper, "load", _after_load)
        _installed = True


def _guard(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    """Stop a sandboxed write through a connection no sandbox owns, before it runs."""
    sandbox = SANDBOX.get()
    if sandbox is None or conn.info.get(_OWNED) is not None or not is_write(statement):
        return
    active = ACTIVE.get()
    node = None if active is None else active.node
    url = conn.engine.url.render_as_string(hide_password=True)
    m = _TABLE_OF.match(statement)
    blocked = RowWrite(url, m.group(1) if m else "?", {}, "blocked", node=node, statement=" ".join(statement.split())[:500])
    state = sandbox_state(sandbox)
    assert state is not None
    state.blocked.append(blocked)
    raise UndeclaredStateWrite(
        f"a sandboxed run tried to write {url}, which no bus declared, in handler {node or '<outside a handler>'!r}: "
        f"{blocked.statement}; it was stopped before the write. Declare it beside the effect ports "
        "(bus.database(name, engine or sessionmaker)) and build the repository on what that returns",
        database=url,
        statement=blocked.statement or "",
        node=node,
    )


def _after_flush(session: Any, flush_context: Any) -> None:
    db = session.info.get(_DECLARED)
    if db is None:
        return
    from sqlalchemy import inspect

    active = ACTIVE.get()
    node = None if active is None else active.node
    pending = session.info.setdefault(_PENDING, [])
    for obj, op in [(o, "insert") for o in session.new] + [(o, "update") for o in session.dirty] + [
        (o, "delete") for o in session.deleted
    ]:
        state = inspect(obj)
        mapper = state.mapper
        table = mapper.local_table
        db.remember(table)
        current: dict[str, Any] = {}
        before: dict[str, Any] = {}
        changed: list[str] = []
        for prop in mapper.column_attrs:
            col = prop.columns[0]
            if col.table is not table:
                continue
            hist = state.attrs[prop.key].history
            value = state.dict.get(prop.key)
            current[col.name] = value
            if hist.has_changes():
                changed.append(col.name)
                before[col.name] = hist.deleted[0] if hist.deleted else None
            else:
                before[col.name] = value
        if op == "update" and not changed:
            continue
        pk = [c.name for c in mapper.primary_key if c.table is table]
        key = db.key_of(table, before if op == "delete" else current, pk)
        if op == "insert":
            pending.append(RowWrite(db.name, table.name, key, "insert", None, _plain(current), tuple(current), node))
        elif op == "delete":
            pending.append(RowWrite(db.name, table.name, key, "delete", _plain(before), None, (), node))
        else:
            pending.append(RowWrite(db.name, table.name, key, "update", _plain(before), _plain(current), tuple(changed), node))


def _after_load(target: Any, context: Any) -> None:
    """On a live dispatch, remember each row as it was loaded (what a sandbox later starts from)."""
    capture = _CAPTURE.get()
    if capture is None or SANDBOX.get() is not None:
        return
    db = context.session.info.get(_DECLARED)
    if db is None:
        return
    from sqlalchemy import inspect

    state = inspect(target)
    mapper = state.mapper
    table = mapper.local_table
    values = {p.columns[0].name: state.dict.get(p.key) for p in mapper.column_attrs if p.columns[0].table is table}
    pk = [c.name for c in mapper.primary_key if c.table is table]
    active = ACTIVE.get()
    row = _plain(values)
    capture.add((RowWrite(db.name, table.name, db.key_of(table, values, pk), "read", row, row, (), None if active is None else active.node),))


def _after_commit(session: Any) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    capture = _CAPTURE.get()
    sandbox = SANDBOX.get()
    if sandbox is not None:
        state = sandbox_state(sandbox)
        assert state is not None
        state.capture.add(pending)
    elif capture is not None:
        capture.add(pending)


def _after_rollback(session: Any) -> None:
    session.info.pop(_PENDING, None)


register_database(sys.modules[__name__])
