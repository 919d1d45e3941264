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
    ReplayInterrupted,
    StoreUnavailable,
    UndeclaredStateWrite,
    UnisolatedNoiseLearning,
)

from migration_kit.compare.comparator import Comparator, Comparison, Difference, Kind
from migration_kit.compare.noise import NoiseLearning
from migration_kit.decide.decision import Decision
from migration_kit.decide.evidence import Evidence
from migration_kit.migration import Migration
from migration_kit.compare.outcome import Emission, NodeRun, Outcome
from migration_kit.decide.phases import InvalidTransition, PhaseState, Transition
from migration_kit.decide.policy import Policy, Predicate, Verdict, default_policy, register_predicate
from migration_kit.report.report import DivergenceGroup, ReplayReport
from migration_kit.live.tap import ShadowHandle
from migration_kit.decide.statistics import Sketch
from migration_kit.types import Action, Phase, Side
from migration_kit.live.worker import Worker, WorkerStats

__all__ = [
    "Action",
    "BadEventLog",
    "Comparator",
    "Comparison",
    "ConfigurationError",
    "CycleError",
    "Decision",
    "Difference",
    "DivergenceGroup",
    "Emission",
    "Evidence",
    "InvalidTransition",
    "Kind",
    "Migration",
    "MigrationKitError",
    "NodeRun",
    "NoiseLearning",
    "Outcome",
    "Phase",
    "PhaseConflict",
    "PhaseState",
    "Policy",
    "PolicyViolation",
    "Predicate",
    "ReplayInterrupted",
    "ReplayReport",
    "ShadowHandle",
    "Side",
    "Sketch",
    "StoreUnavailable",
    "Transition",
    "UndeclaredStateWrite",
    "UnisolatedNoiseLearning",
    "Verdict",
    "Worker",
    "WorkerStats",
    "default_policy",
    "register_predicate",
]
