"""Decisions: what the evidence says to do next, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from migration_kit.types import Action  # re-exported: it was defined here

__all__ = ["Action", "Decision", "parity_decision"]


@dataclass(frozen=True, slots=True)
class Decision:
    """An action (``continue | promote | hold | rollback``) and the reasons for it, in order."""

    action: Action
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the evidence lets the migration go on (``continue`` or ``promote``)."""
        return self.action in ("continue", "promote")

    def to_dict(self) -> dict[str, Any]:
        """The decision as JSON-ready data: its action and reasons."""
        return {"action": self.action, "reasons": list(self.reasons)}


def parity_decision(total: int, divergent: int, by_node: dict[str, int]) -> Decision:
    """The decision before a policy exists: any divergence holds the migration."""
    if total == 0:
        return Decision("hold", ("no events were compared: there is no evidence yet",))
    if divergent == 0:
        return Decision("continue", (f"parity: 0 of {total:,} events diverged",))
    worst = sorted(by_node.items(), key=lambda kv: (-kv[1], kv[0]))
    where = ", ".join(f"{node} ({n:,})" for node, n in worst[:3]) or "no single node"
    return Decision(
        "hold",
        (f"{divergent:,} of {total:,} events diverged ({divergent / total:.2%}); first divergent nodes: {where}",),
    )
