"""The domain's words as enums: a migration's ``Phase``, a path's ``Side``, a decision's ``Action``.

Each is a ``StrEnum``: a member equals its string (``Phase.SHADOW == "shadow"``),
hashes like it, formats as it and encodes to JSON as it, so records, reports
and user code written with the plain strings keep working. Modules that need
the set of names take it from here instead of spelling their own tuple.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Action", "Phase", "Side"]


class Phase(StrEnum):
    """Where a migration is; ``rolled_back`` is reached from any phase and left only by a new attempt."""

    SHADOW = "shadow"
    CANARY = "canary"
    PRIMARY = "primary"
    RETIRED = "retired"
    ROLLED_BACK = "rolled_back"


class Side(StrEnum):
    """One of the two paths an event runs through: the team's bus, or the candidate graph."""

    LEGACY = "legacy"
    CANDIDATE = "candidate"


class Action(StrEnum):
    """What a decision says to do next."""

    CONTINUE = "continue"
    PROMOTE = "promote"
    HOLD = "hold"
    ROLLBACK = "rollback"
