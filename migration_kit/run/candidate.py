"""The candidate side: a ``BusFlow`` or a compiled graph, compiled once on the store's checkpointer.

What the executor, the saga ledger, cutover and shadow workers need of the candidate
is here: the compiled graph, the flow it came from (for completeness and report
drawings), the graph on a timing wrapper of its saver, and the same graph with no
checkpointer (a sandboxed replay needs none: ``migration_kit.run.executor``).
"""

from __future__ import annotations

from typing import Any, Callable

from graph_flows import BusFlow
from migration_errors import ConfigurationError

from migration_kit.decide.latency import TimedSaver, timed_saver
from migration_kit.types import Candidate

__all__ = ["CandidateGraph", "require_candidate"]


def require_candidate(candidate: Any, where: str) -> None:
    """Refuse what is neither a ``BusFlow`` nor a ``Candidate`` (what a compiled LangGraph graph offers)."""
    if not isinstance(candidate, (BusFlow, Candidate)):
        raise ConfigurationError(f"{where} takes a BusFlow or a compiled LangGraph graph, not {type(candidate).__name__}")


class CandidateGraph:
    """One candidate, compiled lazily with ``checkpointer()`` unless it was compiled with its own.

    Args:
        candidate: a ``BusFlow`` or a compiled graph following ``graph_flows.state``'s contract.
        checkpointer: what opens the saver a candidate without its own runs on (the store's).
    """

    def __init__(self, candidate: Any, checkpointer: Callable[[], Any]) -> None:
        require_candidate(candidate, "Migration(candidate=...)")
        self.candidate = candidate
        self._checkpointer = checkpointer
        self._graph: Any = None
        self._timed: tuple[Any, Any, TimedSaver | None] | None = None
        self._unsaved: tuple[Any, Any] | None = None

    @property
    def flow(self) -> BusFlow | None:
        """The candidate as a ``BusFlow``, when it was given as one."""
        return self.candidate if isinstance(self.candidate, BusFlow) else None

    @property
    def own_checkpointer(self) -> bool:
        """True when the candidate was compiled with a checkpointer of its own (it keeps it)."""
        return self.flow is None and self.candidate.checkpointer is not None

    @property
    def compiled(self) -> bool:
        """Whether the graph has been compiled (or taken) yet: until then, the saver it will use can change."""
        return self._graph is not None

    @property
    def graph(self) -> Any:
        """The compiled candidate graph, with the store's checkpointer unless it has its own."""
        if self._graph is None:
            if isinstance(self.candidate, BusFlow):
                self._graph = self.candidate.compile(checkpointer=self._checkpointer())
            elif self.candidate.checkpointer is None:
                self._graph = self.candidate.copy(update={"checkpointer": self._checkpointer()})
            else:
                self._graph = self.candidate
        return self._graph

    def complete(self) -> Callable[[dict[str, Any]], bool] | None:
        """The flow's test of a finished run's final state (None for a bare graph: its last checkpoint is final)."""
        flow = self.flow
        return flow.is_complete if flow is not None else None

    def timed(self) -> tuple[Any, TimedSaver | None]:
        """The graph on a timing wrapper of its checkpointer (built once per compiled graph)."""
        graph = self.graph
        cached = self._timed
        if cached is not None and cached[0] is graph:
            return cached[1], cached[2]
        timed = timed_saver(getattr(graph, "checkpointer", None))
        if isinstance(timed, TimedSaver):
            self._timed = (graph, graph.copy(update={"checkpointer": timed}), timed)
        else:
            self._timed = (graph, graph, None)
        return self._timed[1], self._timed[2]

    def unsaved(self, graph: Any) -> Any:
        """``graph`` without a checkpointer: what a sandboxed run that needs no checkpoint runs on."""
        cached = self._unsaved
        if cached is None or cached[0] is not graph:
            bare = graph.copy(update={"checkpointer": None}) if getattr(graph, "checkpointer", None) not in (None, True, False) else graph
            self._unsaved = cached = (graph, bare)
        return cached[1]

    def reset(self) -> None:
        """Forget the compiled graph (the store was closed or replaced: the next use compiles anew)."""
        self._graph = None
        self._timed = None
        self._unsaved = None
