"""What one path did with one event, as an immutable, comparable value.

Both paths produce an ``Outcome``: the legacy path from a ``Dispatch`` of the
bus, the candidate path from the final state of the graph. Fields that are
generated afresh on every run (event ids, timestamps, causation ids, a
correlation id derived from the root) are kept for tracing but are not part
of what the comparator looks at.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from legacy_bus import Dispatch, EffectCall, ErrorInfo, Event
from legacy_bus.database import RowWrite
from migration_errors import BadEventLog

from migration_kit.run.resume import STORE_ERRORS
from migration_kit.types import Side

__all__ = ["Emission", "NodeRun", "Outcome", "OutcomeRecord", "PathName"]

PathName = Side  # the name outcome gave it before ``migration_kit.types``
ROOT_CORRELATION = "<root>"


@dataclass(frozen=True, slots=True)
class Emission:
    """One event published during the cascade, with the node that published it."""

    node: str
    type: str
    payload: dict[str, Any]
    headers: dict[str, str]
    correlation: str  # ROOT_CORRELATION when it is the root's saga, else the literal id
    depth: int
    id: str

    def comparable(self) -> dict[str, Any]:
        """The fields the comparator looks at (generated identifiers left out)."""
        return {"type": self.type, "payload": self.payload, "headers": self.headers, "correlation": self.correlation}

    def to_dict(self) -> dict[str, Any]:
        """The emission as JSON-ready data: where it was emitted and what is compared of it."""
        return {"node": self.node, "depth": self.depth, "id": self.id, **self.comparable()}


@dataclass(frozen=True, slots=True)
class NodeRun:
    """One node handling one event: the unit both traces are aligned on."""

    node: str
    event_index: int  # 0 = the root, k = emitted[k - 1]
    depth: int
    out: tuple[int, ...]  # indices into Outcome.emitted
    effects: tuple[EffectCall, ...]
    error: ErrorInfo | None
    duration: float
    started: float = 0.0  # time.perf_counter() when the node started (for traces)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Everything one path did with one root event.

    ``error`` is the first handler error (``errors`` has all of them);
    ``crashed`` is set when the path itself failed (the graph raised), which
    is a failure of the candidate, not a behaviour of the legacy code.
    """

    path: PathName
    event: Event
    emitted: tuple[Emission, ...] = ()
    effects: tuple[EffectCall, ...] = ()
    state: dict[str, Any] | None = None
    errors: tuple[ErrorInfo, ...] = ()
    trace: tuple[NodeRun, ...] = ()
    duration: float = 0.0
    crashed: bool = False
    node_durations: dict[str, float] = field(default_factory=dict)
    started: float = 0.0  # time.perf_counter() when the path started (for traces)
    # Timing parts (migration_kit.decide.latency): seconds inside the checkpointer's calls during the
    # run, the run's thread CPU seconds (None: not measured) and the supersteps it took.
    checkpoint: float = 0.0
    cpu: float | None = None
    steps: int = 0
    writes: tuple[RowWrite, ...] = ()  # rows written through declared databases, and writes blocked
    # The crash was the store under the graph failing (its checkpointer's Redis or SQLite), told
    # by the exception's class where it was caught: a replay then stops to be resumed rather than
    # count a candidate error. Not part of the record: only the run that caught it acts on it.
    store_down: bool = False

    @property
    def error(self) -> ErrorInfo | None:
        """The first error the path raised, or None."""
        return self.errors[0] if self.errors else None

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON-ready data."""
        return {
            "path": self.path,
            "emitted": [e.to_dict() for e in self.emitted],
            "effects": [c.to_dict() for c in self.effects],
            "state": self.state,
            "error": None if self.error is None else self.error.to_dict(),
            "crashed": self.crashed,
            "duration": self.duration,
            "writes": [w.to_dict() for w in self.writes],
            "trace": [
                {"node": r.node, "event_index": r.event_index, "out": list(r.out), "duration": r.duration}
                for r in self.trace
            ],
        }

    def to_record(self) -> dict[str, Any]:
        """This outcome as versioned, JSON-ready data; ``from_record`` reads it back (see below)."""
        return _outcome_to_record(self)

    @classmethod
    def from_record(cls, data: Any) -> Outcome:
        """Validate a record made by ``to_record`` (a dict or JSON text); raises ``BadEventLog`` if malformed."""
        return _outcome_from_record(cls, data)

    # -- building ------------------------------------------------------------------

    @classmethod
    def from_dispatch(cls, dispatch: Dispatch) -> Outcome:
        """The legacy path's outcome from the bus's record of a cascade."""
        root = dispatch.root
        saga = root.saga_key
        index = {root.id: 0}
        pairs = tuple(zip(dispatch.emitted, dispatch.emitted_by, strict=True))
        for i, (ev, _node) in enumerate(pairs, start=1):
            index[ev.id] = i
        trace = []
        durations: dict[str, float] = {}
        for step in dispatch.steps:
            trace.append(
                NodeRun(
                    step.node,
                    index[step.event.id],
                    step.depth,
                    tuple(index[c.id] - 1 for c in step.published),
                    step.effects,
                    step.error,
                    step.duration,
                    step.started,
                )
            )
            durations[step.node] = durations.get(step.node, 0.0) + step.duration
        # Each emission built once, with the depth the trace gives it.
        emitted = [
            Emission(
                node,
                ev.type,
                ev.payload,
                ev.headers,
                ROOT_CORRELATION if ev.correlation_id == saga else str(ev.correlation_id),
                d,
                ev.id,
            )
            for (ev, node), d in zip(pairs, _depths(trace, len(pairs)), strict=True)
        ]
        return cls(
            path="legacy",
            event=root,
            emitted=tuple(emitted),
            effects=dispatch.effects,
            state=dispatch.state,
            errors=tuple(s.error for s in dispatch.steps if s.error is not None),
            trace=tuple(trace),
            duration=dispatch.duration,
            node_durations=durations,
            started=dispatch.steps[0].started if dispatch.steps else 0.0,
            writes=tuple(dispatch.writes),
        )

    @classmethod
    def from_flow_state(
        cls,
        event: Event,
        final: dict[str, Any],
        duration: float,
        started: float = 0.0,
        *,
        checkpoint: float = 0.0,
        cpu: float | None = None,
        steps: int = 0,
    ) -> Outcome:
        """The candidate path's outcome from a derived graph's final state (with its timing parts, when measured).

        The one parser of a flow's final values: the ``Dispatch`` cutover returns
        (``migration_kit.live.cutover.dispatch_of``) is derived from this outcome.
        """
        saga = event.saga_key
        raw = final.get("emitted") or []
        depths = final.get("depths") or []
        index = {event.id: 0}
        for i, ev in enumerate(raw, start=1):
            index[ev["id"]] = i
        producer: dict[str, str] = {}
        trace = []
        effects: list[EffectCall] = []
        errors: list[ErrorInfo] = []
        durations: dict[str, float] = {}
        for rec in final.get("trace") or []:
            calls = tuple(EffectCall.from_dict(c) for c in rec["effects"])
            effects.extend(calls)
            err = ErrorInfo.from_dict(rec["error"])
            if err is not None:
                errors.append(err)
            for cid in rec["out"]:
                producer[cid] = rec["node"]
            trace.append(
                NodeRun(
                    rec["node"],
                    index.get(rec["event"], -1),
                    rec["depth"],
                    tuple(index[c] - 1 for c in rec["out"]),
                    calls,
                    err,
                    rec["duration"],
                    rec.get("started", 0.0),
                )
            )
            durations[rec["node"]] = durations.get(rec["node"], 0.0) + rec["duration"]
        emitted = tuple(
            Emission(
                producer.get(ev["id"], "?"),
                ev["type"],
                ev.get("payload") or {},
                ev.get("headers") or {},
                ROOT_CORRELATION if ev.get("correlation_id") == saga else str(ev.get("correlation_id")),
                depths[i] if i < len(depths) else 0,
                ev["id"],
            )
            for i, ev in enumerate(raw)
        )
        state = (final.get("sagas") or {}).get(saga) or None
        return cls(
            path="candidate",
            event=event,
            emitted=emitted,
            effects=tuple(effects),
            state=state,
            errors=tuple(errors),
            trace=tuple(trace),
            duration=duration,
            node_durations=durations,
            started=started,
            checkpoint=checkpoint,
            cpu=cpu,
            steps=steps,
        )

    @classmethod
    def crash(cls, path: PathName, event: Event, exc: BaseException, duration: float) -> Outcome:
        """A path that failed as a whole (the graph raised)."""
        return cls(
            path=path, event=event, errors=(ErrorInfo.of(exc),), duration=duration, crashed=True, started=0.0,
            store_down=isinstance(exc, STORE_ERRORS),
        )  # fmt: skip


def _depths(trace: list[NodeRun], n: int) -> list[int]:
    depths = [0] * n
    for run in trace:
        for i in run.out:
            depths[i] = run.depth + 1
    return depths


# -- records: an Outcome as JSON-ready data, and back ------------------------------------------
#
# A recorded outcome crosses processes (the live tap writes the legacy path's
# outcome into a Redis Stream; a shadow worker compares against it), so it is
# plain JSON, versioned, and validated on the way back in: nothing read from
# a record is ever unpickled or evaluated. Times that ``Outcome`` keeps as
# ``time.perf_counter()`` values (process-local) travel as epoch seconds and
# are mapped onto the reading process's clock.

RECORD_VERSION = 1
_EPOCH_OFFSET = time.time() - time.perf_counter()  # this process's perf_counter() -> epoch seconds


def _perf_to_epoch(perf: float) -> float:
    return 0.0 if not perf else perf + _EPOCH_OFFSET


def _epoch_to_perf(epoch: float) -> float:
    return 0.0 if not epoch else epoch - _EPOCH_OFFSET


class _ErrorRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    message: str


class _EffectRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    response: Any = None
    error: _ErrorRecord | None = None
    mode: Literal["real", "recorded", "stub"] = "real"
    node: str | None = None


class _EmissionRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node: str
    type: str
    payload: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    correlation: str
    depth: int = 0
    id: str


class _RunRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node: str
    event_index: int
    depth: int = 0
    out: list[int] = Field(default_factory=list)
    effects: list[_EffectRecord] = Field(default_factory=list)
    error: _ErrorRecord | None = None
    duration: float = 0.0
    started: float = 0.0


class _WriteRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    database: str
    table: str
    key: dict[str, Any] = Field(default_factory=dict)
    op: Literal["insert", "update", "delete", "blocked", "read"]
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    changed: list[str] = Field(default_factory=list)
    node: str | None = None
    statement: str | None = None


class OutcomeRecord(BaseModel):
    """The validated shape of ``Outcome.to_record()`` (version 1)."""

    model_config = ConfigDict(extra="forbid")
    v: Literal[1] = 1
    path: Side
    event: dict[str, Any]
    emitted: list[_EmissionRecord] = Field(default_factory=list)
    effects: list[_EffectRecord] | None = None  # None: the trace's effects, in order
    state: dict[str, Any] | None = None
    errors: list[_ErrorRecord] = Field(default_factory=list)
    trace: list[_RunRecord] = Field(default_factory=list)
    duration: float = 0.0
    crashed: bool = False
    node_durations: dict[str, float] = Field(default_factory=dict)
    started: float = 0.0  # epoch seconds
    checkpoint: float = 0.0
    cpu: float | None = None
    steps: int = 0
    writes: list[_WriteRecord] = Field(default_factory=list)


def _effect_from(rec: _EffectRecord) -> EffectCall:
    err = None if rec.error is None else ErrorInfo(rec.error.type, rec.error.message)
    return EffectCall(rec.port, rec.args, rec.kwargs, rec.response, err, rec.mode, rec.node)


def _outcome_to_record(self: Outcome) -> dict[str, Any]:
    """The body of ``Outcome.to_record``.

    Everything the comparator and the telemetry look at is kept: emitted
    events with their producing nodes, effect calls with their responses,
    saga state, errors, the per-node trace and timings.
    """
    runs = []
    flat: list[EffectCall] = []
    for r in self.trace:
        flat.extend(r.effects)
        runs.append(
            {
                "node": r.node,
                "event_index": r.event_index,
                "depth": r.depth,
                "out": list(r.out),
                "effects": [c.to_dict() for c in r.effects],
                "error": None if r.error is None else r.error.to_dict(),
                "duration": r.duration,
                "started": _perf_to_epoch(r.started),
            }
        )
    return {
        "v": RECORD_VERSION,
        "path": self.path,
        "event": self.event.to_dict(),
        "emitted": [e.to_dict() for e in self.emitted],
        "effects": None if tuple(flat) == self.effects else [c.to_dict() for c in self.effects],
        "state": _jsonable(self.state),
        "errors": [e.to_dict() for e in self.errors],
        "trace": runs,
        "duration": self.duration,
        "crashed": self.crashed,
        "node_durations": dict(self.node_durations),
        "started": _perf_to_epoch(self.started),
        "checkpoint": self.checkpoint,
        "cpu": self.cpu,
        "steps": self.steps,
        # Only when there are some: a record without writes reads as before.
        **({"writes": [w.to_dict() for w in self.writes]} if self.writes else {}),
    }


def _outcome_from_record(cls: type[Outcome], data: Any) -> Outcome:
    """The body of ``Outcome.from_record``.

    Raises:
        BadEventLog: the record is not a valid outcome record; the message
            says which field and why.
    """
    try:
        rec = OutcomeRecord.model_validate_json(data) if isinstance(data, (str, bytes)) else OutcomeRecord.model_validate(data)
    except ValidationError as exc:
        raise BadEventLog(f"not a valid outcome record: {_describe(exc)}") from None
    try:
        event = Event.model_validate(rec.event)
    except ValidationError as exc:
        raise BadEventLog(f"not a valid outcome record: event.{_describe(exc)}") from None
    trace = tuple(
        NodeRun(
            r.node,
            r.event_index,
            r.depth,
            tuple(r.out),
            tuple(_effect_from(c) for c in r.effects),
            None if r.error is None else ErrorInfo(r.error.type, r.error.message),
            r.duration,
            _epoch_to_perf(r.started),
        )
        for r in rec.trace
    )
    effects = (
        tuple(c for r in trace for c in r.effects) if rec.effects is None else tuple(_effect_from(c) for c in rec.effects)
    )
    return cls(
        path=rec.path,
        event=event,
        emitted=tuple(Emission(e.node, e.type, e.payload, e.headers, e.correlation, e.depth, e.id) for e in rec.emitted),
        effects=effects,
        state=rec.state,
        errors=tuple(ErrorInfo(e.type, e.message) for e in rec.errors),
        trace=trace,
        duration=rec.duration,
        crashed=rec.crashed,
        node_durations=dict(rec.node_durations),
        started=_epoch_to_perf(rec.started),
        checkpoint=rec.checkpoint,
        cpu=rec.cpu,
        steps=rec.steps,
        writes=tuple(RowWrite.from_dict(w.model_dump()) for w in rec.writes),
    )


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    return json.loads(json.dumps(value, default=str))

