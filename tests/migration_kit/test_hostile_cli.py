"""A hostile corpus through ``replay``, ``resume``, ``status`` and ``report``: one clear line, nothing lost, nothing raw.

Every case ends with exit 2 and one line on stderr, or (with ``--skip-bad``)
the line skipped and the reports written; no raw control character, escape
sequence or lone surrogate reaches the terminal, and Rich markup in the data
is shown, never interpreted.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from legacy_bus import Event, EventLog
from migration_kit.cli import main
from migration_kit.live.tap import BadShadowEntry, decode_entry

HERE = Path(__file__).resolve().parent

# What must never reach a terminal raw: C0/C1 controls (but newline), ESC, bidi overrides, lone surrogates.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

NASTY = "[/bold][link=http://evil.example]click[/link]\x1b]8;;http://evil.example\x07x\x1b]8;;\x07\x1b]0;pwned\x07\x1b[2J\u202eevil a\ud800b"

APP = textwrap.dedent(
    '''
    import logging
    from legacy_bus import Event, EventBus
    from graph_flows import flow_from_bus
    from migration_kit import Migration

    log = logging.getLogger("hostile.app")
    bus = EventBus("hostile")
    NASTY = %r

    @bus.on("Order")
    def route(e):
        if e.payload.get("kg", 0) %% 2:
            try:
                raise ValueError("card declined")
            except ValueError:
                log.exception("payment failed for %%s", e.payload.get("kg"))
        return Event(type="Routed", payload={"queue": "std", "note": e.payload.get("note", "")})

    @bus.on("Routed")
    def sink(e):
        pass

    def route_v2(e):
        return Event(type="Routed", payload={"queue": NASTY, "note": e.payload.get("note", "")})

    def migration(store=None):
        return Migration("hostile", legacy=bus, candidate=flow_from_bus(bus).replace("route", route_v2), store=store)
    '''
    % NASTY
)


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "hostileapp.py").write_text(APP)
    events = [Event(type="Order", payload={"kg": kg, "note": NASTY}, id=f"e{kg}") for kg in range(12)]
    # json.dumps escapes the lone surrogate (\ud800), as any JSON writer may: the line is valid JSON
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(e.to_dict(), default=str) + "\n" for e in events))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("hostileapp", None)
    return tmp_path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    for stream in (out, err):
        assert not RAW.search(stream), f"a raw control character reached the terminal: {RAW.search(stream)!r}"
    assert "Traceback" not in err
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("migration-kit: error")]
    assert len(lines) == 1, err
    return lines[0]


APP_ARGS = ("--app", "hostileapp:migration", "--store", "sqlite:///store.sqlite")


def test_hostile_values_in_a_divergence_are_shown_escaped_and_both_reports_are_written(project, capsys):
    code, out, err = _run(capsys, "replay", "log.jsonl", *APP_ARGS, "--json", "r.json", "--html", "r.html")
    assert code == 1  # the candidate diverges
    report = json.loads((project / "r.json").read_text())
    assert report["divergent"] == 12 and report["by_node"] == {"route": 12}
    assert "\\u001b]8;;" in out and "[/bold][link=" in out  # shown, escaped, not interpreted
    page = (project / "r.html").read_text(encoding="utf-8")
    assert "\x1b" not in page and "[/bold]" in page
    # the app's own logger.exception tracebacks are summarized, once per handler
    assert "log records from route" in err and "payment failed" in err and "card declined" not in err.split("e.g.")[0]
    code, out, err = _run(capsys, "report", "r.json", "--html", "again.html")
    assert code == 0 and (project / "again.html").exists()


POISON = {
    "deep": '{"type":"Order","payload":{"kg":' + "[" * 100_000 + "]" * 100_000 + "}}",
    "bigint": '{"type":"Order","payload":{"kg":' + "9" * 5000 + "}}",
    "deep-valid": '{"type":"Order","payload":{"kg":1,"x":' + '{"a":' * 900 + "1" + "}" * 900 + "}}",
    "escape-keys": json.dumps({"type": "Order", "payload": {"kg": 1}, "\x1b]0;pwned\x07\x1b[2J": 1}),
    "markup-type": json.dumps({"type": "[/bold][link=http://evil.example]x", "payload": {}}),
    "huge": '{"type":"Order","payload":{"kg":1,"pad":"' + "x" * (1 << 21) + '"}}',
    "not-json": "\x1b]0;pwned\x07{nope",
}


@pytest.mark.parametrize("case", sorted(POISON))
def test_a_poison_line_is_named_by_its_line_number_or_skipped_as_asked(project, capsys, case):
    good = (project / "log.jsonl").read_text().splitlines()
    (project / "bad.jsonl").write_text("\n".join([*good[:3], POISON[case], *good[3:]]) + "\n")
    code, _, err = _run(capsys, "replay", "bad.jsonl", *APP_ARGS, "--json", "r.json")
    assert code == 2 and "line 4" in _one_error_line(err)
    assert not (project / "r.json").exists()
    code, out, err = _run(capsys, "replay", "bad.jsonl", *APP_ARGS, "--json", "r.json", "--skip-bad")
    assert code == 1 and "skipped line 4" in out
    report = json.loads((project / "r.json").read_text())
    assert report["total"] == 12 and [s["line"] for s in report["skipped"]] == [4]


def test_resume_after_a_poison_line_continues_with_skip_bad(project, capsys):
    good = (project / "log.jsonl").read_text().splitlines()
    (project / "bad.jsonl").write_text("\n".join([*good[:5], POISON["bigint"], *good[5:]]) + "\n")
    assert _run(capsys, "replay", "bad.jsonl", *APP_ARGS)[0] == 2
    code, _, err = _run(capsys, "resume", *APP_ARGS, "--json", "r.json")
    assert code == 2 and "line 6" in _one_error_line(err)
    code, _, _ = _run(capsys, "resume", *APP_ARGS, "--json", "r.json", "--skip-bad")
    assert code == 1 and json.loads((project / "r.json").read_text())["total"] == 12


def test_a_hostile_rollback_reason_is_shown_escaped_by_status(project, capsys):
    assert _run(capsys, "rollback", *APP_ARGS, "--reason", NASTY)[0] == 0
    code, out, _ = _run(capsys, "status", *APP_ARGS)
    assert code == 0 and "rolled_back" in out and "[/bold]" in out and "\\x1b[2J" in out
    code, out, _ = _run(capsys, "status", *APP_ARGS, "--json")
    assert code == 0 and json.loads(out)["history"][-1]["reason"] == NASTY


@pytest.mark.parametrize("flag", ["--json", "--html"])
def test_an_output_that_is_the_log_or_the_store_is_refused_before_anything_runs(project, capsys, flag):
    log = (project / "log.jsonl").read_bytes()
    os.symlink(project / "log.jsonl", project / "link.jsonl")
    for target in ("log.jsonl", "link.jsonl", "./sub/../log.jsonl"):
        (project / "sub").mkdir(exist_ok=True)
        code, _, err = _run(capsys, "replay", "log.jsonl", *APP_ARGS, flag, target)
        assert code == 2 and "is the event log" in _one_error_line(err)
    assert (project / "log.jsonl").read_bytes() == log
    assert _run(capsys, "replay", "log.jsonl", *APP_ARGS)[0] == 1  # creates the store
    store = (project / "store.sqlite").read_bytes()
    code, _, err = _run(capsys, "replay", "log.jsonl", *APP_ARGS, flag, "store.sqlite")
    assert code == 2 and "is the store" in _one_error_line(err)
    assert (project / "store.sqlite").read_bytes()[:16] == store[:16]
    code, _, err = _run(capsys, "replay", "log.jsonl", *APP_ARGS, "--json", "same.out", "--html", "same.out")
    assert code == 2 and "the --json output" in _one_error_line(err)
    (project / "r.json").write_text("{}")
    code, _, err = _run(capsys, "report", "r.json", "--html", "r.json")
    assert code == 2 and (project / "r.json").read_text() == "{}"


def test_an_empty_store_is_a_usage_error(project, capsys):
    code, _, err = _run(capsys, "replay", "log.jsonl", "--app", "hostileapp:migration", "--store", "")
    assert code == 2 and "--store is empty" in err and len(err.splitlines()) == 1
    assert not (project / "migration-kit.sqlite").exists()


def test_resume_with_nothing_saved_replays_the_log_from_the_start(project, capsys):
    code, _, err = _run(capsys, "resume", "log.jsonl", *APP_ARGS, "--json", "r.json")
    assert code == 1 and "from the start" in err and json.loads((project / "r.json").read_text())["total"] == 12
    code, _, err = _run(capsys, "resume", "log.jsonl", *APP_ARGS)
    assert code == 2 and "nothing to resume" in _one_error_line(err)


def test_a_stream_entry_over_the_size_limit_is_refused_with_its_id():
    with pytest.raises(BadShadowEntry, match=r"stream entry 17-0 is [\d,]+ bytes, longer than the limit"):
        decode_entry(b'{"v":1,"pad":"' + b"x" * (2 << 20) + b'"}', "17-0")
    with pytest.raises(BadShadowEntry, match=r"stream entry 18-0 nests"):
        decode_entry(b'{"v":1,"x":' + b"[" * 5000 + b"]" * 5000 + b"}", "18-0")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}


def test_a_broken_pipe_still_writes_the_reports_and_exits_by_the_decision(project):
    proc = subprocess.Popen(
        [sys.executable, "-m", "migration_kit", "replay", "log.jsonl", *APP_ARGS, "--json", "r.json", "--html", "r.html"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=project,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # `| head` that went away before the summary
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err.decode()[-2000:]
    assert b"Traceback" not in err and b"BrokenPipe" not in err
    assert json.loads((project / "r.json").read_text())["divergent"] == 12 and (project / "r.html").exists()


def test_a_store_dying_mid_replay_ends_with_one_line_and_the_resume_command(tmp_path):
    from servers import RedisServer

    server = RedisServer.start()  # its own server: this test stops it
    log = tmp_path / "events.jsonl"
    import resume_app

    EventLog(log).write(resume_app.events(400))
    markers = tmp_path / "markers.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "migration_kit", "replay", str(log), "--app", "resume_app:migration", "--store", server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**_env(), "MK_MARKERS": str(markers)}, cwd=tmp_path,
    )
    deadline = time.monotonic() + 240
    while not markers.exists() or len(markers.read_text().split()) < 20:  # readiness: the replay is under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.02)
    server.stop()
    _, err = proc.communicate(timeout=240)
    server.stop()
    assert proc.returncode == 2, err[-2000:]
    line = _one_error_line(err)
    assert "the store redis://127.0.0.1:" in line and "failed" in line
    assert f"migration-kit resume {log} --app resume_app:migration --store {server.url}" in line
    assert "Traceback" not in err


def test_a_server_that_is_not_redis_is_one_line(tmp_path, project, capsys):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    port = sock.getsockname()[1]

    def answer() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        code, _, err = _run(capsys, "replay", "log.jsonl", "--app", "hostileapp:migration", "--store", f"redis://127.0.0.1:{port}/0")
    finally:
        sock.close()
    assert code == 2 and f"127.0.0.1:{port}" in _one_error_line(err)


def test_an_oversized_stream_entry_is_dead_lettered_with_its_id_and_the_worker_carries_on(redis_url):
    import redis

    import shadow_app
    from migration_kit.live.tap import ShadowKeys

    m = shadow_app.migration(store=redis_url)
    keys = ShadowKeys(m.name)
    r = redis.Redis.from_url(redis_url)
    big = r.xadd(keys.stream, {"d": b'{"v":1,"pad":"' + b"x" * (2 << 20) + b'"}'}).decode()
    with m.attach() as handle:
        shadow_app.bus.publish(shadow_app.order(1))
        handle.flush()
    w = m.worker(max_events=2, block_ms=100, evidence_every=0.0)
    w.run()
    assert (w.stats.dead, w.stats.recorded) == (1, 1)
    [reason] = [json.loads(x)["error"] for x in r.lrange(keys.dead, 0, -1)]
    assert reason.startswith(f"stream entry {big} is 2,097,") and "longer than the limit" in reason


def test_a_full_disk_mid_replay_ends_with_the_resume_command_and_resume_finishes_the_same_report(tmp_path):
    import resource
    import signal as sig

    import resume_app
    from resume_driver import summary

    log = tmp_path / "events.jsonl"
    EventLog(log).write(resume_app.events(300))
    with resume_app.migration("memory://") as m:
        whole = summary(m.replay(log).to_dict())
    store = f"sqlite:///{tmp_path}/s.sqlite"
    cmd = [sys.executable, "-m", "migration_kit", "replay", str(log), "--app", "resume_app:migration", "--store", store]

    def disk_of_200_kb() -> None:  # the store's files cannot grow past 200 KB: writes fail as on a full disk
        sig.signal(sig.SIGXFSZ, sig.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    full = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, preexec_fn=disk_of_200_kb, timeout=300)
    assert full.returncode == 2, full.stderr[-2000:]
    line = _one_error_line(full.stderr)
    assert f"the store {store} failed" in line and f"migration-kit resume {log} --app resume_app:migration --store {store}" in line
    out = tmp_path / "r.json"
    resumed = subprocess.run(
        [sys.executable, "-m", "migration_kit", "resume", str(log), "--app", "resume_app:migration", "--store", store, "--json", str(out)],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300,
    )
    assert resumed.returncode == 1, resumed.stderr[-2000:]
    assert summary(json.loads(out.read_text())) == whole
