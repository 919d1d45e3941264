"""graph_flows: any LegacyBus turned into a LangGraph ``StateGraph``, handler by handler.

``flow_from_bus(bus)`` wraps every handler unchanged as a graph node and
routes events exactly as the bus does. ``BusFlow.replace`` swaps one node for
a rewritten handler or a native LangGraph node. See ``graph_flows.state`` for
the graph's state schema and the native node contract.
"""

from graph_flows.errors import handler_exception
from graph_flows.flow import BEGIN, FINISH, BusFlow, FlowNode, flow_from_bus, published_types
from graph_flows.state import FlowState, NodeInput, NodeOutput, StepRecord, event_dict

__all__ = [
    "BEGIN",
    "FINISH",
    "BusFlow",
    "FlowNode",
    "FlowState",
    "NodeInput",
    "NodeOutput",
    "StepRecord",
    "event_dict",
    "flow_from_bus",
    "handler_exception",
    "published_types",
]
