"""The one rule for a graph thread's state: finished, resumable, or start the event over.

Replay, the shadow worker and cutover all ask the same question of a graph
thread before running an event on it: did an earlier run of this event leave
something behind? LangGraph's snapshot answers it only together with its
pending writes, so the rule lives here, once.

What LangGraph (1.x, ``pregel/_loop.py`` and ``Pregel._prepare_state_snapshot``)
leaves behind when a run is cut off (SIGKILL), by where it was cut off:

* before the input checkpoint was written (any durability), or anywhere with
  ``durability="exit"``: no checkpoint at all (or only the previous event's,
  on a saga's long-lived thread);
* after the input checkpoint: step -1 with ``next == ("__start__",)``; the
  event is still only in the ``__start__`` channel, not in the state's values;
* inside a node: the checkpoint of the step that sent to the node, with that
  node in ``next``. With ``durability="async"`` checkpoints are saved behind
  the run, so the last one that reached the store may be several steps older;
* between nodes, after a step's tasks saved their writes but before the next
  checkpoint was saved: ``next == ()`` while ``tasks`` lists the finished
  tasks, and the live values already include their writes. The run is **not**
  finished: the writes hold the ``Send`` packets to the nodes after them.
  (This is the trap: ``not snapshot.next`` is not "finished".)
* after the last node: the final checkpoint, ``next == ()`` and no tasks.

So: a checkpoint of this event with pending tasks or pending writes is
``Resumable`` (``graph.invoke(None, config)`` re-applies the saved writes and
runs the rest); one with neither, whose final state is complete, is
``Finished``; anything else of this event is ``Fresh(stale=True)``: start over.
A resumed run must not be offered again the effect answers its finished nodes
already took (``Resumable.remaining``), or a later call with the same port and
arguments would get an earlier call's response.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from legacy_bus import EffectCall

__all__ = ["Finished", "Fresh", "Resumable", "ThreadState", "classify", "thread_state", "used_answers"]

START_CHANNEL = "__start__"


@dataclass(frozen=True)
class Fresh:
    """No run of this event on the thread: run it whole.

    ``stale``: this event left a checkpoint that can be neither finished nor
    resumed (drop it first on a per-event thread). ``other``: the state of
    another event's run the thread holds (a saga's long-lived thread), if any.
    ``held``: the values of the thread's latest checkpoint, whatever run left them
    (on a saga's long-lived thread they carry the saga's state from event to event).
    """

    stale: bool = False
    other: Finished | Resumable | None = None
    held: dict[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Finished:
    """The event's run completed; ``values`` is its final state."""

    values: dict[str, Any]
    event_id: str | None = None


@dataclass(frozen=True)
class Resumable:
    """The event's run was cut off; ``graph.invoke(None, config)`` finishes it.

    ``used``: effect answers (by call key) the finished nodes already took.
    """

    snapshot: Any
    used: Counter[str] = field(default_factory=Counter)
    event_id: str | None = None

    def remaining(self, answers: Iterable[EffectCall]) -> tuple[EffectCall, ...]:
        """``answers`` without those already used, in order (the first of each key goes first)."""
        used = Counter(self.used)
        out = []
        for call in answers:
            if used[call.key] > 0:
                used[call.key] -= 1
                continue
            out.append(call)
        return tuple(out)


ThreadState = Fresh | Finished | Resumable


def used_answers(values: dict[str, Any] | None) -> Counter[str]:
    """Effect answers, by call key, that the nodes in ``values['trace']`` took from the recording."""
    used: Counter[str] = Counter()
    for rec in (values or {}).get("trace") or []:
        for call in rec.get("effects") or []:
            if call.get("mode") == "recorded":
                used[EffectCall.from_dict(call).key] += 1
    return used


def _event_of(snapshot: Any, pending_input: dict[str, Any] | None) -> str | None:
    values = snapshot.values or {}
    if pending_input is not None and START_CHANNEL in (snapshot.next or ()):
        # The input checkpoint: the event is still in the __start__ channel.
        event = pending_input.get("event")
        return event.get("id") if isinstance(event, dict) else getattr(event, "id", None)
    return (values.get("event") or {}).get("id")


def classify(
    snapshot: Any,
    event_id: str | None,
    *,
    pending_input: dict[str, Any] | None = None,
    complete: Callable[[dict[str, Any]], bool] | None = None,
) -> ThreadState:
    """The rule itself, on a ``StateSnapshot`` already read (sans-IO).

    Args:
        snapshot: ``graph.get_state(config)`` (live: the latest checkpoint).
        event_id: the event about to run; None classifies whatever run the thread holds.
        pending_input: the input in the ``__start__`` channel of the latest checkpoint, if any.
        complete: whether a final state is a whole run (e.g. ``BusFlow.is_complete``);
            None trusts LangGraph's "no tasks left".
    """
    if snapshot is None or (not snapshot.values and not snapshot.next and not snapshot.tasks):
        return Fresh()
    of = _event_of(snapshot, pending_input)
    if event_id is not None and of is not None and of != event_id:
        other = classify(snapshot, None, pending_input=pending_input, complete=complete)
        return Fresh(other=other if not isinstance(other, Fresh) else None, held=dict(snapshot.values or {}))
    if snapshot.next or snapshot.tasks:
        # Tasks to run, or finished tasks whose writes were saved but not yet
        # folded into a checkpoint: either way the run goes on from here.
        return Resumable(snapshot, used_answers(snapshot.values), of)
    values = dict(snapshot.values or {})
    if of is not None and (complete is None or complete(values)):
        return Finished(values, of)
    return Fresh(stale=True, held=values)


def pending_input(graph: Any, config: dict[str, Any]) -> dict[str, Any] | None:
    """The input waiting in the latest checkpoint's ``__start__`` channel (an input checkpoint), if any."""
    saver = getattr(graph, "checkpointer", None)
    try:
        saved = saver.get_tuple(config) if saver not in (None, True, False) else None
    except Exception:  # noqa: BLE001 - only a hint for naming the event of an input checkpoint
        return None
    value = (saved.checkpoint.get("channel_values") or {}).get(START_CHANNEL) if saved is not None else None
    return value if isinstance(value, dict) else None


def thread_state(
    graph: Any, config: dict[str, Any], event_id: str | None, *, complete: Callable[[dict[str, Any]], bool] | None = None
) -> ThreadState:
    """Read the thread of ``config`` on ``graph``'s checkpointer and classify it for ``event_id``.

    A graph without a checkpointer keeps no thread: always ``Fresh``.
    """
    if getattr(graph, "checkpointer", None) in (None, True, False):
        return Fresh()
    snapshot = graph.get_state(config)
    start = pending_input(graph, config) if START_CHANNEL in (snapshot.next or ()) else None
    return classify(snapshot, event_id, pending_input=start, complete=complete)
