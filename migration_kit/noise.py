"""Learned noise: what differs between two runs of the *same* legacy code.

Ids, clocks and shuffled orders make two legacy runs of one event differ.
For a sample of events (the first ``first`` of each event type, then a
``rate``), the migration runs the legacy path a second time, sandboxed from
the same saga state, and every difference between the two legacy runs is
noise: its path (per root event type, never a blanket ignore) is then
ignored when the candidate is compared. A group of events one handler
publishes in a shuffled order is learned as *unordered*. When a candidate
comparison still finds a difference, the legacy path is re-run once more to
confirm it is not noise that the sample missed (a clock that happened to
agree), so noise is learned where it shows, not only where it was sampled.

Noise is kept per root event type as ``key -> {count, example}``, where a
key is a difference's index-free identity such as
``emitted<validate_order:OrderValidated>.payload.trace_id``; it is persisted
with the migration so a later run starts from what was learned.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

__all__ = ["NoiseLearning", "NoiseModel", "NoiseObservation"]


@dataclass(frozen=True, slots=True)
class NoiseLearning:
    """When to learn noise.

    Args:
        first: legacy re-runs for the first ``first`` events of each type.
        rate: then for this share of events (chosen by a hash of the event id,
            so the same events are sampled on every run).
        confirm: re-run the legacy path before reporting a divergence, and
            learn from it when the difference turns out to be noise.
        confirm_runs: at most this many confirming re-runs per divergent event.
    """

    first: int = 20
    rate: float = 0.02
    confirm: bool = True
    confirm_runs: int = 3

    def samples(self, event_type: str, event_id: str, model: NoiseModel) -> bool:
        if model.samples.get(event_type, 0) < self.first:
            return True
        if self.rate <= 0:
            return False
        h = int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=4).digest(), "big")
        return h / 2**32 < self.rate


@dataclass(frozen=True, slots=True)
class NoiseObservation:
    """What one legacy-vs-legacy comparison showed: noisy keys (with an example) and unordered groups."""

    keys: dict[str, dict[str, Any]]
    unordered: frozenset[str]

    def __bool__(self) -> bool:
        return bool(self.keys or self.unordered)


class NoiseModel:
    """Noise learned so far, per root event type."""

    def __init__(self) -> None:
        self.samples: dict[str, int] = {}
        self.paths: dict[str, dict[str, dict[str, Any]]] = {}
        self.unordered_groups: dict[str, dict[str, int]] = {}
        self._keys: dict[str, frozenset[str]] = {}
        self._unordered: dict[str, frozenset[str]] = {}

    def __repr__(self) -> str:
        n = sum(len(p) for p in self.paths.values())
        return f"<NoiseModel: {n} noisy paths over {len(self.samples)} event types>"

    def keys(self, event_type: str) -> frozenset[str]:
        """The noisy keys of one root event type."""
        cached = self._keys.get(event_type)
        if cached is None:
            cached = self._keys[event_type] = frozenset(self.paths.get(event_type, ()))
        return cached

    def unordered(self, event_type: str) -> frozenset[str]:
        """The ``node:Type`` groups whose order is noise for one root event type."""
        cached = self._unordered.get(event_type)
        if cached is None:
            cached = self._unordered[event_type] = frozenset(self.unordered_groups.get(event_type, ()))
        return cached

    def observe(self, event_type: str, obs: NoiseObservation, *, sampled: bool = True) -> bool:
        """Record one legacy-vs-legacy comparison; returns True when something new was learned."""
        if sampled:
            self.samples[event_type] = self.samples.get(event_type, 0) + 1
        new = False
        paths = self.paths.setdefault(event_type, {})
        for key, example in obs.keys.items():
            entry = paths.get(key)
            if entry is None:
                paths[key] = {"count": 1, "example": example}
                new = True
            else:
                entry["count"] += 1
        groups = self.unordered_groups.setdefault(event_type, {})
        for g in obs.unordered:
            new = new or g not in groups
            groups[g] = groups.get(g, 0) + 1
        if new:
            self._keys.pop(event_type, None)
            self._unordered.pop(event_type, None)
        return new

    # -- persistence -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "paths": self.paths, "unordered": self.unordered_groups}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> NoiseModel:
        model = cls()
        if data:
            model.merge(data)
        return model

    def merge(self, data: dict[str, Any]) -> None:
        """Fold another model's ``to_dict()`` into this one (counts add up)."""
        for t, n in (data.get("samples") or {}).items():
            self.samples[t] = self.samples.get(t, 0) + int(n)
        for t, paths in (data.get("paths") or {}).items():
            mine = self.paths.setdefault(t, {})
            for key, entry in paths.items():
                if key in mine:
                    mine[key]["count"] += int(entry.get("count", 1))
                else:
                    mine[key] = {"count": int(entry.get("count", 1)), "example": entry.get("example")}
        for t, groups in (data.get("unordered") or {}).items():
            mine_g = self.unordered_groups.setdefault(t, {})
            for g, n in groups.items():
                mine_g[g] = mine_g.get(g, 0) + int(n)
        self._keys.clear()
        self._unordered.clear()

    def summary(self) -> list[dict[str, Any]]:
        """For reports: one row per noisy path or unordered group, most frequent first."""
        rows: list[dict[str, Any]] = []
        for t, paths in self.paths.items():
            for key, entry in paths.items():
                rows.append(
                    {"event_type": t, "path": key, "differed": entry["count"], "samples": self.samples.get(t, 0), "example": entry["example"]}
                )
        for t, groups in self.unordered_groups.items():
            for g, n in groups.items():
                rows.append({"event_type": t, "path": f"emitted<{g}> order", "differed": n, "samples": self.samples.get(t, 0), "example": None})
        rows.sort(key=lambda r: (-r["differed"], r["event_type"], r["path"]))
        return rows
