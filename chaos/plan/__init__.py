"""The plan language: YAML fault plans parsed once into frozen, typed objects.

load_plan(path) -> Plan, or PlanError listing every issue (file:line:col path:
message). The runner resolves selectors with `resolve` and partitions with
`compile_partition` against what the cluster looks like at that moment.
Step kinds are the registry `STEP_TYPES` (kind -> class); see `chaos.plan.model`.
"""
from .durations import DurationError, format_duration, parse_duration, parse_duration_ms
from .loader import PlanError, PlanIssue
from .model import (
    INVARIANT_NAMES, NODE_STEP_KINDS, PLAN_FAULT_TYPES, PLAN_TOXIC_TYPES, STEP_KINDS, STEP_TYPES,
    Choice, Direction, Ensemble, FrozenDict, Heal, InvariantSpec, LinkSelector, NodeState,
    NodeStep, Partition, PartitionKind, PartitionSpec, Plan, Port, Repeat, Role, Selector,
    SelectorKind, Sleep, Step, ToxicAdd, ToxicRemove, Wait, WaitCondition, iter_steps, step_kind,
)
from .model import NEMESIS_FAULTS, Nemesis, Reboot, Restart, SilentDeath, Snapshot, Start
from .parse import Scope, StepContext, check_plan, load_plan, parse_plan
from .partitions import CompiledPartition, PartitionError, compile_partition, majority
from .schema import PLAN_SCHEMA, schema_json
from .selectors import ClusterView, SelectorError, resolve, resolve_links

__all__ = [
    "load_plan", "parse_plan", "check_plan", "PlanError", "PlanIssue",
    "schema_json", "PLAN_SCHEMA", "resolve", "resolve_links", "ClusterView", "SelectorError",
    "compile_partition", "CompiledPartition", "PartitionError", "majority",
    "parse_duration", "parse_duration_ms", "format_duration", "DurationError",
    "Plan", "Ensemble", "InvariantSpec", "Step", "STEP_TYPES", "STEP_KINDS", "step_kind",
    "StepContext", "Scope", "Wait", "NodeStep", "NODE_STEP_KINDS", "ToxicAdd", "ToxicRemove",
    "Partition", "PartitionSpec", "PartitionKind", "Heal", "Sleep", "Repeat", "Choice",
    "Selector", "SelectorKind", "Role", "LinkSelector", "Port", "Direction", "WaitCondition",
    "NodeState", "FrozenDict", "iter_steps", "INVARIANT_NAMES", "PLAN_TOXIC_TYPES",
    "PLAN_FAULT_TYPES", "Reboot", "Restart", "SilentDeath", "Start", "Snapshot", "Nemesis", "NEMESIS_FAULTS",
]
