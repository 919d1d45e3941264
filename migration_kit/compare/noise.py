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

Bounded: when payload keys depend on the data (an order's SKUs as keys), the
same field shows under ever new paths. Once ``collapse_at`` learned paths of
one event type differ in one segment only (``payload.items.sku-1.qty``,
``payload.items.sku-2.qty``, ...), they are folded into one wildcard path
(``payload.items.*.qty``; counts add up, the first example is kept), which
then matches any key at that segment. Past ``max_paths`` paths per event
type the rarest older path is dropped (counted in ``dropped``; the path just
learned is kept, it explains the comparison at hand); a dropped path that
shows again is learned again, from a confirming re-run.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from migration_errors import MigrationKitError

from migration_kit import keys

__all__ = ["NoiseBook", "NoiseLearning", "NoiseModel", "NoiseObservation", "NoisyKeys", "learned_since"]

#: Learned paths of one event type that differ in one segment only, folded into a wildcard.
COLLAPSE_AT = 16
#: Paths (and unordered groups) kept per event type; past it the rarest is dropped.
MAX_PATHS = 256
WILDCARD = "*"
_SEGMENT = re.compile(r"\[(?:'[^']*'|\"[^\"]*\"|[^\]]*)\]|[^.\[]+")


def segments(key: str) -> tuple[str, ...]:
    """A noise key's segments: ``a.b['c d'][*]`` -> ``("a", "b", "['c d']", "[*]")``."""
    return tuple(_SEGMENT.findall(key))


def _join(parts: tuple[str, ...]) -> str:
    return "".join(p if i == 0 or p.startswith("[") else "." + p for i, p in enumerate(parts))


def _matches(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    return len(pattern) == len(key) and all(p == WILDCARD or p == k for p, k in zip(pattern, key, strict=True))


class NoisyKeys(frozenset):
    """The noisy keys of one event type; ``key in`` also matches the wildcard paths (``*`` one segment)."""

    _patterns: tuple[tuple[str, ...], ...]

    def __new__(cls, keys: Any = ()) -> NoisyKeys:
        self = super().__new__(cls, keys)
        self._patterns = tuple(p for p in (segments(k) for k in self) if WILDCARD in p)
        return self

    def __contains__(self, key: object) -> bool:
        if frozenset.__contains__(self, key):
            return True
        if not self._patterns or not isinstance(key, str):
            return False
        parts = segments(key)
        return any(_matches(p, parts) for p in self._patterns)


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
        """Whether the legacy path is re-run for this event to learn noise (the first events of a type, then a hashed share)."""
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

    def __init__(self, *, max_paths: int = MAX_PATHS, collapse_at: int = COLLAPSE_AT) -> None:
        if max_paths < 1 or collapse_at < 2:
            raise ValueError(f"NoiseModel needs max_paths >= 1 and collapse_at >= 2, got {max_paths} and {collapse_at}")
        self.max_paths = max_paths
        self.collapse_at = collapse_at
        self.dropped: dict[str, int] = {}  # event type -> paths dropped at the cap
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
            cached = self._keys[event_type] = NoisyKeys(self.paths.get(event_type, ()))
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
        paths = self.paths.setdefault(event_type, {})
        fresh = {key for key, example in obs.keys.items() if self._learn(paths, key, 1, example)}
        groups = self.unordered_groups.setdefault(event_type, {})
        new = bool(fresh)
        for g in obs.unordered:
            new = new or g not in groups
            groups[g] = groups.get(g, 0) + 1
        if new:
            self._bound(event_type, fresh)
            self._keys.pop(event_type, None)
            self._unordered.pop(event_type, None)
        return new

    # -- the bound ---------------------------------------------------------------------

    @staticmethod
    def _learn(paths: dict[str, dict[str, Any]], key: str, count: int, example: Any) -> bool:
        """Count ``key`` (under a wildcard path that already covers it, if one does); True when new."""
        entry = paths.get(key)
        if entry is None:
            parts = segments(key)
            entry = next((e for k, e in paths.items() if WILDCARD in k and _matches(segments(k), parts)), None)
        if entry is not None:
            entry["count"] += count
            return False
        paths[key] = {"count": count, "example": example}
        return True

    def _bound(self, event_type: str, fresh: set[str] | frozenset[str] = frozenset()) -> None:
        """Fold data-dependent paths into wildcards, then drop the rarest past ``max_paths``.

        Paths just learned (``fresh``) are kept: they explain the comparison at
        hand, and a newcomer always being the rarest would freeze the model.
        """
        paths = self.paths.get(event_type)
        if paths:
            self._collapse(paths)
            while len(paths) > self.max_paths:
                old = [k for k in paths if k not in fresh] or list(paths)
                rarest = min(old, key=lambda k: (paths[k]["count"], k))
                del paths[rarest]
                self.dropped[event_type] = self.dropped.get(event_type, 0) + 1
        groups = self.unordered_groups.get(event_type)
        while groups and len(groups) > self.max_paths:
            del groups[min(groups, key=lambda g: (groups[g], g))]
            self.dropped[event_type] = self.dropped.get(event_type, 0) + 1
        self._keys.pop(event_type, None)
        self._unordered.pop(event_type, None)

    def _collapse(self, paths: dict[str, dict[str, Any]]) -> None:
        while True:
            siblings: dict[tuple[str, ...], list[str]] = {}
            for key in paths:
                parts = segments(key)
                for i in range(1, len(parts)):  # the first segment (emitted<node:Type>, state) is the identity
                    if parts[i] != WILDCARD:
                        siblings.setdefault((*parts[:i], WILDCARD, *parts[i + 1 :]), []).append(key)
            family = max(siblings.items(), key=lambda kv: len(kv[1]), default=None)
            if family is None or len(family[1]) < self.collapse_at:
                return
            pattern, members = family
            first = paths[members[0]]
            merged = {"count": sum(paths[k]["count"] for k in members), "example": first["example"]}
            for k in members:
                del paths[k]
            wild = _join(pattern)
            if wild in paths:
                merged["count"] += paths[wild]["count"]
                merged["example"] = paths[wild]["example"]
            paths[wild] = merged

    # -- persistence -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The model as JSON-ready data (``from_dict`` reads it back)."""
        return {"samples": self.samples, "paths": self.paths, "unordered": self.unordered_groups, "dropped": self.dropped}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> NoiseModel:
        """A model from ``to_dict()`` data (an empty model for None)."""
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
                self._learn(mine, key, int(entry.get("count", 1)), entry.get("example"))
        for t, groups in (data.get("unordered") or {}).items():
            mine_g = self.unordered_groups.setdefault(t, {})
            for g, n in groups.items():
                mine_g[g] = mine_g.get(g, 0) + int(n)
        for t, n in (data.get("dropped") or {}).items():
            self.dropped[t] = self.dropped.get(t, 0) + int(n)
        for t in set(self.paths) | set(self.unordered_groups):
            self._bound(t)
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
        for t, n in sorted(self.dropped.items()):  # what the cap let go, so a reader knows the list is not all
            path = f"({n} rarer paths dropped at the cap of {self.max_paths})"
            rows.append({"event_type": t, "path": path, "differed": 0, "samples": self.samples.get(t, 0), "example": None})
        return rows


def learned_since(now: dict[str, Any], loaded: dict[str, Any] | None) -> dict[str, Any]:
    """What was learned in this process since the model was loaded (``to_dict()`` counts minus the loaded counts).

    A wildcard path folded in this process stands for the loaded paths it
    matches, so their counts are taken off it and nothing is counted twice.
    """
    if not loaded:
        return now
    out: dict[str, Any] = {"samples": {}, "paths": {}, "unordered": {}, "dropped": {}}
    for t, n in now["samples"].items():
        d = n - loaded.get("samples", {}).get(t, 0)
        if d:
            out["samples"][t] = d
    for t, paths in now["paths"].items():
        old = loaded.get("paths", {}).get(t, {})
        for key, entry in paths.items():
            if key in old or WILDCARD not in key:
                before = old.get(key, {}).get("count", 0)
            else:
                parts = segments(key)
                before = sum(e.get("count", 0) for k, e in old.items() if _matches(parts, segments(k)))
            d = entry["count"] - before
            if d > 0:
                out["paths"].setdefault(t, {})[key] = {"count": d, "example": entry["example"]}
    for t, groups in now["unordered"].items():
        old_g = loaded.get("unordered", {}).get(t, {})
        for g, n in groups.items():
            d = n - old_g.get(g, 0)
            if d:
                out["unordered"].setdefault(t, {})[g] = d
    for t, n in (now.get("dropped") or {}).items():
        d = n - (loaded.get("dropped") or {}).get(t, 0)
        if d > 0:
            out["dropped"][t] = d
    return out


class NoiseBook:
    """The migration's learned noise: loaded from the store on first use, saved merged with what other
    processes learned meanwhile, its example values masked as stored.

    Args:
        store: the migration's ``Store`` (its records hold the model under ``keys.NOISE``).
        mask: masks one difference dict (``Redactor.difference_dict``): examples are shown, never compared.
    """

    def __init__(self, store: Any, mask: Any) -> None:
        self.store = store
        self._mask = mask
        self._model: NoiseModel | None = None
        self._loaded: dict[str, Any] | None = None
        self._dirty = False

    @property
    def model(self) -> NoiseModel:
        """Noise learned so far (loaded from the store on first use)."""
        if self._model is None:
            self._model = NoiseModel()
            self._loaded = self._load(self._model)
        return self._model

    def _load(self, model: NoiseModel) -> dict[str, Any] | None:
        try:
            data, _ = self.store.records.get(keys.NOISE)
        except MigrationKitError:
            return None
        if data:
            model.merge(data)
        return data

    def learned(self, something: bool) -> None:
        """Note that the model changed (``something``): the next ``save`` writes it."""
        self._dirty = self._dirty or something

    def replace(self, model: NoiseModel) -> None:
        """Use ``model`` from now on (a resumed replay's saved model); it is saved as learned here."""
        self._model = model
        self._dirty = True

    def adopt(self, learned: dict[str, Any] | NoiseModel) -> None:
        """Merge what other runs learned (a distributed replay's partitions) into the model."""
        self.model.merge(learned.to_dict() if isinstance(learned, NoiseModel) else learned)
        self._dirty = True

    def borrowed(self, model: NoiseModel | None) -> _Borrowed:
        """A context in which ``model`` stands for the book's (a partition's own model); restored after."""
        return _Borrowed(self, model)

    def forget(self) -> None:
        """Drop what is in memory (another store: the next use loads anew)."""
        self._model, self._loaded, self._dirty = None, None, False

    def save(self) -> None:
        """Persist what was learned, merged with what other processes learned meanwhile."""
        if self._model is None or not self._dirty:
            return
        mine = learned_since(self._model.to_dict(), self._loaded)

        def merged(stored: Any) -> dict[str, Any]:
            model = NoiseModel.from_dict(stored)
            model.merge(mine)
            return self._masked(model.to_dict())

        written = self.store.update(keys.NOISE, merged, tries=10, what="the learned noise")
        self._loaded = copy.deepcopy(written)
        self._model = NoiseModel.from_dict(written)
        self._dirty = False

    def _masked(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        for paths in (doc.get("paths") or {}).values():
            for key, entry in paths.items():
                ex = entry.get("example")
                if isinstance(ex, dict) and ("first" in ex or "second" in ex):
                    m = self._mask({"path": key, "legacy": ex.get("first"), "candidate": ex.get("second")})
                    entry["example"] = {**ex, "first": m["legacy"], "second": m["candidate"]}
        return doc


class _Borrowed:
    """``NoiseBook.borrowed``: swaps a model in for the duration of a ``with`` block."""

    def __init__(self, book: NoiseBook, model: NoiseModel | None) -> None:
        self.book, self.model = book, model
        self.kept: tuple[NoiseModel | None, bool] | None = None

    def __enter__(self) -> NoiseBook:
        if self.model is not None:
            self.kept = (self.book._model, self.book._dirty)
            self.book._model = self.model
        return self.book

    def __exit__(self, *exc: object) -> None:
        if self.kept is not None:
            self.book._model, self.book._dirty = self.kept
