"""The sync saver's writes on one pipelined connection, waited for as ``checkpoints/durability.py`` rules.

Why: LangGraph runs ``put`` / ``put_writes`` in a pool thread of the run. A
call that blocks on its own reply keeps that thread busy while the graph
computes (it needs the GIL back to return), so the pool starts more threads
and the run pays a round trip per write at its end; measured, that halves a
5-node chain's throughput against ``InMemorySaver``. Here every write of a
standalone server goes out on one connection the moment it is made (sent
under a lock, so Redis runs a thread's scripts in the order LangGraph issued
them), and only the calls the durability rules name wait for replies; the
one that waits reads the replies of everyone's writes (one ``recv`` can
acknowledge many), so a run's writes cost one wait at its end.

Guarantees:

- Order: one connection, one lock around each send; each script is atomic.
- Acknowledged before the run returns (``Policy.BEHIND``'s guard), before a
  ``"sync"`` step ends or a direct call returns (``Policy.ACK``).
- A dropped connection is reopened and every unacknowledged write is sent
  again, in order (every script is idempotent); after three failed attempts
  the writes fail with ``StoreUnavailable``, raised to whoever waits for
  them (the guard: LangGraph re-raises it from ``invoke``), or the next call
  on their thread, or ``flush()``. Redis errors are raised the same way.
- ``flush()`` waits for every write; ``close()`` flushes.
"""

from __future__ import annotations

import logging
import select
import ssl
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.exceptions import ResponseError

from checkpoints.durability import AckLedger, Policy
from migration_errors import StoreUnavailable
from redis_connect.connection import UNREACHABLE, unavailable

__all__ = ["Pipeline"]

logger = logging.getLogger(__name__)

_ATTEMPTS = 3
_RETRYABLE = (*UNREACHABLE, OSError, StoreUnavailable)


class Pipeline:
    """Ordered, pipelined script calls whose replies are integers or errors (``PUT``, ``PUT_WRITES``, deletes).

    Args:
        connect: Opens a connected redis-py ``Connection`` (handshake done).
        reload: Loads the scripts again (after ``NOSCRIPT``).
        url: The masked server URL, for error messages.
    """

    def __init__(self, connect: Callable[[], Any], reload: Callable[[], None], url: str) -> None:
        self._connect = connect
        self._reload = reload
        self._url = url
        self._lock = threading.Lock()
        self._replied = threading.Condition(self._lock)
        self.ledger = AckLedger()
        self._conn: Any = None
        self._inflight: deque[tuple[Any, int, bytes]] = deque()  # sent, reply not read: (thread, seq, packed)
        self._reading = False
        self._closed = False
        self._buf = b""
        self.waits = 0  # times a caller blocked for replies (round trips on some call's path)

    def send(self, thread: Any, packed: bytes, policy: Policy) -> None:
        """Send one packed ``EVALSHA`` of ``thread``; wait as ``policy`` says; raise the thread's failures."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the Redis saver is closed")
            error = self.ledger.take_error(thread)
            if error is not None:
                raise error
            seq = self.ledger.sent(thread)
            self._inflight.append((thread, seq, packed))
            try:
                self._write([packed])
            except _RETRYABLE as e:
                if not self._recover(e):
                    raise self.ledger.take_error(thread) or e from None
            except BaseException:
                self._inflight.pop()
                self.ledger.acked(thread, seq)
                raise
            ticket = self.ledger.ticket(thread, seq, policy)
            if ticket is not None:
                self._wait(thread, ticket)

    def fence(self, thread: Any, timeout: float | None = None) -> bool:
        """Wait until every write of ``thread`` sent so far is acknowledged; False on timeout."""
        with self._lock:
            ticket = self.ledger.fence(thread)
            if ticket is None:
                error = self.ledger.take_error(thread)
            else:
                if not self._wait(thread, ticket, timeout, raise_error=False):
                    return False
                error = self.ledger.release(thread, ticket)
        if error is not None:
            raise error
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write sent so far is acknowledged; False on timeout; raise a failure once."""
        with self._lock:
            while self._inflight:
                if not self._read_or_wait(timeout):
                    return False
            error = self.ledger.take_error()
        if error is not None:
            raise error
        return True

    @property
    def pending(self) -> int:
        """Writes sent and not yet acknowledged."""
        return len(self._inflight)

    def close(self) -> None:
        """Drop the connection (call ``flush`` first to keep what is in flight)."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()

    # -- with the lock held ------------------------------------------------------

    def _wait(self, thread: Any, ticket: Any, timeout: float | None = None, *, raise_error: bool = True) -> bool:
        ledger = self.ledger
        try:
            while not ledger.satisfied(thread, ticket):
                if not self._read_or_wait(timeout):
                    return False
        except BaseException:
            ledger.release(thread, ticket)  # a guard that gives up lets the next write of its thread take over
            raise
        if raise_error:
            error = ledger.release(thread, ticket)
            if error is not None:
                raise error
        return True

    def _read_or_wait(self, timeout: float | None) -> bool:
        """Read one batch of replies, or wait while another caller reads; False on timeout."""
        if self._reading:
            return self._replied.wait(timeout) or not self._reading
        self._reading = True
        self.waits += 1
        try:
            conn = self._conn
            sock = conn._sock if conn is not None else None
            data = b""
            if sock is not None:
                if timeout is not None and not select.select([sock], [], [], timeout)[0]:
                    return False
                if isinstance(sock, ssl.SSLSocket):
                    data = self._recv(sock)  # OpenSSL objects are not safe to read and write at once
                else:
                    self._lock.release()  # others keep sending while this caller waits for replies
                    try:
                        data = self._recv(sock)
                    finally:
                        self._lock.acquire()
            if conn is not self._conn:
                pass  # a sender reopened the connection meanwhile and sent everything again
            elif not data:
                self._recover(ConnectionError("connection closed by the server"))
            else:
                self._replies(data)
        finally:
            self._reading = False
            self._replied.notify_all()
        return True

    @staticmethod
    def _recv(sock: Any) -> bytes:
        try:
            return sock.recv(65536)
        except (OSError, ValueError):
            return b""

    def _replies(self, data: bytes) -> None:
        buf = self._buf + data
        lines = buf.split(b"\r\n")
        self._buf = lines.pop()
        retry: list[tuple[Any, int, bytes]] = []
        ledger = self.ledger
        for line in lines:
            thread, seq, packed = self._inflight.popleft()
            if line[:1] != b"-":
                ledger.acked(thread, seq)
            elif line.startswith(b"-NOSCRIPT"):
                retry.append((thread, seq, packed))
            else:
                ledger.acked(thread, seq, ResponseError(line[1:].decode(errors="replace")))
        if retry:
            # After SCRIPT FLUSH every EVALSHA fails until the reload, so these are the newest sends, in order.
            try:
                self._reload()
            except BaseException as e:
                for thread, seq, _ in retry:
                    ledger.acked(thread, seq, e)
                return
            self._inflight.extend(retry)  # sent again after everything in flight, so their replies come last
            try:
                self._write([p for _, _, p in retry])
            except _RETRYABLE as e:
                self._recover(e)

    def _write(self, packed: list[bytes]) -> None:
        if self._conn is None:
            self._conn = self._connect()
        self._conn.send_packed_command(packed, check_health=False)

    def _recover(self, cause: BaseException) -> bool:
        """Reopen the connection and send every unacknowledged write again, in order; else fail them."""
        last: BaseException = cause
        for _ in range(0 if self._closed else _ATTEMPTS):
            if self._conn is not None:
                self._conn.disconnect()
                self._conn = None
            self._buf = b""
            try:
                self._write([p for _, _, p in self._inflight])
                return True
            except _RETRYABLE as e:
                last = e
        error = unavailable(self._url, last)
        logger.error("Redis saver: %d checkpoint writes failed: %s", len(self._inflight), error)
        while self._inflight:
            thread, seq, _ = self._inflight.popleft()
            self.ledger.acked(thread, seq, error)
        return False
