"""kill -9 inside the third node: a new process resumes from the last checkpoint without re-running finished nodes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

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
    else:
        state = graph.get_state(config)
        mark("resume from next=" + ",".join(state.next))
        out = graph.invoke(None, config, durability=durability)
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
