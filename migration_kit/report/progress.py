"""Progress of a long replay: events per second, divergent so far, ETA.

On a terminal it is a live rich progress bar; otherwise (CI logs, pipes) a
plain line every few seconds, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["ReplayProgress", "count_lines"]


def count_lines(path: str | Path) -> int | None:
    """Count a log's lines quickly (for the ETA); None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except OSError:
        return None


class ReplayProgress:
    """Pass ``progress.update`` as ``Migration.replay(on_result=...)`` inside ``with ReplayProgress(...)``."""

    def __init__(self, total: int | None, *, stream: IO[str] | None = None, interval: float = 5.0, label: str = "replay") -> None:
        self.total = total
        self.stream = stream or sys.stdout
        self.interval = interval
        self.label = label
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: Progress | None = None
        self._task: Any = None
        self._started = 0.0
        self._last = 0.0
        self.done = 0
        self.divergent = 0

    def __enter__(self) -> ReplayProgress:
        self._started = self._last = time.perf_counter()
        if self.tty:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>8} ev/s"),
                TextColumn("[red]{task.fields[divergent]} divergent"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, rate="-", divergent=0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def update(self, comparison: Any, tally: Any) -> None:
        """Show the progress after one more comparison (the bar redraws at most ten times a second)."""
        self.done = tally.total
        self.divergent = tally.divergent
        now = time.perf_counter()
        rate = self.done / (now - self._started) if now > self._started else 0.0
        if self._bar is not None:
            if now - self._last >= 0.1:
                self._last = now
                self._bar.update(self._task, completed=self.done, rate=f"{rate:,.0f}", divergent=f"{self.divergent:,}")
            return
        if now - self._last >= self.interval:
            self._last = now
            eta = ""
            if self.total and rate > 0:
                left = max(self.total - self.done, 0) / rate
                eta = f", ETA {int(left // 60)}m{int(left % 60):02d}s"
            of = f"/{self.total:,}" if self.total else ""
            across = f" across {tally.workers} workers" if getattr(tally, "workers", None) else ""  # a distributed replay's
            print(f"{self.label}: {self.done:,}{of} events, {rate:,.0f} ev/s{across}, {self.divergent:,} divergent{eta}", file=self.stream, flush=True)
