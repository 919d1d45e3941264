"""Saga threads keep what resuming and rolling back need, and no more.

Where the candidate serves, each saga runs on one long-lived graph thread
(``<migration>:saga:<correlation id>``) with ``durability="sync"``: every node
of every event writes a checkpoint. Resuming an event cut off mid-run needs
the thread's newest checkpoint; handing a saga back on rollback needs its
newest state. Nothing reads older checkpoints, so after every ``every``-th
event served on a thread the thread is pruned with LangGraph's own
``BaseCheckpointSaver.prune(strategy="keep_latest")``: ``RedisSaver``'s keeps
the newest checkpoint and, DeltaChannel-safe, the ancestors it still
reconstructs from, and deletes the rest in one script per thread. A thread
thus holds at most ``every`` events' checkpoints, whatever the saga's age.

A checkpointer without ``prune`` (LangGraph's in-memory and SQLite savers
raise ``NotImplementedError``) is left as it is, once noticed. A prune that
fails is counted and never fails the event: the event's result is already
checkpointed and returned.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from migration_kit.observe.faults import Faults

__all__ = ["PRUNE_EVERY", "ThreadPruner"]

#: Events served on a saga's thread between two prunes.
PRUNE_EVERY = 10
#: Threads whose event count is remembered (least recently used forgotten: it then starts again).
TRACKED_THREADS = 10_000


class ThreadPruner:
    """Prunes a saga's long-lived thread to its newest checkpoint every ``every`` events.

    A failed prune is counted (``failed``) and handed to ``faults`` (operation ``pruning.prune``).
    """

    def __init__(self, every: int = PRUNE_EVERY, *, tracked: int = TRACKED_THREADS, faults: Faults | None = None) -> None:
        self.faults = faults if faults is not None else Faults()
        self.every = max(1, every)
        self.tracked = tracked
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self.unsupported = False
        self.pruned = 0
        self.failed = 0

    def due(self, thread: str) -> bool:
        """Count one event served on ``thread``; True when it is time to prune it."""
        if self.unsupported:
            return False
        with self._lock:
            n = self._counts.pop(thread, 0) + 1
            self._counts[thread] = n
            while len(self._counts) > self.tracked:
                self._counts.popitem(last=False)
        return n % self.every == 0

    def after(self, saver: Any, config: dict[str, Any]) -> None:
        """After an event was served on the thread of ``config``: prune it when due."""
        thread = str(config["configurable"]["thread_id"])
        if saver in (None, True, False) or not self.due(thread):
            return
        try:
            saver.prune([thread], strategy="keep_latest")
        except NotImplementedError:
            self.unsupported = True
        except Exception as exc:  # noqa: BLE001 - swallowed: the event is served and checkpointed; pruning waits for the next turn
            self.failed += 1
            self.faults.raised("pruning.prune", exc)
        else:
            self.pruned += 1
