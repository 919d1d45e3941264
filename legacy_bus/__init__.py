"""legacy_bus: the event model, the reference event bus, effect ports, declared databases and event logs.

This is the world a team migrates *from*. It knows nothing of LangGraph or of
migrations; ``graph_flows`` and ``migration_kit`` build on it.
"""

from migration_errors import BadEventLog, ConfigurationError, CycleError, MigrationKitError

from legacy_bus.bus import Dispatch, EventBus, OnError
from legacy_bus.context import HandlerContext
from legacy_bus.database import DeclaredEngine, DeclaredSessions, RowWrite
from legacy_bus.effects import EffectPort, RecordedEffectError, Sandbox, current_sandbox, sandboxed
from legacy_bus.event import Event
from legacy_bus.protocol import Discipline, LegacyBus, MessageCodec
from legacy_bus.log import EventLog, LogEntry, SkippedLine
from legacy_bus.records import EffectCall, ErrorInfo, Step
from legacy_bus.state import (
    BoundedStateStore,
    InMemoryStateStore,
    OverlayStateStore,
    RedisStateStore,
    StateSerializationError,
    StateStore,
)
from legacy_bus.subscription import Subscription

__all__ = [
    "BadEventLog",
    "BoundedStateStore",
    "ConfigurationError",
    "CycleError",
    "Discipline",
    "DeclaredEngine",
    "DeclaredSessions",
    "Dispatch",
    "EffectCall",
    "EffectPort",
    "ErrorInfo",
    "Event",
    "EventBus",
    "EventLog",
    "HandlerContext",
    "LegacyBus",
    "InMemoryStateStore",
    "LogEntry",
    "MessageCodec",
    "MigrationKitError",
    "OnError",
    "OverlayStateStore",
    "RecordedEffectError",
    "RedisStateStore",
    "RowWrite",
    "Sandbox",
    "SkippedLine",
    "StateSerializationError",
    "StateStore",
    "Step",
    "Subscription",
    "current_sandbox",
    "sandboxed",
]
