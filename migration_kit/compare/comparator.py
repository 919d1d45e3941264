"""Comparing the two paths' outcomes: every difference found, located and explained.

A ``Comparison`` lists ``Difference`` values (a JSON-style ``path`` such as
``emitted[0].payload.queue``, both values, a short ``kind``) and names the
``first_divergent_node``: aligning both per-node traces, the first node whose
own output (events published, effect calls, error) differs although the
cascade agreed up to it.

What is compared: emitted events (type, payload, headers, correlation, the
emitting node), effect calls (port, arguments, the calling node), the saga
state after the event, errors, and the rows written through declared
databases, per row and column (``writes.batches[reference=b1].allocated_quantity``,
kinds ``write_missing``, ``write_extra``, ``write_changed``; a write a sandbox
stopped is ``write_blocked``). Generated identifiers (event ids,
timestamps, causation ids, a correlation id generated from the root) are not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any, Literal

from legacy_bus import EffectCall, Event
from legacy_bus.database import RowWrite

from migration_kit.compare.noise import NoiseLearning, NoiseModel, NoiseObservation
from migration_kit.compare.outcome import Emission, NodeRun, Outcome

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
    WRITE_MISSING = "write_missing"
    WRITE_EXTRA = "write_extra"
    WRITE_CHANGED = "write_changed"
    WRITE_BLOCKED = "write_blocked"


WRITE_KINDS = frozenset({Kind.WRITE_MISSING, Kind.WRITE_EXTRA, Kind.WRITE_CHANGED, Kind.WRITE_BLOCKED})


_MISSING = object()


@dataclass(frozen=True, slots=True)
class Difference:
    """One way the candidate's outcome differs from the legacy's."""

    path: str
    kind: str
    legacy: Any
    candidate: Any
    node: str | None = None
    key: str = ""  # index-free identity, e.g. emitted<ship:ShipmentScheduled>.payload.queue

    def to_dict(self) -> dict[str, Any]:
        """The difference as JSON-ready data."""
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
    trace_id: str | None = None  # the OpenTelemetry trace of this comparison, when traced

    @property
    def divergent(self) -> bool:
        """Whether the two paths differed at all."""
        return bool(self.differences)

    @property
    def errored(self) -> bool:
        """The candidate path ended in an error (a handler's, or a crash of the graph)."""
        return self.candidate.crashed or bool(self.candidate.errors)

    def to_dict(self) -> dict[str, Any]:
        """The comparison as JSON-ready data (the event's envelope, not its payload)."""
        return {
            "event": {"id": self.event.id, "type": self.event.type, "correlation_id": self.event.correlation_id},
            "divergent": self.divergent,
            "first_divergent_node": self.first_divergent_node,
            "differences": [d.to_dict() for d in self.differences],
            "trace_id": self.trace_id,
        }


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(glob_source(pattern) + r"\Z")


def glob_source(pattern: str, *, zero_segments: bool = False) -> str:
    """The regex source of a path glob: ``*`` one segment, ``**`` across segments, ``[*]`` any index.

    With ``zero_segments`` a whole ``**.`` segment may also match nothing
    (``**.token`` matches ``token`` as well as ``a.b.token``), as redaction
    rules want.
    """
    out = []
    i = 0
    while i < len(pattern):
        if zero_segments and pattern.startswith("**.", i) and (i == 0 or pattern[i - 1] == "."):
            out.append(r"(?:.*\.)?")
            i += 3
        elif pattern.startswith("**", i):
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
    return "".join(out)


Ordering = Literal["handler", "strict"]
_COLLAPSE = re.compile(r"\[\d+\]")
_ARG = re.compile(r"^(args\[\d+\])")


def _key(base: str, local: str) -> str:
    if not local:
        return base
    m = _ARG.match(local)
    if m:  # a positional argument's index is part of its identity
        return f"{base}.{m.group(1)}{_COLLAPSE.sub('[*]', local[m.end():])}"
    return f"{base}.{_COLLAPSE.sub('[*]', local)}"


class _Ctx:
    """Per-comparison settings: which keys are noise, which groups are unordered."""

    __slots__ = ("noisy", "unordered")

    def __init__(self, noisy: frozenset[str] = frozenset(), unordered: frozenset[str] = frozenset()) -> None:
        self.noisy = noisy
        self.unordered = unordered


_PLAIN_CTX = _Ctx()


class Comparator:
    """Finds every difference between a legacy and a candidate ``Outcome``.

    Args:
        ignore: glob paths never compared, matched against the full path
            (``emitted[2].payload.created_at``) and the path inside an event
            or effect (``payload.created_at``); ``*`` matches one segment,
            ``**`` any number, ``[*]`` any index.
        float_tolerance: relative tolerance for numbers (``math.isclose``).
        ordering: ``handler`` (default): the order of what one handler
            publishes or calls matters, the order between handlers at the same
            depth of the cascade (concurrent fan-out branches) does not;
            ``strict``: the whole order matters.
        normalizers: per event type, a callable mapping a payload to the
            payload to compare (for example rounding or dropping a field).
        noise: noise learning (``NoiseLearning()`` by default; ``False`` to
            turn it off). The migration runs the learning; the comparator
            applies what was learned.

    Python equality decides equal values, so ``1``, ``1.0`` and ``True``
    compare equal, as they do in Python.
    """

    def __init__(
        self,
        *,
        ignore: Iterable[str] = (),
        float_tolerance: float = 1e-9,
        ordering: Ordering = "handler",
        normalizers: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
        noise: NoiseLearning | bool = True,
    ) -> None:
        if ordering not in ("handler", "strict"):
            raise ValueError(f"Comparator(ordering={ordering!r}): expected 'handler' or 'strict'")
        self.ignore = tuple(ignore)
        self._ignore = [_glob(p) for p in self.ignore]
        self.float_tolerance = float_tolerance
        self.ordering: Ordering = ordering
        self.normalizers = dict(normalizers or {})
        self.learning: NoiseLearning | None = (
            NoiseLearning() if noise is True else (noise if isinstance(noise, NoiseLearning) else None)
        )

    def __repr__(self) -> str:
        return f"Comparator(ignore={list(self.ignore)!r}, float_tolerance={self.float_tolerance}, ordering={self.ordering!r})"

    # -- public ----------------------------------------------------------------------

    def compare(self, legacy: Outcome, candidate: Outcome, *, noise: NoiseModel | None = None) -> Comparison:
        """Compare two outcomes of the same root event, ignoring what ``noise`` learned."""
        if self._agree(legacy, candidate):  # the common case: nothing any rule could report
            return Comparison(legacy.event, legacy, candidate, (), None)
        t = legacy.event.type
        ctx = _Ctx(noise.keys(t), noise.unordered(t)) if noise is not None else _PLAIN_CTX
        diffs = self._diff(legacy, candidate, ctx)
        node = self.first_divergent_node(legacy, candidate, diffs, ctx) if diffs else None
        return Comparison(legacy.event, legacy, candidate, tuple(diffs), node)

    def noise_between(self, first: Outcome, second: Outcome) -> NoiseObservation:
        """What differs between two runs of the same (legacy) code: the noise to learn."""
        diffs = self._diff(first, second, _PLAIN_CTX)
        if not diffs:
            return NoiseObservation({}, frozenset())
        # A group one handler publishes whose events pair up better in another
        # order was shuffled: its order is noise, and so is what still differs.
        groups = {d.key[8 : d.key.index(">")] for d in diffs if d.key.startswith("emitted<") and "." in d.key}
        unordered: set[str] = set()
        for g in groups:
            trial = self._diff(first, second, _Ctx(frozenset(), frozenset(unordered | {g})))
            if len(trial) < len(diffs):
                unordered.add(g)
                diffs = trial
        keys: dict[str, dict[str, Any]] = {}
        for d in diffs:
            keys.setdefault(d.key, {"first": d.legacy, "second": d.candidate})
        return NoiseObservation(keys, frozenset(unordered))

    def first_divergent_node(
        self, legacy: Outcome, candidate: Outcome, diffs: list[Difference] | None = None, ctx: _Ctx = _PLAIN_CTX
    ) -> str | None:
        """The first node, in cascade order, whose own output differs between the two traces."""
        if candidate.crashed:
            return None
        # A node whose own writes differ diverges there, even when its events and calls agree;
        # a write that differs only downstream of it is then not blamed on the node it shows at.
        writers = {d.node for d in diffs or () if d.kind in WRITE_KINDS and d.node is not None}
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
            if other is None or not self._same_step(legacy, run, candidate, other, ctx) or run.node in writers:
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

    def _agree(self, legacy: Outcome, candidate: Outcome) -> bool:
        """True only when ``_diff`` finds nothing in any context: position by position equal outcomes.

        Every check is the one ``_diff`` makes (Python equality), on both sides in their own
        order; equal (depth, node) at every position sort both the same way, so ``_diff`` would
        pair exactly these. Ignore rules and learned noise only remove differences. Anything
        else (a crash, writes, a normalizer, a step order that differs) takes the full walk.
        """
        if legacy.crashed or candidate.crashed or legacy.writes or candidate.writes:
            return False
        if legacy.state != candidate.state:
            return False
        le, ce = legacy.error, candidate.error
        if (le is None) != (ce is None) or (le is not None and ce is not None and (le.type, le.message) != (ce.type, ce.message)):
            return False
        a, b = legacy.emitted, candidate.emitted
        if len(a) != len(b):
            return False
        norm = self.normalizers
        for x, y in zip(a, b):
            if (
                x.node != y.node or x.type != y.type or x.depth != y.depth or x.correlation != y.correlation
                or x.payload != y.payload or x.headers != y.headers or (norm and x.type in norm)
            ):  # fmt: skip
                return False
        ca, cb = legacy.effects, candidate.effects
        if len(ca) != len(cb):
            return False
        for x, y in zip(ca, cb):
            if x.node != y.node or x.port != y.port or x.args != y.args or x.kwargs != y.kwargs:
                return False
        if len(ca) > 1 and self.ordering != "strict":
            # Calls are ordered by their node's depth in each side's own trace: the same steps, the same order.
            if len(legacy.trace) != len(candidate.trace):
                return False
            for r, s in zip(legacy.trace, candidate.trace):
                if r.node != s.node or r.depth != s.depth:
                    return False
        return True

    def _diff(self, legacy: Outcome, candidate: Outcome, ctx: _Ctx) -> list[Difference]:
        diffs: list[Difference] = []
        if candidate.crashed or legacy.crashed:
            le, ce = legacy.error, candidate.error
            diffs.append(
                Difference(
                    "candidate" if candidate.crashed else "legacy",
                    Kind.CRASH,
                    None if le is None else f"{le.type}: {le.message}",
                    None if ce is None else f"{ce.type}: {ce.message}",
                    key="crash",
                )
            )
            return diffs
        rank = self._ranks(legacy)
        self._emitted(self._order(legacy.emitted, rank), self._order(candidate.emitted, rank), diffs, ctx)
        self._effects(self._order_calls(legacy, rank), self._order_calls(candidate, rank), diffs, ctx)
        if legacy.state != candidate.state:
            self._value(legacy.state or {}, candidate.state or {}, "state", "", diffs, None, Kind.STATE, "state", ctx)
        le, ce = legacy.error, candidate.error
        if (le is None) != (ce is None) or (
            le is not None and ce is not None and (le.type, le.message) != (ce.type, ce.message)
        ):
            if "error" not in ctx.noisy:
                diffs.append(
                    Difference(
                        "error",
                        Kind.ERROR,
                        None if le is None else f"{le.type}: {le.message}",
                        None if ce is None else f"{ce.type}: {ce.message}",
                        key="error",
                    )
                )
        if legacy.writes or candidate.writes:
            self._writes(legacy.writes, candidate.writes, diffs, ctx)
        return diffs

    # writes -------------------------------------------------------------------------------------

    def _writes(self, a: tuple[RowWrite, ...], b: tuple[RowWrite, ...], out: list[Difference], ctx: _Ctx) -> None:
        """Rows written, per row (``write_missing`` / ``write_extra``) and per changed column (``write_changed``)."""
        theirs = {(w.table, w.key_text): w for w in b if w.op not in ("blocked", "read")}
        for side, writes in (("legacy", a), ("candidate", b)):
            for w in writes:
                if w.op == "blocked":  # never parity: the run was stopped from writing what it meant to
                    lv, cv = (w.statement, None) if side == "legacy" else (None, w.statement)
                    self._add(out, ctx, Difference(f"writes.{w.table}", Kind.WRITE_BLOCKED, lv, cv, w.node, f"writes.{w.table}<blocked>"))
        for x in a:
            if x.op in ("blocked", "read"):  # a read is what the live run saw, not a write
                continue
            base, kbase = f"writes.{x.table}[{x.key_text}]", f"writes.{x.table}[*]"
            y = theirs.pop((x.table, x.key_text), None)
            if y is None:
                self._add(out, ctx, Difference(base, Kind.WRITE_MISSING, _row(x), None, x.node, kbase))
                continue
            if x.op != y.op:
                self._add(out, ctx, Difference(f"{base}.op", Kind.WRITE_CHANGED, x.op, y.op, x.node, f"{kbase}.op"))
                continue
            after_x, after_y = x.after or {}, y.after or {}
            for col in dict.fromkeys(x.changed + y.changed):
                vx, vy = after_x.get(col, _MISSING), after_y.get(col, _MISSING)
                if type(vx) is type(vy) and vx == vy:
                    continue
                if _number(vx) and _number(vy) and math.isclose(vx, vy, rel_tol=self.float_tolerance, abs_tol=0.0):
                    continue
                self._add(
                    out, ctx,
                    Difference(f"{base}.{col}", Kind.WRITE_CHANGED, None if vx is _MISSING else vx,
                               None if vy is _MISSING else vy, x.node, f"{kbase}.{col}"),
                )  # fmt: skip
        for y in theirs.values():
            self._add(out, ctx, Difference(f"writes.{y.table}[{y.key_text}]", Kind.WRITE_EXTRA, None, _row(y), y.node, f"writes.{y.table}[*]"))

    # ordering -----------------------------------------------------------------------------

    @staticmethod
    def _ranks(legacy: Outcome) -> dict[tuple[int, str], int]:
        rank: dict[tuple[int, str], int] = {}
        for e in legacy.emitted:
            rank.setdefault((e.depth, e.node), len(rank))
        return rank

    def _order(self, emitted: tuple[Emission, ...], rank: dict[tuple[int, str], int]) -> list[tuple[int, Emission]]:
        items = list(enumerate(emitted))
        if self.ordering == "strict" or len(items) < 2:
            return items
        big = len(rank)
        # Stable: within one handler the original order is kept.
        return sorted(items, key=lambda ie: (ie[1].depth, rank.get((ie[1].depth, ie[1].node), big)))

    def _order_calls(self, outcome: Outcome, rank: dict[tuple[int, str], int]) -> list[tuple[int, EffectCall]]:
        items = list(enumerate(outcome.effects))
        if self.ordering == "strict" or len(items) < 2:
            return items
        depth_of: dict[str, int] = {}
        for run in outcome.trace:
            depth_of.setdefault(run.node, run.depth + 1)
        big = len(rank)
        return sorted(
            items,
            key=lambda ic: (depth_of.get(ic[1].node or "", 0), rank.get((depth_of.get(ic[1].node or "", 0), ic[1].node or ""), big)),
        )

    # emitted events ----------------------------------------------------------------------------

    def _emitted(
        self, a: list[tuple[int, Emission]], b: list[tuple[int, Emission]], out: list[Difference], ctx: _Ctx
    ) -> None:
        if ctx.unordered:
            b = self._match_unordered(a, b, ctx)
        sa = [(e.node, e.type) for _, e in a]
        sb = [(e.node, e.type) for _, e in b]
        if sa == sb:
            for (i, x), (_, y) in zip(a, b, strict=True):
                self._event_pair(x, y, i, out, ctx)
            return
        for tag, i1, i2, j1, j2 in SequenceMatcher(None, sa, sb, autojunk=False).get_opcodes():
            if tag == "equal":
                for (i, x), (_, y) in zip(a[i1:i2], b[j1:j2], strict=True):
                    self._event_pair(x, y, i, out, ctx)
                continue
            # Pair replaced events of the same node (a changed type or payload);
            # what is left over is missing or extra.
            rest_b = list(b[j1:j2])
            for i, x in a[i1:i2]:
                match = next((jy for jy in rest_b if jy[1].node == x.node), None)
                if match is None:
                    self._add(out, ctx, Difference(f"emitted[{i}]", Kind.EVENT_MISSING, _brief(x), None, x.node, f"emitted<{x.node}:{x.type}>"))
                else:
                    rest_b.remove(match)
                    self._event_pair(x, match[1], i, out, ctx)
            for j, y in rest_b:
                self._add(out, ctx, Difference(f"emitted[{j}]", Kind.EVENT_EXTRA, None, _brief(y), y.node, f"emitted<{y.node}:{y.type}>"))

    def _match_unordered(
        self, a: list[tuple[int, Emission]], b: list[tuple[int, Emission]], ctx: _Ctx
    ) -> list[tuple[int, Emission]]:
        """Reorder each unordered group of ``b`` to pair best with ``a``'s (fewest differences)."""
        out = list(b)
        for g in ctx.unordered:
            node, _, etype = g.partition(":")
            ia = [k for k, (_, e) in enumerate(a) if e.node == node and e.type == etype]
            ib = [k for k, (_, e) in enumerate(out) if e.node == node and e.type == etype]
            if len(ia) < 2 or len(ia) != len(ib):
                continue
            free = list(ib)
            chosen: list[int] = []
            for ka in ia:
                x = a[ka][1]
                best, best_n = free[0], None
                for kb in free:
                    probe: list[Difference] = []
                    self._event_pair(x, out[kb][1], 0, probe, ctx)
                    if best_n is None or len(probe) < best_n:
                        best, best_n = kb, len(probe)
                        if best_n == 0:
                            break
                free.remove(best)
                chosen.append(best)
            originals = [out[kb] for kb in chosen]
            for slot, item in zip(ib, originals, strict=True):
                out[slot] = item
        return out

    def _event_pair(self, x: Emission, y: Emission, i: int, out: list[Difference], ctx: _Ctx) -> None:
        base = f"emitted[{i}]"
        kbase = f"emitted<{x.node}:{x.type}>"
        if x.type != y.type:
            self._add(out, ctx, Difference(f"{base}.type", Kind.TYPE_CHANGED, x.type, y.type, x.node, f"{kbase}.type"))
        px, py = x.payload, y.payload
        norm = self.normalizers.get(x.type)
        if norm is not None:
            px, py = norm(px), norm(py)
        if px != py:
            self._value(px, py, f"{base}.payload", "payload", out, x.node, Kind.VALUE_CHANGED, kbase, ctx)
        if x.headers != y.headers:
            self._value(x.headers, y.headers, f"{base}.headers", "headers", out, x.node, Kind.VALUE_CHANGED, kbase, ctx)
        if x.correlation != y.correlation:
            self._add(out, ctx, Difference(f"{base}.correlation_id", Kind.VALUE_CHANGED, x.correlation, y.correlation, x.node, f"{kbase}.correlation_id"))
        if x.node != y.node:
            self._add(out, ctx, Difference(f"{base}.node", Kind.VALUE_CHANGED, x.node, y.node, x.node, f"{kbase}.node"))

    # effect calls ------------------------------------------------------------------------------

    def _effects(
        self, a: list[tuple[int, EffectCall]], b: list[tuple[int, EffectCall]], out: list[Difference], ctx: _Ctx
    ) -> None:
        sa = [(c.node, c.port) for _, c in a]
        sb = [(c.node, c.port) for _, c in b]
        if sa == sb:
            for (i, x), (_, y) in zip(a, b, strict=True):
                self._effect_pair(x, y, i, out, ctx)
            return
        for tag, i1, i2, j1, j2 in SequenceMatcher(None, sa, sb, autojunk=False).get_opcodes():
            if tag == "equal":
                for (i, x), (_, y) in zip(a[i1:i2], b[j1:j2], strict=True):
                    self._effect_pair(x, y, i, out, ctx)
                continue
            rest_b = list(b[j1:j2])
            for i, x in a[i1:i2]:
                match = next((jy for jy in rest_b if jy[1].port == x.port), None)
                if match is None:
                    self._add(out, ctx, Difference(f"effects[{i}]", Kind.EFFECT_MISSING, _call(x), None, x.node, f"effects<{x.node}:{x.port}>"))
                else:
                    rest_b.remove(match)
                    self._effect_pair(x, match[1], i, out, ctx)
            for j, y in rest_b:
                self._add(out, ctx, Difference(f"effects[{j}]", Kind.EFFECT_EXTRA, None, _call(y), y.node, f"effects<{y.node}:{y.port}>"))

    def _effect_pair(self, x: EffectCall, y: EffectCall, i: int, out: list[Difference], ctx: _Ctx) -> None:
        base = f"effects[{i}]"
        kbase = f"effects<{x.node}:{x.port}>"
        if x.port != y.port:
            self._add(out, ctx, Difference(f"{base}.port", Kind.EFFECT_ARGUMENTS, x.port, y.port, x.node, f"{kbase}.port"))
            return
        if x.args != y.args:
            self._value(x.args, y.args, f"{base}.args", "args", out, x.node, Kind.EFFECT_ARGUMENTS, kbase, ctx)
        if x.kwargs != y.kwargs:
            self._value(x.kwargs, y.kwargs, f"{base}.kwargs", "kwargs", out, x.node, Kind.EFFECT_ARGUMENTS, kbase, ctx)

    # steps ----------------------------------------------------------------------------------------

    def _same_step(self, lo: Outcome, lr: NodeRun, co: Outcome, cr: NodeRun, ctx: _Ctx) -> bool:
        if len(lr.out) != len(cr.out) or len(lr.effects) != len(cr.effects):
            return False
        if (lr.error is None) != (cr.error is None):
            return False
        if lr.error is not None and cr.error is not None and (lr.error.type, lr.error.message) != (cr.error.type, cr.error.message):
            return False
        probe: list[Difference] = []
        self._emitted([(i, lo.emitted[i]) for i in lr.out], [(j, co.emitted[j]) for j in cr.out], probe, ctx)
        if probe:
            return False
        self._effects(list(enumerate(lr.effects)), list(enumerate(cr.effects)), probe, ctx)
        return not probe

    # values ------------------------------------------------------------------------------------------

    def _add(self, out: list[Difference], ctx: _Ctx, diff: Difference) -> None:
        if ctx.noisy and diff.key in ctx.noisy:
            return
        if self._ignore and self._ignored(diff.path, diff.key):
            return
        out.append(diff)

    def _ignored(self, path: str, local: str) -> bool:
        for rx in self._ignore:
            if rx.match(path) or (local and rx.match(local)):
                return True
        return False

    def _value(
        self, a: Any, b: Any, path: str, local: str, out: list[Difference], node: str | None, kind: str, kbase: str, ctx: _Ctx
    ) -> None:
        if type(a) is type(b) and a == b:
            return
        if self._ignore and self._ignored(path, local):
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in list(a) + [k for k in b if k not in a]:
                va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
                if type(va) is type(vb) and va == vb:
                    continue
                plain = _plain_key(key)
                sub = f"{path}.{key}" if plain else f"{path}[{key!r}]"
                sub_local = (f"{local}.{key}" if local else str(key)) if plain else f"{local}[{key!r}]"
                if va is _MISSING:
                    self._leaf(out, ctx, sub, sub_local, _field_kind(kind, Kind.FIELD_EXTRA), None, vb, node, kbase)
                elif vb is _MISSING:
                    self._leaf(out, ctx, sub, sub_local, _field_kind(kind, Kind.FIELD_MISSING), va, None, node, kbase)
                else:
                    self._value(va, vb, sub, sub_local, out, node, kind, kbase, ctx)
            return
        if isinstance(a, list) and isinstance(b, list):
            for i in range(max(len(a), len(b))):
                sub, sub_local = f"{path}[{i}]", f"{local}[{i}]"
                if i >= len(a):
                    self._leaf(out, ctx, sub, sub_local, _field_kind(kind, Kind.FIELD_EXTRA), None, b[i], node, kbase)
                elif i >= len(b):
                    self._leaf(out, ctx, sub, sub_local, _field_kind(kind, Kind.FIELD_MISSING), a[i], None, node, kbase)
                else:
                    self._value(a[i], b[i], sub, sub_local, out, node, kind, kbase, ctx)
            return
        if _number(a) and _number(b):
            if a == b or math.isclose(a, b, rel_tol=self.float_tolerance, abs_tol=0.0):
                return
        elif a == b and not (isinstance(a, (dict, list)) or isinstance(b, (dict, list))):
            return
        self._leaf(out, ctx, path, local, kind, a, b, node, kbase)

    def _leaf(
        self, out: list[Difference], ctx: _Ctx, path: str, local: str, kind: str, a: Any, b: Any, node: str | None, kbase: str
    ) -> None:
        key = _key(kbase, local) if kbase != "state" else (f"state.{_COLLAPSE.sub('[*]', local)}" if local else "state")
        if ctx.noisy and key in ctx.noisy:
            return
        if self._ignore and self._ignored(path, local):
            return
        out.append(Difference(path, kind, a, b, node, key))


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


def _row(w: RowWrite) -> dict[str, Any]:
    return {"op": w.op, "row": w.after if w.after is not None else w.before}


def _call(c: EffectCall) -> dict[str, Any]:
    return {"port": c.port, "args": c.args, "kwargs": c.kwargs}

