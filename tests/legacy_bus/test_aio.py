"""run_sync: an async handler run to completion from sync code, Ctrl-C handled as asyncio.Runner does."""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal

import pytest

from legacy_bus.aio import run_sync

_var: contextvars.ContextVar[str] = contextvars.ContextVar("_var", default="unset")


def test_run_sync_returns_the_value_and_sees_the_callers_context() -> None:
    async def read() -> str:
        await asyncio.sleep(0)
        return _var.get()

    token = _var.set("caller")
    try:
        assert run_sync(read()) == "caller"
    finally:
        _var.reset(token)


def test_ctrl_c_cancels_the_coroutine_raises_keyboard_interrupt_and_restores_the_handler() -> None:
    # Python's own Ctrl-C handler is what run_sync takes over. A process started in the background by a
    # non-interactive shell (nohup, CI runners) begins with SIGINT ignored, and run_sync rightly leaves that
    # alone, so the test puts Python's handler in place first and puts back what it found after.
    found = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_cancels_and_restores()
    finally:
        signal.signal(signal.SIGINT, found)


def test_a_process_that_ignores_ctrl_c_keeps_ignoring_it() -> None:
    found = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:

        async def handler() -> str:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0.01)
            return "ran to the end"

        assert run_sync(handler()) == "ran to the end"
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, found)


def _ctrl_c_cancels_and_restores() -> None:
    seen: list[str] = []

    async def handler() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        try:
            await asyncio.sleep(60)  # cancelled by the Ctrl-C just sent, never waited out
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    with pytest.raises(KeyboardInterrupt) as info:
        run_sync(handler())
    assert seen == ["cancelled"]
    assert isinstance(info.value.__context__, asyncio.CancelledError)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    async def after() -> int:
        return 5

    assert run_sync(after()) == 5  # the thread's loop is still usable


def test_run_sync_inside_a_running_loop_runs_on_a_helper_thread() -> None:
    async def inner() -> int:
        return 7

    async def outer() -> int:
        return run_sync(inner())

    assert asyncio.run(outer()) == 7
