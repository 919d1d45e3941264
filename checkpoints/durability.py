"""Which checkpoint writes wait for Redis, and for what: LangGraph's durability mode, as bookkeeping.

LangGraph runs a graph's ``put`` / ``put_writes`` in its own background executor
and decides itself what waits for them (``langgraph/pregel/_loop.py`` and
``main.py``): under ``durability="sync"`` the loop waits for each checkpoint's
``put`` before the next step; under ``"async"`` (its default) and ``"exit"``
it waits for nothing until the run ends, and then for every call it submitted
(the executor's exit). The mode reaches the saver in the call's config as
``__pregel_durability`` (absent means ``"async"``), beside
``__pregel_runtime``, which only calls made by a running graph carry.

So a saver keeps LangGraph's promise when

- a ``put`` of a ``"sync"`` run, and every call not made by a running graph
  (``update_state``, a direct ``put``), returns once Redis acknowledged it
  (and, the connection being ordered, every earlier write of its thread):
  ``Policy.ACK``;
- any other write of a run returns as soon as it is *sent*, provided one call
  of the same run is still waiting until every write of the thread sent so
  far, including later ones, is acknowledged; the first write that finds no
  such call becomes it (the thread's *guard*): ``Policy.BEHIND``. LangGraph
  waits for the guard's call before the run returns, so the run's writes are
  acknowledged when ``invoke`` returns, while only one pool thread per run
  waits on Redis;
- a write queued for a later ``flush()`` waits for nothing: ``Policy.QUEUED``.

``AckLedger`` is that bookkeeping without I/O, shared by the sync driver
(``checkpoints/pipeline.py``: one pipelined connection) and the async one
(``checkpoints/aio.py``: one ordered chain of tasks per thread).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

__all__ = ["GUARD", "AckLedger", "Policy", "write_policy"]

# LangGraph's config keys (langgraph._internal._constants); spelled out so a
# private import cannot break the saver.
_DURABILITY_KEY = "__pregel_durability"
_RUNTIME_KEY = "__pregel_runtime"


class Policy(enum.Enum):
    """What a write waits for once it is sent."""

    ACK = "ack"  # its own acknowledgement (and every earlier write of its thread)
    BEHIND = "behind"  # nothing, if its thread has a guard; else it becomes the guard
    QUEUED = "queued"  # nothing: acknowledged by a later flush()


def write_policy(conf: Mapping[str, Any], *, checkpoint: bool) -> Policy:
    """The policy of one ``put`` (``checkpoint=True``) or ``put_writes`` given its ``configurable``."""
    if _RUNTIME_KEY not in conf:
        return Policy.ACK  # not LangGraph's loop: a direct call or update_state waits for itself
    if checkpoint and conf.get(_DURABILITY_KEY, "async") == "sync":
        return Policy.ACK  # LangGraph waits for this put before the next step
    return Policy.BEHIND


class _Guard:
    def __repr__(self) -> str:
        return "GUARD"


# The ticket of a thread's guard: satisfied when nothing of the thread is outstanding.
GUARD: Any = _Guard()


class _Thread:
    __slots__ = ("outstanding", "guarded", "error")

    def __init__(self) -> None:
        self.outstanding: set[int] = set()
        self.guarded = False
        self.error: BaseException | None = None


class AckLedger:
    """Sequence numbers of the writes sent per thread, which are acknowledged, and who waits.

    Not thread-safe: the sync driver holds its lock around every call, the
    async one runs on one event loop. ``thread`` is any hashable key of a
    graph thread (the drivers use its key prefix).
    """

    def __init__(self) -> None:
        self._seq = 0
        self._threads: dict[Any, _Thread] = {}

    def sent(self, thread: Any) -> int:
        """Record a write of ``thread`` going out; return its sequence number."""
        self._seq += 1
        state = self._threads.get(thread)
        if state is None:
            state = self._threads[thread] = _Thread()
        state.outstanding.add(self._seq)
        return self._seq

    def ticket(self, thread: Any, seq: int, policy: Policy) -> Any:
        """What the call that sent ``seq`` waits for: ``None`` (nothing), ``seq``, or ``GUARD``."""
        if policy is Policy.ACK:
            return seq
        if policy is Policy.QUEUED:
            return None
        state = self._threads[thread]
        if state.guarded:
            return None
        state.guarded = True
        return GUARD

    def fence(self, thread: Any) -> Any:
        """The ticket a read of ``thread`` waits for: its newest outstanding write, or ``None``."""
        state = self._threads.get(thread)
        if state is None or not state.outstanding:
            return None
        return max(state.outstanding)

    def satisfied(self, thread: Any, ticket: Any) -> bool:
        """Whether the wait for ``ticket`` is over (for ``GUARD``: nothing of the thread outstanding)."""
        state = self._threads.get(thread)
        if state is None or not state.outstanding:
            return True
        if ticket is GUARD:
            return False
        return min(state.outstanding) > ticket

    def release(self, thread: Any, ticket: Any) -> BaseException | None:
        """End a wait; return the thread's first failed write not yet reported, if any."""
        state = self._threads.get(thread)
        if state is None:
            return None
        if ticket is GUARD:
            state.guarded = False
        error, state.error = state.error, None
        self._forget(thread, state)
        return error

    def acked(self, thread: Any, seq: int, error: BaseException | None = None) -> None:
        """Record the reply to write ``seq`` (``error`` if Redis or the connection failed it)."""
        state = self._threads.get(thread)
        if state is None:
            return
        state.outstanding.discard(seq)
        if error is not None and state.error is None:
            state.error = error
        self._forget(thread, state)

    def take_error(self, thread: Any = None) -> BaseException | None:
        """A failed write of ``thread`` (of any thread when ``None``) not yet reported, cleared."""
        if thread is not None:
            state = self._threads.get(thread)
            if state is None or state.error is None:
                return None
            items = [(thread, state)]
        else:
            items = list(self._threads.items())
        for key, state in items:
            if state is not None and state.error is not None:
                error, state.error = state.error, None
                self._forget(key, state)
                return error
        return None

    def idle(self) -> bool:
        """Whether every write sent so far is acknowledged."""
        return not any(state.outstanding for state in self._threads.values())

    @property
    def pending(self) -> int:
        """Number of writes sent and not yet acknowledged."""
        return sum(len(state.outstanding) for state in self._threads.values())

    def _forget(self, thread: Any, state: _Thread) -> None:
        if not state.outstanding and not state.guarded and state.error is None:
            self._threads.pop(thread, None)
