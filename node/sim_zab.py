"""The simulator with the node's Zab rules and the node's event log, for `chaos sim`.

Why: `chaos sim` judges a simulated run with the same invariants as a real
one, so a simulated node must write what a real node writes (DESIGN §1,
events.jsonl: the same event names and fields) and follow the same epoch,
sync and commit rules. :class:`ZabSim` extends :class:`node.sim.Simulator`
(the FLE core, the seeded QCM-like network, directed link faults) with the
broadcast phase of ``node.zab``, driven on a virtual tick and using its rules
from ``node.zab_core``: ``epoch_to_propose``, ``learner_epoch_action``
(ACKEPOCH -1 does not count: ``counted_epoch_acks``), ``learner_ahead`` (a
follower ahead aborts the leader), ``plan_sync`` and ``sync_frames`` (the
TRUNC/DIFF/TXN/NEWLEADER a learner gets, applied here as the node's learner
loop applies them: ``LearnerSync``), ``newleader_acks``, ``keeps_quorum`` (the leader's
periodic check) and ``ProposalTracker`` (commit in zxid order on a voting
quorum of cumulative ACKs) — the very functions ``node.zab`` calls.

Theory of operation. Quorum-port traffic is message-level on a half tick
(the leader's PING period): each exchange happens within the tick when the
directed quorum links it needs pass (not held, not down, latency below the
limit it must beat), and otherwise does not. A learner dials the leader
through proxy learner->leader (5 tries, 100 ms apart, within initLimit), so
a `down` there refuses it; a hold on either direction stalls the handshake
until initLimit. The connection closes — both ends see it at once unless a
hold keeps the FIN — when either process ends, when the leader stops
leading, on a reset_peer (its timeout after the connection opened), when a
proxy it runs through is disabled, and when a hold on it is removed.
Failure detection is the node's: a learner hearing nothing for syncLimit
(initLimit before UPTODATE) gives up; a leader counts itself plus voters that
ACKed NEWLEADER and were heard within syncLimit.

What differs from a real node, on purpose: the handshake and sync messages of
one exchange arrive within the tick they are sent in (a real one takes
milliseconds), and a message the link delays less than the relevant limit
arrives at once. The txn interval is the plan's (callers may make it sparser
for speed). Persisted state — log, acceptedEpoch, currentEpoch, last
committed zxid — survives a crash and a restart, as on disk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from zkrules.quorum import QuorumVerifier
from zkrules.vote import Notification, ServerState, make_zxid, zxid_epoch

from .fle import Decided, Effect, EventOut, FastLeaderElection, Send, StateChanged
from .sim import LinkFault, LinkKey, SimNode, Simulator
from .zab_core import (AckEpoch, EpochAction, LearnerSync, ProposalTracker, SyncMode, ZabProtocolError,
                       counted_epoch_acks, epoch_to_propose, keeps_quorum, leader_read_timeout, learner_ahead,
                       learner_epoch_action, learner_read_timeout, newleader_acks, plan_sync, sync_frames,
                       voting_quorum)

__all__ = ["ZabSim", "SimLog"]

Emit = Callable[[int, str, dict[str, Any]], None]

CONNECT_TRIES = 5
CONNECT_DELAY_MS = 100.0

# The reasons lead()/follow() return (node.zab's words).
NO_EPOCH_QUORUM = "no quorum for new epoch"
QUORUM_LOST = "quorum lost"
FOLLOWER_AHEAD = "follower ahead of leader"
LEADER_SILENT = "leader silent"
LEADER_CLOSED = "leader closed connection"
CANNOT_CONNECT = "cannot connect to leader"
EPOCH_OLDER = "leader epoch older than accepted epoch"
STOPPED = "stopped"


@dataclass
class SimLog:
    """A node's dataDir: the txn log (zxids in order), epochs, last committed zxid."""

    zxids: list[int] = field(default_factory=list)
    accepted_epoch: int = 0
    current_epoch: int = 0
    committed: int = 0

    @property
    def last_zxid(self) -> int:
        return self.zxids[-1] if self.zxids else 0

    def copy(self) -> "SimLog":
        return SimLog(list(self.zxids), self.accepted_epoch, self.current_epoch, self.committed)

    def runs(self) -> list[list[int]]:
        """(epoch, first counter, last counter) runs, as zkrules.txnlog summarises a log."""
        out: list[list[int]] = []
        for z in self.zxids:
            e, c = z >> 32, z & 0xFFFFFFFF
            if out and out[-1][0] == e and out[-1][2] + 1 == c:
                out[-1][2] = c
            else:
                out.append([e, c, c])
        return out


@dataclass(eq=False)
class _Learner:
    """The leader's side of one learner connection."""

    sid: int
    observer: bool
    accepted_epoch: int
    conn: int
    last_heard: float
    ack_epoch: AckEpoch | None = None
    synced_sent: bool = False                 # TRUNC/DIFF/TXN*/NEWLEADER went out
    newleader_acked: bool = False
    uptodate_sent: bool = False
    backlog: list[tuple[str, int]] = field(default_factory=list)  # ("p"|"c", zxid) a paused learner reads later


@dataclass(eq=False)
class _Lead:
    since: float
    tracker: ProposalTracker
    learners: dict[int, _Learner] = field(default_factory=dict)
    epoch: int = -1
    phase_since: float = 0.0
    established: bool = False
    synced: bool = False
    counter: int = 0
    next_txn: float = 0.0
    half: int = 0


@dataclass(eq=False)
class _Follow:
    leader: int
    observer: bool
    since: float
    tries: int = 0
    next_try: float = 0.0
    conn: int | None = None                   # connection id, shared with the leader's _Learner
    last_heard: float = 0.0
    established: bool = False
    synced: bool = False
    mode: SyncMode = SyncMode.NONE
    from_zxid: int = 0
    to_zxid: int = 0


class ZabSim(Simulator):
    """``emit(sid, event, fields)`` receives every event a node would write."""

    def __init__(self, verifier: QuorumVerifier, sids: Iterable[int], *, seed: int, emit: Emit,
                 protocol: str = "3.8", tick_time_ms: float = 200.0, init_limit: int = 10, sync_limit: int = 5,
                 txn_interval_ms: float = 100.0, min_delay_ms: float = 0.2, max_delay_ms: float = 2.0,
                 max_notification_interval: int = 2000, started: Iterable[int] | None = None,
                 core_factory: Callable[..., FastLeaderElection] | None = None,
                 no_txns: Iterable[int] = ()) -> None:
        """``core_factory(sid, verifier, **core_args)`` makes each node's FLE core
        (default ``FastLeaderElection``): the seam a test uses to run a core with
        a rule changed, without touching the production class."""
        self.emit = emit
        self.core_factory = core_factory
        self.no_txns = frozenset(no_txns)   # leaders that propose nothing (txnIntervalMs=0 in their zoo.cfg)
        self.tick_time_ms = tick_time_ms
        self.logs: dict[int, SimLog] = {sid: SimLog() for sid in sids}
        self.lead: dict[int, _Lead] = {}
        self.follow: dict[int, _Follow] = {}
        self._conn_seq = 0
        self._conns: dict[int, list] = {}   # quorum connections: id -> [learner, leader, learner end open, leader end open]
        self.dirty: set[int] = set()                    # sids whose status may have moved
        super().__init__(verifier, {sid: (0, 0) for sid in sids}, seed=seed, protocol=protocol,
                         min_delay_ms=min_delay_ms, max_delay_ms=max_delay_ms, reorder=False,
                         init_limit_ms=init_limit * tick_time_ms, sync_limit_ms=sync_limit * tick_time_ms,
                         tick_ms=tick_time_ms / 2, txn_interval_ms=txn_interval_ms,
                         max_notification_interval=max_notification_interval)
        self.trace_enabled = False
        for sid in self.nodes:
            if started is not None and sid not in set(started):
                self.nodes[sid].alive = False

    # -- process control ------------------------------------------------------------
    def boot(self, sid: int, pid: int) -> None:
        """A process starts on the node's dataDir: node_started, then an election."""
        node = self.nodes[sid]
        if node.alive:
            raise RuntimeError(f"node {sid} is running")
        log = self.logs[sid]
        node.alive, node.paused = True, False
        node.incarnation += 1
        node.core = self._new_core(sid)
        node.last_zxid, node.current_epoch, node.accepted_epoch = log.last_zxid, log.current_epoch, log.accepted_epoch
        self.emit(sid, "node_started", {
            "pid": pid, "protocol": self.protocol,
            "peer_type": "observer" if sid in self.verifier.observers else "participant",
            "last_zxid": log.last_zxid, "accepted_epoch": log.accepted_epoch,
            "current_epoch": log.current_epoch})
        self._start_election(node, "start")

    def halt(self, sid: int, graceful: bool) -> None:
        """SIGKILL (graceful=False) or SIGTERM: the process is gone, its sockets close."""
        node = self.nodes[sid]
        if not node.alive:
            return
        if graceful:
            self._end_role(node, STOPPED, gave_up=None)
            self.emit(sid, "node_stopping", {"reason": "SIGTERM"})
        else:
            self._drop_role(sid, crashed=True)
        self.crash(sid)
        self.dirty.add(sid)

    def _new_core(self, sid: int) -> FastLeaderElection:
        if self.core_factory is None:
            return super()._new_core(sid)
        return self.core_factory(sid, self.verifier, **self._core_args)

    def start(self, sids: Iterable[int] | None = None) -> None:  # the Simulator's start: not used here
        raise RuntimeError("ZabSim nodes start through boot()")

    def _note(self, sid: int, what: str, fields: dict) -> None:
        if self.trace_enabled:
            super()._note(sid, what, fields)

    # -- the FLE core's effects, written as the node writes them -------------------------------
    def _start_election(self, node: SimNode, reason: str) -> None:
        log = self.logs[node.sid]
        node.last_zxid, node.current_epoch, node.accepted_epoch = log.last_zxid, log.current_epoch, log.accepted_epoch
        node.election_init = (node.current_epoch, node.last_zxid, node.sid)
        self._apply(node, node.core.start_election(self.now_ms, node.last_zxid, node.current_epoch))
        self.dirty.add(node.sid)

    def _apply(self, node: SimNode, effects: list[Effect]) -> None:
        sid = node.sid
        for fx in effects:
            if isinstance(fx, Send):
                self.emit(sid, "notification_sent", {"to": fx.to, "state": ServerState(fx.state).name,
                                                     "leader": fx.leader, "zxid": fx.zxid, "round": fx.round,
                                                     "peer_epoch": fx.peer_epoch})
            elif isinstance(fx, StateChanged):
                self.emit(sid, "state_changed", {"from": fx.old.name, "to": fx.new.name})
                self.dirty.add(sid)
            elif isinstance(fx, EventOut):
                self.emit(sid, fx.event, dict(fx.fields))
                self.dirty.add(sid)
        super()._apply(node, effects)

    def _on_deliver(self, src: int, dst: int, n: Notification, src_inc: int, link_gen: int | None) -> None:
        a, b = self.nodes[src], self.nodes[dst]
        if b.paused:
            b.deferred.append(("deliver", (src, dst, n, src_inc, link_gen)))
            return
        if src != dst and self._links.get(frozenset((src, dst))) != link_gen:
            self.messages_lost += 1
            return
        if not b.alive or a.incarnation != src_inc:
            self.messages_lost += 1
            return
        self.messages_delivered += 1
        self.emit(dst, "notification_received", {
            "from": src, "state": ServerState(n.state).name, "leader": n.leader, "zxid": n.zxid,
            "round": n.round, "peer_epoch": n.peer_epoch, "version": n.version})
        self._apply(b, b.core.on_notification(self.now_ms, n))

    def _on_decided(self, node: SimNode, d: Decided) -> None:
        self.emit(node.sid, "election_finished", {
            "leader": d.vote.leader, "zxid": d.vote.zxid, "peer_epoch": d.vote.peer_epoch,
            "round": d.round, "duration_ms": round(d.duration_ms, 3), "path": d.path,
            "state": node.state.name, "notifications_sent": d.notifications_sent,
            "notifications_received": d.notifications_received, "nonvoter_echoes": d.nonvoter_echoes})
        node.decided_at = self.now_ms
        self.dirty.add(node.sid)
        if node.state == ServerState.LEADING:
            self.lead[node.sid] = _Lead(since=self.now_ms, tracker=ProposalTracker(self._voting_quorum),
                                        phase_since=self.now_ms)
        elif node.state in (ServerState.FOLLOWING, ServerState.OBSERVING):
            self.follow[node.sid] = _Follow(d.vote.leader, node.state == ServerState.OBSERVING,
                                            since=self.now_ms, next_try=self.now_ms)
            self._try_connect(node.sid)

    # -- status ---------------------------------------------------------------------
    def synced(self, sid: int) -> bool:
        if sid in self.lead:
            return self.lead[sid].synced
        f = self.follow.get(sid)
        return bool(f and f.synced)

    def role_epoch(self, sid: int) -> int:
        return self.logs[sid].current_epoch

    # -- helpers ----------------------------------------------------------------------
    def _voting_quorum(self, sids: Iterable[int]) -> bool:
        return voting_quorum(sids, self.verifier)

    def _passes(self, a: int, b: int, limit_ms: float | None = None) -> bool:
        """A quorum-port message from a to b arrives (within `limit_ms`, if given)."""
        if not self._on_link:
            return True
        if self.link_held(a, b, "quorum"):
            return False  # (a `down` acts on the connection: it closes it, see _fault_changed)
        if limit_ms is not None:
            extra = sum(f.latency_ms + f.jitter_ms for f in self.link_faults(a, b, "quorum"))
            if extra >= limit_ms:
                return False
        return True

    def _running(self, sid: int) -> bool:
        n = self.nodes[sid]
        return n.alive and not n.paused

    def _close_conn(self, conn: int | None, *, learner_sees: bool, leader_sees: bool, reason: str) -> None:
        """A quorum connection ends at the ends that see it (a hold keeps the FIN from the other)."""
        c = self._conns.get(conn) if conn is not None else None
        if c is None:
            return
        learner, leader = c[0], c[1]
        if leader_sees and c[3]:
            c[3] = False
            ls = self.lead.get(leader)
            if ls is not None and learner in ls.learners and ls.learners[learner].conn == conn:
                del ls.learners[learner]
                self.emit(leader, "connection_closed", {"peer": learner, "port": "quorum", "direction": "in",
                                                        "reason": reason})
        if learner_sees and c[2]:
            c[2] = False
            f = self.follow.get(learner)
            if f is not None and f.conn == conn:
                self._learner_lost(learner, LEADER_CLOSED, f"leader closed connection ({reason})")
        if not c[2] and not c[3]:
            self._conns.pop(conn, None)

    def _frozen(self, leader: int, lr: _Learner) -> bool:
        """The learner is paused behind an open connection: its kernel buffers what comes."""
        c = self._conns.get(lr.conn)
        return c is not None and c[2] and self.nodes[lr.sid].alive and self.nodes[lr.sid].paused \
            and self._passes(leader, lr.sid)

    def _active(self, lr: _Learner) -> bool:
        """The learner still runs this connection (it may have closed its end unseen)."""
        c = self._conns.get(lr.conn)
        return c is not None and c[2] and self._running(lr.sid)

    # -- quorum-port faults ---------------------------------------------------------------
    def _fault_changed(self, fid: str, fault: LinkFault, links: tuple[LinkKey, ...], added: bool) -> None:
        quorum = {(a, b) for a, b, p in links if p == "quorum"}
        if not quorum:
            return
        for conn, (learner, leader, _, _) in list(self._conns.items()):
            if (learner, leader) not in quorum and (leader, learner) not in quorum:
                continue
            if added and fault.down and (learner, leader) in quorum:
                self._close_conn(conn, learner_sees=True, leader_sees=True, reason="proxy disabled")
            elif added and fault.reset_ms is not None:
                self._push(self.now_ms + fault.reset_ms, "qreset", (conn,))
            elif not added and fault.hold:
                self._close_conn(conn, learner_sees=True, leader_sees=True, reason="hold removed")

    def _on_qreset(self, conn: int) -> None:
        self._close_conn(conn, learner_sees=True, leader_sees=True, reason="connection reset")

    def pause(self, sid: int) -> None:
        super().pause(sid)
        self.dirty.add(sid)

    def resume(self, sid: int) -> None:
        super().resume(sid)
        self.dirty.add(sid)
        f = self.follow.get(sid)
        ls = self.lead.get(f.leader) if f is not None else None
        lr = ls.learners.get(sid) if ls is not None else None
        if lr is None or lr.conn != f.conn or not self._active(lr):
            return
        waiting, lr.backlog = lr.backlog, []
        for kind, z in waiting:  # what the kernel buffered, read in order
            if kind == "c":
                self._apply_commit(lr, z)
                continue
            llog = self.logs[sid]
            if z > llog.last_zxid:
                llog.zxids.append(z)
            if self._passes(sid, f.leader) and self._running(f.leader):
                self._commit(f.leader, ls, ls.tracker.ack(sid, z))

    # -- roles end --------------------------------------------------------------------
    def _drop_role(self, sid: int, crashed: bool) -> None:
        """The process died: its connections close, peers see it unless a hold keeps the FIN."""
        ls = self.lead.pop(sid, None)
        if ls is not None:
            for learner in list(ls.learners.values()):
                if learner.conn in self._conns:
                    self._conns[learner.conn][3] = False
                self._close_conn(learner.conn, learner_sees=self._passes(sid, learner.sid), leader_sees=False,
                                 reason="leader process ended")
        f = self.follow.pop(sid, None)
        if f is not None and f.conn is not None and f.conn in self._conns:
            self._conns[f.conn][2] = False
            self._close_conn(f.conn, learner_sees=False, leader_sees=self._passes(sid, f.leader),
                             reason="learner process ended")

    def _end_role(self, node: SimNode, reason: str, gave_up: str | None) -> None:
        sid = node.sid
        ls = self.lead.pop(sid, None)
        if ls is not None:
            if gave_up is not None:
                self.emit(sid, "quorum_lost", {"reason": gave_up})
            for learner in list(ls.learners.values()):
                self.emit(sid, "connection_closed", {"peer": learner.sid, "port": "quorum", "direction": "in",
                                                     "reason": "leader stopped leading"})
                if learner.conn in self._conns:
                    self._conns[learner.conn][3] = False
                self._close_conn(learner.conn, learner_sees=self._passes(sid, learner.sid), leader_sees=False,
                                 reason="leader stopped leading")
            self.emit(sid, "role_ended", {"state": "LEADING", "reason": reason})
        f = self.follow.pop(sid, None)
        if f is not None:
            if gave_up is not None:
                self.emit(sid, "leader_lost", {"reason": gave_up})
            if f.conn is not None and f.conn in self._conns:
                self.emit(sid, "connection_closed", {"peer": f.leader, "port": "quorum", "direction": "out",
                                                     "reason": reason})
                self._conns[f.conn][2] = False
                self._close_conn(f.conn, learner_sees=False, leader_sees=self._passes(sid, f.leader),
                                 reason="learner closed connection")
            self.emit(sid, "role_ended", {"state": "OBSERVING" if f.observer else "FOLLOWING", "reason": reason})
        self.dirty.add(sid)

    def _leader_gave_up(self, sid: int, reason: str, detail: str) -> None:
        node = self.nodes[sid]
        self._end_role(node, reason, gave_up=detail)
        self._start_election(node, reason)

    def _learner_lost(self, sid: int, reason: str, detail: str) -> None:
        node = self.nodes[sid]
        self._end_role(node, reason, gave_up=detail)
        self._start_election(node, reason)

    # -- learner ----------------------------------------------------------------------------
    def _try_connect(self, sid: int) -> None:
        f = self.follow[sid]
        if f.conn is not None or self.now_ms < f.next_try:
            return
        if f.tries >= CONNECT_TRIES or self.now_ms - f.since >= self.init_limit_ms:
            self._learner_lost(sid, CANNOT_CONNECT, "no LEADERINFO within initLimit")
            return
        f.tries += 1
        f.next_try = self.now_ms + CONNECT_DELAY_MS
        lead = f.leader
        ls = self.lead.get(lead)
        if lead not in self.nodes or not self.nodes[lead].alive or self.link_down(sid, lead, "quorum"):
            return  # refused: the next try
        if ls is None and not self.nodes[lead].paused and self._passes(sid, lead) and self._passes(lead, sid):
            return  # not leading (yet): it closes the connection at once; the next try
        if ls is None or self.nodes[lead].paused or not self._passes(sid, lead):
            # Accepted (by the kernel, or held by a proxy) and never answered: the
            # node waits for LEADERINFO until initLimit, then gives up.
            f.tries = CONNECT_TRIES
            f.next_try = f.since + self.init_limit_ms
            return
        self._conn_seq += 1
        conn = self._conn_seq
        self._conns[conn] = [sid, lead, True, True]
        f.conn, f.last_heard = conn, self.now_ms
        ls.learners[sid] = _Learner(sid, f.observer or sid not in self.verifier.voting_members,
                                    self.logs[sid].accepted_epoch, conn, self.now_ms)
        self.emit(lead, "connection_opened", {"peer": sid, "port": "quorum", "direction": "in",
                                              "reason": "observer" if f.observer else "follower"})
        for fid in set(self._on_link.get((sid, lead, "quorum"), ())) | set(self._on_link.get((lead, sid, "quorum"), ())):
            fault = self._faults[fid][0]
            if fault.reset_ms is not None:
                self._push(self.now_ms + fault.reset_ms, "qreset", (conn,))
        self._lead_progress(lead)

    def _learner_epoch(self, sid: int, ls: _Lead, learner: _Learner) -> None:
        """LEADERINFO reached the learner; its ACKEPOCH goes back if the link lets it."""
        f = self.follow[sid]
        log = self.logs[sid]
        if not self._passes(f.leader, sid):
            return
        action = learner_epoch_action(ls.epoch, log.accepted_epoch)
        if action is EpochAction.ABORT:
            self._learner_lost(sid, EPOCH_OLDER, f"leader proposed epoch {ls.epoch} < accepted epoch "
                                                 f"{log.accepted_epoch}")
            return
        if action is EpochAction.STORE_AND_ACK:
            log.accepted_epoch = ls.epoch
            ack = AckEpoch(log.current_epoch, log.last_zxid)
        else:
            ack = AckEpoch(-1, log.last_zxid)
        self.dirty.add(sid)
        if f.conn is not None and self._passes(sid, f.leader):
            if not f.established:
                self.emit(sid, "connection_opened", {"peer": f.leader, "port": "quorum", "direction": "out",
                                                     "reason": "observer" if f.observer else "follower"})
            learner.ack_epoch = ack
            learner.last_heard = self.now_ms

    def _learner_sync(self, leader: int, ls: _Lead, learner: _Learner) -> None:
        """TRUNC/DIFF/TXN*/NEWLEADER to one learner; it logs, establishes and ACKs."""
        sid = learner.sid
        if not self._passes(leader, sid) or not self._running(sid):
            return
        learner.synced_sent = True
        f = self.follow[sid]
        llog, log = self.logs[leader], self.logs[sid]
        plan = plan_sync(llog.zxids, log.last_zxid)
        frames = sync_frames(plan, [(z, b"") for z in llog.zxids if z > plan.from_zxid], make_zxid(ls.epoch, 0))
        # The learner's sync loop (node.zab._learner_run), frame by frame.
        sync = LearnerSync(log.last_zxid)
        for msg in frames:
            trunc = sync.feed(msg)
            if trunc is not None:
                log.zxids = [z for z in log.zxids if z <= trunc.zxid]
                log.committed = min(log.committed, log.last_zxid)
                sync.truncated(log.last_zxid)
        try:
            log.current_epoch = sync.epoch(log.accepted_epoch)
        except ZabProtocolError as e:
            self._learner_lost(sid, "malformed frame from leader", str(e))
            return
        for t in sync.pending:
            if t.zxid > log.last_zxid:
                log.zxids.append(t.zxid)
        mode, from_zxid = sync.mode, sync.from_zxid
        f.mode, f.from_zxid, f.to_zxid = mode, from_zxid, log.last_zxid
        f.established = True
        node = self.nodes[sid]
        node.current_epoch = node.accepted_epoch = ls.epoch
        node.last_zxid = log.last_zxid
        self.emit(sid, "epoch_established", {"epoch": ls.epoch, "role": "observer" if f.observer else "follower",
                                             "leader": leader, "last_zxid": log.last_zxid})
        node.core.update_election_vote(ls.epoch)
        self.dirty.add(sid)
        if self._passes(sid, leader):
            learner.newleader_acked = True
            learner.last_heard = self.now_ms
            if not learner.observer and zxid_epoch(log.last_zxid) == ls.epoch:
                self._commit(leader, ls, ls.tracker.ack(sid, log.last_zxid))

    def _uptodate(self, leader: int, ls: _Lead, learner: _Learner) -> None:
        if learner.uptodate_sent or not self._passes(leader, learner.sid) or not self._running(learner.sid):
            return
        learner.uptodate_sent = True
        f = self.follow[learner.sid]
        log = self.logs[learner.sid]
        log.committed = max(log.committed, min(self.logs[leader].committed, log.last_zxid))
        if not f.synced:
            f.synced = True
            self.emit(learner.sid, "sync_finished", {"leader": leader, "mode": f.mode.value,
                                                     "from_zxid": f.from_zxid, "to_zxid": f.to_zxid})
            self.dirty.add(learner.sid)

    # -- leader -----------------------------------------------------------------------------
    def _live_voters(self, ls: _Lead) -> list[_Learner]:
        return [lr for lr in ls.learners.values() if not lr.observer]

    def _lead_progress(self, sid: int) -> None:
        """Everything the leader can do now without waiting for time to pass."""
        ls = self.lead.get(sid)
        if ls is None or not self._running(sid):
            return
        log = self.logs[sid]
        if ls.epoch < 0:
            connected = {sid} | {lr.sid for lr in self._live_voters(ls)}
            if not self._voting_quorum(connected):
                return
            ls.epoch = epoch_to_propose(log.accepted_epoch, [lr.accepted_epoch for lr in self._live_voters(ls)])
            log.accepted_epoch = ls.epoch
            ls.phase_since = self.now_ms
            self.dirty.add(sid)
        for lr in list(ls.learners.values()):
            if lr.ack_epoch is None and self._active(lr):
                self._learner_epoch(lr.sid, ls, lr)
            if sid not in self.lead:
                return
        if not ls.established:
            if not self._voting_quorum(counted_epoch_acks(sid, self._live_voters(ls))):
                return
            ahead = learner_ahead(self._live_voters(ls), log.current_epoch, log.last_zxid)
            if ahead is not None:
                a = ahead.ack_epoch
                self._leader_gave_up(sid, FOLLOWER_AHEAD, f"follower {ahead.sid} is ahead: "
                                     f"epoch {a.current_epoch} zxid {a.last_zxid:#x}")
                return
            log.current_epoch = ls.epoch
            ls.established = True
            ls.phase_since = self.now_ms
            node = self.nodes[sid]
            node.current_epoch = node.accepted_epoch = ls.epoch
            self.emit(sid, "epoch_established", {"epoch": ls.epoch, "role": "leader", "leader": sid,
                                                 "last_zxid": log.last_zxid})
            node.core.update_election_vote(ls.epoch)
            self.dirty.add(sid)
        for lr in list(ls.learners.values()):
            if lr.ack_epoch is not None and not lr.synced_sent and self._active(lr):
                self._learner_sync(sid, ls, lr)
        if not ls.synced:
            if not self._voting_quorum(newleader_acks(sid, self._live_voters(ls))):
                return
            log.committed = log.last_zxid
            ls.synced = True
            ls.next_txn = self.now_ms + self.txn_interval_ms
            for lr in ls.learners.values():
                lr.last_heard = max(lr.last_heard, self.now_ms)
            self.dirty.add(sid)
        for lr in list(ls.learners.values()):
            if lr.newleader_acked and not lr.uptodate_sent and self._active(lr):
                self._uptodate(sid, ls, lr)

    def _commit(self, leader: int, ls: _Lead, zxids: list[int]) -> None:
        log = self.logs[leader]
        for z in zxids:
            log.committed = max(log.committed, z)
            self.emit(leader, "txn_committed", {"zxid": z})
            for lr in ls.learners.values():
                if lr.newleader_acked and self._frozen(leader, lr):
                    lr.backlog.append(("c", z))
                    continue
                if not lr.newleader_acked or not self._passes(leader, lr.sid) or not self._active(lr):
                    continue
                self._apply_commit(lr, z)

    def _apply_commit(self, lr: _Learner, z: int) -> None:
        llog = self.logs[lr.sid]
        if lr.observer and z > llog.last_zxid:
            llog.zxids.append(z)
        if z <= llog.last_zxid:
            llog.committed = max(llog.committed, z)
            self.emit(lr.sid, "txn_applied", {"zxid": z})

    def _propose(self, leader: int, ls: _Lead) -> None:
        ls.counter += 1
        z = make_zxid(ls.epoch, ls.counter)
        self.logs[leader].zxids.append(z)
        ls.tracker.propose(z, leader)
        for lr in list(ls.learners.values()):
            if lr.observer or not lr.newleader_acked:
                continue
            if self._frozen(leader, lr):
                lr.backlog.append(("p", z))
                continue
            if not self._passes(leader, lr.sid) or not self._active(lr):
                continue
            llog = self.logs[lr.sid]
            if z > llog.last_zxid:
                llog.zxids.append(z)
            if self._passes(lr.sid, leader):
                self._commit(leader, ls, ls.tracker.ack(lr.sid, z))
        self._commit(leader, ls, ls.tracker.ack(leader, z))

    # -- the tick: half a tickTime, the leader's PING period ---------------------------------
    def _on_tick(self) -> None:
        self._push(self.now_ms + self.tick_ms, "tick", ())
        for sid in sorted(self.lead):
            if sid in self.lead and self._running(sid):
                self._tick_leader(sid, self.lead[sid])
        for sid in sorted(self.follow):
            if sid in self.follow and self._running(sid):
                self._tick_learner(sid, self.follow[sid])

    def _tick_leader(self, sid: int, ls: _Lead) -> None:
        for lr in list(ls.learners.values()):
            if self._active(lr) and self._passes(lr.sid, sid, self.sync_limit_ms):
                lr.last_heard = self.now_ms
            else:
                limit = learner_read_timeout(lr.newleader_acked, self.init_limit_ms, self.sync_limit_ms)
                if limit is not None and self.now_ms - lr.last_heard > limit:
                    self._close_conn(lr.conn, learner_sees=False, leader_sees=True, reason="learner silent")
        self._lead_progress(sid)
        if sid not in self.lead:
            return
        if not ls.synced:
            if self.now_ms - ls.phase_since > self.init_limit_ms:
                what = ("no voting quorum sent FOLLOWERINFO" if ls.epoch < 0 else
                        "no voting quorum of ACKEPOCH" if not ls.established else "no voting quorum acked NEWLEADER")
                self._leader_gave_up(sid, NO_EPOCH_QUORUM, f"{what} within initLimit")
            return
        ls.half += 1
        if ls.half % 2 == 0:
            leads, alive = keeps_quorum(sid, list(ls.learners.values()), self.now_ms, self.sync_limit_ms,
                                        self.verifier)
            if not leads:
                self._leader_gave_up(sid, QUORUM_LOST, "Not sufficient followers synced, only synced with sids: "
                                                       f"{sorted(alive)}")
                return
        while self.txn_interval_ms > 0 and sid not in self.no_txns and self.now_ms >= ls.next_txn:
            ls.next_txn += self.txn_interval_ms
            self._propose(sid, ls)

    def _tick_learner(self, sid: int, f: _Follow) -> None:
        if f.conn is None:
            self._try_connect(sid)
            return
        lead = self.lead.get(f.leader)
        limit = leader_read_timeout(f.synced, self.init_limit_ms, self.sync_limit_ms)
        c = self._conns.get(f.conn)
        if (lead is not None and self._running(f.leader) and self._passes(f.leader, sid, limit)
                and c is not None and c[3]):
            f.last_heard = self.now_ms
        elif self.now_ms - f.last_heard > limit:
            self._learner_lost(sid, LEADER_SILENT, "leader silent")
