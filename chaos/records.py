"""Typed journal records: what crosses from the runner to the invariants and
the reports.

Theory of operation. Each record type is one frozen dataclass registered by
its ``type`` name (like the toxics in ``chaos/toxiproxy/toxics``). The runner
and the observer write them through :class:`chaos.journal.JournalWriter`; the
invariants and the report read :class:`Journal` objects and never index a
dict, so a field renamed on one side fails at the other side's first test,
not silently in a verdict.

Compatibility rules (DESIGN §2, "adding a record type or field"):
  * every field has a default, so a reader loads a record written before the
    field existed;
  * fields a reader does not know are kept in ``extra`` and written back
    unchanged, so a record from a newer writer survives a round trip;
  * a record type a reader does not know loads as :class:`UnknownRecord`
    (invariants and reports skip it);
  * ``schema_version`` goes up when the meaning of an existing field changes;
    :func:`Journal.from_json` upgrades every older version it can read.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Iterator, Mapping, TypeVar

from chaos.outcome import InvariantResult, Verdict

__all__ = [
    "SCHEMA_VERSION", "READABLE_VERSIONS", "Link", "Record", "RECORD_TYPES", "record_type",
    "RunStarted", "StepStarted", "StepFinished", "Fault", "Process", "NodeEvent", "Status",
    "LogSummary", "WorkloadTick", "WorkloadReadback", "NotificationsCapped", "UnsyncedLost", "Teardown", "RunFinished", "UnknownRecord", "RunInfo", "TargetInfo", "ToxiproxyInfo",
    "NodeInfo", "LinkInfo", "PlanInfo", "Journal", "END_MARKERS",
]

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)

Link = tuple[int, int, str]
R = TypeVar("R", bound="Record")


def _frozen(value: Any) -> Any:
    """Plain JSON values made immutable enough for a frozen record."""
    if isinstance(value, Mapping):
        return _FrozenMap({str(k): _frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_json = getattr(value, "to_json", None)
        if callable(to_json):
            return to_json()
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class _FrozenMap(dict):
    """A dict that refuses mutation: records are read by several threads."""

    def _ro(self, *a: Any, **k: Any) -> None:
        raise TypeError("journal records are read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _ro  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items(), key=lambda kv: kv[0])))


_EMPTY: Mapping[str, Any] = _FrozenMap()


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _links(v: Any) -> tuple[Link, ...]:
    out: list[Link] = []
    if not isinstance(v, (list, tuple)):
        return ()
    for item in v:
        if isinstance(item, (list, tuple)) and len(item) == 3:
            a, b, p = item
            if _int(a) is not None and _int(b) is not None:
                out.append((a, b, str(p)))
    return tuple(out)


def _runs(v: Any) -> tuple[tuple[int, int, int], ...] | None:
    if not isinstance(v, (list, tuple)):
        return None
    return tuple(tuple(int(x) for x in r) for r in v
                 if isinstance(r, (list, tuple)) and len(r) == 3 and all(_int(x) is not None for x in r))


# Field coercers by annotation text: readers get the declared type or the default.
_COERCE = {
    "int": lambda v: _int(v) if _int(v) is not None else 0,
    "int | None": _int,
    "float": lambda v: _num(v) if _num(v) is not None else 0.0,
    "float | None": _num,
    "str": lambda v: v if isinstance(v, str) else ("" if v is None else str(v)),
    "str | None": lambda v: v if isinstance(v, str) or v is None else str(v),
    "bool": bool,
    "bool | None": lambda v: v if isinstance(v, bool) or v is None else bool(v),
    "Mapping[str, Any]": lambda v: _frozen(v) if isinstance(v, Mapping) else _EMPTY,
    "tuple[Link, ...]": _links,
    "tuple[tuple[int, int, int], ...] | None": _runs,
    "Any": _frozen,
}


def _coerce(annotation: str, value: Any) -> Any:
    fn = _COERCE.get(annotation)
    return fn(value) if fn is not None else _frozen(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """Common to every record: ``seq`` (journal order = arrival order), ``t``
    (seconds since the run started, on the machine-wide monotonic clock, so
    ``t`` orders records whatever order they arrived in) and ``mono_ms``."""

    type: ClassVar[str] = ""
    seq: int = 0
    t: float = 0.0
    mono_ms: float = 0.0
    extra: Mapping[str, Any] = field(default=_EMPTY, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "t": self.t, "mono_ms": self.mono_ms, "type": self.type}
        for f in dataclasses.fields(self):
            if f.name in ("seq", "t", "mono_ms", "extra"):
                continue
            out[f.name] = _plain(getattr(self, f.name))
        for k, v in self.extra.items():
            out.setdefault(k, _plain(v))
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Record":
        """Any record; the class comes from ``d["type"]``."""
        kind = RECORD_TYPES.get(str(d.get("type")), UnknownRecord)
        return kind._from_fields(d)

    @classmethod
    def _from_fields(cls: type[R], d: Mapping[str, Any]) -> R:
        names = {f.name: f for f in dataclasses.fields(cls) if f.name != "extra"}
        kw = {n: _coerce(str(f.type), d[n]) for n, f in names.items() if n in d}
        extra = {k: v for k, v in d.items() if k not in names and k != "type"}
        return cls(**kw, extra=_frozen(extra) if extra else _EMPTY)

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls)) - {"seq", "t", "mono_ms", "extra"}


RECORD_TYPES: dict[str, type[Record]] = {}


def record_type(cls: type[R]) -> type[R]:
    """Register a record class under its ``type`` name."""
    if not cls.type or cls.type in RECORD_TYPES:
        raise ValueError(f"record type {cls.type!r} is empty or registered twice")
    RECORD_TYPES[cls.type] = cls
    return cls


@record_type
@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Record):
    type: ClassVar[str] = "run_started"
    seed: int | None = None
    command: str = ""


@record_type
@dataclass(frozen=True, slots=True, kw_only=True)
class StepStarted(Record):
    """``resolved`` holds every random or role choice made, resolved to sids;
    ``--replay`` feeds these back by ``step`` path."""

    type: ClassVar[str] = "step_started"
    step: str = ""
    kind: str = ""
    label: str = ""
    resolved: Mapping[str, Any] = _EMPTY


@record_type
@dataclass(frozen=True, slots=True, kw_only=True)
class StepFinished(Record):
    type: ClassVar[str] = "step_finished"
    step: str = ""
    kind: str = ""
    label: str = ""
    resolved: Mapping[str, Any] = _EMPTY
    ok: bool = True
    error: str | None = None


@record_type
@dataclass(frozen=True, slots=True, kw_only=True)
class Fault(Record):
    """``phase`` is requested → effective → undone; ``links`` are the directed
    (from, to, port) links a link fault cut or slowed."""

    type: ClassVar[str] = "fault"
    phase: str = ""
    fault_id: str = ""
    kind: str = ""
    target: Mapping[str, Any] = _EMPTY
    links: tuple[Link, ...] = ()


@record_type
@dataclass(frozen=True, slots=True, kw_only=True)
class Process(Record):
    type: ClassVar[str] = "process"
    sid: int | None = None
    action: str = ""
    pid: int | None = None
    exit_code: int | None = None


@record_type
@dataclass(frozen=True, slots=True, kw_only=True)
class NodeEvent(Record):
    """One line of a node's events.jsonl (DESIGN §1). The node's own fields
    live in ``data``; their names are the node's schema, not ours."""

    type: ClassVar[str] = "node_event"
    sid: int | None = None
    event: str = ""
    node_ts: float | None = None
    data: Mapping[str, Any] = _EMPTY

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def to_json(self) -> dict[str, Any]:
        out = {"seq": self.seq, "t": self.t, "mono_ms": self.mono_ms, "type": self.type,
               "sid": self.sid, "event": self.event, "node_ts": self.node_ts}
        for k, v in self.data.items():
            out.setdefault(k, _plain(v))
        return out

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> "NodeEvent":
        data = {k: v for k, v in d.items()
                if k not in ("seq", "t", "mono_ms", "type", "sid", "event", "node_ts", "data")}
        if isinstance(d.get("data"), Mapping):  # written by a reader that nested it
            data.update(d["data"])
        return cls(seq=_int(d.get("seq")) or 0, t=_num(d.get("t")) or 0.0,
                   mono_ms=_num(d.get("mono_ms")) or 0.0, sid=_int(d.get("sid")),
                   event=str(d.get("event") or "?"), node_ts=_num(d.get("node_ts")),
                   data=_frozen(data))


@record_type
@dataclass(frozen=True, slots=True, kw_only=True)
class Status(Record):
    """A poll of the node's ``fles``, written when anything but the zxid changed."""

    type: ClassVar[str] = "status"
    sid: int | None = None
    up: bool = False
    state: str | None = None
    leader: int | None = None
    epoch: int | None = None
    accepted_epoch: int | None = None
    zxid: int | None = None
    logical_clock: int | None = None
    synced: bool = False


@record_type
@dataclass(frozen=True, slots=True, kw_only=True)
class LogSummary(Record):
    """A node's txn log at the end: runs of (epoch, first_counter, last_counter)."""

    type: ClassVar[str] = "log_summary"
    sid: int | None = None
    runs: tuple[tuple[int, int, int], ...] | None = None
    last_committed_zxid: int | None = None
    error: str | None = None


@record_type
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadTick(Record):
    """One second of the client workload (``--target zookeeper``): creates
    acknowledged and failed in it (a connection lost in a fault is an error
    here, expected, not a failure of the run)."""

    type: ClassVar[str] = "workload_tick"
    second: int = 0
    acks: int = 0
    errors: int = 0


@record_type
@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadReadback(Record):
    """What one server holds at the end, against every acknowledged create:
    ``missing`` (first ``MISSING_SHOWN``) of ``acked`` it lacks; ``digest``
    of its children, equal on servers that agree; ``error`` if it could not
    be read (then the checks say unknown for it)."""

    type: ClassVar[str] = "workload_readback"
    sid: int | None = None
    acked: int = 0
    held: int | None = None
    missing_count: int | None = None
    missing: tuple[str, ...] = ()
    extra_count: int | None = None
    digest: str | None = None
    error: str | None = None


@record_type
@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationsCapped(Record):
    """Notification events of one node's election that the journal did not
    keep (the per-election or per-run cap was reached): only their counts.
    ``election_seq`` is the seq of that node's ``election_started`` record
    (None if the journal has none). Vote-level checks of a capped election
    are ``unknown (capped)``; state, role, epoch, fault and process records
    are never dropped."""

    type: ClassVar[str] = "notifications_capped"
    sid: int | None = None
    election_seq: int | None = None
    logical_clock: int | None = None
    kept: int = 0
    dropped_sent: int = 0
    dropped_received: int = 0
    dropped_other: int = 0      # the core's per-message events (quorum_reached, notification_ignored, ...)
    cap: str = ""


@record_type
@dataclass(frozen=True, slots=True, kw_only=True)
class UnsyncedLost(Record):
    """A ``power_loss`` dropped node ``sid``'s writes that were not fsync'ed
    (``chaos.lazyfs``): ``files`` [{path, size, durable_size, dropped_bytes}]
    changed by the cut (paths inside its ``dataDir/version-2``),
    ``dropped_bytes`` their sum; ``error`` when the drop failed."""

    type: ClassVar[str] = "unsynced_lost"
    sid: int | None = None
    files: Any = ()
    dropped_bytes: int = 0
    error: str | None = None


@record_type
@dataclass(frozen=True, slots=True, kw_only=True)
class Teardown(Record):
    """The harness began ending the run (``reason``: finished, interrupted,
    failed). Nodes stopped and faults undone after it are the harness's doing,
    so liveness is observed only up to here."""

    type: ClassVar[str] = "teardown"
    reason: str = ""


@record_type
@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Record):
    type: ClassVar[str] = "run_finished"
    verdict: str = "unknown"
    exit_code: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownRecord(Record):
    """A record type this reader does not know (a newer writer's): kept, written
    back as it was, skipped by invariants and reports."""

    type_name: str = ""

    @property
    def type(self) -> str:  # type: ignore[override]
        return self.type_name

    def to_json(self) -> dict[str, Any]:
        out = {"seq": self.seq, "t": self.t, "mono_ms": self.mono_ms, "type": self.type_name}
        for k, v in self.extra.items():
            out.setdefault(k, _plain(v))
        return out

    @classmethod
    def _from_fields(cls, d: Mapping[str, Any]) -> "UnknownRecord":
        extra = {k: v for k, v in d.items() if k not in ("seq", "t", "mono_ms", "type")}
        return cls(seq=_int(d.get("seq")) or 0, t=_num(d.get("t")) or 0.0,
                   mono_ms=_num(d.get("mono_ms")) or 0.0, type_name=str(d.get("type")),
                   extra=_frozen(extra))


END_MARKERS = (Teardown, LogSummary, RunFinished)
"""Records that only exist once the run is over: a liveness property not yet
met is ``unknown`` before them and ``invalid`` after."""


# --------------------------------------------------------------------------- header parts


def _header_from(cls: type, d: Any) -> Any:
    if not isinstance(d, Mapping):
        d = {}
    names = {f.name: f for f in dataclasses.fields(cls) if f.name != "extra"}
    kw = {n: _coerce(str(f.type), d[n]) for n, f in names.items() if n in d and n not in cls._nested}
    for n, sub in cls._nested.items():
        if n in d:
            kw[n] = _header_from(sub, d[n]) if isinstance(d[n], Mapping) else None
    extra = {k: v for k, v in d.items() if k not in names}
    if "extra" in {f.name for f in dataclasses.fields(cls)}:
        kw["extra"] = _frozen(extra) if extra else _EMPTY
    return cls(**kw)


def _header_json(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.name == "extra":
            continue
        v = getattr(obj, f.name)
        out[f.name] = _header_json(v) if dataclasses.is_dataclass(v) else _plain(v)
    for k, v in getattr(obj, "extra", _EMPTY).items():
        out.setdefault(k, _plain(v))
    return out


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """What ran the plan: our node (``fle``) or a real ZooKeeper."""

    _nested: ClassVar[dict[str, type]] = {}
    kind: str = "fle"
    version: str | None = None


@dataclass(frozen=True, slots=True)
class ToxiproxyInfo:
    _nested: ClassVar[dict[str, type]] = {}
    kind: str = "embedded"
    url: str | None = None


@dataclass(frozen=True, slots=True)
class RunInfo:
    _nested: ClassVar[dict[str, type]] = {"toxiproxy": ToxiproxyInfo, "target": TargetInfo}
    id: str = ""
    plan_name: str = ""
    plan_path: str | None = None
    description: str = ""
    seed: int | None = None
    command: str = ""
    replay_command: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    exit_code: int | None = None
    verdict: str | None = None
    error: str | None = None
    aborted: str | None = None
    simulated: bool = False
    toxiproxy: ToxiproxyInfo | None = None
    target: TargetInfo = TargetInfo()
    extra: Mapping[str, Any] = _EMPTY

    @classmethod
    def from_json(cls, d: Any) -> "RunInfo":
        info = _header_from(cls, d)
        return info if info.target is not None else dataclasses.replace(info, target=TargetInfo())

    def to_json(self) -> dict[str, Any]:
        return _header_json(self)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    _nested: ClassVar[dict[str, type]] = {}
    sid: int = 0
    name: str = ""
    role: str = "participant"
    weight: int | None = 1
    group: int | None = None
    client_port: int | None = None
    election_port: int | None = None
    quorum_port: int | None = None
    data_dir: str | None = None
    log_path: str | None = None
    events_path: str | None = None
    extra: Mapping[str, Any] = _EMPTY

    @property
    def is_observer(self) -> bool:
        return self.role == "observer"

    @classmethod
    def from_json(cls, d: Any) -> "NodeInfo":
        return _header_from(cls, d)

    def to_json(self) -> dict[str, Any]:
        return _header_json(self)


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """One directed link behind its own proxy (JSON keys ``from``/``to``)."""

    _nested: ClassVar[dict[str, type]] = {}
    src: int = 0
    dst: int = 0
    port: str = "election"
    proxy: str = ""
    listen: str = ""
    upstream: str = ""

    @classmethod
    def from_json(cls, d: Any) -> "LinkInfo":
        d = dict(d) if isinstance(d, Mapping) else {}
        return cls(src=_int(d.get("from")) or 0, dst=_int(d.get("to")) or 0, port=str(d.get("port", "election")),
                   proxy=str(d.get("proxy", "")), listen=str(d.get("listen", "")),
                   upstream=str(d.get("upstream", "")))

    def to_json(self) -> dict[str, Any]:
        return {"from": self.src, "to": self.dst, "port": self.port, "proxy": self.proxy,
                "listen": self.listen, "upstream": self.upstream}


@dataclass(frozen=True, slots=True)
class PlanInfo:
    """The plan as the journal holds it. ``raw`` is ``Plan.to_json()``;
    ``invariants`` is normalised to name -> params whichever shape was written
    (a list of {name, params} from the runner, a mapping in older journals)."""

    name: str = ""
    description: str = ""
    seed: int | None = None
    time_limit_s: float | None = None
    source_path: str | None = None
    invariants: Mapping[str, Mapping[str, Any]] = _EMPTY
    raw: Mapping[str, Any] = _EMPTY

    @classmethod
    def from_json(cls, d: Any) -> "PlanInfo":
        if not isinstance(d, Mapping):
            return cls()
        inv: dict[str, Any] = {}
        spec = d.get("invariants")
        if isinstance(spec, Mapping):
            for name, params in spec.items():
                if params is False:
                    continue
                inv[str(name)] = params if isinstance(params, Mapping) else {}
        elif isinstance(spec, (list, tuple)):
            for item in spec:
                if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                    params = item.get("params")
                    inv[item["name"]] = params if isinstance(params, Mapping) else {}
        return cls(name=str(d.get("name") or ""), description=str(d.get("description") or ""),
                   seed=_int(d.get("seed")), time_limit_s=_num(d.get("time_limit_s")),
                   source_path=_str(d.get("source_path")), invariants=_frozen(inv), raw=_frozen(d))

    def to_json(self) -> dict[str, Any]:
        return _plain(self.raw)


# --------------------------------------------------------------------------- the journal


@dataclass(frozen=True, slots=True)
class Journal:
    """A whole run as the invariants and the report see it."""

    schema_version: int = SCHEMA_VERSION
    run: RunInfo = RunInfo()
    plan: PlanInfo = PlanInfo()
    nodes: tuple[NodeInfo, ...] = ()
    links: tuple[LinkInfo, ...] = ()
    records: tuple[Record, ...] = ()
    invariants: tuple[InvariantResult, ...] = ()
    verdict: str = Verdict.UNKNOWN.value
    rebuilt: bool = False

    def of_type(self, *kinds: type[R]) -> Iterator[R]:
        """Records of the given classes, in journal (arrival) order."""
        return (r for r in self.records if isinstance(r, kinds))  # type: ignore[misc]

    def in_time_order(self) -> list[Record]:
        """Records ordered by ``t`` then ``seq``: tailed node events arrive
        late, but ``t`` comes from the one machine-wide monotonic clock."""
        return sorted(self.records, key=lambda r: (r.t, r.seq))

    def by_seq(self) -> dict[int, Record]:
        return {r.seq: r for r in self.records}

    @property
    def ended(self) -> bool:
        return any(isinstance(r, END_MARKERS) for r in self.records)

    def node(self, sid: int) -> NodeInfo | None:
        return next((n for n in self.nodes if n.sid == sid), None)

    def to_json(self) -> dict[str, Any]:
        out = {"schema_version": self.schema_version, "run": self.run.to_json(), "plan": self.plan.to_json(),
               "nodes": [n.to_json() for n in self.nodes], "links": [lk.to_json() for lk in self.links],
               "records": [r.to_json() for r in self.records],
               "invariants": [i.to_json() for i in self.invariants], "verdict": self.verdict}
        if self.rebuilt:
            out["rebuilt"] = True
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Journal":
        """Read schema 1 or 2 (1 lacks ``run.target``: it was always our node)."""
        version = _int(d.get("schema_version"))
        records = tuple(Record.from_json(r) for r in d.get("records") or ()
                        if isinstance(r, Mapping) and _int(r.get("seq")) is not None)
        invariants = tuple(InvariantResult.from_json(i) for i in d.get("invariants") or ()
                           if isinstance(i, Mapping))
        return cls(schema_version=version if version in READABLE_VERSIONS else SCHEMA_VERSION,
                   run=RunInfo.from_json(d.get("run")), plan=PlanInfo.from_json(d.get("plan")),
                   nodes=tuple(NodeInfo.from_json(n) for n in d.get("nodes") or ()
                               if isinstance(n, Mapping) and _int(n.get("sid")) is not None),
                   links=tuple(LinkInfo.from_json(lk) for lk in d.get("links") or () if isinstance(lk, Mapping)),
                   records=records, invariants=invariants,
                   verdict=Verdict.parse(d.get("verdict")).value, rebuilt=bool(d.get("rebuilt")))

    def with_records(self, records: Iterable[Record]) -> "Journal":
        return dataclasses.replace(self, records=tuple(records))
