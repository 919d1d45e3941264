"""The comparator's quick agreement check never changes a comparison: same result as the full walk."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from legacy_bus import EffectCall, Event
from legacy_bus.records import ErrorInfo
from migration_kit import Comparator
from migration_kit.compare.noise import NoiseModel, NoiseObservation
from migration_kit.compare.outcome import Emission, NodeRun, Outcome

# Few distinct values, so that equal, nearly equal (1 / 1.0 / True, within float tolerance)
# and reordered outcomes are drawn often.
VALUES = st.sampled_from([0, 1, 1.0, True, 1.0 + 1e-12, 2, "a", "b", None, [1], {"k": 1}])
PAYLOADS = st.dictionaries(st.sampled_from(["x", "y"]), VALUES, max_size=2)
NODES = st.sampled_from(["n1", "n2", "n3"])


@st.composite
def outcomes(draw, path: str = "legacy") -> Outcome:
    emitted = tuple(
        Emission(draw(NODES), draw(st.sampled_from(["A", "B"])), draw(PAYLOADS), {}, "<root>", draw(st.integers(1, 2)), f"e{i}")
        for i in range(draw(st.integers(0, 3)))
    )
    effects = tuple(
        EffectCall(draw(st.sampled_from(["mail", "pay"])), [draw(VALUES)], {}, None, None, "stub", draw(NODES))
        for _ in range(draw(st.integers(0, 3)))
    )
    trace = tuple(NodeRun(draw(NODES), 0, draw(st.integers(0, 1)), (), (), None, 0.0) for _ in range(draw(st.integers(0, 3))))
    error = draw(st.sampled_from([(), (ErrorInfo("ValueError", "bad"),)]))
    state = draw(st.one_of(st.none(), PAYLOADS))
    return Outcome(path, Event(type="Root", id="root"), emitted, effects, state, error, trace)  # type: ignore[arg-type]


def _tweaked(draw, items: tuple, field: str, values: st.SearchStrategy) -> tuple:
    """``items`` with one attribute of one of them redrawn (frozen dataclasses: replaced)."""
    if not items:
        return items
    i = draw(st.integers(0, len(items) - 1))
    return (*items[:i], dataclasses.replace(items[i], **{field: draw(values)}), *items[i + 1 :])


@st.composite
def pairs(draw) -> tuple[Outcome, Outcome]:
    legacy = draw(outcomes())
    how = draw(st.sampled_from(["same", "tweak", "swap", "redraw", "other"]))
    fields = {f: getattr(legacy, f) for f in ("emitted", "effects", "trace", "errors", "state")}
    if how == "tweak":  # one attribute of one emission, call or step redrawn (maybe to an equal value)
        part, field, values = draw(st.sampled_from([
            ("emitted", "depth", st.integers(1, 2)), ("emitted", "node", NODES), ("emitted", "payload", PAYLOADS),
            ("emitted", "type", st.sampled_from(["A", "B"])), ("effects", "node", NODES), ("effects", "args", st.lists(VALUES, max_size=1)),
            ("trace", "depth", st.integers(0, 1)), ("trace", "node", NODES),
        ]))  # fmt: skip
        fields[part] = _tweaked(draw, fields[part], field, values)
    elif how == "swap":  # two neighbours of one list change places
        part = draw(st.sampled_from(["emitted", "effects", "trace"]))
        items = list(fields[part])
        if len(items) > 1:
            i = draw(st.integers(0, len(items) - 2))
            items[i], items[i + 1] = items[i + 1], items[i]
        fields[part] = tuple(items)
    elif how == "redraw":
        other = draw(outcomes("candidate"))
        part = draw(st.sampled_from(["emitted", "effects", "trace", "errors", "state"]))
        fields[part] = getattr(other, part)
    elif how == "other":
        return legacy, draw(outcomes("candidate"))
    return legacy, Outcome("candidate", legacy.event, **fields)  # type: ignore[arg-type]


class FullWalk(Comparator):
    """The comparator without its quick agreement check."""

    def _agree(self, legacy: Outcome, candidate: Outcome) -> bool:
        return False


COMPARATORS = [
    (Comparator(), FullWalk()),
    (Comparator(ordering="strict"), FullWalk(ordering="strict")),
    (Comparator(ignore=["payload.x"]), FullWalk(ignore=["payload.x"])),
    (Comparator(normalizers={"A": lambda p: {k: str(v) for k, v in p.items()}}), FullWalk(normalizers={"A": lambda p: {k: str(v) for k, v in p.items()}})),
]


@settings(max_examples=400, deadline=None)
@given(pairs(), st.sampled_from(range(len(COMPARATORS))), st.booleans())
def test_the_quick_check_gives_the_full_walks_comparison(pair, which, noisy):
    legacy, candidate = pair
    quick, full = COMPARATORS[which]
    noise = None
    if noisy:
        noise = NoiseModel()
        noise.observe("Root", NoiseObservation({"emitted<n1:A>.payload.x": {"first": 1, "second": 2}}, frozenset({"n2:B"})), sampled=True)
    assert quick.compare(legacy, candidate, noise=noise) == full.compare(legacy, candidate, noise=noise)


def test_an_identical_candidate_takes_the_quick_path_and_a_changed_one_does_not():
    legacy = Outcome("legacy", Event(type="Root", id="root"), (Emission("n1", "A", {"x": 1}, {}, "<root>", 1, "e1"),))
    same = Outcome("candidate", legacy.event, (Emission("n1", "A", {"x": 1}, {}, "<root>", 1, "other-id"),))
    changed = Outcome("candidate", legacy.event, (Emission("n1", "A", {"x": 2}, {}, "<root>", 1, "e1"),))
    comparator = Comparator()
    assert comparator._agree(legacy, same) and not comparator.compare(legacy, same).divergent
    assert not comparator._agree(legacy, changed)
    assert [d.path for d in comparator.compare(legacy, changed).differences] == ["emitted[0].payload.x"]


def test_calls_in_the_same_order_from_steps_at_other_depths_take_the_full_walk():
    # Calls are ordered by their node's depth in each side's own trace: the same list of calls
    # from nodes at swapped depths pairs differently, which only the full walk reports.
    calls = (EffectCall("pay", [1], {}, None, None, "stub", "n1"), EffectCall("pay", [2], {}, None, None, "stub", "n2"))
    event = Event(type="Root", id="root")
    legacy = Outcome("legacy", event, (), calls, trace=(NodeRun("n1", 0, 0, (), (), None, 0.0), NodeRun("n2", 0, 1, (), (), None, 0.0)))
    candidate = Outcome("candidate", event, (), calls, trace=(NodeRun("n1", 0, 1, (), (), None, 0.0), NodeRun("n2", 0, 0, (), (), None, 0.0)))
    full = FullWalk().compare(legacy, candidate)
    assert full.divergent
    assert Comparator().compare(legacy, candidate) == full
