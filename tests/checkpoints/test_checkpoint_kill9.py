"""kill -9 of the process and of redis-server, under each durability mode: what a resume finds.

- The process killed inside the third node: under ``"sync"`` and ``"async"`` a
  new process resumes at n3 without re-running n1/n2; under ``"exit"`` nothing
  was written, so the run starts over.
- redis-server killed right after ``invoke`` returned (the process still
  alive), Redis run with ``appendfsync always``: the restarted server has the
  final state in every mode, because the run's writes were acknowledged
  before ``invoke`` returned.
- redis-server killed inside n3: the run raises ``StoreUnavailable``; restarted,
  the same saver resumes at n3.
- The primary killed once its replica caught up, the replica promoted: the
  final state is there in every mode.
"""

from __future__ import annotations

import json
import operator
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, TypedDict

import pytest
import redis
from langgraph.graph import END, START, StateGraph

from checkpoints import RedisSaver, StoreUnavailable

from servers import RedisServer, _spawn, _terminate, _wait_ping

# The run, as a standalone program: a 5-node chain whose nodes append a marker
# line to a file when they start and when they finish. In "first" mode node n3
# signals that it is running (after `delay` seconds of work) and then hangs
# until it is killed; in "resume" mode the graph continues the thread with
# invoke(None) and prints the final state.
CHILD = r"""
import json, os, sys, time, operator
from typing import Annotated, TypedDict
from langgraph.graph import START, END, StateGraph
from checkpoints import RedisSaver

url, thread_id, markers, mode, durability, delay = sys.argv[1:7]

class State(TypedDict):
    value: int
    trail: Annotated[list[str], operator.add]

def mark(text):
    with open(markers, "a") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())

def make(name):
    def node(state):
        mark(f"start {name}")
        if name == "n3" and mode == "first":
            time.sleep(float(delay))
            mark("n3 running")
            time.sleep(600)
        mark(f"done {name}")
        return {"value": state["value"] + 1, "trail": [name]}
    return node

builder = StateGraph(State)
prev = START
for i in range(1, 6):
    builder.add_node(f"n{i}", make(f"n{i}"))
    builder.add_edge(prev, f"n{i}")
    prev = f"n{i}"
builder.add_edge(prev, END)

with RedisSaver.from_conn_string(url) as saver:
    graph = builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": thread_id}}
    if mode == "first":
        graph.invoke({"value": 0, "trail": []}, config, durability=durability)
    elif mode == "whole":
        graph.invoke({"value": 0, "trail": []}, config, durability=durability)
        mark("invoke returned")
        time.sleep(600)  # killed by the test
    else:
        state = graph.get_state(config)
        mark("resume from next=" + ",".join(state.next))
        if state.next:
            out = graph.invoke(None, config, durability=durability)
        elif state.values:
            out = state.values  # the run had finished: nothing left to do
        else:
            out = graph.invoke({"value": 0, "trail": []}, config, durability=durability)  # nothing saved: again
        print(json.dumps(out))
"""


def _run_child(tmp: Path, *args: str) -> subprocess.Popen:
    script = tmp / "child.py"
    script.write_text(CHILD)
    # cwd is the temp dir, so nothing in the repository can shadow the installed packages.
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    ("durability", "delay"),
    [
        ("sync", "0"),  # every checkpoint is acknowledged before the next node starts
        ("async", "0.3"),  # LangGraph's default: writes land while the next node runs
    ],
)
def test_sigkill_in_third_node_resumes_without_rerunning_finished_nodes(
    redis_url: str, tmp_path: Path, durability: str, delay: str
) -> None:
    """kill -9 in n3; a new process resumes at n3, ends in the same final state, and n1/n2 ran once."""
    markers = tmp_path / "markers.txt"
    markers.touch()
    thread_id = f"kill9-{uuid.uuid4()}"

    first = _run_child(tmp_path, redis_url, thread_id, str(markers), "first", durability, delay)
    deadline = time.monotonic() + 60
    while "n3 running" not in markers.read_text():
        if first.poll() is not None:
            raise AssertionError(f"child exited early:\n{first.stdout.read()}\n{first.stderr.read()}")
        if time.monotonic() > deadline:
            first.kill()
            raise AssertionError("child never reached n3")
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(timeout=10) == -signal.SIGKILL
    first.stdout.close()
    first.stderr.close()

    second = _run_child(tmp_path, redis_url, thread_id, str(markers), "resume", durability, "0")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err

    final = json.loads(out.strip().splitlines()[-1])
    assert final == {"value": 5, "trail": ["n1", "n2", "n3", "n4", "n5"]}

    lines = markers.read_text().splitlines()
    assert lines.count("start n1") == 1 and lines.count("done n1") == 1
    assert lines.count("start n2") == 1 and lines.count("done n2") == 1
    assert "resume from next=n3" in lines
    # n3 was cut off once and completed once; n4 and n5 ran only after the resume.
    assert lines.count("start n3") == 2 and lines.count("done n3") == 1
    assert lines.count("done n4") == 1 and lines.count("done n5") == 1
    assert lines.index("resume from next=n3") < lines.index("done n3")


def _wait_marker(markers: Path, text: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while text not in markers.read_text():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early:\n{proc.stdout.read()}\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"child never wrote {text!r}")
        time.sleep(0.01)


def _kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def test_exit_durability_loses_a_run_killed_in_its_third_node(redis_url: str, tmp_path: Path) -> None:
    """Under "exit" nothing is written before the run ends: after kill -9 in n3 the thread is empty and runs again."""
    markers = tmp_path / "markers.txt"
    markers.touch()
    thread_id = f"kill9-exit-{uuid.uuid4()}"
    first = _run_child(tmp_path, redis_url, thread_id, str(markers), "first", "exit", "0")
    _wait_marker(markers, "n3 running", first)
    _kill9(first)
    assert redis.Redis.from_url(redis_url).keys(f"lgcp:{{{thread_id}}}:*") == []

    second = _run_child(tmp_path, redis_url, thread_id, str(markers), "resume", "exit", "0")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {"value": 5, "trail": ["n1", "n2", "n3", "n4", "n5"]}
    lines = markers.read_text().splitlines()
    assert "resume from next=" in lines
    assert lines.count("done n1") == 2 and lines.count("done n2") == 2 and lines.count("done n5") == 1


@pytest.mark.parametrize("durability", ["async", "sync", "exit"])
def test_redis_killed_right_after_invoke_returns_keeps_the_final_state(tmp_path: Path, durability: str) -> None:
    """kill -9 of redis-server (appendfsync always) the moment invoke returned: the restarted server has the final state."""
    server = RedisServer.start("--appendonly", "yes", "--appendfsync", "always")
    try:
        markers = tmp_path / "markers.txt"
        markers.touch()
        thread_id = f"kill9-redis-{uuid.uuid4()}"
        child = _run_child(tmp_path, server.url, thread_id, str(markers), "whole", durability, "0")
        _wait_marker(markers, "invoke returned", child)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        _kill9(child)

        _terminate(server.process)  # closes its log
        server.process = _spawn(server.port, server.workdir, "--appendonly", "yes", "--appendfsync", "always")
        _wait_ping(server.process, server.port, server.workdir)
        resumed = _run_child(tmp_path, server.url, thread_id, str(markers), "resume", durability, "0")
        out, err = resumed.communicate(timeout=60)
        assert resumed.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == {"value": 5, "trail": ["n1", "n2", "n3", "n4", "n5"]}
        lines = markers.read_text().splitlines()
        assert "resume from next=" in lines  # the final checkpoint: nothing left to run
        assert lines.count("done n1") == 1 and lines.count("done n5") == 1
    finally:
        server.stop()


class _State(TypedDict):
    value: int
    trail: Annotated[list[str], operator.add]


@pytest.mark.parametrize("durability", ["async", "sync"])
def test_redis_killed_mid_run_fails_the_run_and_the_same_saver_resumes_after_restart(
    tmp_path: Path, durability: str
) -> None:
    """kill -9 of redis-server inside n3: invoke raises StoreUnavailable; restarted, the same saver resumes at n3.

    n1 and n2 never run again: their checkpoints were acknowledged (and fsynced) before Redis died.
    """
    server = RedisServer.start("--appendonly", "yes", "--appendfsync", "always")
    ran: list[str] = []
    config = {"configurable": {"thread_id": f"redis-kill-{uuid.uuid4()}"}}

    def make(name: str):
        def node(state: _State) -> dict:
            ran.append(name)
            if name == "n3" and ran.count("n3") == 1:
                # Kill Redis once n2's checkpoint is in it (read through another connection).
                deadline = time.monotonic() + 30
                with RedisSaver.from_conn_string(server.url) as probe:
                    while probe.get_tuple(config) is None or probe.get_tuple(config).metadata["step"] < 2:
                        assert time.monotonic() < deadline, "n2's checkpoint never reached Redis"
                os.kill(server.process.pid, signal.SIGKILL)
                server.process.wait(timeout=10)
            return {"value": state["value"] + 1, "trail": [name]}

        return node

    builder = StateGraph(_State)
    prev = START
    for i in range(1, 6):
        builder.add_node(f"n{i}", make(f"n{i}"))
        builder.add_edge(prev, f"n{i}")
        prev = f"n{i}"
    builder.add_edge(prev, END)
    try:
        with RedisSaver.from_conn_string(server.url) as saver:
            graph = builder.compile(checkpointer=saver)
            with pytest.raises(StoreUnavailable):
                graph.invoke({"value": 0, "trail": []}, config, durability=durability)

            _terminate(server.process)
            server.process = _spawn(server.port, server.workdir, "--appendonly", "yes", "--appendfsync", "always")
            _wait_ping(server.process, server.port, server.workdir)
            assert graph.get_state(config).next == ("n3",)
            out = graph.invoke(None, config, durability=durability)
        assert out == {"value": 5, "trail": ["n1", "n2", "n3", "n4", "n5"]}
        if durability == "sync":  # the failed checkpoint stops the run at once
            assert ran == ["n1", "n2", "n3", "n3", "n4", "n5"]
        else:  # LangGraph raises a background write's failure when the run ends
            assert ran == ["n1", "n2", "n3", "n4", "n5", "n3", "n4", "n5"]
    finally:
        server.stop()


def _replication(client: redis.Redis) -> dict:
    return client.info("replication")


@pytest.mark.parametrize("durability", ["async", "sync", "exit"])
def test_failover_to_a_caught_up_replica_keeps_the_final_state(tmp_path: Path, durability: str) -> None:
    """kill -9 of the primary once its replica has the run (replication offset), replica promoted: the state is there."""
    # Redis waits 5 s (repl-diskless-sync-delay) for more replicas before a full sync; there is one.
    primary = RedisServer.start("--repl-diskless-sync-delay", "0")
    replica = RedisServer.start("--replicaof", "127.0.0.1", str(primary.port))
    try:
        primary_client, replica_client = redis.Redis.from_url(primary.url), redis.Redis.from_url(replica.url)
        deadline = time.monotonic() + 30
        while _replication(replica_client).get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica never connected to the primary"
            time.sleep(0.01)
        markers = tmp_path / "markers.txt"
        markers.touch()
        thread_id = f"failover-{uuid.uuid4()}"
        child = _run_child(tmp_path, primary.url, thread_id, str(markers), "whole", durability, "0")
        _wait_marker(markers, "invoke returned", child)
        offset = _replication(primary_client)["master_repl_offset"]
        while _replication(replica_client).get("slave_repl_offset", 0) < offset:
            assert time.monotonic() < deadline + 30, "the replica never caught up"
            time.sleep(0.01)
        os.kill(primary.process.pid, signal.SIGKILL)
        primary.process.wait(timeout=10)
        _kill9(child)
        replica_client.replicaof("NO", "ONE")

        resumed = _run_child(tmp_path, replica.url, thread_id, str(markers), "resume", durability, "0")
        out, err = resumed.communicate(timeout=60)
        assert resumed.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == {"value": 5, "trail": ["n1", "n2", "n3", "n4", "n5"]}
        assert markers.read_text().splitlines().count("done n1") == 1
    finally:
        replica.stop()
        primary.stop()
