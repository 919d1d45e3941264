"""The phase live traffic is routed by: held in memory, refreshed off the publisher's thread.

A publisher never reads the store to learn the phase. ``PhaseView`` keeps the
last phase read (and whether any saga may be on the candidate side) in
memory; a refresher thread reads both every ``every`` seconds (a quarter of
``Migration.phase_ttl``: 0.25 s by default) with the store's own deadline
(``migration_kit.store.STORE_TIMEOUT`` on a Redis store). A transition made
through this process's ``Migration`` is seen at once.

Staleness bound: a ``promote`` or ``rollback`` made in another process is
routed by here within ``every`` + one store read (at most 0.25 s +
``STORE_TIMEOUT``) while the store answers. When reads fail, the view keeps
the last phase it read, counts the failure (``failures``, ``last_error``) and
traces it (a span event ``migration.phase_refresh_failed``); once it is older
than ``bound`` (``phase_ttl``, 1 s) it is *stale*: in ``shadow`` and
``rolled_back`` legacy keeps serving (safe: it served alone); in ``canary``,
``primary`` and ``retired`` the cutover fails the event with
``StoreUnavailable`` instead of routing by a phase it cannot confirm.

Before the first read succeeds (Redis down when the process attached, a
SQLite store that cannot be opened) the phase is unknown and routed as
``shadow``: legacy serves, no work is shed for lack of a phase.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry import trace

from migration_kit.decide.phases import PhaseControl, PhaseState
from migration_kit.observe.faults import Faults
from migration_kit.types import Side

__all__ = ["PhaseView", "Router", "Seen", "route_point"]

_tracer = trace.get_tracer("migration_kit.live.router")


@dataclass(frozen=True, slots=True)
class Seen:
    """What the view holds: the phase, whether sagas may be on the candidate, and when it was read."""

    state: PhaseState | None  # None: never read
    candidate_sagas: bool
    at: float  # time.monotonic() of the read (or of the local transition)

    @property
    def phase(self) -> str:
        """The phase last read (``shadow`` before any)."""
        return self.state.phase if self.state is not None else "shadow"


class PhaseView:
    """The routing phase of one process, in memory, refreshed by a background thread.

    Args:
        read_phase: reads the phase from the store (may raise anything).
        read_hint: True when a saga may be on the candidate side (may raise).
        every: seconds between refreshes.
        bound: seconds after which a view that failed to refresh is stale.
        name: names the refresher thread.
        faults: receives each failed read (operation ``router.refresh``), besides ``failures``.
    """

    def __init__(
        self,
        read_phase: Callable[[], PhaseState],
        read_hint: Callable[[], bool],
        *,
        every: float = 0.25,
        bound: float = 1.0,
        name: str = "migration",
        faults: Faults | None = None,
    ) -> None:
        self.faults = faults if faults is not None else Faults()
        self._read_phase = read_phase
        self._read_hint = read_hint
        self.every = every
        self.bound = bound
        self.name = name
        self.seen = Seen(None, False, time.monotonic())
        self.failures = 0
        self.refreshes = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<PhaseView {self.name!r} {self.seen.phase} failures={self.failures}>"

    # -- what publishers read (no I/O) ---------------------------------------------------------

    def stale(self, now: float | None = None) -> bool:
        """True when the held phase is older than ``bound`` (the store has not answered since)."""
        return (time.monotonic() if now is None else now) - self.seen.at > self.bound

    def saw(self, state: PhaseState) -> None:
        """A transition made in this process: route by it at once (and re-read the hint soon)."""
        self.seen = Seen(state, self.seen.candidate_sagas, time.monotonic())
        self._kick.set()

    def candidate_claimed(self) -> None:
        """A saga was just handed to the candidate here: the hint is true from now on."""
        s = self.seen
        if not s.candidate_sagas:
            self.seen = Seen(s.state, True, s.at)

    # -- refreshing ----------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Read the phase and the hint once (on the calling thread); False (counted, traced) if it failed."""
        try:
            state = self._read_phase()
            hint = bool(self._read_hint())
        except Exception as exc:  # noqa: BLE001 - swallowed: the store is down or unreadable: keep the last phase
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.faults.raised("router.refresh", exc)
            span = trace.get_current_span()
            if not span.get_span_context().is_valid:
                with _tracer.start_as_current_span("migration.phase_refresh") as span:
                    span.add_event("migration.phase_refresh_failed", {"migration": self.name, "error": self.last_error})
            else:
                span.add_event("migration.phase_refresh_failed", {"migration": self.name, "error": self.last_error})
            return False
        self.seen = Seen(state, hint, time.monotonic())
        self.refreshes += 1
        return True

    def start(self, *, first: bool = True) -> PhaseView:
        """Start the refresher thread (``first``: after one read on this thread, so routing starts informed)."""
        if first:
            self.refresh()
        self._thread = threading.Thread(target=self._run, name=f"mk-phase[{self.name}]", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the refresher thread."""
        self._stop.set()
        self._kick.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(self.every)
            self._kick.clear()
            if self._stop.is_set():
                break
            self.refresh()


def route_point(migration: str, correlation_id: str) -> float:
    """A saga's stable point in [0, 100): where it falls in a canary's percentage."""
    digest = hashlib.blake2b(f"{migration}\x00{correlation_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100


class Router:
    """Which side serves a saga now, by the phase: the in-memory ``PhaseView`` while one is watched (no I/O on
    the publisher's thread), else the phase as ``phases`` last read it (trusted for its ``ttl``).

    Sticky per saga: in canary, ``route_point`` of the migration's name and the saga
    picks a point in [0, 100); the candidate serves it when that is below the
    percentage, so a saga never switches sides while the percentage only grows.
    """

    def __init__(self, name: str, phases: PhaseControl) -> None:
        self.name = name
        self.phases = phases
        self.view: PhaseView | None = None
        phases.listeners.append(self._saw)

    def watch(self, view: PhaseView) -> None:
        """Route by ``view`` from now on (a tap attached: cutover runs its refresher)."""
        self.view = view

    def unwatch(self, view: PhaseView) -> None:
        """Stop routing by ``view`` (if it is the one watched): the phase is read from the store again."""
        if self.view is view:
            self.view = None

    def _saw(self, state: PhaseState) -> None:
        view = self.view
        if view is not None:
            view.saw(state)

    def state(self) -> PhaseState:
        """The phase routing goes by now."""
        view = self.view
        seen = view.seen.state if view is not None else None
        return seen if seen is not None else self.phases.read(fresh=False)[0]

    def side_for(self, saga: str) -> Side:
        """The side serving ``saga`` (its correlation id) now."""
        state = self.state()
        if state.phase in ("primary", "retired"):
            return Side.CANDIDATE
        if state.phase != "canary" or not state.percent:
            return Side.LEGACY
        return Side.CANDIDATE if route_point(self.name, saga) < state.percent else Side.LEGACY
