"""CLI status, promote and rollback: the phase and evidence shared through the store, errors as one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from legacy_bus import Event, EventLog
from migration_kit.cli import main
from test_cli import APP  # the tiny app of the replay CLI tests


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "tinyapp.py").write_text(APP)
    EventLog(tmp_path / "log.jsonl").write([Event(type="Order", payload={"kg": kg}) for kg in range(0, 40, 3)])
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("tinyapp", None)
    return tmp_path


def status(capsys, app="tinyapp:migration"):
    capsys.readouterr()
    assert main(["status", "--app", app, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_status_json_has_the_design_keys_and_sees_a_replay_made_by_another_command(project, capsys):
    assert main(["replay", "log.jsonl", "--app", "tinyapp:migration_v2"]) == 1
    s = status(capsys, "tinyapp:migration_v2")
    assert {"phase", "compared", "divergent", "errors", "pending", "shed", "decision", "history"} <= set(s)
    assert (s["phase"], s["compared"], s["divergent"], s["pending"], s["shed"]) == ("shadow", 14, 5, 0, 0)
    assert s["decision"]["action"] == "hold"


def test_replay_prints_the_decision_with_its_reasons(project, capsys):
    assert main(["replay", "log.jsonl", "--app", "tinyapp:migration_v2"]) == 1
    out = capsys.readouterr().out
    assert "HOLD" in out and "divergence-regression: divergence lower bound" in out


def test_status_prints_a_table_with_the_phase_counts_and_decision(project, capsys):
    assert main(["replay", "log.jsonl", "--app", "tinyapp:migration"]) == 0
    capsys.readouterr()
    assert main(["status", "--app", "tinyapp:migration"]) == 0
    out = capsys.readouterr().out
    assert "phase" in out and "shadow" in out and "compared" in out and "14" in out and "CONTINUE" in out


def test_promote_and_rollback_change_the_phase_and_the_history_records_them(project, capsys):
    assert main(["promote", "--app", "tinyapp:migration", "--percent", "10", "--reason", "replay clean"]) == 0
    assert "shadow -> canary 10%" in capsys.readouterr().out
    assert main(["promote", "--app", "tinyapp:migration"]) == 0
    assert main(["rollback", "--app", "tinyapp:migration", "--reason", "p99 doubled"]) == 0
    s = status(capsys)
    assert s["phase"] == "rolled_back"
    assert [(h["to"], h["percent"], h["reason"]) for h in s["history"]] == [
        ("canary", 10.0, "replay clean"),
        ("canary", 25.0, None),
        ("rolled_back", None, "p99 doubled"),
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["promote", "--percent", "150"], "below 100"),
        (["promote", "--to", "primary", "--percent", "5"], "only applies to canary"),
        (["rollback", "--reason", ""], "needs a reason"),
    ],
)
def test_an_invalid_transition_prints_one_line_and_exits_2(project, capsys, argv, message):
    assert main([*argv, "--app", "tinyapp:migration"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_rollback_requires_a_reason_flag(project, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["rollback", "--app", "tinyapp:migration"])
    assert exc.value.code == 2
    assert "--reason" in capsys.readouterr().err


def test_the_phase_set_by_one_cli_process_is_seen_by_another(project):
    exe = str(Path(sys.executable).parent / "migration-kit")
    run = lambda *a: subprocess.run([exe, *a, "--app", "tinyapp:migration"], capture_output=True, text=True, cwd=project)  # noqa: E731
    assert run("promote", "--to", "primary").returncode == 0
    proc = run("status", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["phase"] == "primary"
    assert main(["promote", "--to", "canary", "--app", "tinyapp:migration"]) == 2  # this process sees primary too
