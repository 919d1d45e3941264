"""Where an event's time goes, per path: the parts latency contracts judge and reports draw.

Candidate parts, per event (seconds):

* ``node``: the nodes' own compute, the sum of the trace's node durations;
* ``checkpoint``: time spent inside the checkpointer's calls during the run
  (measured by ``TimedSaver``, a thin timing wrapper around the saver);
* ``runtime``: LangGraph around the nodes (scheduling, channels, state
  copies): the rest of the wall time.

Legacy parts: ``handler`` (the handlers' compute) and ``bus`` (the bus's own
dispatch around them).

What a contract judges is named by its ``part``:

* ``total``: the wall time this run measured, bookkeeping and all;
* ``compute``: node compute against handler compute;
* ``served`` (the default): what users pay after cutover. Node compute, plus
  the runtime's cost on an uncontended core (``min(runtime wall, run CPU
  time)``: the replay machine's other processes are not the candidate's
  cost), plus a production checkpointer's cost modelled from the run's
  supersteps (``production_checkpoint``). The store this replay happens to use
  is not charged: a local SQLite file or ``memory://`` is far cheaper than a
  networked Redis, and a sandboxed replay runs with ``durability="exit"``
  (one checkpoint per event), so a replay on a local file store could not
  pass for the cost of production otherwise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.base import BaseCheckpointSaver

if TYPE_CHECKING:
    from migration_kit.compare.outcome import Outcome

__all__ = [
    "CANDIDATE_PARTS",
    "LEGACY_PARTS",
    "PART_NAMES",
    "PRODUCTION_CALL_MS",
    "TimedSaver",
    "breakdown",
    "production_checkpoint",
    "timed_saver",
]

CANDIDATE_PARTS = ("node", "runtime", "checkpoint")
LEGACY_PARTS = ("handler", "bus")
#: What a latency contract may judge (``LatencyIs.part``).
PART_NAMES = ("served", "total", "compute")

#: One checkpointer call of production, in ms: a put or put_writes to a Redis in
#: the same zone. ``bench/bench_checkpointer.py`` measures ~0.2 ms per call on a
#: loopback redis-server with the flow state's serialization; a network round
#: trip in one zone adds 0.2-0.3 ms. LangGraph's default durability ("async")
#: makes one put and one put_writes per superstep plus the opening read.
PRODUCTION_CALL_MS = 0.5


def production_checkpoint(steps: int) -> float:
    """Seconds a production checkpointer adds to a run of ``steps`` supersteps (the model above)."""
    if steps <= 0:
        return 0.0
    calls = 2 * (steps + 1) + 1  # a put and a put_writes per superstep (and the input), one read
    return calls * PRODUCTION_CALL_MS / 1000


@dataclass(frozen=True, slots=True)
class Breakdown:
    """One event's time on one path, split into parts, and what a user would pay after cutover."""

    total: float
    parts: dict[str, float]
    served: float
    compute: float


def breakdown(outcome: Outcome) -> Breakdown:
    """Split one outcome's time into its parts (see the module docstring)."""
    compute = max(0.0, sum(r.duration for r in outcome.trace))
    total = max(0.0, outcome.duration)
    if outcome.path == "legacy":
        return Breakdown(total, {"handler": compute, "bus": max(0.0, total - compute)}, total, compute)
    checkpoint = max(0.0, min(outcome.checkpoint, total - compute))
    runtime = max(0.0, total - compute - checkpoint)
    cpu = outcome.cpu
    uncontended = runtime if cpu is None else min(runtime, max(0.0, cpu))
    steps = outcome.steps if outcome.steps > 0 else (len(outcome.trace) + 1 if outcome.trace else 0)
    served = compute + uncontended + production_checkpoint(steps)
    return Breakdown(total, {"node": compute, "runtime": runtime, "checkpoint": checkpoint}, served, compute)


# -- the timing wrapper ------------------------------------------------------------------


class _Spent:
    __slots__ = ("seconds", "calls", "step")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.step = -1


class TimedSaver(BaseCheckpointSaver):
    """A checkpointer that times the saver it wraps, per graph thread.

    Every call is passed through unchanged; its duration is added to the
    thread it is for (``config["configurable"]["thread_id"]``), wherever
    LangGraph runs it (its background writer threads too). ``measure(thread)``
    scopes one run; nothing is kept for threads nobody measures.
    """

    def __init__(self, inner: BaseCheckpointSaver) -> None:
        self.inner = inner
        self.serde = inner.serde
        self._spent: dict[str, _Spent] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        # Everything else (close, flush, conn, setup, ...) is the wrapped saver's.
        return getattr(self.__dict__["inner"], name)

    @property
    def config_specs(self) -> list:  # type: ignore[override]
        """The wrapped saver's config specs (``BaseCheckpointSaver``)."""
        return self.inner.config_specs

    @contextmanager
    def measure(self, thread: str) -> Iterator[_Spent]:
        """Collect the time spent in saver calls for ``thread`` while the block runs."""
        spent = _Spent()
        with self._lock:
            self._spent[thread] = spent
        try:
            yield spent
        finally:
            with self._lock:
                self._spent.pop(thread, None)

    def _charge(self, config: Any, started: float, metadata: Any = None) -> None:
        thread = ((config or {}).get("configurable") or {}).get("thread_id")
        spent = self._spent.get(thread) if thread is not None else None
        if spent is None:
            return
        spent.seconds += time.perf_counter() - started
        spent.calls += 1
        if isinstance(metadata, dict) and isinstance(metadata.get("step"), int):
            spent.step = max(spent.step, metadata["step"])

    # -- the saver interface, timed ---------------------------------------------------------

    def get_tuple(self, config: Any) -> Any:
        """The wrapped saver's ``get_tuple``, its time charged to the thread being measured."""
        t = time.perf_counter()
        try:
            return self.inner.get_tuple(config)
        finally:
            self._charge(config, t)

    def list(self, config: Any, **kwargs: Any) -> Iterator[Any]:
        """The wrapped saver's ``list`` (not timed)."""
        return self.inner.list(config, **kwargs)

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        """The wrapped saver's ``put``, its time charged to the thread being measured."""
        t = time.perf_counter()
        try:
            return self.inner.put(config, checkpoint, metadata, new_versions)
        finally:
            self._charge(config, t, metadata)

    def put_writes(self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        """The wrapped saver's ``put_writes``, its time charged to the thread being measured."""
        t = time.perf_counter()
        try:
            return self.inner.put_writes(config, writes, task_id, task_path)
        finally:
            self._charge(config, t)

    def delete_thread(self, thread_id: str) -> None:
        """The wrapped saver's ``delete_thread`` (not timed)."""
        return self.inner.delete_thread(thread_id)

    async def aget_tuple(self, config: Any) -> Any:
        """The wrapped saver's ``aget_tuple``, its time charged to the thread being measured."""
        t = time.perf_counter()
        try:
            return await self.inner.aget_tuple(config)
        finally:
            self._charge(config, t)

    def alist(self, config: Any, **kwargs: Any) -> Any:
        """The wrapped saver's ``alist`` (not timed)."""
        return self.inner.alist(config, **kwargs)

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        """The wrapped saver's ``aput``, its time charged to the thread being measured."""
        t = time.perf_counter()
        try:
            return await self.inner.aput(config, checkpoint, metadata, new_versions)
        finally:
            self._charge(config, t, metadata)

    async def aput_writes(self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        """The wrapped saver's ``aput_writes``, its time charged to the thread being measured."""
        t = time.perf_counter()
        try:
            return await self.inner.aput_writes(config, writes, task_id, task_path)
        finally:
            self._charge(config, t)

    async def adelete_thread(self, thread_id: str) -> None:
        """The wrapped saver's ``adelete_thread`` (not timed)."""
        return await self.inner.adelete_thread(thread_id)

    def get_next_version(self, current: Any, channel: Any) -> Any:
        """The wrapped saver's channel versioning, so versions stay the ones it writes."""
        return self.inner.get_next_version(current, channel)


def timed_saver(saver: Any) -> Any:
    """``saver`` wrapped in a ``TimedSaver`` (once); anything that is not a saver is returned as it is."""
    if isinstance(saver, TimedSaver) or not isinstance(saver, BaseCheckpointSaver):
        return saver
    return TimedSaver(saver)
