"""migration_kit: move an event-bus system onto LangGraph without its users noticing.

``Migration`` runs recorded and live events through the legacy bus and the
candidate graph, sandboxed; ``Comparator`` finds and explains every
difference; reports and decisions say what to do next.
"""

from migration_errors import (
    BadEventLog,
    ConfigurationError,
    CycleError,
    MigrationKitError,
    PhaseConflict,
    PolicyViolation,
    StoreUnavailable,
)

from migration_kit.comparator import Comparator, Comparison, Difference, Kind
from migration_kit.decision import Decision
from migration_kit.migration import Migration
from migration_kit.outcome import Emission, NodeRun, Outcome
from migration_kit.report import DivergenceGroup, ReplayReport

__all__ = [
    "BadEventLog",
    "Comparator",
    "Comparison",
    "ConfigurationError",
    "CycleError",
    "Decision",
    "Difference",
    "DivergenceGroup",
    "Emission",
    "Kind",
    "Migration",
    "MigrationKitError",
    "NodeRun",
    "Outcome",
    "PhaseConflict",
    "PolicyViolation",
    "ReplayReport",
    "StoreUnavailable",
]
