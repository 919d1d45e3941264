"""The migration-kit CLI: exit codes, one-line errors, reports written, nothing lost."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from legacy_bus import Event, EventLog
from migration_kit.cli import main

APP = textwrap.dedent(
    """
    from legacy_bus import Event, EventBus
    from graph_flows import flow_from_bus
    from migration_kit import Migration

    bus = EventBus("tiny")

    @bus.on("Order")
    def route(e):
        return Event(type="Routed", payload={"queue": "heavy" if e.payload["kg"] > 20 else "std"})

    @bus.on("Routed")
    def sink(e):
        pass

    def migration():
        return Migration("tiny", legacy=bus, candidate=flow_from_bus(bus))

    def route_v2(e):
        return Event(type="Routed", payload={"queue": "freight" if e.payload["kg"] > 25 else ("heavy" if e.payload["kg"] > 20 else "std")})

    def migration_v2(store=None):
        return Migration("tiny-v2", legacy=bus, candidate=flow_from_bus(bus).replace("route", route_v2), store=store)

    not_a_migration = 42
    """
)


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "tinyapp.py").write_text(APP)
    (tmp_path / "brokenapp.py").write_text("import json\nraise RuntimeError('config missing: PAYMENTS_URL')\n")
    EventLog(tmp_path / "log.jsonl").write([Event(type="Order", payload={"kg": kg}) for kg in range(0, 40, 3)])
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in ("tinyapp", "brokenapp"):
        sys.modules.pop(mod, None)
    return tmp_path


def test_replay_at_parity_exits_0_and_writes_the_json_report(project, capsys):
    assert main(["replay", "log.jsonl", "--app", "tinyapp:migration", "--json", "out.json"]) == 0
    report = json.loads((project / "out.json").read_text())
    assert (report["total"], report["divergent"], report["decision"]["action"]) == (14, 0, "continue")
    out = capsys.readouterr().out
    assert "14 events replayed" in out and "CONTINUE" in out


def test_replay_with_divergence_exits_1_and_names_the_node_and_field(project, capsys):
    assert main(["replay", "log.jsonl", "--app", "tinyapp:migration_v2", "--json", "out.json", "--html", "out.html"]) == 1
    report = json.loads((project / "out.json").read_text())
    assert report["divergent"] == sum(1 for kg in range(0, 40, 3) if kg > 25)
    assert report["by_node"] == {"route": report["divergent"]}
    assert report["groups"][0]["path"] == "emitted[*].payload.queue"
    assert "HOLD" in capsys.readouterr().out
    assert "<html" in (project / "out.html").read_text()


def test_the_default_store_is_an_embedded_sqlite_file_in_the_working_directory(project):
    assert main(["replay", "log.jsonl", "--app", "tinyapp:migration"]) == 0
    assert (project / "migration-kit.sqlite").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["replay", "log.jsonl", "--app", "nosuchmodule:migration"], "no module named 'nosuchmodule'"),
        (["replay", "log.jsonl", "--app", "tinyapp:nothing"], "has no attribute 'nothing'"),
        (["replay", "log.jsonl", "--app", "tinyapp:not_a_migration"], "not a Migration"),
        (["replay", "log.jsonl", "--app", "tinyapp"], "module:attribute"),
        (["replay", "log.jsonl", "--app", "brokenapp:migration"], "RuntimeError: config missing: PAYMENTS_URL (at brokenapp.py:2)"),
        (["replay", "missing.jsonl", "--app", "tinyapp:migration"], "missing.jsonl does not exist"),
        (["replay", "log.jsonl", "--app", "tinyapp:migration", "--store", "ftp://x"], "unsupported store URL"),
    ],
)
def test_usage_and_input_errors_print_one_line_and_exit_2(project, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_bad_log_line_is_named_and_skip_bad_replays_the_rest(project, capsys):
    with open(project / "log.jsonl", "a") as fh:
        fh.write('{"type": "Order", "payload": {"kg": 1}\n')
        fh.write(Event(type="Nobody").model_dump_json() + "\n")
    assert main(["replay", "log.jsonl", "--app", "tinyapp:migration"]) == 2
    assert "line 15 is not JSON" in capsys.readouterr().err
    assert main(["replay", "log.jsonl", "--app", "tinyapp:migration", "--skip-bad", "--json", "out.json"]) == 0
    report = json.loads((project / "out.json").read_text())
    assert report["total"] == 14 and [s["line"] for s in report["skipped"]] == [15, 16]


def test_an_existing_report_directory_must_exist_before_anything_runs(project, capsys):
    assert main(["replay", "log.jsonl", "--app", "tinyapp:migration", "--json", "nodir/out.json"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (project / "migration-kit.sqlite").exists()


def test_graph_prints_the_derived_graph_as_mermaid(project, capsys):
    assert main(["graph", "--app", "tinyapp:migration"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart LR") and "route" in out and "sink" in out


def test_the_console_script_and_python_m_run_the_same_cli(project):
    for cmd in (["migration-kit"], [sys.executable, "-m", "migration_kit"]):
        exe = cmd if cmd[0] != "migration-kit" else [str(__import__("pathlib").Path(sys.executable).parent / "migration-kit")]
        proc = subprocess.run([*exe, "replay", "log.jsonl", "--app", "nosuch:app"], capture_output=True, text=True, cwd=project)
        assert proc.returncode == 2 and proc.stderr.startswith("migration-kit: error: --app nosuch:app")
        assert "Traceback" not in proc.stderr


def test_worker_cpus_pins_the_process_and_a_bad_list_is_a_usage_error(project, capsys):
    code = "import os; from migration_kit.cli.main import pin_cpus; print(sorted(pin_cpus('0')), sorted(os.sched_getaffinity(0)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[0]", "[0]"]
    for bad in ("x", "0-", "4096"):
        assert main(["worker", "--app", "tinyapp:migration", "--store", "redis://127.0.0.1:1/0", "--cpus", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--cpus" in err[0], err
