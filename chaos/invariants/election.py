"""The first five invariants: one leader per epoch, convergence after the
faults, out-of-election joins, the leader chosen by total order, and no
committed txn lost across a leader change."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from chaos.records import (Fault, LogSummary, NodeEvent, Process, Record, Status, StepFinished, StepStarted,
                            Teardown, UnsyncedLost)
from zkrules.vote import zxid_counter, zxid_epoch

from chaos.outcome import Verdict

from .core import (_NOBODY, _ROLE_STATE, DEFAULT_CONVERGENCE_S, Context, Finding, NodeStates, invariant)
from .core import as_int as _int
from .core import sid_of as _sid

__all__ = ["single_leader", "convergence", "out_of_election_join", "leader_validity", "no_committed_txn_lost"]

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
            continue  # the state at the fault record may be stale (polls lag): a later observation must show it
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


_PROCESS_FAULTS = frozenset({"kill", "stop", "pause", "power_loss"})


def _active_link_faults(records: Iterable[Record]) -> set[str]:
    """Fault ids on links (toxics, partitions, silent deaths) not undone yet."""
    active: set[str] = set()
    for r in records:
        if isinstance(r, Fault) and r.kind not in _PROCESS_FAULTS:
            (active.discard if r.phase == "undone" else active.add)(r.fault_id)
    return active


PathOf = Callable[[NodeEvent], "str | None"]
"""The path an ``election_finished`` took: the node says so (``path``); for a
target whose log does not, a check passes its own (:mod:`.zk_votes`)."""


def _path_said(r: NodeEvent) -> str | None:
    return r.get("path")


def _judge_join(ctx: Context, i: int, leader: int, epoch: int, path_of: PathOf = _path_said) -> Finding | None:
    """One restart (``records[i]``) into ``leader``'s established ``epoch``:
    None when the node joined, or the leader went away first."""
    restart = ctx.records[i]
    sid, seq0 = _sid(restart), restart.seq
    finished: NodeEvent | None = None
    link_faults = _active_link_faults(ctx.records[:i + 1])
    for j, r in enumerate(ctx.records[i + 1:], start=i + 1):
        if isinstance(r, Process) and r.sid == leader and r.action in ("killed", "stopped", "paused", "exited"):
            return None
        if isinstance(r, Fault) and r.kind not in _PROCESS_FAULTS:
            (link_faults.discard if r.phase == "undone" else link_faults.add)(r.fault_id)
        lead_now = ctx.states[j].get(leader)
        if link_faults and (lead_now is None or lead_now.state != "LEADING"):
            # The leader stepped down while a link fault held (a partition or
            # a reset cost it its quorum): the node may rightly join whatever
            # comes next. Without one, stepping down is the restart's doing.
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
            if _int(r.get("leader")) is None:
                return Finding.unknown(f"node {sid} restarted (seq {seq0}) while {leader} led epoch {epoch}; its "
                                       f"election finished (seq {r.seq}) without naming a leader in the log")
            finished = r
            path = path_of(r)
            if path != "out_of_election" or r.get("leader") != leader:
                stale = _stale_backing(ctx, i, r) if path == "quorum" else None
                if stale:
                    return Finding.valid(
                        f"node {sid} restarted (seq {seq0}) and decided {r.get('leader')} (seq {r.seq}) on a quorum "
                        f"that needed LOOKING votes from {', '.join(map(str, stale))}, sent in an election they had "
                        "already left (re-sent on reconnect, as ZooKeeper's QuorumCnxManager re-sends its last "
                        "message): not a fault of the join")
                return Finding.invalid(
                    f"node {sid} restarted (seq {seq0}) while {leader} led epoch {epoch}, but its election "
                    f"finished with leader {r.get('leader', '—')} via path {path or '—'}", (seq0, r.seq))
        role = _role(r)
        if role is None:
            continue
        state, follows = role
        # a poll that shows the role without the leader (ZooKeeper's mntr) names no other leader
        if state == "LEADING" or (state in ("FOLLOWING", "OBSERVING") and follows is not None and follows != leader):
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
    return judge_joins(ctx)


def _stale_backing(ctx: Context, i: int, fin: NodeEvent) -> list[int]:
    """Peers whose LOOKING votes a restarted node needed for its quorum-path decision
    ``fin`` though, by their own logs, they had left that election when the vote
    reached it; empty when the votes of peers still LOOKING (and its own) were a
    quorum already, or when no quorum backs the decision at all (other checks judge that).

    Why: a peer queues its last vote for a dead peer and sends it when the peer
    comes back, so a restarted node can count an election that has since ended
    into some other leader. ZooKeeper does the same; the node then fails to
    reach that leader within initLimit and elects again."""
    me, rnd = fin.sid, fin.get("round")
    target = (fin.get("leader"), fin.get("zxid"), fin.get("peer_epoch"))
    end = fin.node_ts
    if end is None or rnd is None:
        return []
    before = ctx.states[i]
    looking = {s: v.state == "LOOKING" for s, v in before.items()}
    window = [r for r in ctx.records[i + 1:] if isinstance(r, NodeEvent) and r.node_ts is not None
              and r.node_ts <= end and r.event in ("state_changed", "notification_received")]
    window.sort(key=lambda r: r.node_ts)
    votes: dict[int, tuple[bool, bool]] = {}  # sender -> (votes for the decided leader, sender still LOOKING)
    for r in window:
        if r.event == "state_changed":
            looking[r.sid] = r.get("to") == "LOOKING"
        elif r.sid == me and r.get("state") == "LOOKING" and r.get("round") == rnd:
            frm = _int(r.get("from"))
            if frm is not None:
                vote = (r.get("leader"), r.get("zxid"), r.get("peer_epoch"))
                votes[frm] = (vote == target, frm == me or looking.get(frm, False))
    backing = {s for s, (same, _) in votes.items() if same} | {me}
    fresh = {s for s, (same, live) in votes.items() if same and live} | {me}
    if not ctx.voters.is_quorum(backing) or ctx.voters.is_quorum(fresh):
        return []
    return sorted(backing - fresh)


def judge_joins(ctx: Context, path_of: PathOf = _path_said) -> Finding:
    """out_of_election_join with the path of each decision from ``path_of``."""
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
    notes: list[str] = []
    for i, leader, epoch in joins:
        found = _judge_join(ctx, i, leader, epoch, path_of)
        if found is not None and found.verdict is not Verdict.VALID:
            return found
        if found is not None:
            notes.append(found.message)
        else:
            done += 1
    msg = f"{done} restart(s) joined the running leader out of election, epoch unchanged"
    return Finding.valid("; ".join([msg, *notes]))


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
    its last_zxid at epoch_established is not behind (checked for every
    leader first: it names the moment), and its final txn log
    (``log_summary``) still holds the txn. A power cut (``unsynced_lost``)
    after the commit is named in the message: committed means acked by a
    quorum, and an ack promises the txn is on disk."""
    committed: list[tuple[int, int, int]] = []  # (zxid, seq, index) in time order
    leaders: list[tuple[int, NodeEvent]] = []  # (index, epoch_established as leader)
    summaries: dict[int, LogSummary] = {}
    cuts: list[tuple[int, UnsyncedLost]] = []  # (index, power cut of one node)
    for i, r in enumerate(ctx.records):
        if isinstance(r, NodeEvent):
            zxid = _int(r.get("zxid")) if r.event == "txn_committed" else None
            if zxid is not None:
                committed.append((zxid, r.seq, i))
            elif r.event == "epoch_established" and r.get("role") == "leader":
                leaders.append((i, r))
        elif isinstance(r, LogSummary) and r.sid is not None and r.runs is not None:
            summaries[r.sid] = r  # runs=None: the log could not be read; judge by last_zxid only
        elif isinstance(r, UnsyncedLost) and r.sid is not None and r.error is None:
            cuts.append((i, r))
    if not committed:
        return Finding.valid("no committed txn observed")

    def power(after: int, until: int) -> tuple[str, tuple[int, ...]]:
        hit = [r for i, r in cuts if after < i < until]
        if not hit:
            return "", ()
        sids = sorted({r.sid for r in hit})
        return (f"; power was cut on node(s) {', '.join(map(str, sids))} after the commit "
                f"(seq {', '.join(str(r.seq) for r in hit)}), dropping what they had not fsync'ed",
                tuple(r.seq for r in hit))

    checked = 0
    judged: list[tuple[int, NodeEvent, int | None, list[tuple[int, int, int]]]] = []
    for at, lead in leaders:
        new_epoch = _int(lead.get("epoch"))
        before = [(z, s, i) for z, s, i in committed if i < at and (new_epoch is None or zxid_epoch(z) < new_epoch)]
        if before:
            checked += 1
            judged.append((at, lead, new_epoch, before))
    for at, lead, new_epoch, before in judged:
        top_z, top_s, top_i = max(before)
        last = _int(lead.get("last_zxid"))
        if last is not None and last < top_z:
            why, seqs = power(top_i, at)
            return Finding.invalid(
                f"leader {lead.sid} established epoch {new_epoch} with last_zxid {last:#x}, "
                f"behind committed txn {top_z:#x} (seq {top_s}){why}", (top_s, *seqs, lead.seq), lead.seq)
    for at, lead, new_epoch, before in judged:
        summary = summaries.get(lead.sid) if lead.sid is not None else None
        if summary is not None and summary.runs is not None:
            for z, s, i in before:
                if not _log_has(summary.runs, z):
                    why, seqs = power(i, len(ctx.records))
                    return Finding.invalid(
                        f"txn {z:#x} committed (seq {s}) before leader {lead.sid} took epoch {new_epoch} "
                        f"is missing from its txn log{why}", (s, *seqs, lead.seq, summary.seq), summary.seq)
    if not checked:
        return Finding.valid(f"{len(committed)} txn(s) committed; no leader change after a commit")
    return Finding.valid(f"{len(committed)} committed txn(s) survived {checked} leader change(s)")
