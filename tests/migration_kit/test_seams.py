"""The seam Protocols of ``migration_kit.types``: the facade and its parts satisfy them, member by member.

``isinstance`` on a runtime-checkable Protocol only sees that the names exist, so each
method member is also called by its Protocol's own signature against the implementation's.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from migration_errors import ConfigurationError
from migration_kit import Comparator, Migration
from migration_kit.testing import assert_parity
from migration_kit.types import Attachable, Candidate, Comparing, ComparisonRule, PartitionReplayer, Recording


def _bus() -> EventBus:
    bus = EventBus("seams")

    @bus.on("Ping")
    def pong(e, ctx):
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        ctx.publish("Pong", {"n": ctx.state["n"]})

    @bus.on("Pong")
    def done(e):
        return None

    return bus


def _members(protocol: type) -> dict[str, Any]:
    """The methods and properties the Protocol declares itself."""
    return {name: value for name, value in vars(protocol).items() if not name.startswith("_") and (callable(value) or isinstance(value, property))}


def _binds(protocol: type, impl: object) -> list[str]:
    """The method members of ``protocol`` that ``impl`` cannot be called with as the Protocol says."""
    wrong = []
    for name, member in _members(protocol).items():
        if not inspect.isfunction(member):
            continue
        args, kwargs = [], {}
        for p in list(inspect.signature(member).parameters.values())[1:]:  # self
            if p.kind is p.POSITIONAL_OR_KEYWORD:
                args.append(None)
            elif p.kind is p.KEYWORD_ONLY:
                kwargs[p.name] = None
        try:
            inspect.signature(getattr(type(impl), name)).bind(impl, *args, **kwargs)
        except TypeError as exc:
            wrong.append(f"{name}: {exc}")
    return wrong


@pytest.fixture
def migration():
    with Migration("seams", legacy=_bus(), candidate=flow_from_bus(_bus())) as m:
        yield m


@pytest.mark.parametrize("protocol", [Comparing, Attachable, Recording, PartitionReplayer])
def test_the_facade_satisfies_every_component_protocol(migration, protocol) -> None:
    assert isinstance(migration, protocol)
    assert _binds(protocol, migration) == []


def test_a_replayer_is_what_a_distributed_replay_reads(migration) -> None:
    assert isinstance(migration.replayer, PartitionReplayer)
    assert _binds(PartitionReplayer, migration.replayer) == []
    assert isinstance(migration.replayer.comparator, ComparisonRule)


def test_the_comparator_is_a_comparison_rule_and_the_compiled_graph_a_candidate(migration) -> None:
    assert isinstance(Comparator(), ComparisonRule) and _binds(ComparisonRule, Comparator()) == []
    assert isinstance(migration.graph, Candidate) and _binds(Candidate, migration.graph) == []
    assert not isinstance(migration.flow, Candidate)  # a BusFlow is compiled first; the facade takes both


def test_a_candidate_that_is_neither_a_flow_nor_a_graph_is_refused_naming_where() -> None:
    with pytest.raises(ConfigurationError, match=r"Migration\(candidate=\.\.\.\) takes a BusFlow or a compiled LangGraph graph, not object"):
        Migration("seams", legacy=_bus(), candidate=object())


def test_assert_parity_takes_anything_that_compares_not_only_a_migration(migration) -> None:
    seen: list[str] = []

    class Recorder:
        def compare(self, event: Event, *, effects=()):
            seen.append(event.type)
            return migration.compare(event, effects=effects)

    assert isinstance(Recorder(), Comparing)
    (c,) = assert_parity(Recorder(), [Event(type="Ping", payload={})])
    assert seen == ["Ping"] and not c.divergent
