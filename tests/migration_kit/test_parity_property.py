"""For every bus topology, the derived graph is parity-equivalent to the bus."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph_flows import flow_from_bus
from legacy_bus import Event, EventBus
from migration_kit import Migration

TYPES = ["T0", "T1", "T2", "T3"]


@dataclass(frozen=True)
class HandlerSpec:
    listens: int
    style: str  # "return" | "ctx" | "bus"
    is_async: bool
    publishes: tuple[tuple[int, int], ...]  # (event type index, increment)
    effect: bool
    uses_state: bool
    fails_on: int  # raise when x % fails_on == 0 (0: never)


handler_specs = st.builds(
    HandlerSpec,
    listens=st.integers(0, len(TYPES) - 1),
    style=st.sampled_from(["return", "ctx", "bus"]),
    is_async=st.booleans(),
    publishes=st.lists(st.tuples(st.integers(0, len(TYPES) - 1), st.integers(1, 3)), max_size=2).map(tuple),
    effect=st.booleans(),
    uses_state=st.booleans(),
    fails_on=st.sampled_from([0, 0, 0, 5, 7]),
)


def build_bus(specs: list[HandlerSpec], max_depth: int, on_error: str) -> EventBus:
    bus = EventBus("random", max_depth=max_depth, on_error=on_error)

    @bus.effect("svc.call", stub=lambda name, x: {"ok": x % 2 == 0, "from": name})
    def call(name, x):  # pragma: no cover - only sandboxed runs happen here
        raise AssertionError("a sandboxed run executed a real effect")

    for i, spec in enumerate(specs):
        name = f"h{i}"

        def work(e, ctx, spec=spec, name=name):
            x = e.payload.get("x", 0)
            extra = {}
            if spec.effect:
                extra = call(name, x)
            if spec.uses_state and ctx is not None:
                ctx.state[name] = ctx.state.get(name, 0) + x
            if spec.fails_on and x % spec.fails_on == 0 and x > 0:
                raise ValueError(f"{name} rejects x={x}")
            out = []
            for t, inc in spec.publishes:
                if (x + inc) % 4 != 0:  # keep cascades finite and varied
                    out.append((TYPES[t], {"x": x + inc, "by": name, **extra}))
            return out

        def emit(out, ctx, spec=spec):
            if spec.style == "return":
                return [Event(type=t, payload=p) for t, p in out]
            for t, p in out:
                if spec.style == "ctx":
                    ctx.publish(t, p)
                else:
                    bus.publish(t, p)
            return None

        if spec.is_async:
            if spec.style == "return" and not spec.uses_state:

                async def handler(e, work=work, emit=emit):
                    await asyncio.sleep(0)
                    return emit(work(e, None), None)

            else:

                async def handler(e, ctx, work=work, emit=emit):
                    await asyncio.sleep(0)
                    return emit(work(e, ctx), ctx)

        elif spec.style == "return" and not spec.uses_state:

            def handler(e, work=work, emit=emit):
                return emit(work(e, None), None)

        else:

            def handler(e, ctx, work=work, emit=emit):
                return emit(work(e, ctx), ctx)

        bus.subscribe(TYPES[spec.listens], handler, name=name)
    return bus


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(handler_specs, min_size=1, max_size=6),
    max_depth=st.integers(1, 5),
    on_error=st.sampled_from(["raise", "record"]),
    roots=st.lists(st.tuples(st.integers(0, len(TYPES) - 1), st.integers(0, 20)), min_size=1, max_size=3),
)
def test_compare_finds_no_divergence_between_any_bus_and_its_derived_graph(specs, max_depth, on_error, roots):
    bus = build_bus(specs, max_depth, on_error)
    migration = Migration("prop", legacy=bus, candidate=flow_from_bus(bus))
    for t, x in roots:
        comparison = migration.compare(Event(type=TYPES[t], payload={"x": x}, correlation_id="saga"))
        assert not comparison.divergent, [str(d) for d in comparison.differences]
        assert comparison.legacy.emitted == () or len(comparison.legacy.trace) == len(comparison.candidate.trace)
