"""A replay split across worker processes reports what one process reports, field for field."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from examples.orders.v2 import migration as orders_v2
from migration_kit.run.distributed import last_job, replay_status
from migration_kit.run.partition import flag_of, merge_tallies
from migration_kit.report.report import ReplayTally
from migration_kit.run.resume import ReplayInterrupted
from migration_kit.store import Store

ROOT = Path(__file__).resolve().parents[2]
APP = "examples.orders.v2:migration"  # schedule_shipment changed on purpose: divergent groups, by_node, a hold
EVENTS = ROOT / "examples" / "orders" / "events.jsonl"

# What a run measures (each run times its own handlers) or how long it took: everything else must match.
MEASURED = {"duration_s", "events_per_second", "latency", "duration", "sum", "min", "max", "index", "counts", "zero"}


def comparable(value: Any) -> Any:
    """A report (or tally) without what is measured: latency values, durations, rates."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in MEASURED and not k.endswith("_ms") and not k.endswith("_seconds")}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    with open(EVENTS, encoding="utf-8") as src:
        path.write_text("".join(next(src) for _ in range(300)), encoding="utf-8")
    return path


def single_process_report(log: Path) -> dict[str, Any]:
    with orders_v2() as m:
        return json.loads(m.replay(log).to_json())


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _line(proc: subprocess.Popen, timeout: float = 120.0) -> str:
    """The next line a process writes to stderr (within ``timeout``)."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stderr.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert got, f"no line from {proc.args[:4]} within {timeout} s"
    return got[0]


def _wait_for(condition: Any, what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = condition()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_three_workers_one_killed_with_sigkill_report_equals_single_process(log: Path, redis_url: str, tmp_path: Path) -> None:
    expected = single_process_report(log)
    out = tmp_path / "distributed.json"
    cli = [sys.executable, "-m", "migration_kit"]
    # The joiner starts first and waits for the job: a worker "on another machine" joining through Redis.
    joiner = subprocess.Popen(
        [*cli, "worker", "--replay", "--app", APP, "--store", redis_url, "--consumer", "victim", "--wait", "120"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path,
    )
    assert "waiting for a replay" in _line(joiner)  # loaded and polling: it will take partitions as soon as there are any
    coordinator = subprocess.Popen(
        [*cli, "replay", str(log), "--app", APP, "--store", redis_url, "--workers", "2", "--partitions", "16", "--lease-ttl", "2",
         "--checkpoint-every", "5", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path,
    )
    records = Store(redis_url, "orders-v2").records
    try:
        def victim_mid_partition() -> bool:
            status = replay_status(records)
            return bool(status) and any(p["owner"] == "victim" and p["events"] > 0 and not p["done"] for p in status["partitions"])

        _wait_for(victim_mid_partition, "the joined worker to be part-way through a partition")
        os.kill(joiner.pid, signal.SIGKILL)
        assert joiner.wait(timeout=30) == -signal.SIGKILL
        stdout, stderr = coordinator.communicate(timeout=300)
    finally:
        for proc in (joiner, coordinator):
            if proc.poll() is None:
                proc.kill()
    assert coordinator.returncode == 1, stderr  # the v2 candidate diverges: the policy holds
    got = json.loads(out.read_text(encoding="utf-8"))
    job = last_job(records, log)
    assert job["status"] == "done" and job["reclaims"] >= 1  # the killed worker's partition was taken over
    assert got["total"] == 300 and got["divergent"] > 0 and got["groups"]
    assert comparable(got) == comparable(expected)
    assert got["evidence"]["latency"]["candidate"]["n"] == expected["evidence"]["latency"]["candidate"]["n"]
    assert "replay:" in stderr and "ev/s" in stderr  # progress across workers on stderr


def test_interrupted_distributed_replay_resumes_to_the_single_process_report(tmp_path: Path, redis_url: str) -> None:
    # The whole example log (1,200 events): the stop, set at 40 events, reaches the workers (the
    # coordinator looks twice a second) long before they could finish it.
    log = tmp_path / "all.jsonl"
    log.write_bytes(EVENTS.read_bytes())
    expected = single_process_report(log)
    stop = threading.Event()

    def progress(_comparison: Any, seen: Any) -> None:
        if seen.total >= 40:
            stop.set()

    with orders_v2(redis_url) as m, pytest.raises(ReplayInterrupted):
        m.replay(log, workers=2, partitions=8, checkpoint_every=10, on_result=progress, stop=stop)
    with orders_v2(redis_url) as m:  # a new process would see the same: everything is in the store
        assert m.unfinished_replay() == str(log.resolve())
        status = replay_status(m.store.records)
        assert 0 < status["compared"] < 1200
        resumed = json.loads(m.replay(log, resume=True).to_json())
        assert m.unfinished_replay() is None
        job = last_job(m.store.records, log)
        assert (job["id"], job["status"]) == (status["job"], "done")  # the same job went on, not a new one
    assert comparable(resumed) == comparable(expected)


def test_cli_resume_after_the_whole_distributed_replay_is_killed_gives_the_single_process_report(
    log: Path, redis_url: str, tmp_path: Path
) -> None:
    expected = single_process_report(log)
    out = tmp_path / "resumed.json"
    cli = [sys.executable, "-m", "migration_kit"]
    app = ["--app", APP, "--store", redis_url]
    coordinator = subprocess.Popen(
        [*cli, "replay", str(log), *app, "--workers", "2", "--partitions", "8", "--lease-ttl", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=tmp_path, start_new_session=True,
    )
    records = Store(redis_url, "orders-v2").records
    try:
        _wait_for(lambda: (replay_status(records) or {}).get("compared", 0) >= 20, "the workers to save some progress")
        job = replay_status(records)["job"]
    finally:
        os.killpg(coordinator.pid, signal.SIGKILL)  # the coordinator and its workers, at once
        coordinator.wait(timeout=30)
    resumed = subprocess.run([*cli, "resume", *app, "--json", str(out)], capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert resumed.returncode == 1, resumed.stderr
    assert f"resuming the replay of {log.resolve()}" in resumed.stderr
    assert last_job(records, log)["id"] == job  # went on with the killed job's partitions
    assert comparable(json.loads(out.read_text(encoding="utf-8"))) == comparable(expected)


def test_memory_store_workers_report_and_noise_samples_equal_single_process(log: Path) -> None:
    with orders_v2() as m:
        expected = json.loads(m.replay(log).to_json())
        samples = dict(m.noise.samples)
    with orders_v2() as m:
        got = json.loads(m.replay(log, workers=2, partitions=4).to_json())
        # the same events were sampled for noise learning: the first 20 of each type in the whole log, then by hash
        assert m.noise.samples == samples
    assert comparable(got) == comparable(expected)


def uuid_shop() -> Any:
    """Legacy code that puts a fresh uuid in what it publishes and keeps: noise that shows on every run."""
    import uuid

    from legacy_bus import EventBus

    bus = EventBus("uuids")

    @bus.on("OrderPlaced")
    def accept(e, ctx):  # noqa: ANN001, ANN202
        ctx.state["placed"] = e.payload["order"]  # what later events of the saga read: no noise carried into them
        ctx.publish("OrderAccepted", {"order": e.payload["order"], "trace_id": uuid.uuid4().hex})

    @bus.on("OrderCancelled")
    def cancel(e, ctx):  # noqa: ANN001, ANN202
        ctx.state["void_ref"] = uuid.uuid4().hex
        ctx.publish("OrderVoided", {"order": e.payload["order"], "placed": ctx.state.get("placed"), "trace_id": uuid.uuid4().hex})

    return bus


def test_noise_shown_on_every_run_is_learned_as_one_process_learns_it_over_many_partitions(tmp_path: Path) -> None:
    from graph_flows import flow_from_bus
    from legacy_bus import Event, EventLog
    from migration_kit import Migration

    path = tmp_path / "noisy.jsonl"
    events = []
    for i in range(150):  # every fifth order is cancelled later: a second event type, within its saga
        events.append(Event(type="OrderPlaced", payload={"order": i}, correlation_id=f"o{i}"))
        if i % 5 == 0 and i >= 10:
            events.append(Event(type="OrderCancelled", payload={"order": i - 10}, correlation_id=f"o{i - 10}"))
    EventLog(path).write(events)
    reports = []
    for options in ({}, {"workers": 2, "partitions": 64}):  # 64 partitions: most hold none of the first samples
        bus = uuid_shop()
        reports.append(Migration("uuids", legacy=bus, candidate=flow_from_bus(bus)).replay(path, **options))
    single, spread = reports
    assert (single.divergent, spread.divergent) == (0, 0)
    rows = {(r["event_type"], r["path"]): (r["samples"], r["differed"]) for r in single.noise}
    assert ("OrderPlaced", "emitted<accept:OrderAccepted>.payload.trace_id") in rows
    assert ("OrderCancelled", "state.void_ref") in rows
    assert {(r["event_type"], r["path"]): (r["samples"], r["differed"]) for r in spread.noise} == rows


# Usage errors are about what the CLI says, not about its process: its `main` runs here, as the
# console script calls it (no interpreter start and LangGraph import per check).


def test_worker_replay_with_nothing_to_join_exits_2_with_one_error_line(redis_url: str, tmp_path: Path, capsys, monkeypatch) -> None:
    from migration_kit.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["worker", "--replay", "--app", APP, "--store", redis_url, "--wait", "0.2"])
    stderr = capsys.readouterr().err
    assert code == 2
    waiting, error = stderr.splitlines()  # what it waited for, then why it gave up
    assert "waiting for a replay of 'orders-v2' to join" in waiting
    assert error.startswith("migration-kit: error: no distributed replay of migration 'orders-v2' to join")


def test_replay_with_negative_workers_exits_2_with_one_line(log: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    from migration_kit.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["replay", str(log), "--app", APP, "--workers", "-1"])
    stderr = capsys.readouterr().err
    assert code == 2
    assert stderr.count("\n") == 1 and "workers=-1" in stderr


# -- the merge law: any cut of a sequence of comparisons into partitions merges to the sequence's tally --

_POOL: list[Any] = []


def _pool(log: Path) -> list[Any]:
    if not _POOL:
        from legacy_bus import BoundedStateStore, EventLog

        with orders_v2() as m:
            legacy, candidate = BoundedStateStore(), BoundedStateStore()
            _POOL.extend(m.replay_step(e, legacy, candidate) for e, _ in zip(EventLog(log), range(60), strict=False))
    return _POOL


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_merge_of_any_partitioning_equals_the_tally_of_the_whole_sequence(log: Path, data: st.DataObject) -> None:
    pool = _pool(log)
    picks = data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=80))
    parts = data.draw(st.integers(1, 6))
    where = data.draw(st.lists(st.integers(0, parts - 1), min_size=len(picks), max_size=len(picks)))
    whole = ReplayTally()
    tallies = [ReplayTally() for _ in range(parts)]
    flags: list[list[Any]] = []
    for ordinal, (i, p) in enumerate(zip(picks, where, strict=True)):
        comparison = pool[i]
        whole.add(comparison, ordinal + 1)
        tallies[p].add(comparison, ordinal + 1)
        if flag_of(comparison):
            flags.append([ordinal, flag_of(comparison), comparison.first_divergent_node])
    merged = merge_tallies(tallies, flags)
    assert comparable(merged.to_dict()) == comparable(whole.to_dict())
    assert merged.evidence.latency["candidate"].count == whole.evidence.latency["candidate"].count
