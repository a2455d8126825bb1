"""What every invariant shares: voters and their quorum rule, the replay of
node state, the :class:`Context` built once per journal, :class:`Finding`,
and the registry (:func:`invariant`, :data:`INVARIANTS`, :func:`check_all`).

The package docstring (``chaos.invariants``) has the theory of operation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping

from chaos.outcome import ExitCode, InvariantResult, Verdict, overall
from chaos.records import Fault, Journal, LogSummary, NodeEvent, Process, Record, Status
from zkrules.quorum import QuorumHierarchical

__all__ = [
    "InvariantResult", "Verdict", "VALID", "INVALID", "UNKNOWN", "DEFAULT_CONVERGENCE_S",
    "NodeView", "NodeStates", "Voters", "Context", "Finding", "Check", "Invariant", "INVARIANTS",
    "invariant", "check_all", "overall", "setup_failure", "as_int", "sid_of", "fmt_zxid",
    "EVIDENCE_GAPS", "evidence_gap", "NOT_APPLICABLE", "TARGET_CHECKS", "target_invariant", "Judgement", "judge_run",
]

VALID, INVALID, UNKNOWN = Verdict.VALID, Verdict.INVALID, Verdict.UNKNOWN

DEFAULT_CONVERGENCE_S = 15.0
"""How long ``convergence`` waits after the last fault when the plan does not say."""

_LIVE_STATES = frozenset({"LOOKING", "FOLLOWING", "LEADING", "OBSERVING"})
_ROLE_STATE = {"leader": "LEADING", "follower": "FOLLOWING", "observer": "OBSERVING"}


def as_int(value: Any) -> int | None:
    """Node event fields are the node's schema: trust only real ints."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def sid_of(r: Record) -> int | None:
    return r.sid if isinstance(r, (Status, Process, NodeEvent, LogSummary)) else None


def fmt_zxid(zxid: int) -> str:
    """``0x100000005 (1:5)``: hex as the node logs it, then epoch:counter."""
    return f"{zxid:#x} ({zxid >> 32}:{zxid & 0xFFFFFFFF})" if zxid >= 0 else str(zxid)


_int, _sid = as_int, sid_of


# --------------------------------------------------------------------------- voters


@dataclass(frozen=True, slots=True)
class Voters:
    """sid -> weight of every voter, and the ensemble's hierarchical quorum
    verifier when the header gives groups."""

    weights: Mapping[int, float]
    verifier: QuorumHierarchical | None = None

    def __contains__(self, sid: object) -> bool:
        return sid in self.weights

    def __iter__(self) -> Iterator[int]:
        return iter(self.weights)

    def __len__(self) -> int:
        return len(self.weights)

    def is_quorum(self, sids: Iterable[int]) -> bool:
        """The ensemble's own rule: hierarchical when it has groups, else a
        weighted majority (what a node does with weights and no groups)."""
        members = {s for s in sids if s in self.weights}
        if self.verifier is not None:
            return self.verifier.contains_quorum(members)
        total = sum(self.weights.values())
        return total > 0 and sum(self.weights[s] for s in members) * 2 > total

    @classmethod
    def of(cls, journal: Journal, records: Iterable[Record]) -> "Voters":
        """From the header; from the sids the records mention when the header
        is missing (a crash before ``set_header``)."""
        participants = [n for n in journal.nodes if not n.is_observer]
        if not participants:
            seen: set[int] = set()
            observing: set[int] = set()
            for r in records:
                sid = _sid(r)
                if sid is None:
                    continue
                seen.add(sid)
                if (isinstance(r, Status) and r.state == "OBSERVING") or (isinstance(r, NodeEvent) and (
                        "observer" in (r.get("role"), r.get("peer_type"))
                        or "OBSERVING" in (r.get("state"), r.get("to")))):
                    observing.add(sid)
            return cls(MappingProxyType({s: 1.0 for s in sorted(seen - observing)}))
        weights = {n.sid: float(n.weight if n.weight is not None else 1) for n in participants}
        groups: dict[int, list[int]] = {}
        for n in participants:
            if n.group is not None:
                groups.setdefault(n.group, []).append(n.sid)
        verifier = None
        if groups:
            try:
                verifier = QuorumHierarchical(weights, dict(enumerate(groups.values(), 1)),
                                              {s: int(w) for s, w in weights.items()})
            except ValueError:
                verifier = None  # an inconsistent header: judge by weighted majority
        return cls(MappingProxyType(weights), verifier)


# --------------------------------------------------------------------------- replay


@dataclass(frozen=True, slots=True)
class NodeView:
    """What the journal says about one node at one point of the run.
    ``established`` is the epoch this node established in its current stint
    (one uninterrupted spell in one state); None until it does."""

    up: bool = False          # answered the last poll (or said something itself)
    running: bool = False     # its process runs, as the orchestrator's process records say
    paused: bool = False
    state: str | None = None
    leader: int | None = None
    epoch: int | None = None
    established: int | None = None

    @property
    def live(self) -> bool:
        """Expected to take part: its process runs and is not paused. A running
        node that stops answering (a vote storm, a stuck loop) is live and not
        agreeing; only the orchestrator's kill, stop or pause excuses it."""
        return (self.up or self.running) and not self.paused

    def entering(self, state: str | None) -> "NodeView":
        """A new stint drops the established epoch; the same state keeps it."""
        if state == self.state:
            return self
        return replace(self, state=state, established=None,
                       leader=None if state in (None, "LOOKING") else self.leader)


_DOWN = NodeView()
_UP = NodeView(up=True)
NodeStates = Mapping[int, NodeView]
_NOBODY: NodeStates = MappingProxyType({})


def _status(n: NodeView, r: Status) -> NodeView:
    if not r.up:
        return replace(_DOWN, running=n.running, paused=n.paused,
                       epoch=n.epoch if r.epoch is None else r.epoch)
    n = replace(n, up=True)
    if r.state in _LIVE_STATES:
        n = n.entering(r.state)
        if r.state == "LEADING":
            n = replace(n, leader=r.sid if r.leader in (None, -1) else r.leader)
        elif r.state != "LOOKING":
            n = replace(n, leader=r.leader)
        if r.synced and r.state != "LOOKING" and r.epoch is not None:
            n = replace(n, established=r.epoch)
    return n if r.epoch is None else replace(n, epoch=r.epoch)


def _process(n: NodeView, r: Process) -> NodeView:
    if r.action == "started":
        return replace(_UP, running=True, epoch=n.epoch)
    if r.action == "resumed":
        return replace(n, up=True, paused=False)
    if r.action == "paused":
        return replace(n, paused=True)
    if r.action in ("killed", "stopped", "exited"):
        return replace(_DOWN, epoch=n.epoch)
    return n


def _node_event(n: NodeView, r: NodeEvent) -> NodeView:
    if r.event in ("node_started", "election_started"):
        return replace(n, up=True)
    if r.event == "state_changed" and r.get("to") in _LIVE_STATES:
        return replace(n, up=True).entering(r.get("to"))
    if r.event == "epoch_established":
        n = replace(n, up=True).entering(_ROLE_STATE.get(r.get("role"), n.state))
        leader = r.sid if r.get("role") == "leader" else _int(r.get("leader"))
        epoch = _int(r.get("epoch"))
        n = replace(n, leader=n.leader if leader is None else leader)
        return n if epoch is None else replace(n, epoch=epoch, established=epoch)
    return n


def _apply(n: NodeView, r: Record) -> NodeView:
    if isinstance(r, Status):
        return _status(n, r)
    if isinstance(r, Process):
        return _process(n, r)
    if isinstance(r, NodeEvent):
        return _node_event(n, r)
    return n


def _replay(records: Iterable[Record]) -> tuple[NodeStates, ...]:
    """The cluster after each record. A record changes at most one node, so
    snapshots are copied on write and unchanged ones shared."""
    now: NodeStates = _NOBODY
    out = []
    for r in records:
        sid = _sid(r)
        if sid is not None:
            old = now.get(sid, _DOWN)
            new = _apply(old, r)
            if new != old or sid not in now:
                now = MappingProxyType({**now, sid: new})
        out.append(now)
    return tuple(out)


# --------------------------------------------------------------------------- context


@dataclass(frozen=True, slots=True)
class Context:
    """Everything the invariants share, built once per journal.

    ``records`` are in time order (``t`` then ``seq``: journal order is arrival
    order, and tailed node events arrive late); ``states[i]`` is the cluster
    after ``records[i]``.
    """

    journal: Journal
    records: tuple[Record, ...]
    states: tuple[NodeStates, ...]
    voters: Voters
    ended: bool
    setup_failure: str | None

    @classmethod
    def of(cls, journal: Journal) -> "Context":
        records = tuple(journal.in_time_order())
        states = _replay(records)
        voters = Voters.of(journal, records)
        ctx = cls(journal, records, states, voters, journal.ended, None)
        return replace(ctx, setup_failure=ctx._why_not_formed())

    def before(self, i: int) -> NodeStates:
        return self.states[i - 1] if i > 0 else _NOBODY

    def leading_quorum(self, nodes: NodeStates, *, established: bool = False) -> tuple[int, NodeView] | None:
        """A live leader with a live quorum following it; with ``established``,
        only one that established its epoch in this stint."""
        for sid, n in nodes.items():
            if not (n.live and n.state == "LEADING") or (established and n.established is None):
                continue
            followers = [s for s, m in nodes.items()
                         if s != sid and m.live and m.state == "FOLLOWING" and m.leader == sid]
            if self.voters.is_quorum([sid, *followers]):
                return sid, n
        return None

    def agreement(self, nodes: NodeStates) -> tuple[int, int | None] | None:
        """(leader, epoch) when a quorum of voters is live, every live voter
        is LEADING or FOLLOWING one leader in one epoch, and the leader has
        established that epoch with a quorum of them: agreeing on a vote is
        not serving (a leader that never gathers its epoch's acks loops
        through elections while everyone still names it)."""
        live = [s for s in self.voters if s in nodes and nodes[s].live]
        if not live or not self.voters.is_quorum(live):
            return None
        leaders = [s for s in live if nodes[s].state == "LEADING"]
        if len(leaders) != 1:
            return None
        leader = leaders[0]
        epoch = nodes[leader].epoch
        for s in live:
            n = nodes[s]
            if s != leader and not (n.state == "FOLLOWING" and n.leader == leader and n.epoch == epoch):
                return None
        if epoch is None or nodes[leader].established != epoch or not self.voters.is_quorum(
                [s for s in live if nodes[s].established == epoch]):
            return None
        return leader, epoch

    def _why_not_formed(self) -> str | None:
        if not self.records:
            return "the journal has no run data"
        if not len(self.voters):
            return "the journal names no voting nodes"
        for i, r in enumerate(self.records):
            if isinstance(r, Fault) and r.phase in ("requested", ""):
                return f"the ensemble never formed before the first fault (seq {r.seq}): setup failure"
            if self.leading_quorum(self.states[i]):
                return None
        if self.ended:
            return "the ensemble never formed: setup failure"
        return "the ensemble has not formed yet"


def setup_failure(journal: Journal) -> str | None:
    """Why no invariant can be judged, or None. The ensemble must have formed
    (a leader with a following quorum) before the first fault was requested."""
    return Context.of(journal).setup_failure


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True, slots=True)
class Finding:
    """What a check concludes; the registry adds the invariant's name."""

    verdict: Verdict
    message: str
    evidence: tuple[int, ...] = ()
    first_violation: int | None = None

    @classmethod
    def valid(cls, message: str) -> "Finding":
        return cls(Verdict.VALID, message)

    @classmethod
    def unknown(cls, message: str) -> "Finding":
        return cls(Verdict.UNKNOWN, message)

    @classmethod
    def invalid(cls, message: str, evidence: Iterable[int], first: int | None = None) -> "Finding":
        evidence = tuple(evidence)
        return cls(Verdict.INVALID, message, evidence,
                   first if first is not None else max(evidence) if evidence else None)


Check = Callable[[Context, Mapping[str, Any]], Finding]


@dataclass(frozen=True, slots=True)
class Invariant:
    """A registered check. Calling it on a journal judges that journal alone;
    :func:`check_all` shares one :class:`Context` among all of them."""

    name: str
    check: Check
    doc: str = ""

    def judge(self, ctx: Context, spec: Mapping[str, Any] | None = None) -> InvariantResult:
        if ctx.setup_failure is not None:
            return InvariantResult(self.name, Verdict.UNKNOWN, ctx.setup_failure)
        f = self.check(ctx, spec or {})
        return InvariantResult(self.name, f.verdict, f.message, f.evidence, f.first_violation)

    def __call__(self, journal: Journal, spec: Mapping[str, Any] | None = None) -> InvariantResult:
        return self.judge(Context.of(journal), spec)


INVARIANTS: dict[str, Invariant] = {}


def invariant(name: str) -> Callable[[Check], Invariant]:
    """Register ``check`` under ``name`` (the key plans use)."""

    def register(check: Check) -> Invariant:
        if name in INVARIANTS:
            raise ValueError(f"invariant {name!r} registered twice")
        INVARIANTS[name] = inv = Invariant(name, check, (check.__doc__ or "").strip())
        return inv

    return register


def check_all(journal: Journal, specs: Mapping[str, Mapping[str, Any]] | None = None) -> list[InvariantResult]:
    """Run the invariants named in ``specs`` (a plan's invariants, name ->
    params; None or empty = all of them with defaults), in the order given."""
    ctx = Context.of(journal)
    if not specs:
        specs = {name: {} for name in INVARIANTS}
    results = []
    for name, spec in specs.items():
        kind = getattr(journal.run.target, "kind", None) or "fle"
        if name in NOT_APPLICABLE.get(kind, {}):
            continue
        inv = TARGET_CHECKS.get((kind, name)) or INVARIANTS.get(name)
        gap = evidence_gap(journal, name)
        if inv is None:
            results.append(InvariantResult(name, Verdict.UNKNOWN, f"no invariant named {name!r}"))
        elif gap is not None:
            results.append(InvariantResult(name, Verdict.UNKNOWN, f"no evidence on {journal.run.target.kind}: {gap}"))
        else:
            results.append(inv.judge(ctx, spec if isinstance(spec, Mapping) else {}))
    return results


@dataclass(frozen=True, slots=True)
class Judgement:
    """A finished run's verdict and exit code, and why it is not plain (``error``)."""

    results: tuple[InvariantResult, ...]
    verdict: Verdict
    code: ExitCode
    error: str | None


def judge_run(journal: Journal, specs: Mapping[str, Mapping[str, Any]] | None, *, error: str | None = None,
              infra: bool = False, aborted: str | None = None, interrupted: bool = False) -> Judgement:
    """What ``chaos run`` and ``chaos sim`` say of a finished journal: the
    invariants' verdict, made unknown when the ensemble never formed, the plan
    stopped early or the harness failed (``infra``); an interrupted run is
    never valid and never exits 1."""
    try:
        results = tuple(check_all(journal, specs))
    except Exception as e:
        results, infra = (), True
        error = error or f"invariant check crashed: {type(e).__name__}: {e}"
    verdict = overall(results)
    setup = setup_failure(journal)
    if setup is not None:
        verdict, infra = Verdict.UNKNOWN, True
        error = error or setup
    if aborted and verdict == Verdict.VALID and not interrupted:
        # The invariants held on what ran, but the plan did not run to its end:
        # the test is incomplete, not passed.
        verdict, infra = Verdict.UNKNOWN, True
        error = error or f"plan stopped early: {aborted}"
    if interrupted or infra:
        code = ExitCode.INVALID if verdict == Verdict.INVALID and not interrupted else ExitCode.INFRA
        if verdict != Verdict.INVALID:
            verdict = Verdict.UNKNOWN
    else:
        code = {Verdict.VALID: ExitCode.OK, Verdict.INVALID: ExitCode.INVALID}.get(verdict, ExitCode.INFRA)
    return Judgement(results, verdict, code, error)


EVIDENCE_GAPS: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "zookeeper": MappingProxyType({
    }),
})
"""target kind -> invariant -> why that target's journal holds no evidence for it."""


NOT_APPLICABLE: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "zookeeper": MappingProxyType({
        "epoch_promises": "a check of our node's Zab: ZooKeeper stores acceptedEpoch and currentEpoch "
                          "(version-2/) without a log line and no four-letter word reports them; its own "
                          "Zab is the reference, not the subject",
    }),
})
"""target kind -> invariant -> why it is not run on that target at all (it judges a part of
our node the target does not have); unlike an evidence gap it does not make the run unknown."""


TARGET_CHECKS: dict[tuple[str, str], Invariant] = {}
"""(target kind, invariant) -> the check that judges that invariant on that
target's evidence (ZooKeeper: the client workload's read-back)."""


def target_invariant(kind: str, name: str) -> Callable[[Check], Invariant]:
    def register(check: Check) -> Invariant:
        TARGET_CHECKS[(kind, name)] = inv = Invariant(name, check, (check.__doc__ or "").strip())
        return inv
    return register


def evidence_gap(journal: Journal, name: str) -> str | None:
    target = getattr(journal.run, "target", None)
    return EVIDENCE_GAPS.get(getattr(target, "kind", None) or "fle", {}).get(name)
