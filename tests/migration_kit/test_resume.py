"""A replay killed at any point resumes where it stopped and reports what an uninterrupted run would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import resume_app
from legacy_bus import BadEventLog, EventLog
from resume_driver import summary

HERE = Path(__file__).resolve().parent
# Enough events for many progress saves (every 25) and >20 divergent ones; the kill points
# below leave hundreds of events after them, so a kill never lands after the replay finished.
N = 1500


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "events.jsonl"
    EventLog(path).write(resume_app.events(N))
    return path


@pytest.fixture(scope="module")
def uninterrupted(log) -> dict:
    with resume_app.migration("memory://") as m:
        return summary(m.replay(log).to_dict())


def _driver(store: str, log: Path, out: Path, *, resume: bool = False, env: dict | None = None) -> subprocess.Popen:
    cmd = [sys.executable, str(HERE / "resume_driver.py"), store, str(log), str(out)] + (["--resume"] if resume else [])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def _kill_after(proc: subprocess.Popen, counted: int) -> int:
    """SIGKILL once the replay has counted ``counted`` events; returns the last count seen."""
    seen = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        seen = int(line)
        if seen >= counted:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return seen


def _resume(store: str, log: Path, tmp: Path) -> dict:
    out = tmp / "resumed.json"
    proc = _driver(store, log, out, resume=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.read_text())


def _stores(tmp: Path, redis_url: str) -> dict[str, str]:
    return {"sqlite": f"sqlite:///{tmp}/store.sqlite", "redis": redis_url}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_killed_between_events_then_resumed_equals_the_uninterrupted_run(backend, log, uninterrupted, tmp_path, redis_url):
    store = _stores(tmp_path, redis_url)[backend]
    seen = _kill_after(_driver(store, log, tmp_path / "first.json"), 537)
    assert 537 <= seen < N
    assert _resume(store, log, tmp_path) == uninterrupted


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_killed_inside_a_graph_node_the_event_reruns_from_its_start_to_the_same_report(backend, log, uninterrupted, tmp_path, redis_url):
    """A sandboxed replay writes an event's checkpoint only when its run exits (durability="exit"):
    an event cut off mid-run is run again from its start, answered by the same recorded effects."""
    store = _stores(tmp_path, redis_url)[backend]
    markers, hold = tmp_path / "markers.txt", tmp_path / "hold"
    proc = _driver(store, log, tmp_path / "first.json", env={"MK_MARKERS": str(markers), "MK_HOLD_AT": "1221", "MK_HOLD_FILE": str(hold)})
    deadline = time.monotonic() + 240
    while not hold.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the replay never reached the held node"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # inside the candidate's `charge` node of order 1221
    proc.wait(timeout=30)
    os.environ["MK_MARKERS"] = str(markers)  # the resumed process keeps counting node runs
    try:
        assert _resume(store, log, tmp_path) == uninterrupted
    finally:
        del os.environ["MK_MARKERS"]
    runs = markers.read_text().split()
    # `price` of order 1221 ran before the kill and once more in the re-run from the event's start.
    assert runs.count("1221") == 2
    assert runs.count("1222") == 1


def test_a_log_edited_after_the_interrupted_run_is_refused_naming_what_changed(log, tmp_path):
    edited = tmp_path / "edited.jsonl"
    edited.write_bytes(log.read_bytes())
    store = f"sqlite:///{tmp_path}/store.sqlite"
    _kill_after(_driver(store, edited, tmp_path / "first.json"), 300)
    data = edited.read_bytes().replace(b'"n":123}', b'"n":124}', 1)
    assert data != log.read_bytes()
    edited.write_bytes(data)
    with resume_app.migration(store) as m, pytest.raises(BadEventLog, match=r"changed since the interrupted run: lines [\d,]+ to [\d,]+") as info:
        m.replay(edited, resume=True)
    lo, hi = (int(x.replace(",", "")) for x in str(info.value).split("lines ")[1].split(" are")[0].split(" to "))
    assert lo <= 123 <= hi
    edited.write_bytes(data[: len(data) // 50])
    with resume_app.migration(store) as m, pytest.raises(BadEventLog, match="shorter than"):
        m.replay(edited, resume=True)


def test_ctrl_c_during_the_cli_replay_prints_the_resume_command_and_resume_finishes_it(tmp_path, capsys, monkeypatch):
    from migration_kit.cli import main

    log = tmp_path / "short.jsonl"
    EventLog(log).write(resume_app.events(1200))  # seconds of replay after the readiness line: Ctrl-C lands mid-run
    with resume_app.migration("memory://") as m:
        uninterrupted = summary(m.replay(log).to_dict())
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    store = f"sqlite:///{tmp_path}/store.sqlite"
    cmd = [sys.executable, "-m", "migration_kit", "replay", str(log), "--app", "resume_app:migration", "--store", store]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # readiness: the CLI says it is replaying once its Ctrl-C handler is in place
        seen.append(line)
        if line.startswith("migration-kit: replaying"):
            break
    assert proc.poll() is None, "".join(seen)[-2000:] + proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    err = "".join(seen) + err
    assert proc.returncode == 130, err[-2000:]
    assert f"migration-kit resume {log} --app resume_app:migration --store {store}" in err
    assert "Traceback" not in err
    # The Ctrl-C above is about the process; resuming is not: the CLI's `main` runs in this process
    # (as the console script calls it), without three more interpreter starts and LangGraph imports.
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    out = tmp_path / "resumed.json"
    code = main(["resume", "--app", "resume_app:migration", "--store", store, "--json", str(out)])
    assert code == 1, capsys.readouterr().err[-2000:]  # the candidate diverges on purpose
    assert summary(json.loads(out.read_text())) == uninterrupted
    capsys.readouterr()
    code = main(["resume", "--app", "resume_app:migration", "--store", store])
    assert code == 2 and "nothing to resume" in capsys.readouterr().err
    page = tmp_path / "report.html"
    code = main(["report", str(out), "--html", str(page)])
    assert code == 0, capsys.readouterr().err
    assert "<svg" in page.read_text()


def test_the_resume_app_really_diverges(uninterrupted):
    """The equality checks above compare runs that find something."""
    assert uninterrupted["divergent"] > 20 and uninterrupted["by_node"] == {"ship": uninterrupted["divergent"]}
