"""Saga locks: one lock per saga, taken alike by sync publishers and async ones, never leaked.

The cutover serializes the events and handovers of one saga in this process
(across processes the saga record's compare-and-set does). Each saga gets its
own lock, made when first wanted and dropped when nobody holds or waits for
it, so a saga stuck in a slow store call blocks only its own events, never an
unrelated saga's (no shared stripes).

Async waiters wait on a future, not in a thread: a cancelled waiter
(``asyncio.wait_for`` timing out, a client gone) leaves the queue, or, when
the lock was handed to it in the same instant, passes it on. Work a holder
runs in a thread (``Held.run``) keeps the lock until that thread returns, even
when the awaiting task is cancelled first: the lock is released by the thread
itself, so a handover that is still writing is never overtaken by the next
event.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

__all__ = ["Held", "SagaLock", "SagaLocks"]

T = TypeVar("T")

# Store calls of async publishers run here. Threads only ever run store calls and graph
# lookups (never wait for a saga lock), so a full pool cannot deadlock.
_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="mk-saga-io")


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class SagaLock:
    """A FIFO lock with sync (``acquire``) and async (``aacquire``) waiters; ownership passes on release."""

    __slots__ = ("_held", "_mu", "_waiters", "users")

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._held = False
        self._waiters: deque[Any] = deque()
        self.users = 0  # holders and waiters (the registry drops the lock at 0)

    @property
    def locked(self) -> bool:
        """True while someone holds it."""
        return self._held

    def acquire(self, timeout: float | None = None) -> bool:
        """Take the lock, waiting up to ``timeout`` seconds (None: for ever); True if taken."""
        with self._mu:
            if not self._held and not self._waiters:
                self._held = True
                return True
            waiter = threading.Event()
            self._waiters.append(waiter)
        if waiter.wait(timeout):
            return True
        with self._mu:
            if waiter.is_set():  # handed to us just as the wait ran out
                return True
            self._waiters.remove(waiter)
            return False

    async def aacquire(self) -> None:
        """Take the lock without blocking the loop; a cancelled waiter never ends up holding it."""
        loop = asyncio.get_running_loop()
        with self._mu:
            if not self._held and not self._waiters:
                self._held = True
                return
            fut: asyncio.Future[None] = loop.create_future()
            waiter = (loop, fut)
            self._waiters.append(waiter)
        try:
            await fut
        except BaseException:  # re-raised: a cancelled or failed wait leaves no trace in the lock
            with self._mu:
                if waiter in self._waiters:  # still queued: leave the queue
                    self._waiters.remove(waiter)
                    raise
            self.release()  # it was handed to us meanwhile: pass it on
            raise

    def release(self) -> None:
        """Release it, handing it to the longest waiter if there is one."""
        with self._mu:
            while self._waiters:
                waiter = self._waiters.popleft()
                if isinstance(waiter, threading.Event):
                    waiter.set()
                    return
                loop, fut = waiter
                try:
                    loop.call_soon_threadsafe(_wake, fut)
                    return
                except RuntimeError:  # that waiter's loop is closed: next one
                    continue
            self._held = False


class Held:
    """A held saga lock, inside ``SagaLocks.ahold``: runs blocking calls off the loop without losing the lock."""

    __slots__ = ("_pending", "saga")

    def __init__(self, saga: str) -> None:
        self.saga = saga
        self._pending: Future[Any] | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a thread; if the caller is cancelled, the lock stays held until ``fn`` returns."""
        cf = _POOL.submit(contextvars.copy_context().run, fn, *args)
        try:
            return await asyncio.shield(asyncio.wrap_future(cf))
        except asyncio.CancelledError:
            if not cf.done():
                self._pending = cf
            raise


class SagaLocks:
    """The per-saga locks of one process: made on first use, dropped when unused."""

    def __init__(self) -> None:
        self._mu = threading.Lock()
        self._locks: dict[str, SagaLock] = {}

    def _enter(self, saga: str) -> SagaLock:
        with self._mu:
            lock = self._locks.get(saga)
            if lock is None:
                lock = self._locks[saga] = SagaLock()
            lock.users += 1
            return lock

    def _leave(self, saga: str, lock: SagaLock) -> None:
        with self._mu:
            lock.users -= 1
            # a lock still held with nobody left is a leak: kept, so held() shows it (and the saga waits)
            if lock.users == 0 and not lock.locked and self._locks.get(saga) is lock:
                del self._locks[saga]

    def _release(self, saga: str, lock: SagaLock) -> None:
        lock.release()
        self._leave(saga, lock)

    def held(self) -> list[str]:
        """The sagas whose lock is held or waited for now (empty when the process is idle)."""
        with self._mu:
            return sorted(s for s, lock in self._locks.items() if lock.users or lock.locked)

    @contextmanager
    def hold(self, saga: str) -> Iterator[None]:
        """Hold ``saga``'s lock for the block (sync callers)."""
        lock = self._enter(saga)
        try:
            lock.acquire()
        except BaseException:  # re-raised: a cancelled or failed wait leaves no trace in the lock
            self._leave(saga, lock)
            raise
        try:
            yield
        finally:
            self._release(saga, lock)

    @asynccontextmanager
    async def ahold(self, saga: str) -> AsyncIterator[Held]:
        """Hold ``saga``'s lock for the block (async callers); see ``Held.run`` for blocking calls inside."""
        lock = self._enter(saga)
        try:
            await lock.aacquire()
        except BaseException:  # re-raised: a cancelled or failed wait leaves no trace in the lock
            self._leave(saga, lock)
            raise
        held = Held(saga)
        try:
            yield held
        finally:
            pending = held._pending
            if pending is not None and not pending.done():
                # cancelled while a store call still runs: the thread releases when it returns
                pending.add_done_callback(lambda _f: self._release(saga, lock))
            else:
                self._release(saga, lock)
