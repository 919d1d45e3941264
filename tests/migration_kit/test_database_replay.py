"""Replays and comparisons of a service whose state is in a database (SQLite file and PostgreSQL).

Acceptance: a changed handler is caught with noise learning on, localized to it, its divergent
writes listed with both values, while an identical candidate shows parity; an undeclared write
from a sandboxed path is blocked and reported; a replay of recorded events adds no rows; noise
re-runs start from the same rows, so a real change is never learned as noise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph_flows import flow_from_bus
from legacy_bus import Event, EventLog
from migration_errors import UnisolatedNoiseLearning
from migration_kit import Comparator, Migration
from migration_kit.compare.comparator import Kind

sys.path.insert(0, str(Path(__file__).resolve().parent))
import db_app  # noqa: E402


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    """A fresh database: a SQLite file, or a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inventory.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def app(db_url):
    app = db_app.build(db_url)
    app.create("lamp-1", "LAMP", 12)
    app.create("lamp-2", "LAMP", 30)
    app.create("chair-1", "CHAIR", 4)
    yield app
    app.engine.dispose()


def allocations(n: int) -> list[Event]:
    return [Event(type="Allocate", payload={"orderid": f"o{i}", "sku": ("LAMP", "CHAIR")[i % 2], "qty": 1 + i % 4}) for i in range(n)]


def write_log(path: Path, events: list[Event]) -> Path:
    EventLog(path).write(events)
    return path


def test_an_identical_candidate_shows_parity_with_noise_learning_on_and_the_replay_adds_no_rows(app, tmp_path):
    before = db_app.rows(app.engine)
    log = write_log(tmp_path / "events.jsonl", allocations(24))
    m = Migration("allocation", legacy=app.bus, candidate=flow_from_bus(app.bus))
    report = m.replay(log)
    assert (report.total, report.divergent, report.errors) == (24, 0, 0)
    assert m.noise.keys("Allocate") == frozenset()  # both legacy runs of every sample saw the same rows
    assert db_app.rows(app.engine) == before


def test_a_changed_handler_is_caught_with_noise_learning_on_localized_with_both_values_of_its_writes(app, tmp_path):
    before = db_app.rows(app.engine)
    events = [e for e in allocations(20) if e.payload["sku"] == "LAMP"]
    m = Migration("allocation", legacy=app.bus, candidate=flow_from_bus(app.bus).replace("allocate", db_app.v2_allocate(app)))
    seen = []
    report = m.replay(events, on_result=lambda c, _: seen.append(c))
    assert report.divergent == report.total == len(events)
    assert report.by_node == {"allocate": len(events)}  # not the read model, whose write differs downstream of it
    c = seen[0]
    o = c.event.payload["orderid"]
    diffs = {d.path: d for d in c.differences}
    assert diffs[f"writes.allocations[orderid={o},sku=LAMP].batchref"].kind == Kind.WRITE_CHANGED
    assert (diffs[f"writes.allocations[orderid={o},sku=LAMP].batchref"].legacy, diffs[f"writes.allocations[orderid={o},sku=LAMP].batchref"].candidate) == ("lamp-1", "lamp-2")
    view = diffs[f"writes.allocations_view[orderid={o},sku=LAMP].batchref"]
    assert (view.kind, view.node, view.legacy, view.candidate) == (Kind.WRITE_CHANGED, "add_allocation_to_read_model", "lamp-1", "lamp-2")
    missing, extra = diffs["writes.batches[reference=lamp-1]"], diffs["writes.batches[reference=lamp-2]"]
    assert (missing.kind, missing.legacy["row"]["allocated_quantity"], missing.candidate) == (Kind.WRITE_MISSING, c.event.payload["qty"], None)
    assert (extra.kind, extra.legacy, extra.candidate["row"]["allocated_quantity"]) == (Kind.WRITE_EXTRA, None, c.event.payload["qty"])
    assert c.first_divergent_node == "allocate"
    groups = {(g.node, g.kind, g.path): g.count for g in report.groups}  # one group per table and column, not per row
    assert groups[("allocate", Kind.WRITE_CHANGED, "writes.allocations[*].batchref")] == len(events)
    assert groups[("allocate", Kind.WRITE_CHANGED, "writes.allocations_view[*].batchref")] == len(events)
    assert not any(k.startswith("writes.") or "batchref" in k for k in m.noise.keys("Allocate"))
    assert db_app.rows(app.engine) == before


def test_a_write_only_change_is_blamed_on_the_node_that_wrote_it():
    """When events and calls agree, the first node whose own writes differ is the divergent one."""
    import tempfile

    url = f"sqlite:///{tempfile.mkdtemp()}/w.db"
    app = db_app.build(url)
    app.create("lamp-1", "LAMP", 12)

    def view_v2(event):
        p = event.payload
        with app.uow:
            app.uow.session.add(db_app.AllocationView(orderid=p["orderid"], sku=p["sku"], batchref=p["batchref"].upper()))
            app.uow.commit()

    m = Migration("allocation", legacy=app.bus, candidate=flow_from_bus(app.bus).replace("add_allocation_to_read_model", view_v2))
    c = m.compare(Event(type="Allocate", payload={"orderid": "o1", "sku": "LAMP", "qty": 2}))
    assert [(d.path, d.kind, d.legacy, d.candidate) for d in c.differences] == [
        ("writes.allocations_view[orderid=o1,sku=LAMP].batchref", Kind.WRITE_CHANGED, "lamp-1", "LAMP-1")
    ]
    assert c.first_divergent_node == "add_allocation_to_read_model"
    app.engine.dispose()


def test_a_replay_of_recorded_events_adds_no_rows_to_any_table(app, tmp_path):
    before = db_app.rows(app.engine)
    counts = db_app.counts(app.engine)
    log = write_log(tmp_path / "events.jsonl", allocations(30))
    m = Migration("allocation", legacy=app.bus, candidate=flow_from_bus(app.bus), comparator=Comparator(noise=False))
    report = m.replay(log)
    assert (report.total, report.divergent) == (30, 0)
    assert db_app.counts(app.engine) == counts == {"batches": 3, "order_lines": 0, "allocations": 0, "allocations_view": 0}
    assert db_app.rows(app.engine) == before


def test_noise_reruns_start_from_the_same_rows_so_allocated_vs_out_of_stock_is_not_learned_as_noise(app):
    # The issue: re-runs on shared state. Two real runs of one Allocate differ (the first takes the
    # last chair), which is what the noise re-runs saw when they wrote to the same database.
    order = Event(type="Allocate", payload={"orderid": "o-last", "sku": "CHAIR", "qty": 4})
    before = db_app.rows(app.engine)
    m = Migration("allocation", legacy=app.bus, candidate=flow_from_bus(app.bus))
    seen = [m.compare(order) for _ in range(3)]
    assert all(not c.divergent for c in seen)
    assert [c.legacy.emitted[0].type for c in seen] == ["Allocated"] * 3
    assert m.noise.samples["Allocate"] == 3 and m.noise.keys("Allocate") == frozenset()
    # A real change on that same event (v2 keeps a safety stock of one) is reported, not learned away.
    def allocate_keeping_one(event):
        with app.uow:
            fits = [b for b in app.uow.batches.for_sku(event.payload["sku"]) if b.available > event.payload["qty"]]
        return Event(type="OutOfStock", payload={k: event.payload[k] for k in ("orderid", "sku")}) if not fits else None

    v2 = Migration("allocation-v2", legacy=app.bus, candidate=flow_from_bus(app.bus).replace("allocate", allocate_keeping_one))
    c = v2.compare(order)
    assert c.divergent and c.first_divergent_node == "allocate"
    assert any(d.path == "emitted[0].type" and (d.legacy, d.candidate) == ("Allocated", "OutOfStock") for d in c.differences)
    assert "emitted<allocate:Allocated>.type" not in v2.noise.keys("Allocate")
    assert db_app.rows(app.engine) == before
    # Run for real twice, the same event differs: the drift the isolated re-runs no longer see.
    assert [app.bus.publish(order).emitted[0].type for _ in range(2)] == ["Allocated", "OutOfStock"]


def undeclared(db_url: str) -> db_app.App:
    """The service with its unit of work on the engine's own sessionmaker: its database is not declared."""
    app = db_app.build(db_url, declare=False)
    app.create("lamp-1", "LAMP", 12)
    return app


def test_an_undeclared_write_from_a_sandboxed_path_is_blocked_before_it_runs_and_reported(db_url):
    app = undeclared(db_url)
    before = db_app.rows(app.engine)
    m = Migration("allocation", legacy=app.bus, candidate=flow_from_bus(app.bus), comparator=Comparator(noise=False))
    c = m.compare(Event(type="Allocate", payload={"orderid": "o1", "sku": "LAMP", "qty": 2}))
    blocked = [d for d in c.differences if d.kind == Kind.WRITE_BLOCKED]
    assert c.divergent and len(blocked) == 2  # one per path: never parity
    [w] = [w for w in c.legacy.writes if w.op == "blocked"]  # the unit of work's flush stopped at its first statement
    assert w.node == "allocate" and w.statement.startswith(("INSERT INTO", "UPDATE")) and w.database.startswith(db_url.split(":")[0])
    legacy_side = next(d for d in blocked if d.legacy is not None)
    assert (legacy_side.node, legacy_side.legacy, legacy_side.path) == ("allocate", w.statement, f"writes.{w.table}")
    assert any(e.type.endswith("UndeclaredStateWrite") and "no bus declared" in e.message for e in c.legacy.errors)
    assert db_app.rows(app.engine) == before  # stopped before the write, not rolled back after it
    app.engine.dispose()


def test_noise_learning_refuses_to_rerun_a_path_that_writes_undeclared_state_naming_it(db_url):
    app = undeclared(db_url)
    before = db_app.rows(app.engine)
    m = Migration("allocation", legacy=app.bus, candidate=flow_from_bus(app.bus))
    with pytest.raises(UnisolatedNoiseLearning, match=r"noise learning refused .*'allocate' writes .*no bus declared \((INSERT INTO|UPDATE) "):
        m.replay([Event(type="Allocate", payload={"orderid": "o1", "sku": "LAMP", "qty": 2})])
    assert db_app.rows(app.engine) == before
    app.engine.dispose()


def test_card_numbers_in_rows_written_never_leave_the_process_in_a_stream_entry(tmp_path):
    from migration_kit.observe.redaction import Redactor
    from migration_kit.live.tap import encode_entry

    app = db_app.build(f"sqlite:///{tmp_path / 'cards.db'}")
    app.create("lamp-1", "LAMP", 12)
    card = "4111 1111 1111 1111"
    d = app.allocate(card, "LAMP", 1)
    assert any(w.key.get("orderid") == card for w in d.writes)
    raw = encode_entry("allocation", d, None, None, 0.0, redactor=Redactor())
    assert b"4111" not in raw and b"[redacted:" in raw
    app.engine.dispose()


ROWS = st.dictionaries(st.sampled_from(["b1", "b2", "b3"]), st.fixed_dictionaries({"q": st.integers(0, 5), "s": st.sampled_from(["x", "y"])}), max_size=3)


@settings(max_examples=60, deadline=None)
@given(legacy=ROWS, candidate=ROWS)
def test_writes_compare_per_row_and_column_for_any_two_sets_of_rows(legacy, candidate):
    """Every row only one path wrote is missing or extra; every column both wrote differently is one write_changed."""
    from legacy_bus import RowWrite
    from migration_kit.compare.outcome import Outcome

    event = Event(type="Allocate", payload={})

    def outcome(path, rows):
        ws = tuple(RowWrite("inv", "batches", {"reference": k}, "insert", None, {"reference": k, **v}, ("reference", "q", "s"), "allocate") for k, v in rows.items())
        return Outcome(path=path, event=event, writes=ws)

    c = Comparator(noise=False).compare(outcome("legacy", legacy), outcome("candidate", candidate))
    expected = {f"writes.batches[reference={k}]": Kind.WRITE_MISSING for k in legacy.keys() - candidate.keys()}
    expected |= {f"writes.batches[reference={k}]": Kind.WRITE_EXTRA for k in candidate.keys() - legacy.keys()}
    for k in legacy.keys() & candidate.keys():
        expected |= {f"writes.batches[reference={k}].{col}": Kind.WRITE_CHANGED for col in ("q", "s") if legacy[k][col] != candidate[k][col]}
    assert {d.path: d.kind for d in c.differences} == expected
    assert c.divergent == bool(expected) and (c.first_divergent_node == "allocate" if expected else c.first_divergent_node is None)
    for d in c.differences:
        if d.kind == Kind.WRITE_CHANGED:
            k, col = d.path.split("=")[1].split("].")
            assert (d.legacy, d.candidate) == (legacy[k][col], candidate[k][col])


def test_the_cli_refuses_a_replay_that_would_learn_noise_on_undeclared_state_in_one_line_exit_2(tmp_path, capsys, monkeypatch):
    # What the CLI says, not its process: `main` runs here as the console script calls it.
    from migration_kit.cli import main

    url = f"sqlite:///{tmp_path / 'inventory.db'}"
    app = undeclared(url)
    before = db_app.rows(app.engine)
    log = write_log(tmp_path / "events.jsonl", allocations(3))
    monkeypatch.setenv("DB_APP_URL", url)
    monkeypatch.chdir(tmp_path)
    code = main(["replay", str(log), "--app", "db_app:undeclared_migration"])
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    # Besides the progress line the CLI prints as it starts, one line says what is wrong.
    [line] = [x for x in stderr.strip().splitlines() if not x.startswith("migration-kit: replaying")]
    assert line.startswith("migration-kit: error: noise learning refused") and "no bus declared" in line and "bus.database(" in line
    assert db_app.rows(app.engine) == before
    app.engine.dispose()
