"""Running a legacy async handler from synchronous code, with or without a running loop."""

from __future__ import annotations

import _signal
import asyncio
import atexit
import contextvars
import signal
import threading
import weakref
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")

_local = threading.local()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_runners: weakref.WeakSet[asyncio.Runner] = weakref.WeakSet()


@atexit.register
def _close_runners() -> None:
    # Close the per-thread loops so the interpreter does not warn about them.
    for runner in list(_runners):
        try:
            runner.close()
        except Exception:  # noqa: S110 - best effort at exit
            pass


def _runner() -> asyncio.Runner:
    # One long-lived runner per thread: creating an event loop per call costs
    # more than most handlers do.
    runner = getattr(_local, "runner", None)
    if runner is None:
        runner = asyncio.Runner()
        _local.runner = runner
        _runners.add(runner)
    return runner


def _run_here(coro: Coroutine[Any, Any, T], ctx: contextvars.Context) -> T:
    # asyncio.Runner.run, step for step (Ctrl-C cancels the task, then raises KeyboardInterrupt),
    # but swapping the SIGINT handler through _signal: signal.signal and signal.getsignal turn
    # the handler they return into an enum member, which for a non-default handler costs a
    # failed enum lookup that formats repr(task), twice a call: most of a short handler's cost.
    loop = _runner().get_loop()
    task = loop.create_task(coro, context=ctx)
    interrupts = 0

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1 and not task.done():
            task.cancel()
            loop.call_soon_threadsafe(lambda: None)  # wake a loop blocked in select()
            return
        raise KeyboardInterrupt()

    handler = None
    if threading.current_thread() is threading.main_thread() and _signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        try:
            _signal.signal(signal.SIGINT, on_sigint)
            handler = on_sigint
        except ValueError:  # an embedded interpreter without signals (as Runner.run allows)
            handler = None
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        if interrupts > 0 and task.uncancel() == 0:
            raise KeyboardInterrupt()  # noqa: B904 - as Runner.run raises it
        raise
    finally:
        if handler is not None and _signal.getsignal(signal.SIGINT) is handler:
            _signal.signal(signal.SIGINT, signal.default_int_handler)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result, from synchronous code.

    With no event loop running in this thread it runs on this thread's own
    long-lived loop. When a loop is already running here (a sync ``publish``
    called from async code), blocking that loop on itself would deadlock, so
    the coroutine runs on a helper thread's loop while this thread waits.
    The caller's context variables are visible to the coroutine either way.
    """
    ctx = contextvars.copy_context()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_here(coro, ctx)
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="legacy-bus-async")
    return _pool.submit(_run_here, coro, ctx).result()
