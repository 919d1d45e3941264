"""The app's own logging during sandboxed runs, captured and summarized instead of poured out.

A replay runs every event through the legacy handlers (and again for noise
learning and confirmation); a handler that logs ``logger.exception(...)`` on a
declined payment would print its traceback hundreds of times. While a
``CapturedLogs`` is active every record is counted per handler (the node
running when it was logged, else its logger's name) and the first of each is
kept as the example; ``summary()`` gives one line per handler.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from legacy_bus.effects import current_handler

from migration_kit.observe.safe_text import one_line

__all__ = ["CapturedLogs"]


class _Collector(logging.Handler):
    def __init__(self, owner: CapturedLogs) -> None:
        super().__init__(logging.DEBUG)
        self.owner = owner

    def emit(self, record: logging.LogRecord) -> None:
        who = current_handler() or record.name
        with self.owner._lock:
            self.owner.counts[who] += 1
            if who not in self.owner.examples:
                try:
                    message = record.getMessage()
                except Exception:  # noqa: BLE001 - a bad format string is still a record
                    message = str(record.msg)
                self.owner.examples[who] = f"{record.levelname} {record.name}: {message}" + (
                    f" ({record.exc_info[0].__name__})" if record.exc_info and record.exc_info[0] else ""
                )


class CapturedLogs:
    """Context manager: route all logging to a per-handler tally (root handlers set aside meanwhile)."""

    def __init__(self, level: int = logging.WARNING) -> None:
        import threading

        self.level = level
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self._lock = threading.Lock()
        self._saved: Any = None

    def __enter__(self) -> CapturedLogs:
        root = logging.getLogger()
        self._saved = (root.handlers[:], root.level, logging.lastResort)
        root.handlers[:] = [_Collector(self)]
        root.setLevel(min(root.level, self.level) if root.level else self.level)
        logging.lastResort = None
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        handlers, level, last = self._saved
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.lastResort = last

    @property
    def total(self) -> int:
        """Records captured."""
        return sum(self.counts.values())

    def summary(self, limit: int = 10) -> list[str]:
        """One line per handler, most records first: count, handler, one example (escaped)."""
        lines = []
        for who, n in self.counts.most_common(limit):
            lines.append(f"{n:,} log records from {one_line(who)}, e.g. {one_line(self.examples.get(who, ''))[:300]}")
        if len(self.counts) > limit:
            lines.append(f"... and {len(self.counts) - limit} more handlers or loggers")
        return lines
