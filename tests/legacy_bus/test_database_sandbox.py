"""Declared databases on the EventBus: real on live dispatches, rolled back and captured in sandboxes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Integer, String, create_engine, insert, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from legacy_bus import Event, EventBus, Sandbox
from legacy_bus.database import DeclaredEngine, DeclaredSessions, RowWrite, rewind
from migration_errors import ConfigurationError, UndeclaredStateWrite


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    k: Mapped[str] = mapped_column(String(20), primary_key=True)
    v: Mapped[int] = mapped_column(Integer)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'items.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(Item.__table__), [{"k": "a", "v": 1}, {"k": "b", "v": 2}])
    yield engine
    engine.dispose()


def table(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(Item.k, Item.v)).all())


def item_bus(engine) -> tuple[EventBus, DeclaredSessions]:
    bus = EventBus("items")
    sessions = bus.database("items", sessionmaker(engine))

    @bus.on("Put")
    def put(event):
        with sessions() as s:
            row = s.get(Item, event.payload["k"])
            if row is None:
                s.add(Item(k=event.payload["k"], v=event.payload["v"]))
            else:
                row.v = event.payload["v"]
            s.commit()

    @bus.on("Drop")
    def drop(event):
        with sessions() as s:
            s.delete(s.get(Item, event.payload["k"]))
            s.commit()

    return bus, sessions


def test_a_live_dispatch_writes_for_real_and_lists_its_writes(engine):
    bus, _ = item_bus(engine)
    d = bus.publish("Put", {"k": "a", "v": 10})
    assert table(engine) == {"a": 10, "b": 2}
    [w] = [w for w in d.writes if w.op != "read"]
    assert (w.database, w.table, w.key, w.op, w.before, w.after, w.changed, w.node) == (
        "items", "items", {"k": "a"}, "update", {"k": "a", "v": 1}, {"k": "a", "v": 10}, ("v",), "put"
    )  # fmt: skip
    assert [r.key for r in d.writes if r.op == "read"] == []  # a row it wrote is described by its write


def test_a_live_dispatch_lists_the_rows_it_read_as_it_read_them(engine):
    bus, sessions = item_bus(engine)

    @bus.on("Look")
    def look(event):
        with sessions() as s:
            return Event(type="Seen", payload={"v": s.get(Item, "b").v})

    d = bus.publish("Look", {})
    assert [(w.op, w.key, w.before) for w in d.writes] == [("read", {"k": "b"}, {"k": "b", "v": 2})]
    assert bus.dispatch(Event(type="Look", payload={}), sandbox=Sandbox()).writes == ()  # a sandbox needs no reads


def test_a_sandboxed_dispatch_commits_nothing_and_lists_the_rows_it_would_have_written(engine):
    bus, _ = item_bus(engine)
    d1 = bus.dispatch(Event(type="Put", payload={"k": "c", "v": 3}), sandbox=Sandbox())
    d2 = bus.dispatch(Event(type="Drop", payload={"k": "b"}), sandbox=Sandbox())
    assert table(engine) == {"a": 1, "b": 2}
    assert [(w.op, w.key, w.before, w.after) for w in d1.writes] == [("insert", {"k": "c"}, None, {"k": "c", "v": 3})]
    assert [(w.op, w.key, w.before, w.after) for w in d2.writes] == [("delete", {"k": "b"}, {"k": "b", "v": 2}, None)]


def test_each_sandbox_starts_from_the_committed_state_whatever_another_sandbox_wrote(engine):
    bus, sessions = item_bus(engine)
    seen = []

    @bus.on("Look")
    def look(event):
        with sessions() as s:
            seen.append(s.get(Item, "a").v)

    for _ in range(2):
        with Sandbox():
            bus.publish("Put", {"k": "a", "v": 99})
            bus.publish("Look", {})  # inside one sandbox its own writes are visible
        bus.dispatch(Event(type="Look", payload={}), sandbox=Sandbox())
    assert seen == [99, 1, 99, 1]
    assert table(engine) == {"a": 1, "b": 2}


def test_a_declared_engines_connect_and_begin_are_savepoints_inside_a_sandbox(engine):
    bus = EventBus("core")
    db = bus.database("items", engine)
    assert isinstance(db, DeclaredEngine) and db.dialect is engine.dialect

    @bus.on("Bump")
    def bump(event):
        with db.begin() as conn:
            conn.execute(text("UPDATE items SET v = v + 1 WHERE k = 'a'"))
        with db.connect() as conn:
            assert conn.execute(text("SELECT v FROM items WHERE k = 'a'")).scalar_one() == 2
            conn.execute(text("UPDATE items SET v = v + 1 WHERE k = 'b'"))
            conn.commit()
            conn.execute(text("UPDATE items SET v = v + 100"))
            conn.rollback()  # undoes its own work only, as on a real connection
        with db.connect() as conn:
            conn.execute(text("UPDATE items SET v = v + 1000"))  # left without commit: discarded
        with db.connect() as conn:
            assert dict(conn.execute(text("SELECT k, v FROM items")).all()) == {"a": 2, "b": 3}
        with db.session() as s:
            s.add(Item(k="z", v=26))
            s.commit()

    d = bus.dispatch(Event(type="Bump", payload={}), sandbox=Sandbox(), capture=True)
    assert d.error is None, d.error
    assert table(engine) == {"a": 1, "b": 2}
    assert [(w.op, w.key) for w in d.writes] == [("insert", {"k": "z"})]  # SQL run directly is isolated, not listed
    bus.publish("Bump", {})
    assert table(engine) == {"a": 2, "b": 3, "z": 26}


def test_sessions_begin_commits_live_and_is_rolled_back_in_a_sandbox(engine):
    bus, sessions = item_bus(engine)

    @bus.on("Add")
    def add(event):
        with sessions.begin() as s:
            s.add(Item(k=event.payload["k"], v=0))

    assert [w.op for w in bus.dispatch(Event(type="Add", payload={"k": "s"}), sandbox=Sandbox()).writes] == ["insert"]
    assert table(engine) == {"a": 1, "b": 2}
    bus.publish("Add", {"k": "live"})
    assert table(engine) == {"a": 1, "b": 2, "live": 0}


def test_a_unit_of_work_rolled_back_after_a_flush_lists_no_write(engine):
    bus, sessions = item_bus(engine)

    @bus.on("Try")
    def attempt(event):
        with sessions() as s:
            s.add(Item(k="t", v=0))
            s.flush()
            s.rollback()

    assert bus.dispatch(Event(type="Try", payload={}), sandbox=Sandbox()).writes == ()
    assert bus.publish("Try", {}).writes == ()
    assert table(engine) == {"a": 1, "b": 2}


def test_rewind_starts_a_sandbox_from_before_a_real_run_without_touching_the_real_rows(engine):
    bus, sessions = item_bus(engine)
    real = bus.publish("Put", {"k": "a", "v": 50}).writes + bus.publish("Drop", {"k": "b"}).writes + bus.publish("Put", {"k": "n", "v": 7}).writes
    assert table(engine) == {"a": 50, "n": 7}
    seen = {}

    @bus.on("Snapshot")
    def snapshot(event):
        with sessions() as s:
            seen.update(dict(s.execute(select(Item.k, Item.v)).all()))

    bus.dispatch(Event(type="Snapshot", payload={}), sandbox=rewind(Sandbox(), real))
    assert seen == {"a": 1, "b": 2}
    assert table(engine) == {"a": 50, "n": 7}


def test_a_write_through_an_undeclared_engine_in_a_sandbox_is_stopped_before_it_runs(engine):
    bus = EventBus("raw")

    @bus.on("Raw")
    def raw(event):
        with engine.begin() as conn:  # the engine itself: not what the bus declared
            conn.execute(text("INSERT INTO items (k, v) VALUES ('x', 9)"))

    sandbox = Sandbox()
    d = bus.dispatch(Event(type="Raw", payload={}), sandbox=sandbox, capture=True)
    assert d.error is not None and d.error.type == "migration_errors.UndeclaredStateWrite"
    assert "'raw'" in d.error.message and "INSERT INTO items (k, v) VALUES ('x', 9)" in d.error.message
    [w] = d.writes
    assert (w.op, w.table, w.node, w.statement) == ("blocked", "items", "raw", "INSERT INTO items (k, v) VALUES ('x', 9)")
    assert w.database == engine.url.render_as_string(hide_password=True)  # passwords are never reported
    assert table(engine) == {"a": 1, "b": 2}
    with pytest.raises(UndeclaredStateWrite) as err:
        with Sandbox():
            raw(None)
    assert err.value.statement.startswith("INSERT INTO items") and err.value.node is None
    bus.publish("Raw", {})  # live: real, untouched
    assert table(engine) == {"a": 1, "b": 2, "x": 9}


def test_reads_outside_a_sandbox_are_never_blocked_and_reads_inside_one_are_allowed(engine):
    with Sandbox():
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM items")).scalar_one() == 2


def test_what_cannot_be_sandboxed_is_refused_at_declaration(engine):
    bus = EventBus("bad")
    with pytest.raises(ConfigurationError, match="takes a SQLAlchemy Engine or a sessionmaker"):
        bus.database("x", object())
    with pytest.raises(ConfigurationError, match=r"must be bound to an Engine \(sessionmaker\(engine\)\)"):
        bus.database("y", sessionmaker())
    bus.database("items", sessionmaker(engine))
    with pytest.raises(ConfigurationError, match="already declared"):
        bus.database("items", engine)


def test_a_row_write_round_trips_through_its_dict():
    w = RowWrite("inv", "batches", {"reference": "b1"}, "update", {"q": 1}, {"q": 2}, ("q",), "allocate")
    assert RowWrite.from_dict(w.to_dict()) == w and w.key_text == "reference=b1"


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from("abcd"), st.integers(0, 9)),
        st.tuples(st.just("drop"), st.sampled_from("abcd"), st.just(0)),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_the_writes_of_any_sandboxed_run_turn_the_state_before_into_the_state_it_saw_and_commit_nothing(tmp_path, ops):
    """For every sequence of unit-of-work commits: production is unchanged, and the merged writes are the difference."""
    engine = _property_engine(tmp_path)
    bus, sessions = item_bus(engine)
    end: dict[str, int] = {}

    @bus.on("Run")
    def run(event):
        for op, k, v in ops:
            with sessions() as s:
                row = s.get(Item, k)
                if op == "put" and row is None:
                    s.add(Item(k=k, v=v))
                elif op == "put":
                    row.v = v
                elif row is not None:
                    s.delete(row)
                s.commit()
        with sessions() as s:
            end.update(dict(s.execute(select(Item.k, Item.v)).all()))

    before = table(engine)
    d = bus.dispatch(Event(type="Run", payload={}), sandbox=Sandbox())
    assert table(engine) == before
    state = {k: {"k": k, "v": v} for k, v in before.items()}
    for w in d.writes:
        assert w.before == state.get(w.key["k"])  # each row's first before-image is the state before the run
        if w.after is None:
            state.pop(w.key["k"])
        else:
            state[w.key["k"]] = w.after
    assert {k: r["v"] for k, r in state.items()} == end


_ENGINES: dict[str, object] = {}


def _property_engine(tmp_path):
    """One SQLite file for all examples (reset per example): hypothesis reuses the function's tmp_path."""
    engine = _ENGINES.get(str(tmp_path))
    if engine is None:
        engine = _ENGINES[str(tmp_path)] = create_engine(f"sqlite:///{tmp_path / 'prop.db'}")
        Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM items"))
        conn.execute(insert(Item.__table__), [{"k": "a", "v": 1}, {"k": "b", "v": 2}])
    return engine
