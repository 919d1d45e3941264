"""Stateful sagas through cutover and rollback: which side holds each saga, and handing it over.

A saga is the chain of events sharing one ``correlation_id``. Its state lives
on exactly one side at a time:

* **legacy**: the bus's ``ctx.state`` store (``EventBus.state_store``; an
  ``InMemoryStateStore`` or a ``RedisStateStore`` shared by processes);
* **candidate**: the graph's ``sagas`` channel on the saga's long-lived thread
  ``<migration>:saga:<correlation id>`` in the store's checkpointer.

When routing sends a saga's event to the other side (a promotion, a canary
step, a rollback), the saga is handed over first, under its lock, so an event
arriving during a handover waits and then goes one consistent way.

A handover is atomic per saga and survives ``kill -9`` at any instant. It is
journaled in the migration's store before anything moves:

1. count the saga in the ``sagas`` counters hint (over-counting is harmless:
   it only turns off the fast path) and append it to the ``sagas:journal``
   list (what sweeps and recovery walk);
2. write the intent, with a copy of the state, into the saga's record
   ``saga:<correlation id>`` (a versioned document: compare-and-set, so two
   processes never hand one saga over at once);
3. clear the source side (the legacy key, or the graph thread);
4. commit: the record names the new side; a state handed to the candidate is
   kept in the record as its ``seed`` until the saga's first event there
   writes it into a checkpoint (a thread with a checkpoint wins over a seed);
5. append an audit entry to ``sagas:audit``.

``recover()`` finishes every handover whose intent is written but whose commit
is not: the intent's copy of the state is written to the destination again
(idempotent), the source cleared again, and the record committed. After a
restart each saga is therefore on exactly one side, with its full state.

A graph run cut off mid-event (a crash inside the graph) is settled before its
saga leaves the candidate: resumed to completion from its checkpoint, or
rewound to the checkpoint before the event, as ``Policy.cutoff`` says. A
rewound event is owed to legacy: the commit records it in the saga's record
(``redeliver``: the event and the real effect calls the cut-off run made),
and it is delivered on legacy, answered with those calls, before the saga's
next event (``owed`` / ``delivered``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from legacy_bus import StateStore
from migration_errors import MigrationKitError

from migration_kit import keys
from migration_kit.live.locks import SagaLocks
from migration_kit.store import VersionConflict
from migration_kit.run.threads import Resumable, classify
from migration_kit.types import Side  # re-exported: it was defined here

__all__ = ["Handover", "SagaLedger", "SagaOwner", "Side", "saga_thread"]

SIDES: tuple[Side, ...] = tuple(Side)


class SagaOwner(Protocol):
    """What a ``SagaLedger`` needs of its owner (a ``Migration`` or a ``Cutover`` is one): so sagas never import the facade."""

    @property
    def name(self) -> str:
        """The migration's name (saga threads are named by it)."""
        ...

    @property
    def store(self) -> Any:
        """Its store; ``store.records`` keeps the ledger."""
        ...

    @property
    def graph(self) -> Any:
        """The compiled candidate graph, whose checkpointer holds the candidate side's threads."""
        ...

    @property
    def policy(self) -> Any:
        """Its policy; ``policy.cutoff`` is the rule for a run cut off mid-saga."""
        ...
JOURNAL = keys.SAGA_JOURNAL
AUDIT = keys.SAGA_AUDIT
MAX_AUDIT = 10_000  # handovers the audit list keeps, newest; older ones are trimmed
HINT = keys.SAGA_HINT
saga_thread = keys.saga_thread


@dataclass(frozen=True, slots=True)
class Handover:
    """One saga changing sides: from where to where, why, and what happened to a cut-off run."""

    saga: str
    source: Side
    to: Side
    reason: str
    by: str
    at: float
    keys: int  # top-level keys of the state handed over
    cutoff: str | None = None  # "resumed" / "rewound": a run cut off mid-event, settled first
    cutoff_event: dict[str, Any] | None = field(default=None, compare=False)  # a rewound event, to deliver on legacy
    recovered: bool = False  # finished by recover() after a crash
    cutoff_effects: tuple[dict[str, Any], ...] = field(default=(), compare=False)  # real calls the cut-off run made

    def to_dict(self) -> dict[str, Any]:
        """The handover as JSON-ready data, as the handover audit keeps it."""
        doc: dict[str, Any] = {
            "saga": self.saga,
            "from": self.source,
            "to": self.to,
            "reason": self.reason,
            "by": self.by,
            "at": self.at,
            "keys": self.keys,
        }
        if self.cutoff:
            doc["cutoff"] = self.cutoff
            doc["cutoff_event"] = (self.cutoff_event or {}).get("id")
        if self.recovered:
            doc["recovered"] = True
        if self.claim:
            doc["claim"] = True
        return doc

    @property
    def claim(self) -> bool:
        """A new saga (no state on legacy) taken by the candidate: nothing actually moved."""
        return self.source == "legacy" and self.to == "candidate" and self.keys == 0


class SagaLedger:
    """Which side holds each saga's state, and the journaled handover between them.

    Args:
        migration: the migration (its store keeps the records, its graph the
            candidate side's threads, its policy the cut-off rule).
        states: the legacy side's saga state store (the live bus's own).
    """

    def __init__(self, migration: SagaOwner, states: StateStore) -> None:
        self.migration = migration
        self.states = states
        self.locks = SagaLocks()

    # -- reading -----------------------------------------------------------------------------

    @property
    def records(self) -> Any:
        """The records the saga ledger lives in (the migration's store's)."""
        return self.migration.store.records

    @staticmethod
    def _key(saga: str) -> str:
        return keys.saga(saga)

    def lock(self, saga: str) -> Any:
        """Hold the in-process lock of a saga's events and handovers: ``with ledger.lock(saga):`` (one per saga; not re-entrant)."""
        return self.locks.hold(saga)

    def record(self, saga: str) -> tuple[dict[str, Any] | None, int]:
        """A saga's ledger record and its version (``(None, 0)`` for a saga never handed over)."""
        return self.records.get(self._key(saga))

    def side(self, saga: str) -> Side:
        """The side holding ``saga`` now (legacy for a saga never handed over)."""
        doc, _ = self.record(saga)
        return _side_of(doc)

    def may_have_candidate_sagas(self) -> bool:
        """False only when no saga can be on the candidate side (the fast path's test)."""
        return self.records.counters(HINT).get("candidate", 0) > 0

    def config(self, saga: str) -> dict[str, Any]:
        """The LangGraph config that addresses a saga's checkpoint thread."""
        return {"configurable": {"thread_id": saga_thread(self.migration.name, saga)}}

    def state(self, saga: str) -> tuple[Side, dict[str, Any]]:
        """The side holding ``saga`` and a copy of its state there."""
        doc, _ = self.record(saga)
        if doc and doc.get("moving"):
            return _side_of(doc), dict(doc["moving"].get("state") or {})
        side = _side_of(doc)
        if side == "legacy":
            return side, dict(self.states.peek(saga) or {})
        return side, self.candidate_state(saga, doc)

    def candidate_state(self, saga: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        """The saga's state on the candidate side: its thread's, else the seed handed over."""
        graph = self.migration.graph
        snap = graph.get_state(self.config(saga))
        if snap.values:
            return dict((snap.values.get("sagas") or {}).get(saga) or {})
        if doc is None:
            doc, _ = self.record(saga)
        return dict((doc or {}).get("seed") or {})

    def known(self) -> list[str]:
        """Every saga ever handed to the candidate (the journal, deduplicated, oldest first)."""
        return list(dict.fromkeys(self.records.items(JOURNAL)))

    def audit(self) -> list[dict[str, Any]]:
        """The newest MAX_AUDIT handovers, oldest first."""
        return self.records.items(AUDIT)

    # -- handing over --------------------------------------------------------------------------

    def ensure(self, saga: str, to: Side, *, reason: str, by: str = "router") -> Handover | None:
        """Make ``to`` hold ``saga`` (handing it over when the other side does); None if it already did.

        The caller holds ``lock(saga)``; across processes the record's
        compare-and-set keeps two handovers of one saga from interleaving.
        """
        finished: Handover | None = None  # a handover a crash left half done, finished here
        for _ in range(20):
            doc, version = self.record(saga)
            if doc and doc.get("moving"):
                try:
                    finished = self._finish(saga, doc, version, recovered=True)
                except VersionConflict:
                    pass
                continue
            source = _side_of(doc)
            if source == to:
                return finished
            try:
                return self._handover(saga, doc, version, source, to, reason=reason, by=by)
            except VersionConflict:
                continue  # another process moved it first: look again
        raise MigrationKitError(f"saga {saga!r}: could not hand it over to {to}: its record kept changing (20 tries)")

    def _handover(
        self, saga: str, doc: dict[str, Any] | None, version: int, source: Side, to: Side, *, reason: str, by: str
    ) -> Handover:
        cutoff: str | None = None
        cutoff_event: dict[str, Any] | None = None
        cutoff_effects: list[dict[str, Any]] = []
        if source == "candidate":
            cutoff, cutoff_event, cutoff_effects, state = self._settle_cutoff(saga, doc)
        else:
            state = dict(self.states.peek(saga) or {})
        if to == "candidate":
            self.records.incr(HINT, {"candidate": 1})
            if not (doc or {}).get("journaled"):  # a saga handed back and forth is walked once anyway
                self.records.append(JOURNAL, saga)
        moving = {"to": to, "state": state, "reason": reason, "by": by, "at": time.time(), "cutoff": cutoff,
                  "cutoff_event": cutoff_event, "cutoff_effects": cutoff_effects}
        intent = {**(doc or {}), "side": source, "moving": moving, **({"journaled": True} if to == "candidate" else {})}
        version = self.records.put(self._key(saga), intent, version=version)
        return self._finish(saga, intent, version)

    def _finish(self, saga: str, doc: dict[str, Any], version: int, *, recovered: bool = False) -> Handover:
        """Carry out a journaled intent (idempotent): clear the source, commit, audit."""
        moving = doc["moving"]
        source: Side = _side_of(doc)
        to: Side = moving["to"]
        state = dict(moving.get("state") or {})
        if to == "legacy":
            self.states.save(saga, dict(state))  # write the destination (an empty state is no key)
            self._drop_thread(saga)  # clear the source
            committed = {k: v for k, v in doc.items() if k not in ("moving", "seed")} | {"side": "legacy"}
            if moving.get("cutoff") == "rewound" and moving.get("cutoff_event"):
                # the rewound event is owed to legacy: kept until delivered (see take_redelivery)
                committed["redeliver"] = {"event": moving["cutoff_event"], "effects": moving.get("cutoff_effects") or []}
        else:
            self._drop_thread(saga)  # a stale thread must not win over the seed
            self.states.save(saga, {})  # clear the source
            committed = {k: v for k, v in doc.items() if k != "moving"} | {"side": "candidate", "seed": state}
        committed["handovers"] = int(doc.get("handovers", 0)) + 1
        self.records.put(self._key(saga), committed, version=version)  # VersionConflict: someone else finished it
        if to == "legacy":
            self.records.incr(HINT, {"candidate": -1})
        h = Handover(
            saga, source, to, moving.get("reason", ""), moving.get("by", ""), moving.get("at", time.time()), len(state),
            moving.get("cutoff"), moving.get("cutoff_event"), recovered, tuple(moving.get("cutoff_effects") or ()),
        )
        if self.records.append(AUDIT, h.to_dict()) > MAX_AUDIT:
            self.records.trim(AUDIT, MAX_AUDIT)
        return h

    def _drop_thread(self, saga: str) -> None:
        saver = getattr(self.migration.graph, "checkpointer", None)
        if saver is not None and saver is not True and saver is not False:
            saver.delete_thread(saga_thread(self.migration.name, saga))

    def _settle_cutoff(
        self, saga: str, doc: dict[str, Any] | None
    ) -> tuple[str | None, dict[str, Any] | None, list[dict[str, Any]], dict[str, Any]]:
        """The candidate-side state to hand back; a run cut off mid-event is resumed or rewound first.

        Returns (what was done, the cut-off event, the real effect calls it
        made before it was cut off, the state to hand over).
        """
        graph = self.migration.graph
        config = self.config(saga)
        snap = graph.get_state(config)
        if not isinstance(classify(snap, None), Resumable):  # the one rule (migration_kit.run.threads)
            return None, None, [], self.candidate_state(saga, doc)
        event = dict(snap.values.get("event") or {})
        if self.migration.policy.cutoff == "resume":
            final = graph.invoke(None, config, durability="sync")  # authoritative: the rest of the run's effects are real
            return "resumed", event, [], dict((final.get("sagas") or {}).get(saga) or {})
        # rewind: the state from the checkpoint before the event (the previous event's end, or the
        # seed). The calls the cut-off nodes made for real are kept: legacy, delivering the event
        # again, is answered with them instead of making them a second time.
        made = [c for rec in snap.values.get("trace") or [] for c in rec.get("effects") or [] if c.get("mode") == "real"]
        for past in graph.get_state_history(config):
            values = past.values or {}
            if values and (values.get("event") or {}).get("id") != event.get("id"):
                return "rewound", event, made, dict((values.get("sagas") or {}).get(saga) or {})
        return "rewound", event, made, dict((doc or {}).get("seed") or {})

    def owed(self, saga: str) -> dict[str, Any] | None:
        """The rewound event owed to legacy for this saga (``{"event", "effects"}``), if any."""
        doc, _ = self.record(saga)
        return (doc or {}).get("redeliver") if _side_of(doc) == "legacy" else None

    def delivered(self, saga: str) -> None:
        """The owed event was delivered on legacy: forget it."""
        self._forget_field(saga, "redeliver")

    def _forget_field(self, saga: str, name: str) -> None:
        """Drop one field of the saga's record (compare-and-set; a record in mid-handover is left alone)."""
        for _ in range(20):
            doc, version = self.record(saga)
            if not doc or name not in doc or doc.get("moving"):
                return
            try:
                self.records.put(self._key(saga), {k: v for k, v in doc.items() if k != name}, version=version)
                return
            except VersionConflict:
                continue

    def seed_taken(self, saga: str) -> None:
        """The saga's thread now holds its state: drop the seed kept in the record."""
        self._forget_field(saga, "seed")

    # -- sweeps ---------------------------------------------------------------------------------

    def recover(self) -> list[Handover]:
        """Finish every handover a crash cut off between its intent and its commit."""
        done = []
        for saga in self.known():
            with self.lock(saga):
                doc, version = self.record(saga)
                if doc and doc.get("moving"):
                    try:
                        done.append(self._finish(saga, doc, version, recovered=True))
                    except VersionConflict:
                        pass  # finished by another process meanwhile
        return done

    def settle(
        self, side_for: Any, *, reason: str, by: str = "sweep", sagas: Any = None, after: Any = None
    ) -> list[Handover]:
        """Hand sagas to ``side_for(saga)``: every known one (e.g. all back to legacy after a rollback), or ``sagas``.

        ``after(saga)`` runs under the saga's lock once it is where it belongs
        (the cutover delivers a rewound event there, before any newer one).
        """
        moved = list(self.recover())
        for saga in self.known() if sagas is None else sagas:
            with self.lock(saga):
                h = self.ensure(saga, side_for(saga), reason=reason, by=by)
                if after is not None:
                    after(saga)
            if h is not None:
                moved.append(h)
        return moved


def _side_of(doc: dict[str, Any] | None) -> Side:
    side = (doc or {}).get("side", "legacy")
    return side if side in SIDES else "legacy"
