"""Safety and liveness properties of leader election, checked on a journal.

Theory of operation. Every check is a pure function of the journal object
(DESIGN.md §2) and an optional spec from the plan; nothing here reads a file or
a clock, so the same functions judge a finished run, a partial journal while the
run is going, and a journal rebuilt after a crash.

Three verdicts:
  valid    the property held on everything the journal shows;
  invalid  the journal shows a violation; ``evidence`` holds the seqs of the
           records that prove it and ``first_violation`` the seq where the run
           first went wrong (the report links there);
  unknown  the journal cannot tell: no run data, or the ensemble never formed
           before the first fault (a setup failure is not an election bug).

Node state is replayed from ``status`` records (the orchestrator's poll of
``fles``) and ``node_event`` records (the node's own events.jsonl); a claim
about an epoch only counts once the epoch is *established* (the node said
``epoch_established``, or its polled current epoch moved while it led or
followed), because ZAB allows two nodes to believe they lead for a while —
what it forbids is two leaders of one epoch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from zkrules.quorum import QuorumHierarchical
from zkrules.vote import zxid_counter, zxid_epoch

__all__ = [
    "InvariantResult",
    "VALID",
    "INVALID",
    "UNKNOWN",
    "INVARIANTS",
    "DEFAULT_CONVERGENCE_S",
    "single_leader",
    "convergence",
    "out_of_election_join",
    "leader_validity",
    "no_committed_txn_lost",
    "check_all",
    "overall",
    "setup_failure",
    "zxid_epoch",
    "zxid_counter",
]

VALID, INVALID, UNKNOWN = "valid", "invalid", "unknown"
DEFAULT_CONVERGENCE_S = 15.0
_LIVE_STATES = ("LOOKING", "FOLLOWING", "LEADING", "OBSERVING")


@dataclass(frozen=True, slots=True)
class InvariantResult:
    name: str
    verdict: str
    message: str
    evidence: tuple[int, ...] = ()
    first_violation: int | None = None


# --------------------------------------------------------------------------- journal views


def _records(journal: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Records in time order. Journal order is arrival order: a node's events
    are tailed from its file and may land after later polls, but every ``t``
    comes from the one machine-wide monotonic clock, so ``t`` orders them."""
    out, last_t = [], 0.0
    for r in journal.get("records") or []:
        if not isinstance(r, dict) or not isinstance(r.get("seq"), int):
            continue
        t = r.get("t")
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            last_t = float(t)
        out.append((last_t, r["seq"], r))
    out.sort(key=lambda x: (x[0], x[1]))
    return [r for _, _, r in out]


def _node_events(records: Iterable[dict], event: str) -> list[dict]:
    return [r for r in records if r.get("type") == "node_event" and r.get("event") == event]


class _Voters(dict):
    """sid -> weight of every voter, plus the ensemble's quorum verifier when
    the header gives groups (ZooKeeper's hierarchical quorum)."""

    verifier: QuorumHierarchical | None = None


def _participants(journal: Mapping[str, Any], records: list[dict]) -> _Voters:
    """Every voter with its weight. Falls back to the sids seen in records
    when the header is missing (a crash before ``set_header``)."""
    voters = _Voters()
    groups: dict[Any, list[int]] = {}
    for node in journal.get("nodes") or []:
        if not isinstance(node, dict) or not isinstance(node.get("sid"), int):
            continue
        if node.get("role", "participant") == "observer":
            continue
        weight = node.get("weight")
        voters[node["sid"]] = float(weight) if isinstance(weight, (int, float)) else 1.0
        if node.get("group") is not None:
            groups.setdefault(node["group"], []).append(node["sid"])
    if voters and groups:
        try:
            voters.verifier = QuorumHierarchical(
                voters, {i: sids for i, sids in enumerate(groups.values(), 1)},
                {sid: int(w) for sid, w in voters.items()})
        except ValueError:
            voters.verifier = None  # an inconsistent header: judge by weighted majority
    if voters:
        return voters
    for r in records:
        sid = r.get("sid")
        if isinstance(sid, int) and r.get("state") != "OBSERVING" and r.get("role") != "observer":
            voters.setdefault(sid, 1.0)
    return voters


def _is_quorum(sids: Iterable[int], voters: Mapping[int, float]) -> bool:
    """The ensemble's own quorum rule: hierarchical when it has groups, else a
    weighted majority (what a node does with weights and no groups)."""
    verifier = getattr(voters, "verifier", None)
    if verifier is not None:
        return verifier.contains_quorum(s for s in set(sids) if s in voters)
    total = sum(voters.values())
    got = sum(voters.get(s, 0.0) for s in set(sids))
    return total > 0 and got * 2 > total


@dataclass(slots=True)
class _Node:
    up: bool = False
    paused: bool = False
    state: str | None = None
    leader: int | None = None
    epoch: int | None = None
    seq: int | None = None  # record that last changed the view of this node
    epoch_before: int | None = None  # epoch seen while LOOKING, before this stint

    @property
    def live(self) -> bool:
        return self.up and not self.paused


class _Replay:
    """Replays status/process/node_event records into per-node views."""

    def __init__(self) -> None:
        self.nodes: dict[int, _Node] = {}

    def node(self, sid: int) -> _Node:
        return self.nodes.setdefault(sid, _Node())

    def apply(self, r: dict) -> None:
        sid = r.get("sid")
        if not isinstance(sid, int):
            return
        kind = r.get("type")
        n = self.node(sid)
        if kind == "status":
            up = r.get("up", True)
            n.up = bool(up)
            if not n.up:
                n.state = None
            state = r.get("state")
            if n.up and state in _LIVE_STATES:
                if state == "LOOKING":
                    n.epoch_before = r["epoch"] if isinstance(r.get("epoch"), int) else n.epoch
                n.state = state
                n.leader = r.get("leader") if state != "LOOKING" else None
                if state == "LEADING":
                    n.leader = sid if r.get("leader") in (None, -1) else r.get("leader")
            if isinstance(r.get("epoch"), int):
                n.epoch = r["epoch"]
            n.seq = r["seq"]
        elif kind == "process":
            action = r.get("action")
            if action in ("started", "resumed"):
                n.up, n.paused = True, False
                if action == "started":
                    n.state, n.leader = None, None
            elif action == "paused":
                n.paused = True
            elif action in ("killed", "stopped", "exited"):
                n.up, n.paused, n.state, n.leader = False, False, None, None
            n.seq = r["seq"]
        elif kind == "node_event":
            ev = r.get("event")
            if ev in ("node_started", "election_started"):
                n.up = True
                if isinstance(r.get("current_epoch"), int):
                    n.epoch_before = r["current_epoch"]
            elif ev == "state_changed" and r.get("to") in _LIVE_STATES:
                n.up = True
                if r["to"] == "LOOKING":
                    n.leader = None
                n.state = r["to"]
                n.seq = r["seq"]
            elif ev == "epoch_established":
                n.up = True
                role = r.get("role")
                n.state = {"leader": "LEADING", "follower": "FOLLOWING", "observer": "OBSERVING"}.get(role, n.state)
                n.leader = sid if role == "leader" else r.get("leader", n.leader)
                if isinstance(r.get("epoch"), int):
                    n.epoch = r["epoch"]
                n.seq = r["seq"]

    def established_leader(self, voters: Mapping[int, float]) -> tuple[int, int | None] | None:
        """(leader sid, epoch) when a live leader has a live following quorum."""
        for sid, n in self.nodes.items():
            if not (n.live and n.state == "LEADING"):
                continue
            followers = [
                s for s, m in self.nodes.items()
                if s != sid and m.live and m.state == "FOLLOWING" and m.leader == sid
            ]
            if _is_quorum([sid, *followers], voters):
                return sid, n.epoch
        return None


def _ended(records: list[dict]) -> bool:
    """The run is over: ``log_summary`` (written once the nodes are stopped,
    before the final check) or ``run_finished`` is in the journal. Before
    that, a liveness property not yet met is ``unknown``, not ``invalid``."""
    return any(r.get("type") in ("run_finished", "log_summary") for r in records)


def setup_failure(journal: Mapping[str, Any]) -> str | None:
    """Why no invariant can be judged, or None. The ensemble must have formed
    (a leader with a following quorum) before the first fault was requested."""
    records = _records(journal)
    if not records:
        return "the journal has no run data"
    voters = _participants(journal, records)
    if not voters:
        return "the journal names no voting nodes"
    replay = _Replay()
    first_fault = None
    for r in records:
        if r.get("type") == "fault" and r.get("phase", "requested") == "requested":
            first_fault = r
            break
        replay.apply(r)
        if replay.established_leader(voters):
            return None
    if first_fault is not None:
        return f"the ensemble never formed before the first fault (seq {first_fault['seq']}): setup failure"
    if _ended(records):
        return "the ensemble never formed: setup failure"
    return "the ensemble has not formed yet"


def _unknown(name: str, why: str) -> InvariantResult:
    return InvariantResult(name, UNKNOWN, why)


# --------------------------------------------------------------------------- single_leader


def single_leader(journal: Mapping[str, Any], spec: Mapping[str, Any] | None = None) -> InvariantResult:
    """One leader per epoch: no two nodes establish leadership of one epoch,
    and no two voters follow different leaders in one established epoch."""
    name = "single_leader"
    records = _records(journal)
    why = setup_failure(journal)
    if why:
        return _unknown(name, why)
    voters = _participants(journal, records)
    replay = _Replay()
    # epoch -> leader sid -> first seq that claims it
    claims: dict[int, dict[int, int]] = {}

    def claim(epoch: Any, leader: Any, seq: int) -> InvariantResult | None:
        if not isinstance(epoch, int) or not isinstance(leader, int) or leader < 0:
            return None
        by_leader = claims.setdefault(epoch, {})
        by_leader.setdefault(leader, seq)
        if len(by_leader) > 1:
            (l1, s1), (l2, s2) = sorted(by_leader.items(), key=lambda kv: kv[1])[:2]
            return InvariantResult(
                name, INVALID,
                f"epoch {epoch} has two leaders: {l1} (seq {s1}) and {l2} (seq {s2})",
                (s1, s2), max(s1, s2),
            )
        return None

    for r in records:
        replay.apply(r)
        bad = None
        if r.get("type") == "node_event" and r.get("event") == "epoch_established":
            role = r.get("role")
            if role == "leader":
                bad = claim(r.get("epoch"), r.get("sid"), r["seq"])
            elif role == "follower" and r.get("sid") in voters:
                bad = claim(r.get("epoch"), r.get("leader"), r["seq"])
        elif r.get("type") == "status" and r.get("up", True):
            state, epoch = r.get("state"), r.get("epoch")
            n = replay.nodes[r["sid"]]
            # A polled epoch counts once it moved past the one the node had while LOOKING.
            # fles says when sync with the leader (or a quorum) is done; before that
            # a follower's epoch is still the previous leader's and proves nothing.
            # Journals without the field fall back to "the epoch moved".
            if "synced" in r:
                moved = isinstance(epoch, int) and r["synced"] is True
            else:
                moved = isinstance(epoch, int) and isinstance(n.epoch_before, int) \
                    and epoch > n.epoch_before
            if moved and state == "LEADING":
                bad = claim(epoch, r["sid"], r["seq"])
            elif moved and state == "FOLLOWING" and r["sid"] in voters:
                bad = claim(epoch, r.get("leader"), r["seq"])
        if bad:
            return bad
    n_epochs = len(claims)
    return InvariantResult(name, VALID, f"one leader in each of {n_epochs} established epoch(s)")


# --------------------------------------------------------------------------- convergence


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


def _seconds(value: Any, default: float) -> float:
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        return default
    n, unit = float(m.group(1)), m.group(2) or "ms"
    return n / 1000.0 if unit == "ms" else n * 60.0 if unit == "m" else n


def _agreement(replay: _Replay, voters: Mapping[int, float]) -> tuple[int, Any] | None:
    """(leader, epoch) when every live voter is LEADING/FOLLOWING one leader in one epoch."""
    live = [s for s in voters if replay.nodes.get(s) and replay.nodes[s].live]
    if not live or not _is_quorum(live, voters):
        return None
    leaders = [s for s in live if replay.nodes[s].state == "LEADING"]
    if len(leaders) != 1:
        return None
    leader = leaders[0]
    epoch = replay.nodes[leader].epoch
    for s in live:
        n = replay.nodes[s]
        if s != leader and not (n.state == "FOLLOWING" and n.leader == leader and n.epoch == epoch):
            return None
    return leader, epoch


def convergence(journal: Mapping[str, Any], spec: Mapping[str, Any] | None = None) -> InvariantResult:
    """Liveness: within ``spec.within`` seconds of the last fault being undone,
    every live voter agrees on one leader (LEADING, the rest FOLLOWING it, one epoch)."""
    name = "convergence"
    records = _records(journal)
    why = setup_failure(journal)
    if why:
        return _unknown(name, why)
    spec = spec or {}
    within = _seconds(spec.get("within_s", spec.get("within")), DEFAULT_CONVERGENCE_S)
    voters = _participants(journal, records)
    last_fault = None
    faulted = False
    for r in records:
        kind = r.get("type")
        if kind == "fault":
            faulted = True
            last_fault = r
        elif kind in ("step_started", "step_finished") and r.get("kind") == "heal":
            last_fault = r
        elif kind == "process" and faulted and r.get("action") in ("started", "resumed"):
            last_fault = r  # a restart/resume undoes a kill/stop/pause
    t0 = last_fault["t"] if last_fault else records[0].get("t", 0.0)
    deadline = t0 + within
    since = (f"the last fault/undo (seq {last_fault['seq']})" if last_fault else "the start")
    replay = _Replay()
    last_seen: dict[int, int] = {}  # sid -> last record about it, as of the deadline
    end_t = max(r.get("t", 0.0) for r in records)
    for r in records:
        t = r.get("t", 0.0)
        after_fault = last_fault is None or r["seq"] > last_fault["seq"]
        if after_fault and t > deadline:
            break
        replay.apply(r)
        if isinstance(r.get("sid"), int) and r.get("type") in ("status", "process", "node_event"):
            last_seen[r["sid"]] = r["seq"]
        if not after_fault:
            continue
        agreed = _agreement(replay, voters)
        if agreed:
            leader, epoch = agreed
            return InvariantResult(
                name, VALID,
                f"all live voters followed leader {leader} (epoch {epoch if epoch is not None else '—'}) "
                f"{max(0.0, t - t0):.2f} s after {since} (bound {within:g} s)",
            )
    live = [s for s in voters if replay.nodes.get(s) and replay.nodes[s].live]
    if not _is_quorum(live, voters) and end_t >= deadline:
        return InvariantResult(name, VALID, f"not applicable: no quorum of voters is alive after {since}")
    if end_t < deadline and not _ended(records):
        return _unknown(name, f"not converged yet; {deadline - end_t:.1f} s of the {within:g} s bound left")
    states = ", ".join(
        f"{s}:{(replay.nodes[s].state or 'down') if s in replay.nodes else '—'}"
        + (f"→{replay.nodes[s].leader}" if s in replay.nodes and replay.nodes[s].state == "FOLLOWING" else "")
        for s in sorted(voters)
    )
    evidence = tuple(sorted(last_seen[s] for s in live if s in last_seen)) or ((last_fault["seq"],) if last_fault else ())
    return InvariantResult(
        name, INVALID,
        f"live voters did not agree on one leader within {within:g} s after {since}; last seen: {states}",
        evidence, max(evidence) if evidence else None,
    )


# --------------------------------------------------------------------------- out_of_election_join


def out_of_election_join(journal: Mapping[str, Any], spec: Mapping[str, Any] | None = None) -> InvariantResult:
    """A node restarted into a running ensemble joins its leader through the
    out-of-election path and does not move the ensemble to a new epoch."""
    name = "out_of_election_join"
    records = _records(journal)
    why = setup_failure(journal)
    if why:
        return _unknown(name, why)
    voters = _participants(journal, records)
    replay = _Replay()
    started: set[int] = set()
    joins: list[tuple[dict, int, Any]] = []  # (restart record, leader, epoch)
    for r in records:
        if r.get("type") == "process" and r.get("action") == "started" and isinstance(r.get("sid"), int):
            sid = r["sid"]
            if sid in started:
                est = replay.established_leader(voters)
                if est and est[0] != sid:
                    joins.append((r, est[0], est[1]))
            started.add(sid)
        replay.apply(r)
    if not joins:
        return InvariantResult(name, VALID, "no restart into a running ensemble")
    done = 0
    for restart, leader, epoch in joins:
        sid, seq0 = restart["sid"], restart["seq"]
        finished = joined = None
        leader_gone = False
        for r in records:
            if r["seq"] <= seq0:
                continue
            if r.get("type") == "process" and r.get("sid") == leader and r.get("action") in ("killed", "stopped", "paused", "exited"):
                leader_gone = True
                break
            if r.get("type") == "process" and r.get("sid") == sid and r.get("action") in ("killed", "stopped", "exited"):
                break
            newer_epoch = None
            if r.get("type") == "node_event" and r.get("event") == "epoch_established" and r.get("role") == "leader":
                newer_epoch = r.get("epoch")
            elif r.get("type") == "status" and r.get("state") == "LEADING":
                newer_epoch = r.get("epoch")
            if isinstance(newer_epoch, int) and isinstance(epoch, int) and newer_epoch > epoch:
                return InvariantResult(
                    name, INVALID,
                    f"node {sid} restarted (seq {seq0}) into epoch {epoch} led by {leader}, "
                    f"but node {r['sid']} then led epoch {newer_epoch}",
                    (seq0, r["seq"]), r["seq"],
                )
            if r.get("sid") != sid:
                continue
            if r.get("type") == "node_event" and r.get("event") == "election_finished" and finished is None:
                finished = r
                if r.get("path") != "out_of_election" or r.get("leader") != leader:
                    return InvariantResult(
                        name, INVALID,
                        f"node {sid} restarted (seq {seq0}) while {leader} led epoch {epoch}, but its election "
                        f"finished with leader {r.get('leader', '—')} via path {r.get('path', '—')}",
                        (seq0, r["seq"]), r["seq"],
                    )
            state = None
            if r.get("type") == "status" and r.get("up", True):
                state, follows = r.get("state"), r.get("leader")
            elif r.get("type") == "node_event" and r.get("event") == "epoch_established":
                state = {"follower": "FOLLOWING", "observer": "OBSERVING", "leader": "LEADING"}.get(r.get("role"))
                follows = r.get("leader")
            if state == "LEADING" or (state in ("FOLLOWING", "OBSERVING") and follows != leader):
                return InvariantResult(
                    name, INVALID,
                    f"node {sid} restarted (seq {seq0}) while {leader} led, but ended {state} "
                    f"{'itself' if state == 'LEADING' else follows}",
                    (seq0, r["seq"]), r["seq"],
                )
            if state in ("FOLLOWING", "OBSERVING") and finished is not None:
                joined = r
                break
        if leader_gone:
            continue
        if joined is None:
            if not _ended(records):
                return _unknown(name, f"node {sid} restarted (seq {seq0}) and has not joined yet")
            ev = (seq0,) + ((finished["seq"],) if finished else ())
            return InvariantResult(
                name, INVALID,
                f"node {sid} restarted (seq {seq0}) while {leader} led epoch {epoch}, and never "
                + ("reported an out-of-election finish" if finished is None else "ended FOLLOWING it"),
                ev, max(ev),
            )
        done += 1
    if not done:
        return InvariantResult(name, VALID, "no restart into a running ensemble (the leader went away during each join)")
    return InvariantResult(name, VALID, f"{done} restart(s) joined the running leader out of election, epoch unchanged")


# --------------------------------------------------------------------------- leader_validity


def leader_validity(journal: Mapping[str, Any], spec: Mapping[str, Any] | None = None) -> InvariantResult:
    """A leader chosen by the quorum path has the highest (peer_epoch, zxid, sid)
    among the voters that chose it (ZooKeeper's total_order_predicate)."""
    name = "leader_validity"
    records = _records(journal)
    why = setup_failure(journal)
    if why:
        return _unknown(name, why)
    last_start: dict[int, dict] = {}
    # (leader, round, peer_epoch, zxid) -> [(voter sid, election_started record or None, finished record)]
    groups: dict[tuple, list[tuple[int, dict | None, dict]]] = {}
    for r in records:
        if r.get("type") != "node_event" or not isinstance(r.get("sid"), int):
            continue
        if r.get("event") == "election_started":
            last_start[r["sid"]] = r
        elif r.get("event") == "election_finished" and r.get("path") == "quorum" and r.get("state") != "OBSERVING":
            key = (r.get("leader"), r.get("round"), r.get("peer_epoch"), r.get("zxid"))
            groups.setdefault(key, []).append((r["sid"], last_start.get(r["sid"]), r))
    checked = 0
    for (leader, rnd, peer_epoch, zxid), members in groups.items():
        if not all(isinstance(x, int) for x in (leader, peer_epoch, zxid)):
            continue
        winner = (peer_epoch, zxid, leader)
        checked += 1
        for sid, start, fin in members:
            if start is None:
                continue
            cred = (start.get("current_epoch"), start.get("last_zxid"), sid)
            if not all(isinstance(x, int) for x in cred):
                continue
            if cred > winner:
                first = min(m[2]["seq"] for m in members)
                return InvariantResult(
                    name, INVALID,
                    f"leader {leader} elected in round {rnd} with (epoch {peer_epoch}, zxid {zxid:#x}) but voter "
                    f"{sid} had (epoch {cred[0]}, zxid {cred[1]:#x}) — higher by total_order_predicate",
                    tuple(sorted({fin["seq"], start["seq"], first})), first,
                )
    if not checked:
        return InvariantResult(name, VALID, "no election decided by the quorum path")
    return InvariantResult(name, VALID, f"{checked} quorum-path election(s) chose the highest (epoch, zxid, sid)")


# --------------------------------------------------------------------------- no_committed_txn_lost


def _log_has(runs: Any, zxid: int) -> bool:
    e, c = zxid_epoch(zxid), zxid_counter(zxid)
    for run in runs or ():
        if isinstance(run, (list, tuple)) and len(run) >= 3 and run[0] == e and run[1] <= c <= run[2]:
            return True
    return False


def no_committed_txn_lost(journal: Mapping[str, Any], spec: Mapping[str, Any] | None = None) -> InvariantResult:
    """Every txn committed before a leader change survives in the new leader:
    its last_zxid at epoch_established is not behind, and its final txn log
    (``log_summary``) still holds the txn."""
    name = "no_committed_txn_lost"
    records = _records(journal)
    why = setup_failure(journal)
    if why:
        return _unknown(name, why)
    committed: list[tuple[int, int]] = []  # (zxid, seq) in time order
    leaders: list[dict] = []
    summaries: dict[int, dict] = {}
    for r in records:
        if r.get("type") == "node_event":
            if r.get("event") == "txn_committed" and isinstance(r.get("zxid"), int):
                committed.append((r["zxid"], r["seq"]))
            elif r.get("event") == "epoch_established" and r.get("role") == "leader":
                leaders.append(r)
        elif r.get("type") == "log_summary" and isinstance(r.get("sid"), int) and isinstance(r.get("runs"), list):
            summaries[r["sid"]] = r  # runs=None: the log could not be read; judge by last_zxid only
    if not committed:
        return InvariantResult(name, VALID, "no committed txn observed")
    checked = 0
    order = {r["seq"]: i for i, r in enumerate(records)}
    for lead in leaders:
        new_epoch = lead.get("epoch")
        before = [(z, s) for z, s in committed
                  if order[s] < order[lead["seq"]] and (not isinstance(new_epoch, int) or zxid_epoch(z) < new_epoch)]
        if not before:
            continue
        checked += 1
        top_z, top_s = max(before)
        last = lead.get("last_zxid")
        if isinstance(last, int) and last < top_z:
            return InvariantResult(
                name, INVALID,
                f"leader {lead.get('sid')} established epoch {new_epoch} with last_zxid {last:#x}, "
                f"behind committed txn {top_z:#x} (seq {top_s})",
                (top_s, lead["seq"]), lead["seq"],
            )
        summary = summaries.get(lead.get("sid"))
        if summary is not None:
            for z, s in before:
                if not _log_has(summary.get("runs"), z):
                    return InvariantResult(
                        name, INVALID,
                        f"txn {z:#x} committed (seq {s}) before leader {lead.get('sid')} took epoch {new_epoch} "
                        f"is missing from its txn log",
                        (s, lead["seq"], summary["seq"]), summary["seq"],
                    )
    if not checked:
        return InvariantResult(name, VALID, f"{len(committed)} txn(s) committed; no leader change after a commit")
    return InvariantResult(name, VALID, f"{len(committed)} committed txn(s) survived {checked} leader change(s)")


# --------------------------------------------------------------------------- all of them


INVARIANTS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any] | None], InvariantResult]] = {
    "single_leader": single_leader,
    "convergence": convergence,
    "out_of_election_join": out_of_election_join,
    "leader_validity": leader_validity,
    "no_committed_txn_lost": no_committed_txn_lost,
}


def check_all(journal: Mapping[str, Any], specs: Mapping[str, Any] | None = None) -> list[InvariantResult]:
    """Run the invariants named in ``specs`` (a plan's ``invariants`` mapping;
    None or empty = all five with defaults), in the order given."""
    if not specs:
        specs = {name: {} for name in INVARIANTS}
    results = []
    for name, spec in specs.items():
        fn = INVARIANTS.get(name)
        if fn is None:
            results.append(_unknown(name, f"no invariant named {name!r}"))
            continue
        results.append(fn(journal, spec if isinstance(spec, Mapping) else {}))
    return results


def overall(results: Iterable[InvariantResult | Mapping[str, Any]]) -> str:
    """invalid if any is invalid, else unknown if any is unknown (or none ran), else valid."""
    verdicts = [r.verdict if isinstance(r, InvariantResult) else r.get("verdict") for r in results]
    if INVALID in verdicts:
        return INVALID
    if not verdicts or any(v != VALID for v in verdicts):
        return UNKNOWN
    return VALID
