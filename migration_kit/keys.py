"""Every record a migration keeps in its store, by name: one line each.

Records live in the store's ``Records`` (``migration_kit.store``), namespaced by
the migration's name; Redis stream keys of live shadow traffic are
``migration_kit.live.tap.ShadowKeys``. Modules take the names from here instead
of spelling them, so what a migration keeps can be read in one place.
"""

from __future__ import annotations

__all__ = ["EVIDENCE", "HISTORY", "NOISE", "PHASE", "REPLAY_LAST", "SAGA_AUDIT", "SAGA_HINT", "SAGA_JOURNAL", "saga", "saga_thread"]

PHASE = "phase"  # the phase state machine's current state (migration_kit.decide.phases)
HISTORY = "history"  # every phase transition, oldest first (capped list)
EVIDENCE = "evidence"  # the current attempt's evidence, one entry per source (replay log, worker)
NOISE = "noise"  # learned noise, merged across processes (migration_kit.compare.noise)
REPLAY_LAST = "replay:last"  # which replay ran last and whether it finished (what `resume` continues)
SAGA_JOURNAL = "sagas:journal"  # each saga once: appended the first time it is handed to the candidate
SAGA_AUDIT = "sagas:audit"  # every handover, newest 10,000 (migration_kit.live.sagas.MAX_AUDIT)
SAGA_HINT = "sagas"  # counters of the saga ledger


def saga(correlation_id: str) -> str:
    """The saga ledger's record of one saga: which side holds it, and a handover in flight."""
    return f"saga:{correlation_id}"


def saga_thread(migration: str, correlation_id: str) -> str:
    """The candidate's long-lived graph thread of one saga, in the store's checkpointer."""
    return f"{migration}:saga:{correlation_id}"
