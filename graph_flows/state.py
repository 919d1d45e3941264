"""The flow state schema: what a derived graph's checkpoints hold.

Everything here is plain JSON-shaped data (dicts, lists, strings, numbers),
so LangGraph's serializer stores it without "unregistered type" warnings and
nothing read back from a checkpoint is ever a Python object of ours.

Public contract (after cutover the graph *is* production):

* input: ``{"event": Event}`` (an ``Event`` or its dict form); optionally
  ``"sagas": {correlation_id: state}`` to seed saga state.
* final state: ``emitted`` is the events published during *this* invocation
  only, in order, the root excluded, as dicts (``Event.from_dict`` turns one
  back into an ``Event``), even on a saga's long-lived thread. Beside it:
  ``trace`` (one entry per node run), ``sagas`` (saga state per correlation
  id), ``errors`` (handler errors, ``{"node", "type", "message"}``, in order).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from legacy_bus import Event

__all__ = ["FlowState", "NodeInput", "NodeOutput", "StepRecord", "event_dict"]


def event_dict(value: Any) -> dict[str, Any]:
    """The JSON form of an event given as an ``Event`` or a dict (validated)."""
    if isinstance(value, Event):
        return value.to_dict()
    if isinstance(value, dict):
        return Event.model_validate(value).to_dict()
    raise TypeError(f"a flow is invoked with {{'event': Event}}, got {type(value).__name__}")


def _take_event(_old: dict[str, Any] | None, new: Any) -> dict[str, Any]:
    # The input event is stored as a dict from the first checkpoint on.
    return event_dict(new)


def _merge_sagas(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    if not new:
        return old or {}
    return {**(old or {}), **new}


class StepRecord(TypedDict):
    """One node handling one event, as kept in ``trace``."""

    node: str
    event: str  # id of the event handled
    depth: int
    out: list[str]  # ids of the events it published, in order
    effects: list[dict[str, Any]]
    error: dict[str, str] | None
    duration: float
    started: float  # time.perf_counter() at the node's start


class FlowState(TypedDict, total=False):
    """The state of a graph derived from an event bus."""

    event: Annotated[dict[str, Any], _take_event]
    emitted: Annotated[list[dict[str, Any]], operator.add]
    depths: Annotated[list[int], operator.add]
    trace: Annotated[list[StepRecord], operator.add]
    delivered: Annotated[int, operator.add]
    sagas: Annotated[dict[str, dict[str, Any]], _merge_sagas]
    errors: Annotated[list[dict[str, str]], operator.add]


class NodeInput(TypedDict):
    """What a native node receives (one delivery of one event).

    ``event`` is the event's dict form (``Event.from_dict(inp["event"])``
    gives an ``Event``), ``state`` a private copy of the saga state of the
    event's correlation id, ``depth`` its depth in the cascade (root = 0).
    """

    event: dict[str, Any]
    state: dict[str, Any]
    depth: int
    node: str


class NodeOutput(TypedDict, total=False):
    """What a native node returns; every key is optional.

    ``emit``: events to publish (``Event`` objects, or dicts with ``type`` and
    ``payload``); causation and correlation ids are filled in as on the bus.
    ``state``: the saga state after this node (omit it to leave state as it was).
    """

    emit: list[Any]
    state: dict[str, Any]
