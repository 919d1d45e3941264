"""Acceptance: ``migration-kit replay`` SIGKILLed at 20 points resumes, every time, to the uninterrupted report.

Per store (SQLite, Redis): 10 kills at random moments (the parent waits until
the candidate has handled a random number of events, read from a file the app
appends to, and kills the process wherever it is: inside a node, between
nodes, in a progress save) and 10 kills inside a given node at a given event
(the app kills itself: ``MK_KILL_AT=<node>:<order>``). After each, ``resume``
finishes the replay; its report equals an uninterrupted replay's in total,
divergent, errors, by_node, the groups with their counts, the examples and the
count-based reasons of the decision (its latency rules compare timings of two runs).

The CLI runs in a forked child of this test process (``migration_kit.cli.main``
as the console script calls it, killed by SIGKILL like any process), so the
40 trials do not pay 40 interpreter start-ups. The log is small (80 events,
progress saved every 10), and carries recorded effect responses.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

import resume_app
from legacy_bus import EffectCall, EventLog, LogEntry
from resume_driver import summary

HERE = Path(__file__).resolve().parent
N = 80
SAVE_EVERY = "10"
RANDOM_KILLS = 10
LAST_ORDER = max(e.payload["n"] for e in resume_app.events(N) if e.type == "Order")
NODE_KILLS = [("price", 3), ("charge", 7), ("ship", 7), ("price", 21), ("charge", 33), ("ship", 44),
              ("price", 51), ("charge", 57), ("ship", 68), ("price", 79)]  # fmt: skip


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    """80 events; every order carries its recorded payment response (some declined)."""
    path = tmp_path_factory.mktemp("kill9") / "events.jsonl"
    entries = []
    for i, ev in enumerate(resume_app.events(N), start=1):
        effects = ()
        if ev.type == "Order":
            n = ev.payload["n"]
            effects = (EffectCall("payments.charge", [n, n * 3], {}, {"ok": n % 4 != 1}, None, "real"),)
        entries.append(LogEntry(i, ev, effects))
    EventLog(path).write(entries)
    return path


def _cli(args: list[str], out: Path, env: dict[str, str] | None = None) -> int:
    """Run ``migration-kit <args>`` in a forked child; returns its pid (stdout/stderr to ``out``)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child exits here
        code = 70
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.environ.update(env or {})
            from migration_kit.cli import main

            code = main(args)
        finally:
            os._exit(code)
    return pid


def _wait(pid: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"migration-kit (pid {pid}) did not finish in {timeout} s")


def _report(store: str, log: Path, tmp: Path, *, resume: bool, env: dict[str, str] | None = None) -> tuple[int, dict | None]:
    out = tmp / ("resumed.json" if resume else "whole.json")
    out.unlink(missing_ok=True)
    cmd = ["resume", str(log)] if resume else ["replay", str(log)]
    cmd += ["--app", "resume_app:migration", "--store", store, "--save-every", SAVE_EVERY, "--json", str(out)]
    code = _wait(_cli(cmd, tmp / "cli.txt", env))
    return code, (_counts(summary(json.loads(out.read_text()))) if out.exists() else None)


def _counts(s: dict) -> dict:
    """What is counted, not timed: on 80 events on a loaded machine the latency rules can pick
    another path through the policy from run to run, so the decision's latency reasons (and the
    final line they lead to) are left out; every count-based reason stays."""
    reasons = [r for r in s["reasons"] if "latency" not in r and not r.startswith("->")]
    return {k: s[k] for k in ("total", "divergent", "errors", "by_node", "groups", "examples")} | {"reasons": reasons}


def _stores(tmp: Path, redis_url: str) -> dict[str, str]:
    return {"sqlite": f"sqlite:///{tmp}/store.sqlite", "redis": redis_url}


def _flush(store: str, tmp: Path) -> None:
    """Start the next trial from an empty store."""
    if store.startswith("sqlite"):
        for f in tmp.glob("store.sqlite*"):
            f.unlink()
    else:
        import redis

        redis.Redis.from_url(store).flushall()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_replay_killed_at_20_points_resumes_to_the_uninterrupted_report(backend, log, tmp_path, redis_url):
    store = _stores(tmp_path, redis_url)[backend]
    markers = tmp_path / "markers.txt"
    code, whole = _report(store, log, tmp_path, resume=False)
    assert code == 1 and whole is not None, (tmp_path / "cli.txt").read_text()[-2000:]
    assert whole["divergent"] > 0 and whole["groups"], "the runs compared must find something"
    rng = random.Random(1729)
    trials = [("random", rng.randint(1, N - 8)) for _ in range(RANDOM_KILLS)] + [("node", f"{n}:{o}") for n, o in NODE_KILLS]
    for kind, where in trials:
        _flush(store, tmp_path)
        markers.unlink(missing_ok=True)
        cmd = ["replay", str(log), "--app", "resume_app:migration", "--store", store, "--save-every", SAVE_EVERY]
        if kind == "node":
            env = {"MK_MARKERS": str(markers), "MK_KILL_AT": where}
        else:
            # The last order's `charge` holds, so the kill always lands in an unfinished replay
            # (a fast replay could otherwise finish in the moment between readiness and the kill).
            env = {"MK_MARKERS": str(markers), "MK_HOLD_AT": str(LAST_ORDER), "MK_HOLD_FILE": str(tmp_path / "held")}
        pid = _cli(cmd, tmp_path / "killed.txt", env)
        if kind == "random":
            deadline = time.monotonic() + 120
            while not markers.exists() or len(markers.read_bytes().split()) < where:  # readiness: events handled
                assert time.monotonic() < deadline, f"the replay never handled {where} events"
                assert os.waitpid(pid, os.WNOHANG) == (0, 0), (tmp_path / "killed.txt").read_text()[-2000:]
                time.sleep(0.005)
            os.kill(pid, signal.SIGKILL)
        assert _wait(pid) == -signal.SIGKILL, f"{kind} {where}: " + (tmp_path / "killed.txt").read_text()[-2000:]
        code, resumed = _report(store, log, tmp_path, resume=True)
        assert code == 1, f"{kind} {where}: " + (tmp_path / "cli.txt").read_text()[-2000:]
        assert resumed == whole, f"killed ({kind} {where}), resumed to a different report"
