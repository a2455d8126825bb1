"""Safety and liveness properties of leader election, checked on a journal.

Theory of operation. Every check is a pure function of a typed
:class:`~chaos.records.Journal` (DESIGN.md §2) and a spec from the plan;
nothing here reads a file or a clock, so the same checks judge a finished run,
a partial journal while the run is going, and a journal rebuilt after a crash.

Three verdicts (:class:`chaos.outcome.Verdict`):
  valid    the property held on everything the journal shows;
  invalid  the journal shows a violation; ``evidence`` holds the seqs of the
           records that prove it and ``first_violation`` the seq where the run
           first went wrong (the report links there);
  unknown  the journal cannot tell: no run data, or the ensemble never formed
           before the first fault (a setup failure is not an election bug).

What every check needs is built once per journal in a :class:`Context`: the
records in time order, the voters with their quorum rule, and the replay of
node state. The replay folds ``status`` (the orchestrator's poll of ``fles``),
``process`` and ``node_event`` (the node's own events.jsonl) records into one
:class:`NodeView` per node, and keeps the cluster's state after each record.

Leadership only counts once an epoch is *established*: the node said
``epoch_established``, or a ``status`` poll showed it ``synced`` in its role.
ZAB allows two nodes to believe they lead for a while, and a node that has just
gone LEADING still shows the previous epoch until it establishes its own; what
ZAB forbids is two leaders of one established epoch.

Adding an invariant: write ``check(ctx, spec) -> Finding`` and decorate it with
``@invariant("name")``; :func:`check_all` then runs it, and the setup-failure
preamble (``unknown`` until the ensemble formed) is applied for it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping

from chaos.outcome import InvariantResult, Verdict, overall
from chaos.records import (Fault, Journal, LogSummary, NodeEvent, Process, Record, Status, StepFinished,
                           StepStarted, Teardown)
from zkrules.quorum import QuorumHierarchical
from zkrules.vote import zxid_counter, zxid_epoch

__all__ = [
    "InvariantResult",
    "Verdict",
    "VALID",
    "INVALID",
    "UNKNOWN",
    "DEFAULT_CONVERGENCE_S",
    "NodeView",
    "Voters",
    "Context",
    "Finding",
    "Check",
    "Invariant",
    "INVARIANTS",
    "invariant",
    "single_leader",
    "convergence",
    "out_of_election_join",
    "leader_validity",
    "no_committed_txn_lost",
    "check_all",
    "overall",
    "setup_failure",
]

VALID, INVALID, UNKNOWN = Verdict.VALID, Verdict.INVALID, Verdict.UNKNOWN

DEFAULT_CONVERGENCE_S = 15.0
"""How long ``convergence`` waits after the last fault when the plan does not say."""

_LIVE_STATES = frozenset({"LOOKING", "FOLLOWING", "LEADING", "OBSERVING"})
_ROLE_STATE = {"leader": "LEADING", "follower": "FOLLOWING", "observer": "OBSERVING"}


def _int(value: Any) -> int | None:
    """Node event fields are the node's schema: trust only real ints."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _sid(r: Record) -> int | None:
    return r.sid if isinstance(r, (Status, Process, NodeEvent, LogSummary)) else None


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

    up: bool = False
    paused: bool = False
    state: str | None = None
    leader: int | None = None
    epoch: int | None = None
    established: int | None = None

    @property
    def live(self) -> bool:
        return self.up and not self.paused

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
        return replace(_DOWN, epoch=n.epoch if r.epoch is None else r.epoch)
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
        return replace(_UP, epoch=n.epoch)
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
        """(leader, epoch) when a quorum of voters is live and every live voter
        is LEADING or FOLLOWING one leader in one epoch."""
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
        inv = INVARIANTS.get(name)
        if inv is None:
            results.append(InvariantResult(name, Verdict.UNKNOWN, f"no invariant named {name!r}"))
        else:
            results.append(inv.judge(ctx, spec if isinstance(spec, Mapping) else {}))
    return results


# --------------------------------------------------------------------------- single_leader


@invariant("single_leader")
def single_leader(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """One leader per epoch: no two nodes establish leadership of one epoch,
    and no two voters follow different leaders in one established epoch."""
    claims: dict[int, dict[int, int]] = {}  # epoch -> leader sid -> first seq that claims it

    def claim(epoch: int | None, leader: int | None, seq: int) -> Finding | None:
        if epoch is None or leader is None or leader < 0:
            return None
        by_leader = claims.setdefault(epoch, {})
        by_leader.setdefault(leader, seq)
        if len(by_leader) < 2:
            return None
        (l1, s1), (l2, s2) = sorted(by_leader.items(), key=lambda kv: kv[1])[:2]
        return Finding.invalid(f"epoch {epoch} has two leaders: {l1} (seq {s1}) and {l2} (seq {s2})",
                               (s1, s2), max(s1, s2))

    for r in ctx.records:
        bad = None
        if isinstance(r, NodeEvent) and r.event == "epoch_established":
            if r.get("role") == "leader":
                bad = claim(_int(r.get("epoch")), r.sid, r.seq)
            elif r.get("role") == "follower" and r.sid in ctx.voters:
                bad = claim(_int(r.get("epoch")), _int(r.get("leader")), r.seq)
        elif isinstance(r, Status) and r.up and r.synced:
            # fles says synced once sync with the leader (or a quorum) is done;
            # before that a follower's epoch is still the previous leader's.
            if r.state == "LEADING":
                bad = claim(r.epoch, r.sid, r.seq)
            elif r.state == "FOLLOWING" and r.sid in ctx.voters:
                bad = claim(r.epoch, r.leader, r.seq)
        if bad:
            return bad
    return Finding.valid(f"one leader in each of {len(claims)} established epoch(s)")


# --------------------------------------------------------------------------- convergence


def _within_s(spec: Mapping[str, Any]) -> float:
    """Seconds; numbers are seconds already (plans are parsed to seconds),
    strings use the plan's duration syntax."""
    value = spec.get("within_s", spec.get("within"))
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        # Imported here: chaos.plan imports DEFAULT_CONVERGENCE_S from this module.
        from chaos.plan.durations import DurationError, parse_duration
        try:
            return parse_duration(value)
        except DurationError:
            pass
    return DEFAULT_CONVERGENCE_S


@invariant("convergence")
def convergence(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """Liveness: within ``spec.within`` seconds of the last fault being undone,
    every live voter agrees on one leader (LEADING, the rest FOLLOWING it, one epoch)."""
    within = _within_s(spec)
    records = ctx.records
    last: int | None = None  # index of the last fault, heal, or restart/resume after a fault
    faulted = False
    for i, r in enumerate(records):
        if isinstance(r, Fault):
            faulted, last = True, i
        elif isinstance(r, (StepStarted, StepFinished)) and r.kind == "heal":
            last = i
        elif isinstance(r, Process) and faulted and r.action in ("started", "resumed"):
            last = i  # a restart/resume undoes a kill/stop/pause
    t0 = records[last].t if last is not None else records[0].t
    deadline = t0 + within
    since = f"the last fault/undo (seq {records[last].seq})" if last is not None else "the start"
    nodes: NodeStates = _NOBODY
    last_seen: dict[int, int] = {}  # sid -> last record about it, as of the deadline
    for i, r in enumerate(records):
        after = last is None or i > last
        if (after and r.t > deadline) or isinstance(r, Teardown):
            break  # past the bound, or the harness is ending the run
        nodes = ctx.states[i]
        sid = _sid(r)
        if sid is not None and not isinstance(r, LogSummary):
            last_seen[sid] = r.seq
        if not after:
            continue
        agreed = ctx.agreement(nodes)
        if agreed:
            leader, epoch = agreed
            return Finding.valid(
                f"all live voters followed leader {leader} (epoch {epoch if epoch is not None else '—'}) "
                f"{max(0.0, r.t - t0):.2f} s after {since} (bound {within:g} s)")
    live = [s for s in ctx.voters if s in nodes and nodes[s].live]
    end_t = max(r.t for r in records)
    teardown = next((r.t for r in records if isinstance(r, Teardown)), None)
    if teardown is not None and teardown < deadline and (last is None or records[last].t <= deadline):
        # The harness ended the run (interrupt, failed step) inside the bound:
        # what happened after is its doing, and the bound was never given.
        return Finding.unknown(f"the run was torn down {max(0.0, teardown - t0):.1f} s into the "
                               f"{within:g} s bound after {since}, before the voters agreed")
    if not ctx.voters.is_quorum(live) and end_t >= deadline:
        return Finding.valid(f"not applicable: no quorum of voters is alive after {since}")
    if end_t < deadline and not ctx.ended:
        return Finding.unknown(f"not converged yet; {deadline - end_t:.1f} s of the {within:g} s bound left")
    states = ", ".join(
        f"{s}:{(nodes[s].state or 'down') if s in nodes else '—'}"
        + (f"→{nodes[s].leader}" if s in nodes and nodes[s].state == "FOLLOWING" else "")
        for s in sorted(ctx.voters))
    evidence = tuple(sorted(last_seen[s] for s in live if s in last_seen)) \
        or ((records[last].seq,) if last is not None else ())
    return Finding.invalid(
        f"live voters did not agree on one leader within {within:g} s after {since}; last seen: {states}",
        evidence)


# --------------------------------------------------------------------------- out_of_election_join


def _leading(r: Record) -> tuple[int, int] | None:
    """(sid, epoch) when ``r`` shows a node leading an established epoch."""
    if isinstance(r, NodeEvent) and r.event == "epoch_established" and r.get("role") == "leader":
        epoch = _int(r.get("epoch"))
        return (r.sid, epoch) if r.sid is not None and epoch is not None else None
    if isinstance(r, Status) and r.up and r.state == "LEADING" and r.synced:
        return (r.sid, r.epoch) if r.sid is not None and r.epoch is not None else None
    return None


def _role(r: Record) -> tuple[str, int | None] | None:
    """(state, leader followed) a record shows its node in, if any."""
    if isinstance(r, Status) and r.up:
        return (r.state, r.leader) if r.state else None
    if isinstance(r, NodeEvent) and r.event == "epoch_established":
        state = _ROLE_STATE.get(r.get("role"))
        return (state, _int(r.get("leader"))) if state else None
    return None


def _judge_join(ctx: Context, i: int, leader: int, epoch: int) -> Finding | None:
    """One restart (``records[i]``) into ``leader``'s established ``epoch``:
    None when the node joined, or the leader went away first."""
    restart = ctx.records[i]
    sid, seq0 = _sid(restart), restart.seq
    finished: NodeEvent | None = None
    for r in ctx.records[i + 1:]:
        if isinstance(r, Process) and r.sid == leader and r.action in ("killed", "stopped", "paused", "exited"):
            return None
        if isinstance(r, Process) and r.sid == sid and r.action in ("killed", "stopped", "exited"):
            break
        led = _leading(r)
        if led is not None and led[1] > epoch:
            return Finding.invalid(f"node {sid} restarted (seq {seq0}) into epoch {epoch} led by {leader}, "
                                   f"but node {led[0]} then led epoch {led[1]}", (seq0, r.seq))
        if _sid(r) != sid:
            continue
        if isinstance(r, NodeEvent) and r.event == "election_finished" and finished is None:
            finished = r
            if r.get("path") != "out_of_election" or r.get("leader") != leader:
                return Finding.invalid(
                    f"node {sid} restarted (seq {seq0}) while {leader} led epoch {epoch}, but its election "
                    f"finished with leader {r.get('leader', '—')} via path {r.get('path', '—')}", (seq0, r.seq))
        role = _role(r)
        if role is None:
            continue
        state, follows = role
        if state == "LEADING" or (state in ("FOLLOWING", "OBSERVING") and follows != leader):
            return Finding.invalid(
                f"node {sid} restarted (seq {seq0}) while {leader} led, but ended {state} "
                f"{'itself' if state == 'LEADING' else follows}", (seq0, r.seq))
        if state in ("FOLLOWING", "OBSERVING") and finished is not None:
            return None
    if not ctx.ended:
        return Finding.unknown(f"node {sid} restarted (seq {seq0}) and has not joined yet")
    return Finding.invalid(
        f"node {sid} restarted (seq {seq0}) while {leader} led epoch {epoch}, and never "
        + ("reported an out-of-election finish" if finished is None else "ended FOLLOWING it"),
        (seq0,) + ((finished.seq,) if finished else ()))


@invariant("out_of_election_join")
def out_of_election_join(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """A node restarted into a running ensemble joins its leader through the
    out-of-election path and does not move the ensemble to a new epoch. The
    ensemble is running when a leader has established its epoch and a quorum
    follows it: a leader that has only just gone LEADING still shows the
    previous epoch, and establishing its own is no fault of the restart."""
    started: set[int] = set()
    joins: list[tuple[int, int, int]] = []  # (index of the restart, leader, established epoch)
    for i, r in enumerate(ctx.records):
        if isinstance(r, Process) and r.action == "started" and r.sid is not None:
            running = ctx.leading_quorum(ctx.before(i), established=True) if r.sid in started else None
            if running is not None and running[0] != r.sid and running[1].established is not None:
                joins.append((i, running[0], running[1].established))
            started.add(r.sid)
    if not joins:
        return Finding.valid("no restart into a running ensemble")
    done = 0
    for i, leader, epoch in joins:
        bad = _judge_join(ctx, i, leader, epoch)
        if bad is not None:
            return bad
        done += 1
    return Finding.valid(f"{done} restart(s) joined the running leader out of election, epoch unchanged")


# --------------------------------------------------------------------------- leader_validity


@invariant("leader_validity")
def leader_validity(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """A leader chosen by the quorum path has the highest (peer_epoch, zxid, sid)
    among the voters that chose it (ZooKeeper's total_order_predicate)."""
    last_start: dict[int, NodeEvent] = {}
    # (leader, round, peer_epoch, zxid) -> [(voter, its election_started or None, its election_finished)]
    groups: dict[tuple[Any, ...], list[tuple[int, NodeEvent | None, NodeEvent]]] = {}
    for r in ctx.records:
        if not isinstance(r, NodeEvent) or r.sid is None:
            continue
        if r.event == "election_started":
            last_start[r.sid] = r
        elif r.event == "election_finished" and r.get("path") == "quorum" and r.get("state") != "OBSERVING":
            key = (r.get("leader"), r.get("round"), r.get("peer_epoch"), r.get("zxid"))
            groups.setdefault(key, []).append((r.sid, last_start.get(r.sid), r))
    checked = 0
    for (leader, rnd, peer_epoch, zxid), members in groups.items():
        leader, peer_epoch, zxid = _int(leader), _int(peer_epoch), _int(zxid)
        if leader is None or peer_epoch is None or zxid is None:
            continue
        winner = (peer_epoch, zxid, leader)
        checked += 1
        for sid, start, fin in members:
            if start is None:
                continue
            epoch, last_zxid = _int(start.get("current_epoch")), _int(start.get("last_zxid"))
            if epoch is None or last_zxid is None:
                continue
            if (epoch, last_zxid, sid) > winner:
                first = min(m[2].seq for m in members)
                return Finding.invalid(
                    f"leader {leader} elected in round {rnd} with (epoch {peer_epoch}, zxid {zxid:#x}) but voter "
                    f"{sid} had (epoch {epoch}, zxid {last_zxid:#x}) — higher by total_order_predicate",
                    tuple(sorted({fin.seq, start.seq, first})), first)
    if not checked:
        return Finding.valid("no election decided by the quorum path")
    return Finding.valid(f"{checked} quorum-path election(s) chose the highest (epoch, zxid, sid)")


# --------------------------------------------------------------------------- no_committed_txn_lost


def _log_has(runs: Iterable[tuple[int, int, int]], zxid: int) -> bool:
    e, c = zxid_epoch(zxid), zxid_counter(zxid)
    return any(epoch == e and first <= c <= last for epoch, first, last in runs)


@invariant("no_committed_txn_lost")
def no_committed_txn_lost(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """Every txn committed before a leader change survives in the new leader:
    its last_zxid at epoch_established is not behind, and its final txn log
    (``log_summary``) still holds the txn."""
    committed: list[tuple[int, int, int]] = []  # (zxid, seq, index) in time order
    leaders: list[tuple[int, NodeEvent]] = []  # (index, epoch_established as leader)
    summaries: dict[int, LogSummary] = {}
    for i, r in enumerate(ctx.records):
        if isinstance(r, NodeEvent):
            zxid = _int(r.get("zxid")) if r.event == "txn_committed" else None
            if zxid is not None:
                committed.append((zxid, r.seq, i))
            elif r.event == "epoch_established" and r.get("role") == "leader":
                leaders.append((i, r))
        elif isinstance(r, LogSummary) and r.sid is not None and r.runs is not None:
            summaries[r.sid] = r  # runs=None: the log could not be read; judge by last_zxid only
    if not committed:
        return Finding.valid("no committed txn observed")
    checked = 0
    for at, lead in leaders:
        new_epoch = _int(lead.get("epoch"))
        before = [(z, s) for z, s, i in committed if i < at and (new_epoch is None or zxid_epoch(z) < new_epoch)]
        if not before:
            continue
        checked += 1
        top_z, top_s = max(before)
        last = _int(lead.get("last_zxid"))
        if last is not None and last < top_z:
            return Finding.invalid(
                f"leader {lead.sid} established epoch {new_epoch} with last_zxid {last:#x}, "
                f"behind committed txn {top_z:#x} (seq {top_s})", (top_s, lead.seq), lead.seq)
        summary = summaries.get(lead.sid) if lead.sid is not None else None
        if summary is not None and summary.runs is not None:
            for z, s in before:
                if not _log_has(summary.runs, z):
                    return Finding.invalid(
                        f"txn {z:#x} committed (seq {s}) before leader {lead.sid} took epoch {new_epoch} "
                        f"is missing from its txn log", (s, lead.seq, summary.seq), summary.seq)
    if not checked:
        return Finding.valid(f"{len(committed)} txn(s) committed; no leader change after a commit")
    return Finding.valid(f"{len(committed)} committed txn(s) survived {checked} leader change(s)")
