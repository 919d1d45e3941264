"""Deriving a LangGraph ``StateGraph`` from any ``LegacyBus``: wrap, don't weld.

The derived graph has one node per handler, named as the handler's node
name. Routing mirrors the bus and keeps its cascade discipline: a dispatcher
(the conditional edges leaving ``START``'s ``__begin__`` node and every
handler node) walks the cascade breadth-first for a queueing bus, exactly as
``EventBus.dispatch`` does, or depth-first for a bus whose nested emit runs to
completion before the next listener (pyee, blinker, Django signals), and sends
each event to its subscribers with ``Send(node, NodeInput)``. Wrapped
handlers run one at a time in subscription order (legacy code is rarely
thread-safe); on a breadth-first bus consecutive native nodes subscribed to
the same event are sent together and may run concurrently (a fan-out).

Because the wrapped node runs the very same ``Subscription.invoke`` as the
bus, a handler behaves identically on both paths: the same publishing styles,
the same effect-port sandboxing, the same error capture. The bus's own
bounds apply (``max_depth`` / ``max_fanout``); a bus without them gets none.

On a depth-first bus a handler's nested emit is recorded as a child and its
listeners run as the next nodes, after the handler returns; the emitted
events, the steps and each step's effects come out in the bus's own order,
but code a handler runs *after* its nested emit sees the listeners' work only
on the bus (the graph cannot pause a handler mid-call).
"""

from __future__ import annotations

import ast
import copy
import inspect
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import Overwrite, Send

from legacy_bus import Event, LegacyBus, Step, Subscription
from legacy_bus.protocol import require_legacy_bus
from legacy_bus.bus import cut_at_depth
from migration_errors import ConfigurationError

from graph_flows.errors import error_data, remember
from graph_flows.state import FlowState, NodeInput

try:  # the node wrapper LangGraph itself uses; RunnableLambda is the public fallback
    from langgraph._internal._runnable import RunnableCallable as _Runnable
except ImportError:  # pragma: no cover - depends on the installed LangGraph
    from langchain_core.runnables import RunnableLambda as _Runnable  # type: ignore[assignment]

__all__ = ["BEGIN", "FINISH", "JOIN", "BusFlow", "FlowNode", "flow_from_bus"]

BEGIN = "__begin__"
JOIN = "__join__"
FINISH = "__finish__"


@dataclass(frozen=True, slots=True)
class FlowNode:
    """One node of a flow: the subscription it runs and whether it is native."""

    name: str
    event_type: str
    sub: Subscription
    native: bool = False
    original: Subscription | None = None


def _native_shim(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Adapt a native node (``NodeInput -> NodeOutput``) to the handler protocol."""

    def finish(ctx: Any, out: Any) -> list[Event] | None:
        if out is None:
            return None
        if not isinstance(out, dict):
            raise TypeError(f"native node {name!r} returned {type(out).__name__}; return a dict (NodeOutput) or None")
        if "state" in out:
            new_state = dict(out["state"] or {})
            ctx.state.clear()
            ctx.state.update(new_state)
        return [ev if isinstance(ev, Event) else Event.model_validate(ev) for ev in out.get("emit") or ()]

    def node_input(event: Event, ctx: Any) -> NodeInput:
        return {"event": event.to_dict(), "state": ctx.state, "depth": ctx.depth, "node": name}

    if inspect.iscoroutinefunction(fn):

        async def ashim(event: Event, ctx: Any) -> list[Event] | None:
            return finish(ctx, await fn(node_input(event, ctx)))

        ashim.__name__ = name
        return ashim

    def shim(event: Event, ctx: Any) -> list[Event] | None:
        return finish(ctx, fn(node_input(event, ctx)))

    shim.__name__ = name
    return shim


class BusFlow:
    """A LangGraph flow derived from a ``LegacyBus``; build it with ``flow_from_bus``."""

    def __init__(self, bus: LegacyBus) -> None:
        self.bus = bus
        self.nodes: dict[str, FlowNode] = {
            sub.name: FlowNode(sub.name, sub.event_type, sub, False, sub) for sub in bus.subscriptions
        }

    def __repr__(self) -> str:
        native = [n.name for n in self.nodes.values() if n.native]
        return f"<BusFlow of {self.bus.name!r}: {len(self.nodes)} nodes, native={native}>"

    # -- changing the flow -------------------------------------------------------

    def replace(self, name: str, fn: Callable[..., Any], *, native: bool = False) -> BusFlow:
        """Swap the node ``name`` for a new implementation; returns this flow.

        Args:
            name: the node (handler) to replace.
            fn: with ``native=False``, a handler-style callable
                (``fn(event)`` or ``fn(event, ctx)``, sync or async, publishing
                as legacy handlers do). With ``native=True``, a native node:
                ``fn(NodeInput) -> NodeOutput`` (see ``graph_flows.state``).
            native: whether ``fn`` is a native node.
        """
        if name not in self.nodes:
            known = ", ".join(sorted(self.nodes)) or "none"
            raise ConfigurationError(f"no node named {name!r} to replace; the flow's nodes are: {known}")
        if not callable(fn):
            raise ConfigurationError(f"replace({name!r}, ...): {fn!r} is not callable")
        node = self.nodes[name]
        handler = _native_shim(fn, name) if native else fn
        sub = Subscription.of(node.event_type, handler, name)
        self.nodes[name] = FlowNode(name, node.event_type, sub, native, node.original)
        return self

    def restore(self, name: str) -> BusFlow:
        """Put the original wrapped handler back at ``name``; returns this flow."""
        node = self.nodes[name]
        if node.original is not None:
            self.nodes[name] = FlowNode(name, node.event_type, node.original, False, node.original)
        return self

    @property
    def replaced(self) -> list[str]:
        """The nodes that no longer run the bus's own handler."""
        return [n.name for n in self.nodes.values() if n.sub is not n.original]

    # -- building ------------------------------------------------------------------

    def routes(self) -> dict[str, list[FlowNode]]:
        """Event type -> the nodes that handle it, in subscription order."""
        out: dict[str, list[FlowNode]] = {}
        for sub in self.bus.subscriptions:
            out.setdefault(sub.event_type, []).append(self.nodes[sub.name])
        return out

    def builder(self) -> StateGraph:
        """The uncompiled ``StateGraph`` (to add your own nodes or edges before compiling)."""
        routes = self.routes()
        bus = self.bus
        depth_first = bus.discipline == "depth_first"
        graph = StateGraph(FlowState)
        graph.add_node(BEGIN, _Begin(bus, list(self.nodes)))
        graph.add_edge(START, BEGIN)
        router: Any = _DepthFirstRouter(routes, bus) if depth_first else _Router(routes, bus)
        targets = [*self.nodes, FINISH if depth_first else END]
        if depth_first:
            graph.add_node(FINISH, _finish_depth_first)
            graph.add_edge(FINISH, END)
        graph.add_conditional_edges(BEGIN, router, targets)
        natives = False
        for node in self.nodes.values():
            graph.add_node(node.name, _node_runnable(bus, node))
            if node.native and not depth_first:
                # Native nodes may run several in one superstep; each branch
                # would see only its own writes, so they meet at one join
                # node and the cascade is routed once, from the whole state.
                graph.add_edge(node.name, JOIN)
                natives = True
            else:
                graph.add_conditional_edges(node.name, router, targets)
        if natives:
            graph.add_node(JOIN, _join)
            graph.add_conditional_edges(JOIN, router, targets)
        return graph

    def compile(self, checkpointer: Any = None, **kwargs: Any) -> Any:
        """Compile the flow; ``checkpointer`` as for ``StateGraph.compile``.

        The result is LangGraph's ``CompiledStateGraph``, whose input is
        turned to plain data before LangGraph sees it (an ``Event`` becomes
        its dict), so no checkpoint ever holds a Python object of ours.
        """
        compiled = self.builder().compile(checkpointer=checkpointer, **kwargs)
        compiled.__class__ = _compiled_class(type(compiled))
        return compiled

    def is_complete(self, values: dict[str, Any]) -> bool:
        """Whether a flow state is a whole run: the dispatcher has nothing left to deliver."""
        try:
            return _Router(self.routes(), self.bus)(values) == END  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - a state the router cannot read is not a whole run
            return False

    # -- drawing -------------------------------------------------------------------

    def graph_data(self, observed: dict[str, set[str]] | None = None) -> dict[str, Any]:
        """The flow as plain data for drawing: event types, nodes and the edges between them.

        Edges ``["t:<type>", "n:<node>"]`` are subscriptions; ``["n:<node>",
        "t:<type>"]`` are event types a node publishes (from its source, and
        from ``observed``: node -> event types seen during a replay).
        """
        types = list(self.routes())
        edges: list[list[str]] = []
        for node in self.nodes.values():
            edges.append([f"t:{node.event_type}", f"n:{node.name}"])
        for node in self.nodes.values():
            published = set(published_types(_source_of(node.sub.handler))) | set((observed or {}).get(node.name, ()))
            for t in sorted(published):
                if t not in types:
                    types.append(t)
                edges.append([f"n:{node.name}", f"t:{t}"])
        return {
            "types": types,
            "nodes": [{"name": n.name, "event_type": n.event_type, "native": n.native} for n in self.nodes.values()],
            "edges": edges,
        }

    def to_mermaid(self, observed: dict[str, set[str]] | None = None) -> str:
        """The flow as a Mermaid flowchart: event types, the nodes they feed, what nodes publish.

        Publish edges come from the handlers' source (literal event types given
        to ``publish`` or ``Event(type=...)``) and from ``observed`` (node ->
        event types seen during a replay).
        """
        lines = ["flowchart LR"]
        ids: dict[str, str] = {}

        def tid(t: str) -> str:
            return ids.setdefault(t, f"evt{len(ids)}")

        types = list(dict.fromkeys([*self.routes(), *(t for s in (observed or {}).values() for t in s)]))
        for t in types:
            lines.append(f'  {tid(t)}(["{_mm(t)}"])')
        for node in self.nodes.values():
            label = f"{node.name} (native)" if node.native else node.name
            lines.append(f'  {node.name}["{_mm(label)}"]')
            lines.append(f"  {tid(node.event_type)} --> {node.name}")
        for node in self.nodes.values():
            published = set(published_types(_source_of(node.sub.handler))) | set((observed or {}).get(node.name, ()))
            for t in sorted(published):
                if t not in ids:  # a type only this node publishes: declare it before the edge names it
                    lines.append(f'  {tid(t)}(["{_mm(t)}"])')
                lines.append(f"  {node.name} -.-> {tid(t)}")
        natives = [n.name for n in self.nodes.values() if n.native]
        lines.append("  classDef native fill:#e6f4ea,stroke:#2e7d32")
        if natives:
            lines.append(f"  class {','.join(natives)} native")
        return "\n".join(lines) + "\n"


_COMPILED: dict[type, type] = {}


def _plain_input(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("event"), Event):
        return {**value, "event": value["event"].to_dict()}
    return value


def _compiled_class(base: type) -> type:
    """A subclass of LangGraph's compiled graph whose ``stream``/``astream`` take plain input."""
    cls = _COMPILED.get(base)
    if cls is None:

        def stream(self: Any, input: Any, *args: Any, **kwargs: Any) -> Any:
            return base.stream(self, _plain_input(input), *args, **kwargs)

        def astream(self: Any, input: Any, *args: Any, **kwargs: Any) -> Any:
            return base.astream(self, _plain_input(input), *args, **kwargs)

        cls = type("CompiledBusFlow", (base,), {"stream": stream, "astream": astream, "__module__": __name__})
        _COMPILED[base] = cls
    return cls


def _mm(text: str) -> str:
    return text.replace('"', "#quot;")


def _source_of(handler: Callable[..., Any]) -> Callable[..., Any]:
    # An adapter's node runs the app's own listener: read that one's source.
    return getattr(handler, "__listener__", handler)


def published_types(fn: Callable[..., Any]) -> list[str]:
    """Event types a handler visibly publishes: literal strings in its source (``publish``/``emit``), best effort."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return []
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if callee in ("publish", "emit") and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            found.append(node.args[0].value)
        if callee in ("Event", "child"):
            for kw in node.keywords:
                if kw.arg == "type" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                    found.append(kw.value.value)
    return list(dict.fromkeys(found))


class _Begin:
    """The first node: per-invocation channels start empty; a changed topology is refused."""

    __slots__ = ("bus", "names")

    def __init__(self, bus: LegacyBus, names: list[str]) -> None:
        self.bus = bus
        self.names = set(names)

    def __call__(self, state: FlowState) -> dict[str, Any]:
        now = {sub.name for sub in self.bus.subscriptions}
        if now != self.names:
            added, gone = sorted(now - self.names), sorted(self.names - now)
            raise ConfigurationError(
                f"bus {self.bus.name!r} changed after flow_from_bus(): "
                + ", ".join(p for p in (f"handlers added: {added}" if added else "", f"handlers removed: {gone}" if gone else "") if p)
                + "; build the flow again with flow_from_bus(bus) so the graph runs what the bus runs"
            )
        # A new invocation: per-invocation channels start empty, even on a saga's
        # long-lived thread whose last checkpoint holds the previous event's.
        return {
            "emitted": Overwrite([]),
            "depths": Overwrite([]),
            "trace": Overwrite([]),
            "delivered": Overwrite(0),
            "errors": Overwrite([]),
        }


def _join(state: FlowState) -> dict[str, Any]:
    return {}


def _stopped(state: FlowState) -> bool:
    return any(e.get("stop", True) for e in state.get("errors") or ())


def _saga_of(state: FlowState, event: dict[str, Any]) -> dict[str, Any]:
    return (state.get("sagas") or {}).get(event.get("correlation_id") or event["id"], {})


class _Router:
    """The breadth-first dispatcher: which node(s) handle the next event of the cascade."""

    __slots__ = ("bus", "routes")

    def __init__(self, routes: dict[str, list[FlowNode]], bus: LegacyBus) -> None:
        self.routes = routes
        self.bus = bus

    def __call__(self, state: FlowState) -> Sequence[Send] | str:
        if _stopped(state):
            return END
        root = state["event"]
        emitted = state.get("emitted") or []
        k = state.get("delivered") or 0
        index = 0
        nodes: list[FlowNode] = []
        for index in range(len(emitted) + 1):
            ev = root if index == 0 else emitted[index - 1]
            nodes = self.routes.get(ev["type"], [])
            if k < len(nodes):
                break
            k -= len(nodes)
        else:
            return END
        event = root if index == 0 else emitted[index - 1]
        depth = 0 if index == 0 else state["depths"][index - 1]
        saga = _saga_of(state, event)
        max_depth = self.bus.max_depth
        chain = _chain(root, emitted, index) if max_depth is not None and depth + 1 > max_depth else None
        batch = [nodes[k]]
        if nodes[k].native:
            for more in nodes[k + 1 :]:
                if not more.native:
                    break
                batch.append(more)
        return [
            Send(n.name, {"event": event, "state": saga, "depth": depth, "node": n.name, "chain": chain})
            for n in batch
        ]


class _DepthFirstRouter:
    """The depth-first dispatcher: a listener's nested emits are handled before the next listener runs.

    The next delivery is the first (event, handler) pair not yet run in a
    pre-order walk of the cascade: an event's handlers in order, and after
    each handler the events it emitted, each with its whole subtree.
    """

    __slots__ = ("bus", "names_for", "routes")

    def __init__(self, routes: dict[str, list[FlowNode]], bus: LegacyBus) -> None:
        self.routes = routes
        self.bus = bus
        self.names_for = getattr(bus, "handler_names_for", None)

    def _names(self, event: dict[str, Any]) -> list[str]:
        if self.names_for is not None:
            names = self.names_for(event)
            if names is not None:
                return list(names)
        return [n.name for n in self.routes.get(event["type"], ())]

    def __call__(self, state: FlowState) -> Sequence[Send] | str:
        if _stopped(state):
            return FINISH
        root = state["event"]
        by_id = {root["id"]: root, **{e["id"]: e for e in state.get("emitted") or ()}}
        done = {(r["event"], r["node"]): r for r in state.get("trace") or ()}
        # (event, its depth, its handler names, index of the next handler)
        stack: list[tuple[dict[str, Any], int, list[str], int]] = [(root, 0, self._names(root), 0)]
        while stack:
            event, depth, names, i = stack.pop()
            if i >= len(names):
                continue
            rec = done.get((event["id"], names[i]))
            if rec is None:
                return self._send(state, event, depth, names[i])
            stack.append((event, depth, names, i + 1))
            for cid in reversed(rec["out"]):
                child = by_id[cid]
                stack.append((child, depth + 1, self._names(child), 0))
        return FINISH

    def _send(self, state: FlowState, event: dict[str, Any], depth: int, name: str) -> list[Send]:
        max_depth = self.bus.max_depth
        chain = None
        if max_depth is not None and depth + 1 > max_depth:
            emitted = state.get("emitted") or []
            index = next((i + 1 for i, e in enumerate(emitted) if e["id"] == event["id"]), 0)
            chain = _chain(state["event"], emitted, index)
        return [Send(name, {"event": event, "state": _saga_of(state, event), "depth": depth, "node": name, "chain": chain})]


def _finish_depth_first(state: FlowState) -> dict[str, Any]:
    """Put ``emitted`` in the order a depth-first bus emits: each event, then everything it caused."""
    root = state["event"]
    by_id = {e["id"]: e for e in state.get("emitted") or ()}
    out_of: dict[str, list[list[str]]] = {}
    for rec in state.get("trace") or ():
        out_of.setdefault(rec["event"], []).append(rec["out"])
    order: list[tuple[dict[str, Any], int]] = []
    stack: list[tuple[str, int]] = [(root["id"], 0)]
    while stack:
        eid, depth = stack.pop()
        if eid != root["id"]:
            order.append((by_id[eid], depth))
        kids = [c for outs in out_of.get(eid, ()) for c in outs]
        stack.extend((c, depth + 1) for c in reversed(kids))
    return {"emitted": Overwrite([e for e, _ in order]), "depths": Overwrite([d for _, d in order])}


def _chain(root: dict[str, Any], emitted: list[dict[str, Any]], index: int) -> list[str]:
    by_id = {root["id"]: root, **{e["id"]: e for e in emitted}}
    cur: dict[str, Any] | None = root if index == 0 else emitted[index - 1]
    out: list[str] = []
    while cur is not None:
        out.append(cur["type"])
        cause = cur.get("causation_id")
        cur = by_id.get(cause) if cause is not None and cur is not root else None
    return out[::-1]


def _update(bus: LegacyBus, step: Step, state: dict[str, Any], chain: list[str] | None) -> dict[str, Any]:
    max_depth = bus.max_depth if bus.max_depth is not None else sys.maxsize
    step = cut_at_depth(step, max_depth, lambda: list(chain or [step.event.type]), bus.max_fanout)
    children = step.published
    error = None if step.error is None else step.error.to_dict()
    update: dict[str, Any] = {
        "trace": [
            {
                "node": step.node,
                "event": step.event.id,
                "depth": step.depth,
                "out": [c.id for c in children],
                "effects": [c.to_dict() for c in step.effects],
                "error": error,
                "duration": step.duration,
                "started": step.started,
            }
        ],
        "delivered": 1,
        "sagas": {step.event.saga_key: state},
    }
    if children:
        update["emitted"] = [c.to_dict() for c in children]
        update["depths"] = [step.depth + 1] * len(children)
    if error is not None:
        stop = bus.stops_on_error(step.event.type)
        update["errors"] = [{"node": step.node, **error, "stop": stop, **error_data(step.exception)}]
        if step.exception is not None:
            remember(step.event.id, step.node, step.exception)
    return update


def _node_runnable(bus: LegacyBus, node: FlowNode) -> Any:
    sub = node.sub

    def run(inp: dict[str, Any]) -> dict[str, Any]:
        event = Event.model_validate(inp["event"])
        state = copy.deepcopy(inp["state"])
        return _update(bus, sub.invoke(bus, event, inp["depth"], state), state, inp.get("chain"))

    async def arun(inp: dict[str, Any]) -> dict[str, Any]:
        event = Event.model_validate(inp["event"])
        state = copy.deepcopy(inp["state"])
        return _update(bus, await sub.ainvoke(bus, event, inp["depth"], state), state, inp.get("chain"))

    run.__name__ = arun.__name__ = node.name
    return _Runnable(run, arun, name=node.name)


def flow_from_bus(bus: LegacyBus) -> BusFlow:
    """Derive a LangGraph flow from any ``LegacyBus``'s subscriptions (the handlers are not changed)."""
    require_legacy_bus(bus, "flow_from_bus()")
    return BusFlow(bus)
