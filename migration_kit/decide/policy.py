"""Policies: a declarative decision tree from evidence to ``continue | promote | hold | rollback``.

A policy is data (a pydantic model, loadable from TOML or YAML). Its tree has
three kinds of node:

- a leaf ``{action = "hold", reason = "..."}``;
- a branch ``{if = <condition>, then = <node>, else = <node>}``;
- a decision list ``{first = [{name, if, then}, ...], else = <node>}``: the
  first rule whose condition holds decides (Argo/Flagger-style checks, in order).

Conditions, each with an optional ``name``:

- ``{phase = ["canary", "primary"]}``: the migration is in one of these phases;
- ``{count = "compared" | "divergent" | "errors" | "new_errors" | "legacy_errors", at_least = N}`` (or ``below = N``);
- ``{rate = "divergence" | "errors", proven = "above" | "within", limit = 0.001, alpha = 0.01}``:
  the anytime-valid lower bound exceeds the limit (proof of a regression) or
  the upper bound is within it (proof of safety); ``errors`` are the
  candidate's errors the legacy path did not have;
- ``{latency = "p99", proven = "violated" | "met", ratio = 1.2, slack_ms = 10, node = "ship", alpha = 0.01}``:
  the contract ``candidate pXX <= ratio x legacy pXX + slack`` (per event, or
  for one node), tested with anytime-valid quantile bounds;
- ``{predicate = "name", params = {...}}``: a custom ``Predicate`` registered
  with ``register_predicate``;
- ``{all = [...]}``, ``{any = [...]}``, ``{not = ...}``.

Evaluating returns a ``Decision`` whose ``reasons`` are the path taken, one
line per node, each naming the rule and its numbers ("divergence-regression:
divergence lower bound 1.20% > 0.10% allowed, over 1,500 events ..."), the
last one naming the action.

Every statistical condition is valid under continuous monitoring (see
``migration_kit.decide.statistics``), so a policy may be evaluated after every event.
A policy's false-rollback rate is at most the sum of the ``alpha`` of the
conditions that lead to ``rollback`` (the default: 5 x 1% = 5%).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Protocol, Union, runtime_checkable

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from migration_errors import ConfigurationError

from migration_kit.decide.decision import Decision
from migration_kit.decide.evidence import Evidence
from migration_kit.decide.statistics import latency_contract, rate_bounds
from migration_kit.types import Action, Phase

__all__ = [
    "Context",
    "Monitor",
    "Policy",
    "Predicate",
    "Verdict",
    "default_policy",
    "load_policy",
    "predicates",
    "register_predicate",
]

PhaseName = Phase  # the name policy gave it before ``migration_kit.types``
CountName = Literal["compared", "divergent", "errors", "new_errors", "legacy_errors"]
_COUNT_LABEL = {
    "compared": "events compared",
    "divergent": "divergent events",
    "errors": "candidate errors",
    "new_errors": "candidate errors the legacy path did not have",
    "legacy_errors": "legacy errors",
}
_RATE_COUNT = {"divergence": "divergent", "errors": "new_errors"}
_PART_LABEL = {
    "served": "served after cutover",
    "total": "as measured in this run",
    "compute": "node compute",
}
_STRICT = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Verdict(NamedTuple):
    """Whether a condition holds, and the sentence (with its numbers) that says so."""

    holds: bool
    text: str


@dataclass(frozen=True)
class Context:
    """What a condition may look at besides the evidence."""

    phase: str = "shadow"
    percent: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Predicate(Protocol):
    """A custom condition: ``predicate(evidence, context, **params) -> Verdict | (bool, text)``."""

    def __call__(self, evidence: Evidence, context: Context, /, **params: Any) -> Verdict | tuple[bool, str]: ...


_PREDICATES: dict[str, Predicate] = {}


def register_predicate(name: str, fn: Predicate | None = None) -> Any:
    """Register a custom predicate under ``name`` (also usable as ``@register_predicate("name")``)."""

    def add(f: Predicate) -> Predicate:
        if not callable(f):
            raise ConfigurationError(f"predicate {name!r} must be callable")
        _PREDICATES[name] = f
        return f

    return add if fn is None else add(fn)


def predicates() -> dict[str, Predicate]:
    """The registered custom predicates, by name."""
    return dict(_PREDICATES)


# -- conditions ----------------------------------------------------------------------------


class _Cond(BaseModel):
    model_config = _STRICT
    name: str | None = None

    def label(self) -> str:  # pragma: no cover - every condition overrides it
        raise NotImplementedError

    def check(self, evidence: Evidence, ctx: Context) -> Verdict:  # pragma: no cover
        raise NotImplementedError


class PhaseIs(_Cond):
    """The migration is in one of ``phase``."""

    phase: list[PhaseName]

    @field_validator("phase", mode="before")
    @classmethod
    def _one(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    def label(self) -> str:
        """The condition in words, for reasons."""
        return "phase in " + "/".join(self.phase)

    def check(self, evidence: Evidence, ctx: Context) -> Verdict:
        """Whether the migration is in one of the phases named."""
        now = ctx.phase + (f" ({ctx.percent:g}%)" if ctx.phase == "canary" and ctx.percent is not None else "")
        holds = ctx.phase in self.phase
        return Verdict(holds, f"phase is {now}, {'one of' if holds else 'not one of'} {', '.join(self.phase)}")


class CountIs(_Cond):
    """A count is at least ``at_least`` (or below ``below``)."""

    count: CountName
    at_least: int | None = None
    below: int | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CountIs:
        if (self.at_least is None) == (self.below is None):
            raise ValueError(f"count condition on {self.count!r} needs exactly one of at_least or below")
        return self

    def label(self) -> str:
        """The condition in words, for reasons."""
        return f"{self.count} {'>= ' + str(self.at_least) if self.at_least is not None else '< ' + str(self.below)}"

    def check(self, evidence: Evidence, ctx: Context) -> Verdict:
        """Whether the evidence's count is at least (or below) the bound."""
        v = evidence.count(self.count)
        what = _COUNT_LABEL[self.count]
        if self.at_least is not None:
            holds = v >= self.at_least
            return Verdict(holds, f"{v:,} {what} >= {self.at_least:,}" if holds else f"{v:,} {what} (fires at {self.at_least:,} or more)")
        assert self.below is not None
        holds = v < self.below
        return Verdict(holds, f"{v:,} {what} < {self.below:,}" if holds else f"{v:,} {what} (fires below {self.below:,})")


class RateIs(_Cond):
    """A rate proven above its limit (anytime lower bound > limit) or within it (upper bound <= limit)."""

    rate: Literal["divergence", "errors"]
    proven: Literal["above", "within"]
    limit: float = Field(ge=0.0, lt=1.0)
    alpha: float = Field(0.01, gt=0.0, lt=1.0)

    def label(self) -> str:
        """The condition in words, for reasons."""
        return f"{self.rate} proven {self.proven} {self.limit:.2%}"

    def check(self, evidence: Evidence, ctx: Context) -> Verdict:
        """Whether the rate is proven above (or below) the limit, with anytime-valid bounds."""
        n = evidence.compared
        k = evidence.count(_RATE_COUNT[self.rate])
        lo, hi = rate_bounds(k, n, self.alpha)
        what = "divergence" if self.rate == "divergence" else "new-error rate"
        tail = f", over {n:,} events ({k:,} observed, {k / n if n else 0:.2%}; anytime-valid at {1 - self.alpha:.0%})"
        if self.proven == "above":
            holds = lo > self.limit
            return Verdict(holds, f"{what} lower bound {lo:.2%} {'>' if holds else '<='} {self.limit:.2%} allowed{tail}")
        holds = hi <= self.limit
        return Verdict(holds, f"{what} upper bound {hi:.2%} {'<=' if holds else '>'} {self.limit:.2%} allowed{tail}")


class LatencyIs(_Cond):
    """The contract ``candidate pXX <= ratio x legacy pXX + slack`` proven violated, or proven met.

    ``part`` names what is judged per event (``migration_kit.decide.latency``):
    ``served`` (the default: what users pay after cutover, node compute plus
    the runtime on an uncontended core plus a production checkpointer's cost,
    against the legacy path's whole time), ``total`` (the wall time this run
    measured, its own store and machine load included) or ``compute`` (node
    compute against handler compute). ``node`` judges one node's compute;
    ``node = "*"`` every node seen on both paths (violated if any one is, at
    ``alpha`` shared among them; met if all are).
    """

    latency: float | str
    proven: Literal["violated", "met"]
    ratio: float = Field(1.0, gt=0.0)
    slack_ms: float = Field(0.0, ge=0.0)
    node: str | None = None
    part: Literal["served", "total", "compute"] = "served"
    alpha: float = Field(0.01, gt=0.0, lt=1.0)
    min_node_events: int = Field(30, ge=1)  # with node = "*": nodes seen fewer times on a path are not judged yet

    @field_validator("latency")
    @classmethod
    def _quantile(cls, v: Any) -> float:
        if isinstance(v, str):
            text = v.strip().lower().removeprefix("p")
            try:
                v = float(text) / 100
            except ValueError:
                raise ValueError(f"latency quantile {v!r} is not like 'p99' or 0.99") from None
        if not 0 < float(v) < 1:
            raise ValueError(f"latency quantile {v!r} must be in (0, 1), e.g. 0.99 or 'p99'")
        return float(v)

    def label(self) -> str:
        """The condition in words, for reasons."""
        return f"latency p{self.latency * 100:g} {self.proven}"

    def check(self, evidence: Evidence, ctx: Context) -> Verdict:
        """Whether the latency contract is proven violated (or met, as asked), for the event, one node or every node."""
        if self.node == "*":
            return self._every_node(evidence)
        return self._one(evidence, self.node, self.alpha)

    def _every_node(self, evidence: Evidence) -> Verdict:
        names = sorted(
            n for n, s in evidence.nodes["candidate"].items()
            if s.count >= self.min_node_events and evidence.sketch("legacy", n).count >= self.min_node_events
        )
        if not names:
            return Verdict(False, f"no node seen {self.min_node_events:,} times on both paths yet (0 nodes judged)")
        alpha = self.alpha / len(names)  # Bonferroni: the false-alarm rate stays at most alpha over all nodes
        if self.proven == "violated":
            # A contract its point estimates meet cannot be proven violated (the candidate's lower
            # bound is at most its estimate, the legacy's upper bound at least its own): only the
            # others need their bounds, and the slowest node is shown with its numbers.
            def over(n: str) -> float:
                c = evidence.sketch("candidate", n).quantile(self.latency) or 0.0
                return c - (self.ratio * (evidence.sketch("legacy", n).quantile(self.latency) or 0.0) + self.slack_ms / 1000)

            suspects = [n for n in names if over(n) > 0]
            bad = [v for v in (self._one(evidence, n, alpha) for n in suspects) if v.holds]
            if bad:
                return Verdict(True, "; ".join(v.text for v in bad))
            slowest = max(names, key=lambda n: evidence.sketch("candidate", n).quantile(self.latency) or 0.0)
            worst = self._one(evidence, slowest, alpha)
            return Verdict(False, f"none of {len(names):,} nodes proven slower; slowest: {worst.text}")
        verdicts = [(n, self._one(evidence, n, alpha)) for n in names]
        unmet = [v for _, v in verdicts if not v.holds]
        if unmet:
            return Verdict(False, f"{len(unmet):,} of {len(names):,} nodes not yet proven within: {unmet[0].text}")
        return Verdict(True, f"all {len(names):,} nodes proven within their contract")

    def _one(self, evidence: Evidence, node: str | None, alpha: float) -> Verdict:
        part = "compute" if node else self.part
        t = latency_contract(
            evidence.sketch("legacy", node, part),
            evidence.sketch("candidate", node, part),
            self.latency,
            self.ratio,
            self.slack_ms / 1000,
            alpha,
        )
        scope = f"node {node}" if node else "per-event"
        head = f"{scope} {t.label} latency, {_PART_LABEL[part]} (candidate {_ms(t.candidate)}, legacy {_ms(t.legacy)})"
        contract = f"{self.ratio:g} x legacy"
        n = f", over {t.candidate_n:,} events (anytime-valid at {(1 - alpha) * 100:.4g}%)"
        if self.proven == "violated":
            limit = self.ratio * t.legacy_bounds[1] + self.slack_ms / 1000
            holds = t.violated
            return Verdict(
                holds,
                f"{head}: candidate lower bound {_ms(t.candidate_bounds[0])} {'>' if holds else '<='} "
                f"{contract} upper bound {_ms(t.legacy_bounds[1])} + {self.slack_ms:g} ms = {_ms(limit)}{n}",
            )
        limit = self.ratio * t.legacy_bounds[0] + self.slack_ms / 1000
        holds = t.met
        return Verdict(
            holds,
            f"{head}: candidate upper bound {_ms(t.candidate_bounds[1])} {'<=' if holds else '>'} "
            f"{contract} lower bound {_ms(t.legacy_bounds[0])} + {self.slack_ms:g} ms = {_ms(limit)}{n}",
        )


class PredicateIs(_Cond):
    """A custom predicate from the registry (``register_predicate``)."""

    predicate: str
    params: dict[str, Any] = Field(default_factory=dict)

    def label(self) -> str:
        """The condition in words, for reasons: the predicate's name."""
        return self.predicate

    def check(self, evidence: Evidence, ctx: Context) -> Verdict:
        """What the registered predicate says of the evidence (``ConfigurationError`` when none is registered by that name)."""
        fn = _PREDICATES.get(self.predicate)
        if fn is None:
            known = ", ".join(sorted(_PREDICATES)) or "none registered"
            raise ConfigurationError(
                f"policy predicate {self.predicate!r} is not registered (known: {known}); "
                "call migration_kit.register_predicate(name, fn) before evaluating"
            )
        out = fn(evidence, ctx, **self.params)
        holds, text = out
        return Verdict(bool(holds), str(text))


class AllOf(_Cond):
    """A condition that holds when every one of its parts holds."""
    all: list[Condition]

    def label(self) -> str:
        """The condition in words, for reasons."""
        return " and ".join(c.name or c.label() for c in self.all)

    def check(self, evidence: Evidence, ctx: Context) -> Verdict:
        """Whether every part holds (each is evaluated, so the reasons show all the numbers)."""
        parts = []
        for c in self.all:  # evaluates every part, so the reasons show all the numbers
            v = c.check(evidence, ctx)
            parts.append(v)
        return Verdict(all(v.holds for v in parts), "; ".join(v.text for v in parts))


class AnyOf(_Cond):
    """A condition that holds when any one of its parts holds."""
    any: list[Condition]

    def label(self) -> str:
        """The condition in words, for reasons."""
        return " or ".join(c.name or c.label() for c in self.any)

    def check(self, evidence: Evidence, ctx: Context) -> Verdict:
        """Whether any part holds (each is evaluated, so the reasons show all the numbers)."""
        parts = [c.check(evidence, ctx) for c in self.any]
        return Verdict(any(v.holds for v in parts), "; ".join(v.text for v in parts))


class NotOf(_Cond):
    """A condition that holds when its one part does not."""
    not_: Condition = Field(alias="not")

    def label(self) -> str:
        """The condition in words, for reasons."""
        return f"not {self.not_.name or self.not_.label()}"

    def check(self, evidence: Evidence, ctx: Context) -> Verdict:
        """Whether the part does not hold."""
        v = self.not_.check(evidence, ctx)
        return Verdict(not v.holds, f"not ({v.text})")


_COND_KEYS = {
    "phase": "phase",
    "count": "count",
    "rate": "rate",
    "latency": "latency",
    "predicate": "predicate",
    "all": "all",
    "any": "any",
    "not": "not",
    "not_": "not",
}


def _cond_kind(v: Any) -> str | None:
    keys = v.keys() if isinstance(v, Mapping) else type(v).model_fields.keys() if isinstance(v, _Cond) else ()
    for k in keys:
        if k in _COND_KEYS:
            return _COND_KEYS[k]
    return None


Condition = Annotated[
    Union[
        Annotated[PhaseIs, Tag("phase")],
        Annotated[CountIs, Tag("count")],
        Annotated[RateIs, Tag("rate")],
        Annotated[LatencyIs, Tag("latency")],
        Annotated[PredicateIs, Tag("predicate")],
        Annotated[AllOf, Tag("all")],
        Annotated[AnyOf, Tag("any")],
        Annotated[NotOf, Tag("not")],
    ],
    Discriminator(_cond_kind, custom_error_type="condition", custom_error_message=(
        "a condition needs one of the keys phase, count, rate, latency, predicate, all, any, not"
    )),
]


# -- nodes ---------------------------------------------------------------------------------


class Leaf(BaseModel):
    """An action: where a path through the tree ends."""

    model_config = _STRICT
    action: Action
    name: str | None = None
    reason: str | None = None

    def walk(self, evidence: Evidence, ctx: Context, path: list[str]) -> str:
        """The leaf's action, its reason appended to ``path``."""
        text = f"-> {self.action}" + (f": {self.reason}" if self.reason else "")
        path.append(f"{self.name}: {text}" if self.name else text)
        return self.action


class Branch(BaseModel):
    """``if`` a condition holds go to ``then``, else to ``else``."""

    model_config = _STRICT
    name: str | None = None
    if_: Condition = Field(alias="if")
    then: Node
    else_: Node = Field(alias="else")

    def walk(self, evidence: Evidence, ctx: Context, path: list[str]) -> str:
        """Check the condition, note it in ``path`` and walk the branch it picks; returns the action reached."""
        v = self.if_.check(evidence, ctx)
        path.append(f"{self.name or self.if_.name or self.if_.label()}: {v.text}")
        return (self.then if v.holds else self.else_).walk(evidence, ctx, path)


class Rule(BaseModel):
    """One entry of a decision list."""

    model_config = _STRICT
    name: str | None = None
    if_: Condition = Field(alias="if")
    then: Node


class Rules(BaseModel):
    """A decision list: the first rule whose condition holds decides; ``else`` otherwise."""

    model_config = _STRICT
    name: str | None = None
    first: list[Rule]
    else_: Node = Field(alias="else")

    def walk(self, evidence: Evidence, ctx: Context, path: list[str]) -> str:
        """Walk the first rule whose condition holds (else the fallback), noting each check in ``path``; returns the action reached."""
        for rule in self.first:
            v = rule.if_.check(evidence, ctx)
            name = rule.name or rule.if_.name or rule.if_.label()
            if v.holds:
                path.append(f"{name}: {v.text}")
                return rule.then.walk(evidence, ctx, path)
            # A rule that did not fire passed, unless it is the one that would promote: that
            # one is not met yet. Neither is worded like a failure.
            path.append(f"{name}: {'not yet' if _promotes(rule.then) else 'passed'}, {v.text}")
        return self.else_.walk(evidence, ctx, path)


def _promotes(node: Any) -> bool:
    """Whether a node can end in ``promote`` (a rule leading there is a goal, not a guard)."""
    if isinstance(node, Leaf):
        return node.action == "promote"
    if isinstance(node, Branch):
        return _promotes(node.then) or _promotes(node.else_)
    if isinstance(node, Rules):
        return any(_promotes(r.then) for r in node.first) or _promotes(node.else_)
    return False


def _node_kind(v: Any) -> str | None:
    if isinstance(v, BaseModel):
        return {Leaf: "leaf", Branch: "branch", Rules: "rules"}.get(type(v))
    if isinstance(v, Mapping):
        if "action" in v:
            return "leaf"
        if "first" in v:
            return "rules"
        if "if" in v or "if_" in v:
            return "branch"
    return None


Node = Annotated[
    Union[Annotated[Leaf, Tag("leaf")], Annotated[Branch, Tag("branch")], Annotated[Rules, Tag("rules")]],
    Discriminator(_node_kind, custom_error_type="node", custom_error_message=(
        "a policy node is a leaf {action = ...}, a branch {if, then, else} or a decision list {first = [...], else}"
    )),
]

for _m in (AllOf, AnyOf, NotOf, Branch, Rule, Rules):
    _m.model_rebuild()


class Policy(BaseModel):
    """A named decision tree over ``Evidence``; ``evaluate`` returns a ``Decision`` with the path taken."""

    model_config = _STRICT
    name: str = "policy"
    description: str = ""
    tree: Node
    #: A candidate run cut off mid-event (a crash inside the graph) when its
    #: saga is handed back to legacy: ``resume`` finishes it from its checkpoint
    #: (the rest of its effects run for real), ``rewind`` drops it back to the
    #: checkpoint before the event and delivers the event on legacy instead.
    cutoff: Literal["resume", "rewind"] = "resume"

    def evaluate(self, evidence: Evidence, *, phase: str = "shadow", percent: float | None = None, **extra: Any) -> Decision:
        """Walk the tree over ``evidence`` in ``phase``; the reasons are the path, with numbers."""
        ctx = Context(phase, percent, extra)
        path: list[str] = []
        action = self.tree.walk(evidence, ctx, path)
        return Decision(action, tuple(path))  # type: ignore[arg-type]

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "policy") -> Policy:
        """A policy from its dict form, or ``ConfigurationError`` naming where in ``source`` it is invalid."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top)"
            raise ConfigurationError(
                f"{source} is not a valid policy: at {where}: {first['msg']} ({exc.error_count()} problem(s) in all)"
            ) from None

    @classmethod
    def from_toml(cls, text_or_path: str | Path) -> Policy:
        """A policy from TOML text or a ``.toml`` file (top-level keys ``name``, ``tree``)."""
        text, source = _read(text_or_path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{source} is not valid TOML: {exc}") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> Policy:
        """A policy from YAML text or a ``.yaml`` file (needs PyYAML installed)."""
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError:
            raise ConfigurationError("loading a YAML policy needs PyYAML (pip install pyyaml), or write it as TOML") from None
        text, source = _read(text_or_path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{source} is not valid YAML: {exc}") from None
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{source}: a policy is a mapping with 'tree', not {type(data).__name__}")
        return cls.from_dict(data, source=source)


_SEVERITY = {"continue": 0, "promote": 0, "hold": 1, "rollback": 2}


class Monitor:
    """Evaluates a policy while evidence grows, and keeps the first proof of trouble.

    Called after every event, it evaluates every event for the first
    ``every`` events, then every ``every``-th event, and past ``20 x every``
    events at a stride that grows with the count (at most 5% of the events
    seen; ``stride``). The bounds are time-uniform, so any schedule of looks
    is valid; batching only saves time. A ``hold`` or ``rollback`` reached at some look stands even if
    later evidence alone would not reach it: an anytime-valid bound that
    crossed a limit once is proof, and un-proving it would be the repeated
    testing this design avoids.
    """

    def __init__(self, policy: Policy, *, phase: str = "shadow", percent: float | None = None, every: int = 10) -> None:
        self.policy, self.phase, self.percent, self.every = policy, phase, percent, max(1, every)
        self.worst: tuple[int, Decision] | None = None
        self.looks = 0

    def observe(self, evidence: Evidence) -> Decision | None:
        """Evaluate if this event is on the schedule; returns the decision when evaluated."""
        n = evidence.compared
        if n > self.every and n % self.stride(n):
            return None
        return self._look(evidence)

    def stride(self, n: int) -> int:
        """Events between looks at ``n`` compared: ``every``, growing with ``n`` so that a proof is
        seen within 5% more events (a long replay spends its time on events, not on looks)."""
        return self.every * max(1, n // (20 * self.every))

    def _look(self, evidence: Evidence) -> Decision:
        self.looks += 1
        d = self.policy.evaluate(evidence, phase=self.phase, percent=self.percent)
        if _SEVERITY[d.action] > (_SEVERITY[self.worst[1].action] if self.worst else 0):
            self.worst = (evidence.compared, d)
        return d

    def state(self) -> dict[str, Any]:
        """What a resumed replay needs to go on judging exactly as before."""
        worst = None if self.worst is None else [self.worst[0], self.worst[1].to_dict()]
        return {"worst": worst, "looks": self.looks}

    def restore(self, state: Mapping[str, Any] | None) -> None:
        """Continue from ``state()`` saved by an interrupted run."""
        if not state:
            return
        self.looks = int(state.get("looks", 0))
        worst = state.get("worst")
        self.worst = None if not worst else (int(worst[0]), Decision(worst[1]["action"], tuple(worst[1]["reasons"])))

    def finish(self, evidence: Evidence) -> Decision:
        """The decision at the end: the last look's, unless an earlier look proved something worse."""
        final = self._look(evidence)
        if self.worst is None or _SEVERITY[self.worst[1].action] <= _SEVERITY[final.action]:
            return final
        n, d = self.worst
        return Decision(
            d.action,
            (f"proven at event {n:,} of {evidence.compared:,} (anytime-valid bounds: a limit crossed once stays crossed)", *d.reasons),
        )


def _read(text_or_path: str | Path) -> tuple[str, str]:
    if isinstance(text_or_path, Path) or (
        isinstance(text_or_path, str) and "\n" not in text_or_path and text_or_path.endswith((".toml", ".yaml", ".yml"))
    ):
        path = Path(text_or_path)
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise ConfigurationError(f"cannot read the policy file {path}: {exc.strerror}") from None
    return str(text_or_path), "policy text"


def load_policy(policy: Policy | Mapping[str, Any] | str | Path | None) -> Policy:
    """A ``Policy`` from what ``Migration(policy=...)`` accepts: a Policy, a dict, a .toml/.yaml path, or None (default)."""
    if policy is None:
        return default_policy()
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, Mapping):
        return Policy.from_dict(policy)
    if isinstance(policy, (str, Path)):
        suffix = Path(policy).suffix.lower() if "\n" not in str(policy) else ""
        if suffix in (".yaml", ".yml"):
            return Policy.from_yaml(policy)
        if suffix == ".toml":
            return Policy.from_toml(policy)
        raise ConfigurationError(f"policy {str(policy)[:60]!r}: give a .toml or .yaml file, a dict, or a Policy")
    raise ConfigurationError(f"Migration(policy=...) takes a Policy, a dict or a policy file path, not {type(policy).__name__}")


# -- the default ---------------------------------------------------------------------------


def default_policy(
    *,
    divergence_limit: float = 0.001,
    error_limit: float = 0.001,
    p50: tuple[float, float] = (1.1, 25.0),
    p99: tuple[float, float] = (1.25, 100.0),
    node_p50: tuple[float, float] = (1.25, 10.0),
    min_events: int = 1000,
    alpha: float = 0.01,
    promote_alpha: float = 0.05,
) -> Policy:
    """The policy used when a migration names none.

    In order: no evidence holds. A regression *proven* by an anytime-valid
    bound (new-error rate or divergence above 0.1%, a latency contract
    ``p50 <= 1.1 x legacy + 25 ms`` / ``p99 <= 1.25 x legacy + 100 ms`` on
    the time served after cutover broken, or any node's p50 compute above
    ``1.25 x`` its legacy handler's ``+ 10 ms``) rolls back in canary or primary, and holds in the other phases,
    where the candidate serves no traffic. Then any divergence at all holds:
    a divergence is a behaviour change until it is fixed or learned as noise,
    however small the rate (so ``replay`` exits 1 on any divergence, as it did
    before policies existed). With no divergence, fewer than ``min_events``
    compared continues; promotion needs proof that divergence and new errors
    are within their limits and both latency contracts are met. Otherwise
    continue collecting evidence.

    The latency contracts judge the ``served`` part (``migration_kit.decide.latency``):
    node compute, the LangGraph runtime at its CPU cost (load from other
    processes on the replay machine is not the candidate's), and a production
    checkpointer's cost modelled per superstep, never the store the replay used.
    So an identical wrapped graph is not held on a loaded machine or a slow
    local disk, while 30 ms added to one node moves the node contract (compared
    side by side with its handler under the same load) and, where the node runs on
    most events, the per-event p50 as well; ``bench/bench_policy_simulation.py``
    measures both. The slacks absorb LangGraph's per-event cost (the example's
    ten supersteps: ~3 ms runtime + ~10 ms modelled checkpoints); tighten them
    for your system. Five rollback conditions at ``alpha`` = 1% each: at most
    5% false rollbacks however often the policy is evaluated.
    """
    live = {"phase": ["canary", "primary"]}

    def back(what: str) -> dict[str, Any]:
        return {
            "if": live,
            "then": {"action": "rollback", "reason": f"{what} is proven worse than allowed"},
            "else": {"action": "hold", "reason": f"{what} is proven worse than allowed (nothing to roll back in this phase)"},
        }

    def contract(q: str, ratio_slack: tuple[float, float], proven: str, a: float) -> dict[str, Any]:
        ratio, slack = ratio_slack
        return {"latency": q, "proven": proven, "ratio": ratio, "slack_ms": slack, "alpha": a}

    tree = {
        "first": [
            {"name": "no-evidence", "if": {"count": "compared", "below": 1},
             "then": {"action": "hold", "reason": "no events were compared: there is no evidence yet"}},
            {"name": "error-regression", "if": {"rate": "errors", "proven": "above", "limit": error_limit, "alpha": alpha},
             "then": back("the candidate's new-error rate")},
            {"name": "divergence-regression", "if": {"rate": "divergence", "proven": "above", "limit": divergence_limit, "alpha": alpha},
             "then": back("the divergence rate")},
            {"name": "latency-p50", "if": contract("p50", p50, "violated", alpha), "then": back("p50 latency")},
            {"name": "latency-p99", "if": contract("p99", p99, "violated", alpha), "then": back("p99 latency")},
            {"name": "node-latency", "if": {**contract("p50", node_p50, "violated", alpha), "node": "*"},
             "then": back("a node's p50 compute time")},
            {"name": "any-divergence", "if": {"count": "divergent", "at_least": 1},
             "then": {"action": "hold", "reason": "every divergence is a behaviour change until it is fixed or learned as noise"}},
            {"name": "minimum-evidence", "if": {"count": "compared", "below": min_events},
             "then": {"action": "continue", "reason": f"no divergence so far; promotion needs at least {min_events:,} events"}},
            {"name": "ready-to-promote",
             "if": {"all": [
                 {"rate": "divergence", "proven": "within", "limit": divergence_limit, "alpha": promote_alpha},
                 {"rate": "errors", "proven": "within", "limit": error_limit, "alpha": promote_alpha},
                 contract("p50", p50, "met", promote_alpha),
                 contract("p99", p99, "met", promote_alpha),
             ]},
             "then": {"action": "promote", "reason": "the evidence proves the candidate within every limit"}},
        ],
        "else": {"action": "continue", "reason": "no divergence so far; not yet enough evidence to prove every limit"},
    }
    return Policy(name="default", description="migration-kit's default policy", tree=tree)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if math.isinf(seconds):
        return "unbounded"
    return f"{seconds * 1000:,.2f} ms"


