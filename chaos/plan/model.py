"""The typed form of a fault plan: what the parser produces and the runner consumes.

Everything here is frozen so that the runner, the journal and the report see
the same plan the validator checked; nothing downstream re-reads YAML or
re-checks a dict. Durations are already seconds (floats) or, for the ensemble's
zoo.cfg values, milliseconds (ints), named with the unit. Every step carries
the YAML path it came from (`steps[3]`, `steps[2].repeat.steps[0]`,
`steps[4].choice.steps[1][0]`) so journal records and errors point back into
the file. The runner appends the iteration for repeats
(`steps[2].repeat[1].steps[0]`) when it journals.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Union

__all__ = [
    "FrozenDict", "SelectorKind", "Role", "Selector", "Port", "Direction",
    "LinkSelector", "Ensemble", "InvariantSpec", "WaitCondition", "NodeState",
    "Wait", "Pick", "Kill", "Pause", "Resume", "Stop", "Restart", "ToxicAdd",
    "ToxicRemove", "PartitionKind", "PartitionSpec", "Partition", "Heal",
    "Sleep", "Repeat", "Choice", "Step", "ProcessStep", "Plan", "iter_steps",
    "INVARIANT_NAMES", "TOXIC_TYPES",
]

# Toxiproxy's toxic types and their attributes (name -> (kind, required)).
# kind "duration" is milliseconds in Toxiproxy's API; the plan also accepts
# `200ms`/`1s` strings there, converted to integer milliseconds.
TOXIC_TYPES: Mapping[str, Mapping[str, tuple[str, bool]]] = {
    "latency": {"latency": ("duration", False), "jitter": ("duration", False)},
    "down": {},
    "bandwidth": {"rate": ("int", True)},
    "slow_close": {"delay": ("duration", True)},
    "timeout": {"timeout": ("duration", True)},
    "reset_peer": {"timeout": ("duration", False)},
    "slicer": {"average_size": ("int", True), "size_variation": ("int", False),
               "delay": ("int", False)},
    "limit_data": {"bytes": ("int", True)},
}

INVARIANT_NAMES = ("single_leader", "convergence", "out_of_election_join",
                   "leader_validity", "no_committed_txn_lost")


class FrozenDict(Mapping[Any, Any]):
    """A read-only, hashable mapping, so that frozen dataclasses stay hashable."""

    __slots__ = ("_d", "_h")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._d = dict(*args, **kwargs)
        self._h: int | None = None

    def __getitem__(self, key: Any) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        if self._h is None:
            self._h = hash(frozenset(self._d.items()))
        return self._h

    def __repr__(self) -> str:
        return f"FrozenDict({self._d!r})"


# --------------------------------------------------------------------------- selectors

class SelectorKind(enum.Enum):
    ROLE = "role"
    SID = "sid"
    NAME = "name"


class Role(enum.Enum):
    """Role selectors. Singular ones pick one node with the run's seeded RNG."""

    LEADER = "leader"
    FOLLOWER = "follower"      # one follower, seeded pick
    FOLLOWERS = "followers"
    OBSERVER = "observer"      # one observer, seeded pick
    OBSERVERS = "observers"
    ALL = "all"                # every sid of the ensemble
    OTHERS = "others"          # every sid but the previous step's target
    ANY = "any"                # one live node, seeded pick (extension)


@dataclass(frozen=True, slots=True)
class Selector:
    """A node selector exactly as written: a role, a sid, or a name bound by `as:`."""

    kind: SelectorKind
    value: Union[Role, int, str]

    @classmethod
    def role(cls, role: Role | str) -> "Selector":
        return cls(SelectorKind.ROLE, Role(role))

    @classmethod
    def sid(cls, sid: int) -> "Selector":
        return cls(SelectorKind.SID, sid)

    @classmethod
    def name(cls, name: str) -> "Selector":
        return cls(SelectorKind.NAME, name)

    def __str__(self) -> str:
        return self.value.value if isinstance(self.value, Role) else str(self.value)

    def to_json(self) -> Any:
        return self.value.value if isinstance(self.value, Role) else self.value


class Port(enum.Enum):
    ELECTION = "election"
    QUORUM = "quorum"
    BOTH = "both"

    @property
    def ports(self) -> tuple[str, ...]:
        return ("election", "quorum") if self is Port.BOTH else (self.value,)


class Direction(enum.Enum):
    ONE = "one"     # only src -> dst
    BOTH = "both"   # src -> dst and dst -> src


@dataclass(frozen=True, slots=True)
class LinkSelector:
    """Which directed proxied links a toxic goes on: every (a, b) with a in src,
    b in dst, a != b, on the given ports; with direction both also (b, a)."""

    src: Selector
    dst: Selector
    port: Port = Port.ELECTION
    direction: Direction = Direction.BOTH

    def to_json(self) -> dict[str, Any]:
        return {"from": self.src.to_json(), "to": self.dst.to_json(),
                "port": self.port.value, "direction": self.direction.value}


# --------------------------------------------------------------------------- ensemble

@dataclass(frozen=True, slots=True)
class Ensemble:
    """Participants are sids 1..nodes, observers nodes+1..nodes+observers.
    `weights` holds every participant (default weight 1); `groups` is None for
    a plain majority quorum."""

    nodes: int = 3
    observers: int = 0
    weights: Mapping[int, int] = field(default_factory=FrozenDict)
    groups: tuple[tuple[int, ...], ...] | None = None
    tick_time_ms: int = 200
    init_limit: int = 10
    sync_limit: int = 5
    txn_interval_ms: int = 100
    protocol: str = "3.8"

    @property
    def participants(self) -> tuple[int, ...]:
        return tuple(range(1, self.nodes + 1))

    @property
    def observer_sids(self) -> tuple[int, ...]:
        return tuple(range(self.nodes + 1, self.nodes + self.observers + 1))

    @property
    def sids(self) -> tuple[int, ...]:
        return tuple(range(1, self.nodes + self.observers + 1))

    @property
    def voters(self) -> tuple[int, ...]:
        """Participants whose vote counts (weight > 0): the only possible leaders."""
        return tuple(s for s in self.participants if self.weight(s) > 0)

    @property
    def hierarchical(self) -> bool:
        return self.groups is not None

    def weight(self, sid: int) -> int:
        if sid not in self.participants:
            return 0
        return int(self.weights.get(sid, 1))

    def group_of(self, sid: int) -> int | None:
        """1-based group id as in zoo.cfg `group.G=`, None without groups."""
        for gid, members in enumerate(self.groups or (), start=1):
            if sid in members:
                return gid
        return None

    def is_observer(self, sid: int) -> bool:
        return sid in self.observer_sids

    def to_json(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "observers": self.observers,
                "weights": {str(k): v for k, v in sorted(self.weights.items())},
                "groups": [list(g) for g in self.groups] if self.groups else None,
                "tick_time_ms": self.tick_time_ms, "init_limit": self.init_limit,
                "sync_limit": self.sync_limit, "txn_interval_ms": self.txn_interval_ms,
                "protocol": self.protocol}


@dataclass(frozen=True, slots=True)
class InvariantSpec:
    """An invariant to check and its parameters; duration parameters are
    already float seconds under the same key (`convergence.within` -> 15.0)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=FrozenDict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}


# --------------------------------------------------------------------------- steps

class WaitCondition(enum.Enum):
    STABLE = "stable"    # every live node agrees on one leader, synced
    LEADER = "leader"    # some node is LEADING with a synced quorum
    JOINED = "joined"    # node(s) FOLLOWING/OBSERVING the current leader, synced
    STATE = "state"      # node(s) in `state`


class NodeState(enum.Enum):
    LOOKING = "looking"
    FOLLOWING = "following"
    LEADING = "leading"
    OBSERVING = "observing"


def _base_json(step: Any, kind: str) -> dict[str, Any]:
    return {"kind": kind, "path": step.path, "label": step.label}


@dataclass(frozen=True, slots=True)
class Wait:
    condition: WaitCondition
    node: Selector | None = None
    state: NodeState | None = None
    timeout_s: float = 30.0
    path: str = ""
    label: str = ""
    kind = "wait"

    def to_json(self) -> dict[str, Any]:
        return {**_base_json(self, self.kind), "for": self.condition.value,
                "node": self.node.to_json() if self.node else None,
                "state": self.state.value if self.state else None,
                "timeout_s": self.timeout_s}


@dataclass(frozen=True, slots=True)
class Kill:
    """SIGKILL the target node(s); `bind_as` names the resolved sids."""

    target: Selector
    bind_as: str | None = None
    path: str = ""
    label: str = ""
    kind = "kill"

    def to_json(self) -> dict[str, Any]:
        return {**_base_json(self, self.kind), "target": self.target.to_json(),
                "as": self.bind_as}


@dataclass(frozen=True, slots=True)
class Pause:
    """SIGSTOP."""

    target: Selector
    bind_as: str | None = None
    path: str = ""
    label: str = ""
    kind = "pause"

    def to_json(self) -> dict[str, Any]:
        return {**_base_json(self, self.kind), "target": self.target.to_json(),
                "as": self.bind_as}


@dataclass(frozen=True, slots=True)
class Resume:
    """SIGCONT."""

    target: Selector
    bind_as: str | None = None
    path: str = ""
    label: str = ""
    kind = "resume"

    def to_json(self) -> dict[str, Any]:
        return {**_base_json(self, self.kind), "target": self.target.to_json(),
                "as": self.bind_as}


@dataclass(frozen=True, slots=True)
class Stop:
    """SIGTERM, waiting for exit."""

    target: Selector
    bind_as: str | None = None
    path: str = ""
    label: str = ""
    kind = "stop"

    def to_json(self) -> dict[str, Any]:
        return {**_base_json(self, self.kind), "target": self.target.to_json(),
                "as": self.bind_as}


@dataclass(frozen=True, slots=True)
class Restart:
    """Start the target again (stopping it first if it still runs), same dataDir."""

    target: Selector
    bind_as: str | None = None
    path: str = ""
    label: str = ""
    kind = "restart"

    def to_json(self) -> dict[str, Any]:
        return {**_base_json(self, self.kind), "target": self.target.to_json(),
                "as": self.bind_as}


@dataclass(frozen=True, slots=True)
class Pick:
    """Resolve the target now and bind it to `bind_as`, touching nothing: names
    a node (the current leader, say) that later steps act on or wait for."""

    target: Selector
    bind_as: str | None = None
    path: str = ""
    label: str = ""
    kind = "pick"

    def to_json(self) -> dict[str, Any]:
        return {**_base_json(self, self.kind), "target": self.target.to_json(),
                "as": self.bind_as}


ProcessStep = Union[Kill, Pause, Resume, Stop, Restart]


@dataclass(frozen=True, slots=True)
class ToxicAdd:
    """One Toxiproxy toxic on every directed link the selector resolves to
    (`chaos.links` puts it on both streams that carry that direction).
    `attributes` are Toxiproxy's (ints; durations in ms)."""

    name: str
    type: str
    attributes: Mapping[str, int]
    toxicity: float = 1.0
    links: LinkSelector = field(default_factory=lambda: LinkSelector(
        Selector.role(Role.ALL), Selector.role(Role.ALL)))
    path: str = ""
    label: str = ""
    kind = "toxic"

    def to_json(self) -> dict[str, Any]:
        return {**_base_json(self, self.kind), "name": self.name, "type": self.type,
                "attributes": dict(self.attributes), "toxicity": self.toxicity,
                "links": self.links.to_json()}


@dataclass(frozen=True, slots=True)
class ToxicRemove:
    """Remove a named toxic from every link it was put on; name "all" removes all."""

    name: str
    path: str = ""
    label: str = ""
    kind = "untoxic"

    def to_json(self) -> dict[str, Any]:
        return {**_base_json(self, self.kind), "name": self.name}


class PartitionKind(enum.Enum):
    ISOLATE = "isolate"
    MAJORITY_MINORITY = "majority_minority"
    HALVES = "halves"
    BRIDGE = "bridge"
    MAJORITIES_RING = "majorities_ring"
    ONE_WAY = "one_way"
    GROUPS = "groups"


@dataclass(frozen=True, slots=True)
class PartitionSpec:
    """How to cut the network; compiled by `chaos.plan.partitions.compile_partition`.

    isolate: `target`; majority_minority: `leader_in` (minority|majority|None =
    random); one_way: `src` cannot reach `dst`; groups: explicit `groups`."""

    kind: PartitionKind
    target: Selector | None = None
    leader_in: str | None = None
    src: Selector | None = None
    dst: Selector | None = None
    groups: tuple[tuple[int, ...], ...] | None = None
    port: Port = Port.BOTH

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value,
                "target": self.target.to_json() if self.target else None,
                "leader_in": self.leader_in,
                "from": self.src.to_json() if self.src else None,
                "to": self.dst.to_json() if self.dst else None,
                "groups": [list(g) for g in self.groups] if self.groups else None,
                "port": self.port.value}


@dataclass(frozen=True, slots=True)
class Partition:
    spec: PartitionSpec
    bind_as: str | None = None   # the partition's name, for `heal: NAME`
    path: str = ""
    label: str = ""
    kind = "partition"

    def to_json(self) -> dict[str, Any]:
        return {**_base_json(self, self.kind), "spec": self.spec.to_json(),
                "as": self.bind_as}


@dataclass(frozen=True, slots=True)
class Heal:
    """Undo one named partition, or every partition when name is None."""

    name: str | None = None
    path: str = ""
    label: str = ""
    kind = "heal"

    def to_json(self) -> dict[str, Any]:
        return {**_base_json(self, self.kind), "name": self.name}


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float
    path: str = ""
    label: str = ""
    kind = "sleep"

    def to_json(self) -> dict[str, Any]:
        return {**_base_json(self, self.kind), "seconds": self.seconds}


@dataclass(frozen=True, slots=True)
class Repeat:
    times: int
    steps: tuple["Step", ...]
    path: str = ""
    label: str = ""
    kind = "repeat"

    def to_json(self) -> dict[str, Any]:
        return {**_base_json(self, self.kind), "times": self.times,
                "steps": [s.to_json() for s in self.steps]}


@dataclass(frozen=True, slots=True)
class Choice:
    """Run one branch, picked with the run's seeded RNG (journal the pick)."""

    branches: tuple[tuple["Step", ...], ...]
    path: str = ""
    label: str = ""
    kind = "choice"

    def to_json(self) -> dict[str, Any]:
        return {**_base_json(self, self.kind),
                "branches": [[s.to_json() for s in b] for b in self.branches]}


Step = Union[Wait, Pick, Kill, Pause, Resume, Stop, Restart, ToxicAdd, ToxicRemove,
             Partition, Heal, Sleep, Repeat, Choice]


def iter_steps(steps: tuple[Step, ...]) -> Iterator[Step]:
    """Every step, depth first, including those inside repeat/choice."""
    for step in steps:
        yield step
        if isinstance(step, Repeat):
            yield from iter_steps(step.steps)
        elif isinstance(step, Choice):
            for branch in step.branches:
                yield from iter_steps(branch)


# --------------------------------------------------------------------------- plan

@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    description: str
    seed: int | None
    time_limit_s: float
    ensemble: Ensemble
    invariants: tuple[InvariantSpec, ...]
    steps: tuple[Step, ...]
    source_path: str = ""

    def invariant(self, name: str) -> InvariantSpec | None:
        return next((i for i in self.invariants if i.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the journal's `plan` key."""
        return {"name": self.name, "description": self.description, "seed": self.seed,
                "time_limit_s": self.time_limit_s, "source_path": self.source_path,
                "ensemble": self.ensemble.to_json(),
                "invariants": [i.to_json() for i in self.invariants],
                "steps": [s.to_json() for s in self.steps]}
