"""Phases: the persisted state machine that says who serves live traffic.

``shadow`` (legacy serves, the candidate is compared) -> ``canary`` (a
percentage of sagas, in steps) -> ``primary`` (the candidate serves) ->
``retired`` (the legacy path is gone). ``rolled_back`` is reachable from any
phase; promoting from it starts a new attempt. Every transition is validated,
and recorded with when, why, by whom (``user`` or ``automatic``) and the
evidence at the time.

Storage, in the migration's records (``migration_kit.store``):

* ``phase``: the current state, a versioned document ``{phase, percent,
  attempt, since, by, reason}``; every transition is a compare-and-set on its
  version, so of two processes promoting from the same state exactly one
  succeeds and the other gets ``PhaseConflict``.
* ``history``: the append-only audit list of transitions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from migration_errors import InvalidTransition, PhaseConflict, PolicyViolation

from migration_kit import keys
from migration_kit.store import Records, VersionConflict
from migration_kit.types import Phase

__all__ = ["DEFAULT_STEPS", "PHASES", "InvalidTransition", "PhaseControl", "PhaseMachine", "PhaseState", "Transition"]

PHASES = tuple(Phase)
_ORDER = {p: i for i, p in enumerate(PHASES) if p is not Phase.ROLLED_BACK}  # the forward order
DEFAULT_STEPS = (1.0, 5.0, 25.0, 50.0)
PHASE_KEY, HISTORY_KEY = keys.PHASE, keys.HISTORY


@dataclass(frozen=True, slots=True)
class PhaseState:
    """Where a migration is: its phase, the canary percentage, and which attempt this is."""

    phase: str = "shadow"
    percent: float | None = None
    attempt: int = 1
    since: str | None = None
    by: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The phase state as JSON-ready data (``from_dict`` reads it back)."""
        return {
            "phase": self.phase,
            "percent": self.percent,
            "attempt": self.attempt,
            "since": self.since,
            "by": self.by,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PhaseState:
        """A phase state from ``to_dict()`` data (the initial shadow state for None)."""
        if not data:
            return cls()
        return cls(**{k: data.get(k) for k in ("phase", "percent", "attempt", "since", "by", "reason")})

    def describe(self) -> str:
        """The phase for people: ``canary 10%``, else its name."""
        return f"{self.phase} {self.percent:g}%" if self.phase == "canary" and self.percent is not None else self.phase


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded change of phase."""

    at: str
    from_state: PhaseState
    to_state: PhaseState
    by: str
    reason: str | None
    evidence: dict[str, Any] = field(default_factory=dict)
    version: int = 0  # the phase record's version after this transition

    def to_dict(self) -> dict[str, Any]:
        """The transition as JSON-ready data, as the phase history keeps it."""
        return {
            "at": self.at,
            "from": self.from_state.phase,
            "from_percent": self.from_state.percent,
            "to": self.to_state.phase,
            "percent": self.to_state.percent,
            "attempt": self.to_state.attempt,
            "by": self.by,
            "reason": self.reason,
            "evidence": self.evidence,
        }


class PhaseMachine:
    """Reads and changes one migration's phase in its records, with optimistic concurrency.

    Args:
        records: the migration's records (``Store.records``).
        steps: the canary percentages ``promote()`` walks through.
    """

    def __init__(self, records: Records, steps: tuple[float, ...] = DEFAULT_STEPS) -> None:
        self.records = records
        self.steps = tuple(sorted(steps))

    def read(self) -> tuple[PhaseState, int]:
        """The current state and its version (a fresh migration is in ``shadow``, version 0)."""
        data, version = self.records.get(PHASE_KEY)
        return PhaseState.from_dict(data), version

    def history(self) -> list[dict[str, Any]]:
        """Every transition recorded so far, oldest first."""
        return self.records.items(HISTORY_KEY)

    # -- validation (pure) ----------------------------------------------------------------

    def next_state(self, cur: PhaseState, to: str | None, percent: float | None) -> PhaseState:
        """The state ``promote(to, percent)`` leads to from ``cur``; raises ``InvalidTransition``."""
        if to is not None and to not in PHASES:
            raise InvalidTransition(f"unknown phase {to!r}: use one of {', '.join(PHASES)}")
        if to == "rolled_back":
            raise InvalidTransition("promote cannot go to rolled_back: use rollback with a reason")
        if percent is not None:
            if isinstance(percent, bool) or not isinstance(percent, (int, float)) or math.isnan(percent):
                raise InvalidTransition(f"the canary percentage must be a number, not {percent!r}")
            if to is None:
                to = "canary"
            if to != "canary":
                raise InvalidTransition(f"a percentage only applies to canary, not to {to}")
            if not 0 < percent < 100:
                raise InvalidTransition(f"a canary percentage must be above 0 and below 100, not {percent:g} (use --to primary for all traffic)")
        attempt = cur.attempt
        here = cur.phase
        if here == "rolled_back":
            attempt += 1  # a new attempt begins, from shadow unless told otherwise
            here = None
            to = to or "shadow"
        elif to is None:
            to = {"shadow": "canary", "canary": "canary", "primary": "retired"}.get(here)
            if to is None:
                raise InvalidTransition(f"the migration is {here}: there is no phase after it (rollback is still possible)")
            if here == "canary":
                later = [s for s in self.steps if s > (cur.percent or 0)]
                if not later:
                    to = "primary"
        if to == "canary":
            if percent is None:
                if here == "canary":
                    later = [s for s in self.steps if s > (cur.percent or 0)]
                    if not later:
                        raise InvalidTransition(f"canary is at its last step ({cur.percent:g}%): promote to primary")
                    percent = later[0]
                else:
                    percent = self.steps[0]
            if here == "canary" and percent <= (cur.percent or 0):
                raise InvalidTransition(
                    f"canary is at {cur.percent:g}%; promote only moves forward (asked {percent:g}%): use rollback to go back"
                )
        if here is not None:
            if _ORDER[to] < _ORDER[here] or (to == here and to != "canary"):
                what = "already" if to == here else "past"
                raise InvalidTransition(
                    f"the migration is {what} {to} (it is {cur.describe()}): promote only moves forward; use rollback to go back"
                )
        return PhaseState(to, float(percent) if to == "canary" and percent is not None else None, attempt)

    # -- transitions ------------------------------------------------------------------------

    def promote(
        self,
        *,
        to: str | None = None,
        percent: float | None = None,
        by: str = "user",
        reason: str | None = None,
        evidence: dict[str, Any] | None = None,
        expected: tuple[PhaseState, int] | None = None,
    ) -> Transition:
        """Move forward from ``expected`` (the state the caller saw; read now if None).

        Raises ``InvalidTransition`` for a move the machine does not allow and
        ``PhaseConflict`` when another process changed the phase since.
        """
        cur, version = expected if expected is not None else self.read()
        new = self.next_state(cur, to, percent)
        return self._write(cur, version, new, by, reason, evidence or {})

    def rollback(self, *, reason: str, by: str = "user", evidence: dict[str, Any] | None = None) -> Transition:
        """Go to ``rolled_back`` from any phase (retrying a lost race: rolling back is always safe)."""
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidTransition("a rollback needs a reason (what went wrong), e.g. --reason 'p99 latency doubled'")
        for _ in range(20):
            cur, version = self.read()
            if cur.phase == "rolled_back":
                raise InvalidTransition(
                    f"the migration is already rolled back (by {cur.by} at {cur.since}: {cur.reason}); promote starts a new attempt"
                )
            new = PhaseState("rolled_back", None, cur.attempt)
            try:
                return self._write(cur, version, new, by, reason, evidence or {})
            except PhaseConflict:
                continue
        raise PhaseConflict("the phase kept changing under this rollback (20 tries); retry it")

    def _write(self, cur: PhaseState, version: int, new: PhaseState, by: str, reason: str | None, evidence: dict[str, Any]) -> Transition:
        if not isinstance(by, str) or not by:
            raise InvalidTransition("'by' names who made the transition: 'user', 'automatic', or a name")
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        new = PhaseState(new.phase, new.percent, new.attempt, at, by, reason)
        try:
            written = self.records.put(PHASE_KEY, new.to_dict(), version=version)
        except VersionConflict:
            now, _ = self.read()
            raise PhaseConflict(
                f"another process changed the phase first: it was {cur.describe()} when this process read it, and is now "
                f"{now.describe()} (by {now.by} at {now.since}); check `migration-kit status` and retry if still wanted"
            ) from None
        t = Transition(at, cur, new, by, reason, evidence, written)
        self.records.append(HISTORY_KEY, t.to_dict())
        return t


class PhaseControl:
    """The phase as one process acts on it: read (trusted for ``ttl`` seconds when asked for), and moved by
    ``promote`` / ``rollback`` against the state this process last saw (another process's change since is a
    ``PhaseConflict``, never overwritten).

    Args:
        store: the migration's ``Store`` (its records hold the phase and the history).
        summary: the evidence summary recorded with each transition.
        ttl: seconds a read phase is trusted by ``read(fresh=False)``.
    """

    def __init__(self, store: Any, summary: Callable[[], dict[str, Any]], *, ttl: float = 1.0) -> None:
        self.store = store
        self.summary = summary
        self.ttl = ttl
        self.seen: tuple[PhaseState, int] | None = None
        self.seen_at = 0.0
        self.listeners: list[Callable[[PhaseState], None]] = []  # told of every transition made here

    @property
    def machine(self) -> PhaseMachine:
        """The persisted phase state machine on the store."""
        return PhaseMachine(self.store.records)

    def read(self, *, fresh: bool = True) -> tuple[PhaseState, int]:
        """The phase and its record's version: read now, or (``fresh=False``) as last read within ``ttl``."""
        now = time.monotonic()
        if fresh or self.seen is None or now - self.seen_at > self.ttl:
            self.seen, self.seen_at = self.machine.read(), now
        return self.seen

    def forget(self) -> None:
        """Drop what was read (another store: the next read goes to it)."""
        self.seen = None

    def promote(self, to: str | None = None, percent: float | None = None, *, by: str = "user", reason: str | None = None) -> Transition:
        """Move forward (see ``Migration.promote``) from the state this process last saw."""
        expected = self.seen if self.seen is not None else self.read()
        try:
            t = self.machine.promote(to=to, percent=percent, by=by, reason=reason, evidence=self.summary(), expected=expected)
        except PhaseConflict:
            self.seen = None
            raise
        self._remember(t)
        return t

    def rollback(self, reason: str, *, by: str = "user") -> Transition:
        """Send all traffic back to legacy, from any phase."""
        t = self.machine.rollback(reason=reason, by=by, evidence=self.summary())
        self._remember(t)
        return t

    def act_on(self, decision: Any, state: PhaseState) -> None:
        """Carry out a policy's rollback at once (a regression proven on live traffic must not wait for a person)."""
        if decision.action != "rollback" or state.phase == "rolled_back":
            return
        try:
            self.rollback("; ".join(decision.reasons[-2:]), by="automatic")
        except PolicyViolation:  # someone rolled it back first
            pass

    def _remember(self, t: Transition) -> None:
        self.seen = (t.to_state, t.version)
        self.seen_at = time.monotonic()
        for listener in self.listeners:
            listener(t.to_state)
