"""The domain's words as enums, and the seams between the parts as Protocols.

The words: a migration's ``Phase``, a path's ``Side``, a decision's ``Action``.
Each is a ``StrEnum``: a member equals its string (``Phase.SHADOW == "shadow"``),
hashes like it, formats as it and encodes to JSON as it, so records, reports
and user code written with the plain strings keep working. Modules that need
the set of names take it from here instead of spelling their own tuple.

The seams: what one part needs of another, and no more. ``Candidate`` is what a
compiled graph offers, ``ComparisonRule`` what the executor asks of a comparator,
``Records`` what a store keeps (``migration_kit.store``); ``LegacyBus`` is
``legacy_bus.protocol``'s. The others say what one component reads of the parts
handed to it (``Attachable``: the tap; ``Comparing``: ``assert_parity``;
``Recording``: ``record_stream``; ``PartitionReplayer``: a distributed replay).
The ``Migration`` facade satisfies each of them structurally, and so do the parts
(a ``Replayer`` is a ``PartitionReplayer``); none of them names the facade.

Annotations name ``Outcome``, ``Comparison`` and ``Redactor`` without importing them:
their modules import this one (for the enums), and an import back, even under
``TYPE_CHECKING``, would be an import cycle (``tests/test_architecture.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from legacy_bus import EffectCall, Event, LogEntry, StateStore
from legacy_bus.protocol import LegacyBus

from migration_kit.store import Records

if TYPE_CHECKING:  # neither imports this module: no cycle
    from migration_kit.compare.noise import NoiseLearning, NoiseModel, NoiseObservation
    from migration_kit.store import Store

__all__ = [
    "Action",
    "Attachable",
    "Candidate",
    "Comparing",
    "ComparisonRule",
    "LegacyBus",
    "PartitionReplayer",
    "Phase",
    "Records",
    "Recording",
    "Side",
]


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


# -- the seams ----------------------------------------------------------------------------------


@runtime_checkable
class Candidate(Protocol):
    """What a compiled candidate graph must offer (LangGraph's compiled graphs do)."""

    checkpointer: Any  # the saver it was compiled with (None: the migration's store gives it one)

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        """Run the graph to its end; its final state."""
        ...

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        """``invoke``, async."""
        ...

    def get_state(self, config: Any, **kwargs: Any) -> Any:
        """The thread's latest snapshot (what a cut-off run left)."""
        ...

    def copy(self, update: dict[str, Any] | None = None) -> Any:
        """The same graph with ``update`` applied (another checkpointer)."""
        ...


@runtime_checkable
class ComparisonRule(Protocol):
    """What the executor asks of a comparator: compare two outcomes, and what two legacy runs differ in."""

    learning: NoiseLearning | None  # how noise is learned (None: not learned)

    def compare(self, legacy: Outcome, candidate: Outcome, *, noise: NoiseModel | None = None) -> Comparison:
        """The comparison of both paths' outcomes of one event, ``noise`` discounted."""
        ...

    def noise_between(self, first: Outcome, second: Outcome) -> NoiseObservation:
        """What two legacy runs of one event differ in (what noise learning observes)."""
        ...


@runtime_checkable
class Comparing(Protocol):
    """What ``assert_parity`` needs: one event through both paths, compared (``Migration.compare``)."""

    def compare(self, event: Event, *, effects: Iterable[EffectCall] = ()) -> Comparison:
        """Run ``event`` through both paths, sandboxed, on a copy of the live saga state."""
        ...


@runtime_checkable
class Attachable(Protocol):
    """What the live tap reads of a migration: its name (its keys) and the bus it hooks."""

    name: str
    legacy: LegacyBus


@runtime_checkable
class Recording(Protocol):
    """What ``record_stream`` reads: the name (the stream's keys), the store (its Redis) and the redactor."""

    name: str
    store: Store
    redactor: Redactor


@runtime_checkable
class PartitionReplayer(Protocol):
    """What a distributed replay's coordinator and partition workers read (``migration_kit.run.distributed``).

    ``run.replay.Replayer`` is one; so is the facade.
    """

    name: str
    store: Store
    redactor: Redactor
    saga_capacity: int

    @property
    def legacy(self) -> LegacyBus:
        """The team's bus."""
        ...

    @property
    def comparator(self) -> ComparisonRule:
        """The comparator (its ``learning`` decides what is sampled)."""
        ...

    @property
    def noise(self) -> NoiseModel:
        """The noise learned so far."""
        ...

    @property
    def graph(self) -> Any:
        """The compiled candidate graph."""
        ...

    def replay_step(
        self,
        entry: LogEntry,
        legacy_states: StateStore,
        candidate_states: StateStore,
        *,
        noise: NoiseModel | None = None,
        sample: bool | None = None,
        resume: bool = False,
    ) -> Comparison:
        """Compare one logged event on a partition's saga state, learning into ``noise``."""
        ...

    def legacy_step(self, entry: LogEntry, states: StateStore, *, sample: bool = False) -> Any:
        """Run one logged event's legacy path (with ``sample``: the noise observed on a second run)."""
        ...

    def seal(self, value: Any) -> dict[str, str]:
        """Saga state made ready for the store's records."""
        ...

    def unseal(self, doc: Any) -> Any:
        """What ``seal`` made, back."""
        ...

    def reopen_store(self) -> None:
        """Open the store anew in a forked process."""
        ...
