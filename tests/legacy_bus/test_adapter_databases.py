"""Declared databases on every adapter, as on ``EventBus``: real on live dispatches (``Dispatch.writes``),
rolled back and captured in sandboxes, undeclared writes from a sandbox stopped before they run."""

from __future__ import annotations

from dataclasses import dataclass

import blinker
import pytest
from django.dispatch import Signal
from pyee import EventEmitter
from sqlalchemy import Integer, String, create_engine, insert, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from legacy_bus import Sandbox
from legacy_bus.adapters import blinker_bus, django_bus, message_bus, pyee_bus
from migration_errors import ConfigurationError

ADAPTERS = ("message_bus", "pyee_bus", "blinker_bus", "django_bus")


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    k: Mapped[str] = mapped_column(String(20), primary_key=True)
    v: Mapped[int] = mapped_column(Integer)


@dataclass(frozen=True)
class Put:
    k: str
    v: int


@pytest.fixture
def engines(tmp_path):
    """The declared database (two rows) and another one nobody declares."""
    out = []
    for name in ("items", "elsewhere"):
        engine = create_engine(f"sqlite:///{tmp_path / name}.db")
        Base.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(Item.__table__), [{"k": "a", "v": 1}, {"k": "b", "v": 2}])
        out.append(engine)
    yield out
    for engine in out:
        engine.dispose()


def table(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(Item.k, Item.v)).all())


def adapter_bus(kind: str, declared_engine, other_engine):
    """A bus of ``kind`` whose one handler, ``put``, upserts an item through the declared sessions,
    and whose ``stray`` handler (on ``k="stray"``) writes the undeclared database; and a root message."""
    holder: dict = {}

    def upsert(k: str, v: int) -> None:
        if k == "stray":
            with other_engine.begin() as conn:
                conn.execute(insert(Item.__table__).values(k=k, v=v))
            return
        with holder["sessions"]() as s:
            row = s.get(Item, k)
            if row is None:
                s.add(Item(k=k, v=v))
            else:
                row.v = v
            s.commit()

    if kind == "message_bus":

        def put(msg: Put) -> None:
            upsert(msg.k, msg.v)

        bus = message_bus("items", {Put: put})
        root = lambda k, v: bus.codec.to_event(Put(k, v))  # noqa: E731
    elif kind == "pyee_bus":
        ee = EventEmitter()

        @ee.on("put")
        def put(k, v):
            upsert(k, v)

        bus = pyee_bus(ee)
        root = lambda k, v: bus.codec.to_event(("put", (k, v), {}))  # noqa: E731
    else:
        sig = blinker.Namespace().signal("put") if kind == "blinker_bus" else Signal()

        def put(sender, k, v, **kw):
            upsert(k, v)

        sig.connect(put, weak=False)  # a local function: held strongly, as a module-level receiver would be
        bus = blinker_bus(sig) if kind == "blinker_bus" else django_bus(sig, names={sig: "put"})
        root = lambda k, v: bus.codec.to_event(("put", ("shop",), {"k": k, "v": v}))  # noqa: E731
    holder["sessions"] = bus.database("items", sessionmaker(declared_engine))
    return bus, root


@pytest.mark.parametrize("kind", ADAPTERS)
def test_a_live_dispatch_on_the_adapter_writes_for_real_and_lists_its_writes(kind, engines):
    bus, root = adapter_bus(kind, *engines)
    d = bus.dispatch(root("a", 10))
    assert table(engines[0]) == {"a": 10, "b": 2}
    [w] = [w for w in d.writes if w.op != "read"]
    assert (w.database, w.table, w.key, w.op, w.before, w.after, w.node) == (
        "items", "items", {"k": "a"}, "update", {"k": "a", "v": 1}, {"k": "a", "v": 10}, "put"
    )  # fmt: skip
    assert list(bus.databases) == ["items"]


@pytest.mark.parametrize("kind", ADAPTERS)
def test_a_sandboxed_dispatch_on_the_adapter_commits_nothing_and_lists_what_it_would_have_written(kind, engines):
    bus, root = adapter_bus(kind, *engines)
    d = bus.dispatch(root("c", 3), sandbox=Sandbox())
    assert table(engines[0]) == {"a": 1, "b": 2}
    assert [(w.op, w.key, w.after) for w in d.writes] == [("insert", {"k": "c"}, {"k": "c", "v": 3})]


@pytest.mark.parametrize("kind", ADAPTERS)
def test_an_undeclared_write_from_a_sandboxed_adapter_dispatch_is_stopped_before_it_runs_and_reported(kind, engines):
    bus, root = adapter_bus(kind, *engines)
    d = bus.dispatch(root("stray", 9), sandbox=Sandbox(), capture=True)
    assert table(engines[1]) == {"a": 1, "b": 2}  # never written
    [blocked] = [w for w in d.writes if w.op == "blocked"]
    assert (blocked.table, blocked.node) == ("items", "put") and blocked.statement.startswith("INSERT INTO items")
    assert type(d.exception).__name__ == "UndeclaredStateWrite"


def test_a_database_name_is_declared_once_per_adapter(engines):
    bus, _ = adapter_bus("message_bus", *engines)
    with pytest.raises(ConfigurationError, match="'items' is already declared on bus 'items'"):
        bus.database("items", engines[0])


@pytest.mark.parametrize("kind", ADAPTERS)
def test_the_async_dispatch_of_each_adapter_lists_the_same_writes_and_a_sandbox_still_commits_nothing(kind, engines):
    import asyncio

    bus, root = adapter_bus(kind, *engines)
    live = asyncio.run(bus.adispatch(root("a", 10)))
    sandboxed = asyncio.run(bus.adispatch(root("c", 3), sandbox=Sandbox()))
    assert [(w.op, w.key, w.after) for w in live.writes if w.op != "read"] == [("update", {"k": "a"}, {"k": "a", "v": 10})]
    assert [(w.op, w.key) for w in sandboxed.writes] == [("insert", {"k": "c"})]
    assert table(engines[0]) == {"a": 10, "b": 2}
