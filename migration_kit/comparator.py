"""Comparing the two paths' outcomes: every difference found, located and explained.

A ``Comparison`` lists ``Difference`` values (a JSON-style ``path`` such as
``emitted[0].payload.queue``, both values, a short ``kind``) and names the
``first_divergent_node``: aligning both per-node traces, the first node whose
own output (events published, effect calls, error) differs although the
cascade agreed up to it.

What is compared: emitted events (type, payload, headers, correlation, the
emitting node), effect calls (port, arguments, the calling node), the saga
state after the event, and errors. Generated identifiers (event ids,
timestamps, causation ids, a correlation id generated from the root) are not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from legacy_bus import EffectCall, Event

from migration_kit.outcome import Emission, NodeRun, Outcome

__all__ = ["Comparator", "Comparison", "Difference", "Kind"]


class Kind:
    """The kinds of difference (plain strings, so reports and JSON stay simple)."""

    VALUE_CHANGED = "value_changed"
    TYPE_CHANGED = "type_changed"
    FIELD_MISSING = "field_missing"
    FIELD_EXTRA = "field_extra"
    EVENT_MISSING = "event_missing"
    EVENT_EXTRA = "event_extra"
    EFFECT_MISSING = "effect_missing"
    EFFECT_EXTRA = "effect_extra"
    EFFECT_ARGUMENTS = "effect_arguments"
    STATE = "state_changed"
    ERROR = "error"
    CRASH = "candidate_crashed"


_MISSING = object()


@dataclass(frozen=True, slots=True)
class Difference:
    """One way the candidate's outcome differs from the legacy's."""

    path: str
    kind: str
    legacy: Any
    candidate: Any
    node: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "legacy": self.legacy, "candidate": self.candidate, "node": self.node}

    def __str__(self) -> str:
        return f"{self.path} [{self.kind}]: legacy={self.legacy!r} candidate={self.candidate!r}"


@dataclass(frozen=True, slots=True)
class Comparison:
    """One event through both paths, and what differed."""

    event: Event
    legacy: Outcome
    candidate: Outcome
    differences: tuple[Difference, ...]
    first_divergent_node: str | None

    @property
    def divergent(self) -> bool:
        return bool(self.differences)

    @property
    def errored(self) -> bool:
        """The candidate path ended in an error (a handler's, or a crash of the graph)."""
        return self.candidate.crashed or bool(self.candidate.errors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": {"id": self.event.id, "type": self.event.type, "correlation_id": self.event.correlation_id},
            "divergent": self.divergent,
            "first_divergent_node": self.first_divergent_node,
            "differences": [d.to_dict() for d in self.differences],
        }


def _glob(pattern: str) -> re.Pattern[str]:
    # "*" matches within one path segment; "**" across segments; "[*]" any index.
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern.startswith("[*]", i):
            out.append(r"\[\d+\]")
            i += 3
        elif pattern[i] == "*":
            out.append(r"[^.\[]*")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


class Comparator:
    """Finds every difference between a legacy and a candidate ``Outcome``.

    Args:
        ignore: glob paths never compared, matched against the full path
            (``emitted[2].payload.created_at``) and the path inside an event
            or effect (``payload.created_at``); ``*`` matches one segment,
            ``**`` any number, ``[*]`` any index.
        float_tolerance: relative tolerance for numbers (``math.isclose``).
        normalizers: per event type, a callable mapping a payload to the
            payload to compare (for example rounding or dropping a field).
    """

    def __init__(
        self,
        *,
        ignore: Iterable[str] = (),
        float_tolerance: float = 1e-9,
        normalizers: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
    ) -> None:
        self.ignore = tuple(ignore)
        self._ignore = [_glob(p) for p in self.ignore]
        self.float_tolerance = float_tolerance
        self.normalizers = dict(normalizers or {})

    def __repr__(self) -> str:
        return f"Comparator(ignore={list(self.ignore)!r}, float_tolerance={self.float_tolerance})"

    # -- public ----------------------------------------------------------------------

    def compare(self, legacy: Outcome, candidate: Outcome) -> Comparison:
        """Compare two outcomes of the same root event."""
        diffs: list[Difference] = []
        if candidate.crashed:
            err = candidate.error
            diffs.append(
                Difference("candidate", Kind.CRASH, None, None if err is None else f"{err.type}: {err.message}")
            )
        else:
            self._emitted(legacy.emitted, candidate.emitted, diffs)
            self._effects(legacy.effects, candidate.effects, diffs)
            self._value(legacy.state or {}, candidate.state or {}, "state", "", diffs, None, Kind.STATE)
            le, ce = legacy.error, candidate.error
            if (le is None) != (ce is None) or (le is not None and ce is not None and (le.type, le.message) != (ce.type, ce.message)):
                diffs.append(
                    Difference(
                        "error",
                        Kind.ERROR,
                        None if le is None else f"{le.type}: {le.message}",
                        None if ce is None else f"{ce.type}: {ce.message}",
                    )
                )
        node = self.first_divergent_node(legacy, candidate, diffs) if diffs else None
        return Comparison(legacy.event, legacy, candidate, tuple(diffs), node)

    def first_divergent_node(self, legacy: Outcome, candidate: Outcome, diffs: list[Difference] | None = None) -> str | None:
        """The first node, in cascade order, whose own output differs between the two traces."""
        if candidate.crashed:
            return None
        theirs: dict[tuple[str, int], NodeRun] = {}
        seen: dict[str, int] = {}
        for run in candidate.trace:
            k = seen.get(run.node, 0)
            seen[run.node] = k + 1
            theirs[(run.node, k)] = run
        seen.clear()
        for run in legacy.trace:
            k = seen.get(run.node, 0)
            seen[run.node] = k + 1
            other = theirs.pop((run.node, k), None)
            if other is None or not self._same_step(legacy, run, candidate, other):
                return run.node
        if theirs:
            return min(theirs.values(), key=candidate.trace.index).node
        # The traces agree step by step; the difference is in state written
        # without output, so name the first node a difference mentions.
        for d in diffs or ():
            if d.node is not None:
                return d.node
        return None

    # -- pieces ----------------------------------------------------------------------------

    def _same_step(self, lo: Outcome, lr: NodeRun, co: Outcome, cr: NodeRun) -> bool:
        if len(lr.out) != len(cr.out) or len(lr.effects) != len(cr.effects):
            return False
        if (lr.error is None) != (cr.error is None):
            return False
        if lr.error is not None and cr.error is not None and (lr.error.type, lr.error.message) != (cr.error.type, cr.error.message):
            return False
        probe: list[Difference] = []
        for i, j in zip(lr.out, cr.out, strict=True):
            self._event_pair(lo.emitted[i], co.emitted[j], i, probe)
            if probe:
                return False
        for a, b in zip(lr.effects, cr.effects, strict=True):
            self._effect_pair(a, b, 0, probe)
            if probe:
                return False
        return True

    def _ignored(self, path: str, local: str) -> bool:
        for rx in self._ignore:
            if rx.match(path) or (local and rx.match(local)):
                return True
        return False

    def _emitted(self, a: tuple[Emission, ...], b: tuple[Emission, ...], out: list[Difference]) -> None:
        sa = [(e.node, e.type) for e in a]
        sb = [(e.node, e.type) for e in b]
        if sa == sb:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                self._event_pair(x, y, i, out)
            return
        for tag, i1, i2, j1, j2 in SequenceMatcher(None, sa, sb, autojunk=False).get_opcodes():
            if tag == "equal":
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                    self._event_pair(a[i], b[j], i, out)
                continue
            # Pair replaced events of the same node (a changed type or payload);
            # what is left over is missing or extra.
            rest_b = list(range(j1, j2))
            for i in range(i1, i2):
                match = next((j for j in rest_b if b[j].node == a[i].node), None)
                if match is None:
                    out.append(Difference(f"emitted[{i}]", Kind.EVENT_MISSING, _brief(a[i]), None, a[i].node))
                else:
                    rest_b.remove(match)
                    self._event_pair(a[i], b[match], i, out)
            for j in rest_b:
                out.append(Difference(f"emitted[{j}]", Kind.EVENT_EXTRA, None, _brief(b[j]), b[j].node))

    def _event_pair(self, x: Emission, y: Emission, i: int, out: list[Difference]) -> None:
        base = f"emitted[{i}]"
        if x.type != y.type:
            out.append(Difference(f"{base}.type", Kind.TYPE_CHANGED, x.type, y.type, x.node))
        px, py = x.payload, y.payload
        norm = self.normalizers.get(x.type)
        if norm is not None:
            px, py = norm(px), norm(py)
        if px != py or self._ignore:
            self._value(px, py, f"{base}.payload", "payload", out, x.node, Kind.VALUE_CHANGED)
        if x.headers != y.headers:
            self._value(x.headers, y.headers, f"{base}.headers", "headers", out, x.node, Kind.VALUE_CHANGED)
        if x.correlation != y.correlation:
            out.append(Difference(f"{base}.correlation_id", Kind.VALUE_CHANGED, x.correlation, y.correlation, x.node))
        if x.node != y.node:
            out.append(Difference(f"{base}.node", Kind.VALUE_CHANGED, x.node, y.node, x.node))

    def _effects(self, a: tuple[EffectCall, ...], b: tuple[EffectCall, ...], out: list[Difference]) -> None:
        sa = [(c.node, c.port) for c in a]
        sb = [(c.node, c.port) for c in b]
        if sa == sb:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                self._effect_pair(x, y, i, out)
            return
        for tag, i1, i2, j1, j2 in SequenceMatcher(None, sa, sb, autojunk=False).get_opcodes():
            if tag == "equal":
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                    self._effect_pair(a[i], b[j], i, out)
                continue
            rest_b = list(range(j1, j2))
            for i in range(i1, i2):
                match = next((j for j in rest_b if b[j].port == a[i].port), None)
                if match is None:
                    out.append(Difference(f"effects[{i}]", Kind.EFFECT_MISSING, _call(a[i]), None, a[i].node))
                else:
                    rest_b.remove(match)
                    self._effect_pair(a[i], b[match], i, out)
            for j in rest_b:
                out.append(Difference(f"effects[{j}]", Kind.EFFECT_EXTRA, None, _call(b[j]), b[j].node))

    def _effect_pair(self, x: EffectCall, y: EffectCall, i: int, out: list[Difference]) -> None:
        base = f"effects[{i}]"
        if x.port != y.port:
            out.append(Difference(f"{base}.port", Kind.EFFECT_ARGUMENTS, x.port, y.port, x.node))
            return
        if x.args != y.args or self._ignore:
            self._value(x.args, y.args, f"{base}.args", "args", out, x.node, Kind.EFFECT_ARGUMENTS)
        if x.kwargs != y.kwargs or self._ignore:
            self._value(x.kwargs, y.kwargs, f"{base}.kwargs", "kwargs", out, x.node, Kind.EFFECT_ARGUMENTS)

    def _value(
        self, a: Any, b: Any, path: str, local: str, out: list[Difference], node: str | None, kind: str
    ) -> None:
        if self._ignore and self._ignored(path, local):
            return
        if type(a) is type(b) and a == b and not self._ignore:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in list(a) + [k for k in b if k not in a]:
                sub = f"{path}.{key}" if _plain_key(key) else f"{path}[{key!r}]"
                sub_local = f"{local}.{key}" if local else str(key)
                va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
                if va is _MISSING:
                    if not (self._ignore and self._ignored(sub, sub_local)):
                        out.append(Difference(sub, _field_kind(kind, Kind.FIELD_EXTRA), None, vb, node))
                elif vb is _MISSING:
                    if not (self._ignore and self._ignored(sub, sub_local)):
                        out.append(Difference(sub, _field_kind(kind, Kind.FIELD_MISSING), va, None, node))
                else:
                    self._value(va, vb, sub, sub_local, out, node, kind)
            return
        if isinstance(a, list) and isinstance(b, list):
            for i in range(max(len(a), len(b))):
                sub, sub_local = f"{path}[{i}]", f"{local}[{i}]"
                if i >= len(a):
                    if not (self._ignore and self._ignored(sub, sub_local)):
                        out.append(Difference(sub, _field_kind(kind, Kind.FIELD_EXTRA), None, b[i], node))
                elif i >= len(b):
                    if not (self._ignore and self._ignored(sub, sub_local)):
                        out.append(Difference(sub, _field_kind(kind, Kind.FIELD_MISSING), a[i], None, node))
                else:
                    self._value(a[i], b[i], sub, sub_local, out, node, kind)
            return
        if _number(a) and _number(b):
            if a == b or math.isclose(a, b, rel_tol=self.float_tolerance, abs_tol=0.0):
                return
        elif type(a) is type(b) and a == b:
            return
        out.append(Difference(path, kind, a, b, node))


def _field_kind(kind: str, field_kind: str) -> str:
    # Inside effect arguments and state, a missing field is still that kind of difference.
    return field_kind if kind == Kind.VALUE_CHANGED else kind


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\Z")


def _plain_key(key: Any) -> bool:
    return isinstance(key, str) and _PLAIN.match(key) is not None


def _brief(e: Emission) -> dict[str, Any]:
    return {"type": e.type, "payload": e.payload}


def _call(c: EffectCall) -> dict[str, Any]:
    return {"port": c.port, "args": c.args, "kwargs": c.kwargs}

