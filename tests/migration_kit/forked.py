"""Run a function in a forked child of the test process, as its own process that can be SIGKILLed.

A child forked from the test process has migration_kit and LangGraph imported
already, so a test that starts a driver many times does not pay an interpreter
start-up and a LangGraph import (1-2 s each, several times that on a loaded
machine) per run. The child is a real process: it has its own pid, its own
file descriptors and memory, and dies by a signal like any other.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def start(fn: Callable[[], int | None], out: Path, env: dict[str, str] | None = None) -> int:
    """Fork a child that runs ``fn()`` with stdout to ``out`` and stderr to ``out`` + ``.err``; returns its pid.

    The child exits with ``fn``'s return value (``None``: 0), with 1 after
    printing the traceback of an exception, or with ``SystemExit``'s code.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child exits here
        code = 70
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            err = os.open(f"{out}.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(err, 2)
            # pytest's capture replaced sys.stdout/sys.stderr: point them back at the files.
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the child exits with os._exit
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            os.environ.update(env or {})
            try:
                result = fn()
                code = 0 if result is None else int(result)
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except BaseException:
                traceback.print_exc()
                code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    return pid


def wait(pid: int, timeout: float = 300) -> int:
    """Wait for the child with a deadline; its exit code, or minus the signal that killed it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"the forked child (pid {pid}) did not finish in {timeout} s")


@dataclass(frozen=True)
class Finished:
    """What a finished child left: like ``subprocess.CompletedProcess``."""

    returncode: int
    stdout: str
    stderr: str


def run(fn: Callable[[], int | None], out: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300) -> Finished:
    """Fork, run ``fn()`` in the child and wait for it; its exit code and what it printed.

    Without ``out`` what the child prints goes to a temporary directory, removed afterwards.
    """
    if out is None:
        with tempfile.TemporaryDirectory(prefix="forked-") as tmp:
            return run(fn, Path(tmp) / "out.txt", env, timeout)
    code = wait(start(fn, out, env), timeout)
    err = Path(f"{out}.err")
    return Finished(code, out.read_text(errors="replace"), err.read_text(errors="replace") if err.exists() else "")
