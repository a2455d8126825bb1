"""The typed form of a fault plan: what the parser produces and the runner consumes.

Everything here is frozen so that the runner, the journal and the report see
the same plan the validator checked; nothing downstream re-reads YAML or
re-checks a dict. Durations are already seconds (floats) or, for the ensemble's
zoo.cfg values, milliseconds (ints), named with the unit. Every step carries
the YAML path it came from (`steps[3]`, `steps[2].repeat.steps[0]`,
`steps[4].choice.steps[1][0]`) so journal records and errors point back into
the file. The runner appends the iteration for repeats
(`steps[2].repeat[1].steps[0]`) when it journals.

Step kinds are a registry, STEP_TYPES (kind -> class, filled by `@step_kind`):
a kind's class holds its fields, its parsing, its schema and its description,
so adding a kind is one class here and one handler in `chaos.steps`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator, Mapping, TypeVar, Union

from chaos.invariants import INVARIANTS as _INVARIANTS
from chaos.toxiproxy.catalog import TOXIC_TYPES as SERVER_TOXIC_TYPES
from chaos.toxiproxy.catalog import AttributeSpec, Unit
from zkrules.quorum import QuorumHierarchical, QuorumMaj, QuorumVerifier

from .durations import DurationError, format_duration, parse_duration_ms

if TYPE_CHECKING:
    from .parse import StepContext

__all__ = [
    "FrozenDict", "SelectorKind", "Role", "Selector", "Port", "Direction",
    "LinkSelector", "Ensemble", "InvariantSpec", "WaitCondition", "NodeState",
    "Step", "STEP_TYPES", "STEP_KINDS", "step_kind", "Wait", "NodeStep", "NODE_STEP_KINDS",
    "ToxicAdd", "ToxicRemove", "PartitionKind", "PartitionSpec", "Partition", "Heal",
    "Sleep", "Repeat", "Choice", "Plan", "iter_steps", "INVARIANT_NAMES",
    "Restart", "Reboot", "SilentDeath", "Start", "Snapshot", "PowerLoss", "Nemesis", "NEMESIS_FAULTS",
    "PLAN_TOXIC_TYPES", "PLAN_FAULT_TYPES", "SERVER_ONLY_TOXICS", "DEFAULT_WAIT_TIMEOUT_S",
]

# The invariants' own registry is the list of names a plan may tune.
INVARIANT_NAMES: tuple[str, ...] = tuple(_INVARIANTS)


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
    no_txns: tuple[int, ...] = ()          # participants that propose no txn when they lead
    protocol: str = "3.8"
    start: tuple[int, ...] | None = None   # sids started at setup; None = every sid
    target: str | None = None              # what runs it (chaos.targets); the CLI's --target wins

    @property
    def initial(self) -> tuple[int, ...]:
        """The sids the runner starts before the first step; the others wait
        for a `start` step."""
        return self.sids if self.start is None else tuple(sorted(self.start))

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

    def txn_interval_of(self, sid: int) -> int:
        """ms between the txns ``sid`` proposes while it leads; 0: none (``no_txns``)."""
        return 0 if sid in self.no_txns else self.txn_interval_ms

    def is_observer(self, sid: int) -> bool:
        return sid in self.observer_sids

    def quorum(self) -> QuorumVerifier:
        """The ensemble's own quorum rule, as the nodes' zoo.cfg gives it:
        groups (hierarchical), weights alone (one weighted group), or a majority."""
        if self.groups is None and not self.weights:
            return QuorumMaj(self.participants, self.observer_sids)
        groups = dict(enumerate(self.groups or (self.participants,), start=1))
        return QuorumHierarchical(self.participants, groups,
                                  {s: self.weight(s) for s in self.participants},
                                  self.observer_sids)

    def is_quorum(self, sids: Iterable[int]) -> bool:
        return self.quorum().contains_quorum(sids)

    def to_json(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "observers": self.observers,
                "weights": {str(k): v for k, v in sorted(self.weights.items())},
                "groups": [list(g) for g in self.groups] if self.groups else None,
                "tick_time_ms": self.tick_time_ms, "init_limit": self.init_limit,
                "sync_limit": self.sync_limit, "txn_interval_ms": self.txn_interval_ms,
                **({"no_txns": list(self.no_txns)} if self.no_txns else {}),
                "protocol": self.protocol,
                "start": list(self.start) if self.start is not None else None,
                **({"target": self.target} if self.target else {})}


@dataclass(frozen=True, slots=True)
class InvariantSpec:
    """An invariant to check and its parameters; duration parameters are
    already float seconds under the same key (`convergence.within` -> 15.0)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=FrozenDict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}


# --------------------------------------------------------------------------- steps
#
# One class per step kind, registered under its YAML key by `@step_kind`. The
# class is the whole kind on the plan side: its fields, `parse` (the YAML value
# to an instance, through the parser's `StepContext`), `schema` (the JSON Schema
# of the value under its key), `describe` and `to_json`. STEP_KINDS, the
# schema's step definitions, the parser's dispatch and its `as:` rules are all
# read from STEP_TYPES; `chaos.steps` registers one handler per kind.

DEFAULT_WAIT_TIMEOUT_S = 30.0

_ROLE_NAMES = tuple(r.value for r in Role)

# References into the `$defs` of `chaos.plan.schema.PLAN_SCHEMA`.
_SELECTOR = {"$ref": "#/$defs/selector"}
_DURATION = {"$ref": "#/$defs/duration"}
_NAME = {"$ref": "#/$defs/name"}
_STEPS = {"$ref": "#/$defs/steps"}
_SID_GROUPS = {"$ref": "#/$defs/sid_groups"}


def _values(cls: type[enum.Enum]) -> list[Any]:
    return [m.value for m in cls]


def _enum(cls: Any, value: Any) -> Any:
    """cls(value), or None when the value is not one of it (the schema pass says why)."""
    try:
        return cls(value)
    except (ValueError, TypeError):
        return None


class Step:
    """What every step has: `kind` (its YAML key), `path` (where it sits in the
    plan), `label` (the plan's, else `describe()`), `to_json()` (the journal's
    form) and `describe()` (short text: `kill leader`, `repeat 3x`).

    A step class sets `schema` and, when it takes `as:`, `binds` (the
    namespace the name goes into: "nodes" for node selectors, "partitions"
    for `heal`) and a `bind_as` field. Its `parse` returns the step, or None
    once the problem is reported through `ctx.err` or left to the schema pass;
    when the plan gave no label it may leave `label` empty, and the parser
    fills in `describe()`.
    """

    __slots__ = ()

    kind: str
    path: str
    label: str
    binds: ClassVar[str | None] = None
    schema: ClassVar[Mapping[str, Any]]

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "Step | None":
        raise NotImplementedError

    @classmethod
    def bind_problem(cls, name: str) -> str | None:
        """Why `as: name` is refused on this kind, or None."""
        if name in _ROLE_NAMES:
            return f"'{name}' is a node selector; pick another name for as:"
        return None

    @classmethod
    def bodies(cls, value: Any, path: tuple) -> Iterator[tuple[Any, tuple]]:
        """The raw step lists nested in this kind's YAML value, with their paths,
        so that the parser sees every `as:` before it checks names in order."""
        return iter(())

    def children(self) -> tuple[tuple["Step", ...], ...]:
        """The step lists nested in this step (a repeat's body, a choice's branches)."""
        return ()

    def describe(self) -> str:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def _head(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "label": self.label}


_STEP_TYPES: dict[str, type[Step]] = {}
STEP_TYPES: Mapping[str, type[Step]] = MappingProxyType(_STEP_TYPES)

_S = TypeVar("_S", bound=type[Step])


def step_kind(*kinds: str) -> Callable[[_S], _S]:
    """Register a step class as the parser of `kinds`. A class serving several
    kinds has a `kind` field; a class serving one gets it as a class attribute."""

    def register(cls: _S) -> _S:
        has_field = "kind" in {f.name for f in fields(cls)}
        if not kinds or (len(kinds) > 1 and not has_field):
            raise TypeError(f"{cls.__name__}: one kind, or a `kind` field for several")
        if not isinstance(getattr(cls, "schema", None), Mapping):
            raise TypeError(f"{cls.__name__}: no `schema` for the value under its key")
        for kind in kinds:
            if kind in _STEP_TYPES:
                raise ValueError(f"step kind '{kind}' is already {_STEP_TYPES[kind].__name__}")
        for kind in kinds:
            _STEP_TYPES[kind] = cls
        if not has_field:
            cls.kind = kinds[0]
        return cls

    return register


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


_BARE_WAITS = ("stable", "leader")  # `wait: stable` without a mapping


@step_kind("wait")
@dataclass(frozen=True, slots=True)
class Wait(Step):
    condition: WaitCondition
    node: Selector | None = None
    state: NodeState | None = None
    timeout_s: float = DEFAULT_WAIT_TIMEOUT_S
    path: str = ""
    label: str = ""

    schema = {
        "anyOf": [
            {"type": "string", "enum": list(_BARE_WAITS)},
            {"type": "object",
             "properties": {"for": {"enum": _values(WaitCondition)},
                            "node": _SELECTOR,
                            "state": {"enum": _values(NodeState)},
                            "timeout": _DURATION},
             "required": ["for"], "additionalProperties": False},
        ],
        "x-expected": f"{', '.join(_BARE_WAITS)}, or "
                      f"{{for: {'|'.join(_values(WaitCondition))}, node, state, timeout}}",
    }

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "Wait | None":
        path = ctx.path
        default_timeout = min(DEFAULT_WAIT_TIMEOUT_S, ctx.time_limit_s)
        if isinstance(value, str):
            if value not in _BARE_WAITS:
                return None
            return cls(WaitCondition(value), timeout_s=default_timeout, path=ctx.step_path,
                       label=ctx.label)
        if not isinstance(value, dict) or value.get("for") not in _values(WaitCondition):
            return None
        cond = WaitCondition(value["for"])
        node = None
        if "node" in value:
            if cond in (WaitCondition.STABLE, WaitCondition.LEADER):
                ctx.err(path + ("node",), f"node: has no meaning with for: {cond.value}")
            else:
                node = ctx.selector(value["node"], path + ("node",))
        state = None
        if cond is WaitCondition.STATE:
            if "state" not in value:
                ctx.err(path, "wait for: state needs state: ("
                        + ", ".join(_values(NodeState)) + ")")
            else:
                state = _enum(NodeState, value["state"])
        elif "state" in value:
            ctx.err(path + ("state",), f"state: only goes with for: state, not for: {cond.value}")
        timeout = ctx.duration_s(value.get("timeout"), path + ("timeout",), default_timeout)
        if "timeout" in value:
            ctx.within_time_limit(timeout, path + ("timeout",), "timeout")
        if timeout <= 0 and "timeout" in value:
            ctx.err(path + ("timeout",), "timeout must be positive")
        return cls(cond, node=node, state=state, timeout_s=timeout, path=ctx.step_path,
                   label=ctx.label)

    def describe(self) -> str:
        return (f"wait {self.condition.value}" + (f" {self.node}" if self.node else "")
                + (f" {self.state.value}" if self.state else ""))

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "for": self.condition.value,
                "node": self.node.to_json() if self.node else None,
                "state": self.state.value if self.state else None,
                "timeout_s": self.timeout_s}


NODE_STEP_KINDS = ("pick", "kill", "pause", "resume", "stop", "restart")


def _node_target(value: Any, ctx: "StepContext") -> "Selector | None":
    """The node selector of a step that acts on nodes; binds its `as:` name."""
    target = ctx.selector(value, ctx.path)
    ctx.scope.has_target = True
    if ctx.bind_as:
        ctx.scope.bind(ctx.bind_as)
    return target


def _selector_or_node_mapping(key: str, key_schema: dict[str, Any], shape: str) -> dict[str, Any]:
    """Schema of a step written `kind: SEL` or `kind: {node: SEL, KEY: ...}`."""
    return {
        "anyOf": [_SELECTOR,
                  {"type": "object", "properties": {"node": _SELECTOR, key: key_schema},
                   "additionalProperties": False}],   # `node` missing: parse says so
        "x-expected": _SELECTOR_EXPECTED + f", or {{node: SELECTOR, {key}: {shape}}}",
    }


def _mapped_node_target(value: dict[str, Any], ctx: "StepContext", missing: str) -> "Selector | None":
    """The `node:` of a step's mapping form (``missing`` when it has none); binds `as:`."""
    if "node" not in value:
        ctx.err(ctx.path, missing)
    target = ctx.selector(value.get("node"), ctx.path + ("node",)) if "node" in value else None
    ctx.scope.has_target = True
    if ctx.bind_as:
        ctx.scope.bind(ctx.bind_as)
    return target


@step_kind(*(k for k in NODE_STEP_KINDS if k != "restart"))  # restart: `Restart` below
@dataclass(frozen=True, slots=True)
class NodeStep(Step):
    """A step on the node(s) a selector resolves to; `bind_as` names the sids.

    pick: bind only, touching nothing (names the current leader, say, for
    later steps); kill: SIGKILL; pause: SIGSTOP; resume: SIGCONT; stop:
    SIGTERM, waiting for exit; restart: start again with the same dataDir,
    stopping it first if it still runs."""

    kind: str
    target: Selector
    bind_as: str | None = None
    path: str = ""
    label: str = ""

    binds = "nodes"
    schema = _SELECTOR

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "NodeStep | None":
        if kind == "pick" and not ctx.bind_as:
            ctx.err(ctx.path, "pick: only names nodes, so it needs as: NAME")
        target = _node_target(value, ctx)
        return None if target is None else cls(kind, target, ctx.bind_as, ctx.step_path, ctx.label)

    def describe(self) -> str:
        return f"{self.kind} {self.target}"

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "target": self.target.to_json(), "as": self.bind_as}


_SELECTOR_EXPECTED = ("a node selector (" + ", ".join(_ROLE_NAMES)
                      + ", a sid, or a name bound by as:)")


@step_kind("restart")
@dataclass(frozen=True, slots=True)
class Restart(NodeStep):
    """`restart: SEL`, or `restart: {node: SEL, from: SNAPSHOT}`: the NodeStep
    restart, and with `from` the node's dataDir is first replaced by the copy
    a `snapshot` step took, so it comes back having missed what happened
    since (an older epoch, fewer txns). `from` names one node's copy, so its
    `node` must resolve to that node when the step runs."""

    snapshot: str | None = None

    schema = _selector_or_node_mapping("from", _NAME, "SNAPSHOT")

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "Restart | None":
        if not isinstance(value, dict):
            return super(Restart, cls).parse(kind, value, ctx)  # type: ignore[return-value]
        target = _mapped_node_target(value, ctx, "restart {from: ...} needs node: the node to restart")
        source = value.get("from")
        if isinstance(source, str) and source not in ctx.scope.snapshots:
            ctx.err(ctx.path + ("from",), f"restarting from snapshot '{source}' that no earlier "
                    "snapshot step takes" + ctx.suggest(source, ctx.scope.snapshots))
        if target is None or (source is not None and not isinstance(source, str)):
            return None
        return cls(kind, target, ctx.bind_as, ctx.step_path, ctx.label, snapshot=source)

    def describe(self) -> str:
        return f"restart {self.target}" + (f" from {self.snapshot}" if self.snapshot else "")

    def to_json(self) -> dict[str, Any]:
        out = NodeStep.to_json(self)
        if self.snapshot is not None:
            out["from"] = self.snapshot
        return out


# Toxic types a plan can name: the server's (chaos.toxiproxy.catalog, the one
# table of Toxiproxy 2.12's types and attributes) but for SERVER_ONLY_TOXICS,
# plus PLAN_FAULT_TYPES, faults the orchestrator makes itself with a toxic's
# links and undo. `down` disables the proxies of its links (Toxiproxy's
# `enabled: false`: refused and cut connections) and enables them again on
# untoxic; the server has no such toxic and answers 400 to one.
PLAN_FAULT_TYPES: frozenset[str] = frozenset({"down"})
SERVER_ONLY_TOXICS: frozenset[str] = frozenset({"noop"})  # a fault that does nothing
PLAN_TOXIC_TYPES: Mapping[str, tuple[AttributeSpec, ...]] = MappingProxyType(dict(sorted({
    **{name: t.attributes for name, t in SERVER_TOXIC_TYPES.items()
       if name not in SERVER_ONLY_TOXICS},
    **{name: () for name in PLAN_FAULT_TYPES},
}.items())))
assert not PLAN_FAULT_TYPES & set(SERVER_TOXIC_TYPES), "a plan fault shadows a server toxic"


@step_kind("toxic")
@dataclass(frozen=True, slots=True)
class ToxicAdd(Step):
    """One toxic on every directed link the selector resolves to (`chaos.links`
    puts it on both streams that carry that direction). `attributes` are
    Toxiproxy's (ints; durations in ms). A `type` in PLAN_FAULT_TYPES is not a
    server toxic (`plan_fault`): the runner makes that fault itself."""

    name: str
    type: str
    attributes: Mapping[str, int]
    toxicity: float = 1.0
    links: LinkSelector = field(default_factory=lambda: LinkSelector(
        Selector.role(Role.ALL), Selector.role(Role.ALL)))
    path: str = ""
    label: str = ""

    schema = {
        "type": "object",
        "properties": {
            "name": _NAME,
            "type": {"enum": list(PLAN_TOXIC_TYPES)},
            "attributes": {"type": "object",
                           "additionalProperties": {
                               "anyOf": [{"type": "integer"}, _DURATION],
                               "x-expected": "a whole number or a duration like 200ms"}},
            "toxicity": {"type": "number", "minimum": 0, "maximum": 1},
            "links": {"type": "object",
                      "properties": {"from": _SELECTOR, "to": _SELECTOR,
                                     "port": {"enum": _values(Port)},
                                     "direction": {"enum": _values(Direction)}},
                      "additionalProperties": False},
        },
        "required": ["type"], "additionalProperties": False,
    }

    @property
    def plan_fault(self) -> bool:
        return self.type in PLAN_FAULT_TYPES

    @classmethod
    def parse(cls, kind: str, t: Any, ctx: "StepContext") -> "ToxicAdd | None":
        if not isinstance(t, dict):
            return None
        path = ctx.path
        ttype = t.get("type")
        if not isinstance(ttype, str) or ttype not in PLAN_TOXIC_TYPES:
            if isinstance(ttype, str):
                ctx.err(path + ("type",), f"unknown toxic type '{ttype}'"
                        + (ctx.suggest(ttype, PLAN_TOXIC_TYPES)
                           or f"; expected one of {', '.join(PLAN_TOXIC_TYPES)}"))
            return None
        spec = {a.name: a for a in PLAN_TOXIC_TYPES[ttype]}
        attrs: dict[str, int] = {}
        raw_attrs = t.get("attributes") if isinstance(t.get("attributes"), dict) else {}
        for key, val in raw_attrs.items():
            ap = path + ("attributes", key)
            if key not in spec:
                ctx.err(ap, f"unknown attribute '{key}' for a {ttype} toxic"
                        + (ctx.suggest(key, spec)
                           or (f"; it takes {', '.join(spec)}" if spec else "; it takes none")))
                continue
            if spec[key].unit is Unit.MS:  # the plan writes these as durations
                try:
                    attrs[key] = parse_duration_ms(val)
                except DurationError as exc:
                    ctx.err(ap, str(exc))
            elif isinstance(val, int) and not isinstance(val, bool) and val >= 0:
                attrs[key] = val
            else:
                ctx.err(ap, f"expected a whole number >= 0, got {ctx.kind_of(val)}")
        for a in spec.values():
            if a.required and a.name not in raw_attrs:
                ctx.err(path + ("attributes",) if "attributes" in t else path,
                        f"a {ttype} toxic needs attribute '{a.name}'")
        name = t.get("name")
        if isinstance(name, str):
            if name == "all":
                ctx.err(path + ("name",), "'all' is reserved (untoxic: all); pick another name")
        else:
            name = f"_{ttype}_{ctx.next_number('toxic')}"
        ctx.scope.toxics.add(name)
        raw_links = t.get("links") if isinstance(t.get("links"), dict) else {}
        lp = path + ("links",)
        src = ctx.selector(raw_links.get("from", "all"), lp + ("from",))
        dst = ctx.selector(raw_links.get("to", "all"), lp + ("to",))
        toxicity = t.get("toxicity", 1.0)
        if not isinstance(toxicity, (int, float)) or isinstance(toxicity, bool):
            toxicity = 1.0  # the schema pass says why
        elif ttype in PLAN_FAULT_TYPES and toxicity != 1:
            ctx.err(path + ("toxicity",), f"a {ttype} fault applies to every connection; "
                    f"toxicity must be 1 or left out, got {toxicity:g}")
        port = _enum(Port, raw_links.get("port", "election"))
        direction = _enum(Direction, raw_links.get("direction", "both"))
        if src is None or dst is None or name == "all" or port is None or direction is None:
            return None
        return cls(name=name, type=ttype, attributes=FrozenDict(attrs),
                   toxicity=float(toxicity), links=LinkSelector(src, dst, port, direction),
                   path=ctx.step_path, label=ctx.label)

    def describe(self) -> str:
        return f"toxic {self.type} {self.links.src}->{self.links.dst}"

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "name": self.name, "type": self.type,
                "attributes": dict(self.attributes), "toxicity": self.toxicity,
                "links": self.links.to_json()}


@step_kind("untoxic")
@dataclass(frozen=True, slots=True)
class ToxicRemove(Step):
    """Remove a named toxic from every link it was put on; name "all" removes all."""

    name: str
    path: str = ""
    label: str = ""

    schema = _NAME

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "ToxicRemove | None":
        if not isinstance(value, str):
            return None
        toxics = ctx.scope.toxics
        if value != "all" and value not in toxics:
            ctx.err(ctx.path, f"removing toxic '{value}' that no earlier step adds"
                    + ctx.suggest(value, toxics))
        toxics.discard(value)
        if value == "all":
            toxics.clear()
        return cls(name=value, path=ctx.step_path, label=ctx.label)

    def describe(self) -> str:
        return f"untoxic {self.name}"

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "name": self.name}


class PartitionKind(enum.Enum):
    ISOLATE = "isolate"
    MAJORITY_MINORITY = "majority_minority"
    HALVES = "halves"
    BRIDGE = "bridge"
    MAJORITIES_RING = "majorities_ring"
    ONE_WAY = "one_way"
    GROUPS = "groups"


# Shapes written as their own key (`isolate: SEL`), not only as `kind:`.
_SHAPE_KEYS = ("isolate", "one_way", "groups")
_LEADER_IN = ("minority", "majority")


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


@step_kind("partition")
@dataclass(frozen=True, slots=True)
class Partition(Step):
    spec: PartitionSpec
    bind_as: str | None = None   # the partition's name, for `heal: NAME`
    path: str = ""
    label: str = ""

    binds = "partitions"
    schema = {
        "type": "object",
        "properties": {
            "isolate": _SELECTOR,
            "kind": {"enum": _values(PartitionKind)},
            "leader_in": {"enum": list(_LEADER_IN)},
            "one_way": {"type": "object", "properties": {"from": _SELECTOR, "to": _SELECTOR},
                        "required": ["from", "to"], "additionalProperties": False},
            "groups": _SID_GROUPS,
            "port": {"enum": _values(Port)},
        },
        "additionalProperties": False,
    }

    @classmethod
    def bind_problem(cls, name: str) -> str | None:
        if name == "all":
            return "'all' is reserved (heal: all); pick another name for as:"
        return Step.bind_problem(name)  # zero-argument super() fails in slotted dataclasses

    @classmethod
    def parse(cls, kind: str, p: Any, ctx: "StepContext") -> "Partition | None":
        if not isinstance(p, dict):
            return None
        path = ctx.path
        shapes = [k for k in _SHAPE_KEYS if k in p]
        if len(shapes) > 1:
            ctx.err(path + (shapes[1],), f"a partition has one shape, found {' and '.join(shapes)}")
            return None
        kind_name = p.get("kind")
        if shapes:
            if kind_name is not None and kind_name != shapes[0]:
                ctx.err(path + ("kind",), f"kind: {kind_name} contradicts {shapes[0]}:")
                return None
            kind_name = shapes[0]
        if kind_name is None:
            others = [k for k in _values(PartitionKind) if k not in _SHAPE_KEYS]
            ctx.err(path, "a partition needs " + ", ".join(f"{k}:" for k in _SHAPE_KEYS)
                    + f", or kind: ({', '.join(others)})")
            return None
        pkind = _enum(PartitionKind, kind_name)
        if pkind is None:
            return None
        if pkind.value in _SHAPE_KEYS and pkind.value not in p:
            ctx.err(path + ("kind",), f"kind: {pkind.value} needs {pkind.value}: too")
            return None
        if "leader_in" in p and pkind is not PartitionKind.MAJORITY_MINORITY:
            ctx.err(path + ("leader_in",), "leader_in: only goes with kind: majority_minority")
        n = len(ctx.ensemble.sids)
        if pkind in (PartitionKind.MAJORITY_MINORITY, PartitionKind.BRIDGE,
                     PartitionKind.MAJORITIES_RING) and n < 3:
            ctx.err(path + ("kind",), f"{pkind.value} needs at least 3 nodes, the ensemble has {n}")
        if pkind is PartitionKind.HALVES and n < 2:
            ctx.err(path + ("kind",), f"halves needs at least 2 nodes, the ensemble has {n}")
        target = src = dst = None
        groups = None
        ok = True
        if pkind is PartitionKind.ISOLATE:
            target = ctx.selector(p["isolate"], path + ("isolate",))
            ok = target is not None
        elif pkind is PartitionKind.ONE_WAY:
            ow = p["one_way"] if isinstance(p["one_way"], dict) else {}
            src = ctx.selector(ow.get("from"), path + ("one_way", "from"))
            dst = ctx.selector(ow.get("to"), path + ("one_way", "to"))
            ok = src is not None and dst is not None
        elif pkind is PartitionKind.GROUPS:
            seen: dict[int, int] = {}
            built = []
            for gi, g in enumerate(p["groups"] if isinstance(p["groups"], list) else []):
                members = []
                for mi, sid in enumerate(g if isinstance(g, list) else []):
                    mp = path + ("groups", gi, mi)
                    if isinstance(sid, bool) or not isinstance(sid, int):
                        continue
                    if not 1 <= sid <= n:
                        ctx.err(mp, f"sid {sid} out of range 1..{n}")
                        ok = False
                    elif sid in seen:
                        ctx.err(mp, f"sid {sid} is in partition groups "
                                    f"{seen[sid] + 1} and {gi + 1}")
                        ok = False
                    else:
                        seen[sid] = gi
                        members.append(sid)
                built.append(tuple(members))
            groups = tuple(built)
        if ctx.bind_as:
            ctx.scope.partitions.add(ctx.bind_as)
        port = _enum(Port, p.get("port", "both"))
        leader_in = p.get("leader_in")
        if not ok or port is None or leader_in not in (None, *_LEADER_IN):
            return None
        spec = PartitionSpec(kind=pkind, target=target, leader_in=leader_in,
                             src=src, dst=dst, groups=groups, port=port)
        return cls(spec=spec, bind_as=ctx.bind_as, path=ctx.step_path, label=ctx.label)

    def describe(self) -> str:
        return f"partition {self.spec.kind.value}" + (f" {self.spec.target}"
                                                       if self.spec.target else "")

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "spec": self.spec.to_json(), "as": self.bind_as}


@step_kind("heal")
@dataclass(frozen=True, slots=True)
class Heal(Step):
    """Undo one named partition, or every partition when name is None."""

    name: str | None = None
    path: str = ""
    label: str = ""

    schema = _NAME

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "Heal | None":
        if not isinstance(value, str):
            return None
        if value != "all" and value not in ctx.scope.partitions:
            later = ctx.bound_later("partitions", value)
            ctx.err(ctx.path, f"healing partition '{value}' that no earlier step names"
                    + (f" (it is named only later, at {later})" if later else
                       ctx.suggest(value, ctx.scope.partitions)))
        return cls(name=None if value == "all" else value, path=ctx.step_path, label=ctx.label)

    def describe(self) -> str:
        return f"heal {self.name or 'all'}"

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "name": self.name}


@step_kind("sleep")
@dataclass(frozen=True, slots=True)
class Sleep(Step):
    seconds: float
    path: str = ""
    label: str = ""

    schema = _DURATION

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "Sleep":
        seconds = ctx.duration_s(value, ctx.path, 0.0)
        ctx.within_time_limit(seconds, ctx.path, "sleep")
        # The default label keeps the plan's own words (`sleep 1.5s`, not 1500ms).
        return cls(seconds=seconds, path=ctx.step_path, label=ctx.label or f"sleep {value}")

    def describe(self) -> str:
        return f"sleep {format_duration(self.seconds)}"

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "seconds": self.seconds}


@step_kind("repeat")
@dataclass(frozen=True, slots=True)
class Repeat(Step):
    times: int
    steps: tuple[Step, ...]
    path: str = ""
    label: str = ""

    schema = {
        "type": "object",
        "properties": {"times": {"type": "integer", "minimum": 1},
                       "steps": {**_STEPS, "minItems": 1}},
        "required": ["times", "steps"], "additionalProperties": False,
    }

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "Repeat | None":
        if not isinstance(value, dict):
            return None
        times = value.get("times") if isinstance(value.get("times"), int) else 1
        body = ctx.parse_steps(value.get("steps"), ctx.path + ("steps",))
        return cls(times=times, steps=body, path=ctx.step_path, label=ctx.label)

    @classmethod
    def bodies(cls, value: Any, path: tuple) -> Iterator[tuple[Any, tuple]]:
        if isinstance(value, dict):
            yield value.get("steps"), path + ("steps",)

    def children(self) -> tuple[tuple[Step, ...], ...]:
        return (self.steps,)

    def describe(self) -> str:
        return f"repeat {self.times}x"

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "times": self.times, "steps": [s.to_json() for s in self.steps]}


@step_kind("choice")
@dataclass(frozen=True, slots=True)
class Choice(Step):
    """Run one branch, picked with the run's seeded RNG (journal the pick)."""

    branches: tuple[tuple[Step, ...], ...]
    path: str = ""
    label: str = ""

    schema = {
        "type": "object",
        "properties": {"steps": {"type": "array", "minItems": 1,
                                 "items": {**_STEPS, "minItems": 1}}},
        "required": ["steps"], "additionalProperties": False,
    }

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "Choice | None":
        if not isinstance(value, dict) or not isinstance(value.get("steps"), list):
            return None
        branches, scopes = [], []
        for bi, branch in enumerate(value["steps"]):
            scope = ctx.scope.copy()
            branches.append(ctx.parse_steps(branch, ctx.path + ("steps", bi), scope))
            scopes.append(scope)
        ctx.scope.join(scopes, ctx.step_path)
        return cls(branches=tuple(branches), path=ctx.step_path, label=ctx.label)

    @classmethod
    def bodies(cls, value: Any, path: tuple) -> Iterator[tuple[Any, tuple]]:
        if isinstance(value, dict) and isinstance(value.get("steps"), list):
            for bi, branch in enumerate(value["steps"]):
                yield branch, path + ("steps", bi)

    def children(self) -> tuple[tuple[Step, ...], ...]:
        return self.branches

    def describe(self) -> str:
        return f"choice of {len(self.branches)}"

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "branches": [[s.to_json() for s in b] for b in self.branches]}


# --------------------------------------------------------------------------- hunting
#
# Kinds for the schedules ZooKeeper's election bugs needed (issue 8): a peer
# that dies without a FIN, a node started late, a node brought back from an
# older copy of its dataDir, and a seeded generator of faults.


@step_kind("silent_death")
@dataclass(frozen=True, slots=True)
class SilentDeath(Step):
    """A peer vanishes without a FIN or RST reaching anyone: the process is
    frozen and every link of the node (both directions, both ports) is
    black-holed with Toxiproxy's timeout-0 toxic, which drops bytes and keeps
    connections open (killing it instead would send FINs that the proxy
    passes on as closes). Its peers keep stale connections to it. `heal`
    (its `as:` name, or all) ends it: the process is killed, then the links
    are lifted, and only then do the peers see the connections close. The
    node stays down until a `restart` or `start`. `as:` names the node (for
    `restart`) and the fault (for `heal`)."""

    target: Selector
    bind_as: str | None = None
    path: str = ""
    label: str = ""

    binds = "nodes"
    schema = _SELECTOR

    @classmethod
    def bind_problem(cls, name: str) -> str | None:
        if name == "all":
            return "'all' is reserved (heal: all); pick another name for as:"
        return Step.bind_problem(name)

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "SilentDeath | None":
        target = _node_target(value, ctx)
        if ctx.bind_as:
            ctx.scope.partitions.add(ctx.bind_as)  # `heal: NAME` ends it
        return None if target is None else cls(target, ctx.bind_as, ctx.step_path, ctx.label)

    def describe(self) -> str:
        return f"silent_death {self.target}"

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "target": self.target.to_json(), "as": self.bind_as}


@step_kind("reboot")
@dataclass(frozen=True, slots=True)
class Reboot(Step):
    """`reboot: SEL` or `reboot: {node: SEL, down: 2s}`: the node's host
    crashes and comes back. Its wire is cut below the proxy (nftables drops
    every packet of it, `chaos.wirecut`), the process is SIGKILLed behind the
    cut, so no FIN or RST reaches anyone, and after `down` (default 1s) the
    wire is restored and the node starts again with its dataDir. Peers'
    connections to the old process stay half-open until they write into one
    (ZooKeeper-453: a peer that kept such a connection never called the
    rebooted node back). Needs nftables and root. `as:` names the nodes."""

    target: Selector
    down_s: float = 1.0
    bind_as: str | None = None
    path: str = ""
    label: str = ""

    binds = "nodes"
    schema = _selector_or_node_mapping("down", _DURATION, "DURATION")

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "Reboot | None":
        if not isinstance(value, dict):
            target = _node_target(value, ctx)
            return None if target is None else cls(target, 1.0, ctx.bind_as, ctx.step_path, ctx.label)
        target = _mapped_node_target(value, ctx, "reboot {down: ...} needs node: the node whose host crashes")
        down = ctx.duration_s(value.get("down"), ctx.path + ("down",), 1.0)
        if "down" in value:
            ctx.within_time_limit(down, ctx.path + ("down",), "reboot down time")
            if down <= 0:
                ctx.err(ctx.path + ("down",), "down must be positive: the host is off for a while")
        if target is None:
            return None
        return cls(target, down, ctx.bind_as, ctx.step_path, ctx.label)

    def describe(self) -> str:
        return f"reboot {self.target} (down {format_duration(self.down_s)})"

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "target": self.target.to_json(), "down_s": self.down_s, "as": self.bind_as}


@step_kind("start")
@dataclass(frozen=True, slots=True)
class Start(Step):
    """Start node(s) that are not running: one the ensemble's `start:` left
    out, or one killed or stopped earlier, with its dataDir as it is. Unlike
    `restart` it refuses a running node, so a plan says which it means."""

    target: Selector
    bind_as: str | None = None
    path: str = ""
    label: str = ""

    binds = "nodes"
    schema = _SELECTOR

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "Start | None":
        target = _node_target(value, ctx)
        return None if target is None else cls(target, ctx.bind_as, ctx.step_path, ctx.label)

    def describe(self) -> str:
        return f"start {self.target}"

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "target": self.target.to_json(), "as": self.bind_as}


@step_kind("snapshot")
@dataclass(frozen=True, slots=True)
class Snapshot(Step):
    """`snapshot: {node: SEL, as: NAME}`: copy a stopped node's dataDir (its
    epoch files and txn log, not its event log) under NAME, for a later
    `restart: {node, from: NAME}`. The step fails if the node is running: a
    live node's files are mid-write. Taking NAME again replaces the copy."""

    node: Selector
    name: str
    path: str = ""
    label: str = ""

    schema = {"type": "object", "properties": {"node": _SELECTOR, "as": _NAME},
              "required": ["node", "as"], "additionalProperties": False}

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "Snapshot | None":
        if not isinstance(value, dict):
            return None
        node = ctx.selector(value.get("node"), ctx.path + ("node",)) if "node" in value else None
        name = value.get("as")
        if isinstance(name, str):
            ctx.scope.snapshots.add(name)
        if node is None or not isinstance(name, str):
            return None
        return cls(node, name, ctx.step_path, ctx.label)

    def describe(self) -> str:
        return f"snapshot {self.node} as {self.name}"

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "node": self.node.to_json(), "as": self.name}


@step_kind("power_loss")
@dataclass(frozen=True, slots=True)
class PowerLoss(Step):
    """`power_loss: SEL` or `power_loss: [SEL, ...]`: the selected nodes lose
    power at once. Each process is SIGKILLed (a kill keeps the kernel's page
    cache, so alone it loses nothing the node wrote), then every write to its
    `dataDir/version-2` not yet fsync'ed is dropped (`chaos.lazyfs`): the disk
    holds what a power cut leaves. The nodes stay down until `restart` or
    `start`. A plan with this step has its nodes' `version-2` directories on
    the lazy filesystem for the whole run. `as:` names the nodes."""

    targets: tuple[Selector, ...]
    bind_as: str | None = None
    path: str = ""
    label: str = ""

    binds = "nodes"
    schema = {
        "anyOf": [_SELECTOR, {"type": "array", "minItems": 1, "items": _SELECTOR}],
        "x-expected": _SELECTOR_EXPECTED + ", or a non-empty list of them",
    }

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "PowerLoss | None":
        if isinstance(value, list):
            if not value:
                ctx.err(ctx.path, "power_loss: [] names no node; give a selector or a non-empty list")
            targets = [ctx.selector(v, ctx.path + (i,)) for i, v in enumerate(value)]
        else:
            targets = [ctx.selector(value, ctx.path)]
        ctx.scope.has_target = True
        if ctx.bind_as:
            ctx.scope.bind(ctx.bind_as)
        if not targets or any(t is None for t in targets):
            return None
        return cls(tuple(targets), ctx.bind_as, ctx.step_path, ctx.label)  # type: ignore[arg-type]

    def describe(self) -> str:
        return "power_loss " + ", ".join(str(t) for t in self.targets)

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "targets": [t.to_json() for t in self.targets], "as": self.bind_as}


# Malformed election frames `inject` can send, each a way a receiver must
# survive (ZK-3769: a short notification killed 3.6's receiver thread).
INJECT_FRAMES: dict[str, str] = {
    "short": "a 20-byte notification (a receiver needs at least 28)",
    "bad_state": "a 40-byte notification with server state code 7",
    "config_overflow": "a version-2 notification whose configLength runs past the frame",
    "random": "64 seeded random bytes",
    "zero_length": "a frame header of length 0 (the receiver must drop the connection)",
    "oversize": "a frame header above PACKETMAXSIZE, 524288 (the receiver must drop the connection)",
}
_DEFAULT_INJECT = ("short", "bad_state", "config_overflow", "random")


@step_kind("inject")
@dataclass(frozen=True, slots=True)
class Inject(Step):
    """`inject: {node: SEL, frames: [short, ...], from: SID}`: connect to each
    selected node's election port as peer `from` (default: an unknown sid
    above every member, so no real link is replaced) and send a handshake
    followed by malformed frames, then hang up. A correct receiver logs them
    and goes on; one that dies on them goes deaf, and the next election
    shows it. Bad input on the wire must never take a peer down."""

    target: Selector
    frames: tuple[str, ...] = _DEFAULT_INJECT
    sender: int | None = None
    path: str = ""
    label: str = ""

    schema = {"type": "object", "properties": {
        "node": _SELECTOR,
        "frames": {"type": "array", "minItems": 1, "items": {"enum": list(INJECT_FRAMES)}},
        "from": {"type": "integer", "minimum": 0}},
        "required": ["node"], "additionalProperties": False}

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "Inject | None":
        if not isinstance(value, dict):
            return None
        node = ctx.selector(value.get("node"), ctx.path + ("node",)) if "node" in value else None
        frames = value.get("frames", list(_DEFAULT_INJECT))
        ok = isinstance(frames, list) and bool(frames) and all(f in INJECT_FRAMES for f in frames)
        sender = value.get("from")
        if sender is not None and (not isinstance(sender, int) or isinstance(sender, bool) or sender < 0):
            return None
        if node is None or not ok:
            return None
        return cls(node, tuple(frames), sender, ctx.step_path, ctx.label)

    def describe(self) -> str:
        return f"inject {', '.join(self.frames)} into {self.target}"

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "node": self.target.to_json(), "frames": list(self.frames), "from": self.sender}


# What a nemesis may do; each is undone by the nemesis itself before it ends.
NEMESIS_FAULTS: tuple[str, ...] = ("kill", "pause", "restart", "partition", "latency",
                                   "reset_peer", "silent_death")
_DEFAULT_INTERVAL_S = (1.0, 5.0)
_RANGE_SEP = ".."


@step_kind("nemesis")
@dataclass(frozen=True, slots=True)
class Nemesis(Step):
    """A seeded generator of faults for `duration`: every `interval` (drawn
    from the range a..b) it applies one of `faults` or undoes one it applied,
    never impairing more than a minority of the voters by the ensemble's own
    quorum rule, and it undoes all of them before the step ends. Each action
    is journaled as a child step (`steps[i].nemesis[k]`) of the plain kind it
    equals, so replay and a plan written from the run redo it exactly. The
    generator is `chaos.nemesis`; the handler `chaos.steps.nemesis`."""

    duration_s: float
    faults: tuple[str, ...]
    interval_s: tuple[float, float] = _DEFAULT_INTERVAL_S
    path: str = ""
    label: str = ""

    schema = {
        "type": "object",
        "properties": {
            "duration": _DURATION,
            "faults": {"type": "array", "minItems": 1,
                       "items": {"enum": list(NEMESIS_FAULTS)}},
            "interval": {"anyOf": [_DURATION, {"type": "string", "pattern": r"\.\."}],
                         "x-expected": "a duration, or a range of durations like 1s..5s"},
        },
        "required": ["duration", "faults"], "additionalProperties": False,
    }

    @classmethod
    def parse(cls, kind: str, value: Any, ctx: "StepContext") -> "Nemesis | None":
        if not isinstance(value, dict):
            return None
        path = ctx.path
        duration = ctx.duration_s(value.get("duration"), path + ("duration",), 0.0)
        if "duration" in value:
            ctx.within_time_limit(duration, path + ("duration",), "nemesis duration")
            if duration <= 0:
                ctx.err(path + ("duration",), "duration must be positive")
        faults: list[str] = []
        for i, f in enumerate(value.get("faults") if isinstance(value.get("faults"), list) else []):
            if f in faults:
                ctx.err(path + ("faults", i), f"fault '{f}' is listed twice")
            elif isinstance(f, str) and f in NEMESIS_FAULTS:
                faults.append(f)
        interval = cls._interval(value.get("interval"), path + ("interval",), ctx)
        if interval is not None and duration > 0 and interval[0] > duration:
            ctx.err(path + ("interval",), f"the shortest interval {format_duration(interval[0])} "
                    f"is longer than the duration {format_duration(duration)}: nothing would happen")
        ens = ctx.ensemble
        voters = ens.voters
        try:
            tolerant = [v for v in voters if ens.is_quorum(set(voters) - {v})]
        except ValueError:
            tolerant = [v for v in voters]  # an inconsistent ensemble is reported there
        if not tolerant:
            ctx.err(path, f"the ensemble's {len(voters)} voter(s) cannot lose any one and keep a "
                    "quorum, so a nemesis could impair nothing; it needs at least 3 voters")
        if not faults or interval is None or duration <= 0:
            return None
        return cls(duration, tuple(faults), interval, ctx.step_path, ctx.label)

    @staticmethod
    def _interval(raw: Any, path: tuple, ctx: "StepContext") -> tuple[float, float] | None:
        if raw is None:
            return _DEFAULT_INTERVAL_S
        if isinstance(raw, str) and _RANGE_SEP in raw:
            lo_s, _, hi_s = raw.partition(_RANGE_SEP)
            lo = ctx.duration_s(lo_s.strip(), path, -1.0)
            hi = ctx.duration_s(hi_s.strip(), path, -1.0)
            if lo < 0 or hi < 0:
                return None
        else:
            lo = hi = ctx.duration_s(raw, path, -1.0)
            if lo < 0:
                return None
        if lo <= 0:
            ctx.err(path, "the interval must be positive")
            return None
        if lo > hi:
            ctx.err(path, f"interval {raw}: the range a..b needs a <= b")
            return None
        return (lo, hi)

    def describe(self) -> str:
        lo, hi = self.interval_s
        every = format_duration(lo) + (f"..{format_duration(hi)}" if hi != lo else "")
        return (f"nemesis {format_duration(self.duration_s)} every {every}: "
                + ", ".join(self.faults))

    def to_json(self) -> dict[str, Any]:
        return {**self._head(), "duration_s": self.duration_s, "faults": list(self.faults),
                "interval_s": list(self.interval_s)}


# Every kind, in registration order (the order messages list them in).
STEP_KINDS: tuple[str, ...] = tuple(STEP_TYPES)


def iter_steps(steps: tuple[Step, ...]) -> Iterator[Step]:
    """Every step, depth first, including those nested in repeat/choice."""
    for step in steps:
        yield step
        for body in step.children():
            yield from iter_steps(body)


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
    targets: tuple[str, ...] | None = None   # the targets it applies to (None: every one)
    targets_reason: str = ""                 # why not the others

    def invariant(self, name: str) -> InvariantSpec | None:
        return next((i for i in self.invariants if i.name == name), None)

    def uses(self, kind: str) -> bool:
        """Some step, nested ones included, is of ``kind`` (a run sets up what it needs)."""
        return any(s.kind == kind for s in iter_steps(self.steps))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the journal's `plan` key."""
        return {"name": self.name, "description": self.description, "seed": self.seed,
                "time_limit_s": self.time_limit_s, "source_path": self.source_path,
                "ensemble": self.ensemble.to_json(),
                "invariants": [i.to_json() for i in self.invariants],
                "steps": [s.to_json() for s in self.steps],
                **({"targets": list(self.targets), "targets_reason": self.targets_reason} if self.targets else {})}
