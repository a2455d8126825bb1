"""The simulator with the node's broadcast phase and event log, for `chaos sim`.

Why: `chaos sim` judges a simulated run with the same invariants as a real
one, so a simulated node must write what a real node writes (DESIGN §1,
events.jsonl: the same event names and fields) and run the same Zab. It does:
:class:`ZabSim` extends :class:`node.sim.Simulator` (the FLE core, the seeded
QCM-like network, directed link faults) with the very state machines the real
node's asyncio shell drives, ``node.zab_roles.LeaderRole`` and
``LearnerRole`` — this module is their second shell, on virtual time and
simulated connections instead of sockets.

Theory of operation. A quorum connection carries the roles' messages in
order, each way. A message leaves when sent and arrives after the extra delay
the link's latency toxics give it (at once without one), unless a hold (the
timeout toxic, a partition) swallows it; a paused process reads what waited
in its kernel buffer when it resumes. A learner dials through proxy
learner→leader: a `down` there, or a dead leader, refuses it; a live node that
does not lead accepts and closes at once. A connection ends at an end when
its process ends or its role closes it (the other end sees the FIN: a hold
drops bytes, but passes the end of a stream as a close, as Toxiproxy's timeout
toxic does) and at both ends when a proxy it runs through is disabled, when a hold on it is
removed, or on a reset_peer (its timeout after the connection opened). A role
is woken at the time it asks for (its pings, proposals and timeouts), as the
real shell's timer wakes it. Persisted state — log, acceptedEpoch, currentEpoch,
last committed zxid — survives a crash and a restart, as on disk. The txn
interval is the plan's (callers may make it sparser for speed).
"""
from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from zkrules.quorum import QuorumVerifier
from zkrules.vote import Notification, ServerState

from .fle import Decided, Effect, EventOut, FastLeaderElection, Send, StateChanged
from .sim import LinkFault, LinkKey, SimNode, Simulator
from .zab_roles import (REASON_STOPPED, Close, Dial, Emit, Ended, Established, LeaderRole, LearnerRole, Role,
                        ZabTiming)
from .zab_roles import Send as ZabSend

__all__ = ["ZabSim", "SimLog"]

EmitFn = Callable[[int, str, dict[str, Any]], None]


@dataclass
class SimLog:
    """A node's dataDir in memory (``node.zab_roles.ZabLog``): txn log, epochs, commit point."""

    _zxids: list[int] = field(default_factory=list)
    _payloads: list[bytes] = field(default_factory=list)
    accepted_epoch: int = 0
    current_epoch: int = 0
    last_committed_zxid: int = 0

    @property
    def last_zxid(self) -> int:
        return self._zxids[-1] if self._zxids else 0

    def zxids(self) -> list[int]:
        return self._zxids

    def entries_after(self, zxid: int) -> list[tuple[int, bytes]]:
        i = bisect.bisect_right(self._zxids, zxid)
        return list(zip(self._zxids[i:], self._payloads[i:]))

    def append(self, zxid: int, payload: bytes) -> None:
        if zxid <= self.last_zxid:
            raise ValueError(f"append of zxid {zxid:#x} not after last zxid {self.last_zxid:#x}")
        self._zxids.append(zxid)
        self._payloads.append(payload)

    def mark_committed(self, zxid: int) -> None:
        self.last_committed_zxid = max(self.last_committed_zxid, min(zxid, self.last_zxid))

    def truncate_after(self, zxid: int) -> None:
        i = bisect.bisect_right(self._zxids, zxid)
        del self._zxids[i:], self._payloads[i:]
        self.last_committed_zxid = min(self.last_committed_zxid, self.last_zxid)

    def set_accepted_epoch(self, e: int) -> None:
        self.accepted_epoch = e

    def set_current_epoch(self, e: int) -> None:
        self.current_epoch = e

    def copy(self) -> "SimLog":
        return SimLog(list(self._zxids), list(self._payloads), self.accepted_epoch, self.current_epoch,
                      self.last_committed_zxid)

    def runs(self) -> list[list[int]]:
        """(epoch, first counter, last counter) runs, as zkrules.txnlog summarises a log."""
        out: list[list[int]] = []
        for z in self._zxids:
            e, c = z >> 32, z & 0xFFFFFFFF
            if out and out[-1][0] == e and out[-1][2] + 1 == c:
                out[-1][2] = c
            else:
                out.append([e, c, c])
        return out


@dataclass(eq=False)
class _Conn:
    """One simulated quorum connection, learner → leader."""

    cid: int
    learner: int
    leader: int
    open: dict[int, bool]                              # sid -> its end still open
    tail: dict[int, float] = field(default_factory=dict)  # receiver -> last arrival (FIFO)
    accepted_by: LeaderRole | None = None              # the leader role serving it


class ZabSim(Simulator):
    """``emit(sid, event, fields)`` receives every event a node would write."""

    def __init__(self, verifier: QuorumVerifier, sids: Iterable[int], *, seed: int, emit: EmitFn,
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
        self.timing = ZabTiming(tick_time_ms, init_limit, sync_limit, txn_interval_ms)
        self.logs: dict[int, SimLog] = {sid: SimLog() for sid in sids}
        self.roles: dict[int, Role] = {}
        self._conn_seq = 0
        self._conns: dict[int, _Conn] = {}
        self._work: deque[tuple[Callable[..., None], tuple]] = deque()
        self._working = False
        self._halting: int | None = None
        self._wake_at: dict[int, tuple[Role, float]] = {}   # sid -> (role, time of its next wake)
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
        self.emit(sid, "node_started", {
            "pid": pid, "protocol": self.protocol,
            "peer_type": "observer" if sid in self.verifier.observers else "participant",
            "last_zxid": log.last_zxid, "accepted_epoch": log.accepted_epoch,
            "current_epoch": log.current_epoch, "finalize_wait_ms": self._core_args["finalize_wait"]})
        self._start_election(node, "start")

    def halt(self, sid: int, graceful: bool) -> None:
        """SIGKILL (graceful=False) or SIGTERM: the process is gone, its sockets close."""
        node = self.nodes[sid]
        if not node.alive:
            return
        role = self.roles.get(sid)
        if graceful and role is not None:
            self._halting = sid
            try:
                self._effects(sid, role, role.stop(self.now_ms))
            finally:
                self._halting = None
        if graceful:
            self.emit(sid, "node_stopping", {"reason": "SIGTERM"})
        self.roles.pop(sid, None)
        for c in list(self._conns.values()):
            if c.open.get(sid):
                self._close_end(c, sid, "peer process ended")
        self.crash(sid)
        self.dirty.add(sid)
        self._drain()

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
        sid = node.sid
        self.dirty.add(sid)
        log = self.logs[sid]
        if node.state == ServerState.LEADING:
            role: Role = LeaderRole(sid, self.verifier, log, self.timing, propose=sid not in self.no_txns)
        elif node.state in (ServerState.FOLLOWING, ServerState.OBSERVING):
            role = LearnerRole(sid, d.vote.leader, log, self.timing, observer=node.state == ServerState.OBSERVING)
        else:
            return
        self.roles[sid] = role
        self._work.append((self._run_role, (sid, role, "start", ())))
        self._drain()

    # -- status ---------------------------------------------------------------------
    def synced(self, sid: int) -> bool:
        role = self.roles.get(sid)
        return bool(role is not None and role.synced)

    def role_epoch(self, sid: int) -> int:
        return self.logs[sid].current_epoch

    # -- driving the roles -----------------------------------------------------------------
    def _running(self, sid: int) -> bool:
        n = self.nodes[sid]
        return n.alive and not n.paused

    def _drain(self) -> None:
        """Run queued role inputs in order; inputs an input causes queue behind it."""
        if self._working:
            return
        self._working = True
        try:
            while self._work:
                fn, args = self._work.popleft()
                fn(*args)
        finally:
            self._working = False

    def _run_role(self, sid: int, role: Role, method: str, args: tuple) -> None:
        if self.roles.get(sid) is not role or not self.nodes[sid].alive:
            return
        if self.nodes[sid].paused:
            self.nodes[sid].deferred.append(("role_input", (sid, role, method, args)))
            return
        self._effects(sid, role, getattr(role, method)(self.now_ms, *args))
        if self.roles.get(sid) is role:
            self._schedule_wake(sid, role)

    def _schedule_wake(self, sid: int, role: Role) -> None:
        """Wake the role when it has something to do, as the real shell's timer does."""
        t = max(role.next_wakeup(), self.now_ms)
        if t == math.inf:
            return
        at = self._wake_at.get(sid)
        if at is not None and at[0] is role and at[1] <= t:
            return  # an earlier wake is due anyway; it reschedules
        self._wake_at[sid] = (role, t)
        self._push(t, "zwake", (sid, role, t))

    def _on_zwake(self, sid: int, role: Role, t: float) -> None:
        at = self._wake_at.get(sid)
        if at is None or at[0] is not role or at[1] != t:
            return  # superseded by an earlier wake, or the role ended
        if self.nodes[sid].paused:
            self.nodes[sid].deferred.append(("zwake", (sid, role, t)))
            return
        del self._wake_at[sid]
        self._run_role(sid, role, "on_tick", ())
        at = self._wake_at.get(sid)
        if at is not None and at[0] is role and at[1] <= t:  # it asked for the same instant again:
            self._wake_at[sid] = (role, t + 1.0)            # come back 1 ms later, as the real timer does
            self._push(t + 1.0, "zwake", (sid, role, t + 1.0))
        self._drain()

    def _on_role_input(self, sid: int, role: Role, method: str, args: tuple) -> None:
        self._work.append((self._run_role, (sid, role, method, args)))
        self._drain()

    def _effects(self, sid: int, role: Role, effects: list) -> None:
        for fx in effects:
            if isinstance(fx, ZabSend):
                c = self._conns.get(fx.conn)
                if c is not None and c.open.get(sid):
                    self._zsend(c, sid, "msg", fx.msg)
            elif isinstance(fx, Close):
                c = self._conns.get(fx.conn)
                if c is not None:
                    self._close_end(c, sid, fx.reason)
            elif isinstance(fx, Emit):
                self.emit(sid, fx.event, fx.fields)
                self.dirty.add(sid)
            elif isinstance(fx, Established):
                node, log = self.nodes[sid], self.logs[sid]
                node.current_epoch, node.accepted_epoch, node.last_zxid = fx.epoch, log.accepted_epoch, log.last_zxid
                node.core.update_election_vote(fx.epoch)
                self.dirty.add(sid)
            elif isinstance(fx, Dial):
                assert isinstance(role, LearnerRole)
                self._work.append((self._dial, (sid, role)))
            elif isinstance(fx, Ended):
                self._role_ended(sid, role, fx.reason)

    def _role_ended(self, sid: int, role: Role, reason: str) -> None:
        if self.roles.get(sid) is not role:
            return
        del self.roles[sid]
        state = "LEADING" if isinstance(role, LeaderRole) else "OBSERVING" if role.observer else "FOLLOWING"
        self.emit(sid, "role_ended", {"state": state, "reason": reason})
        self.dirty.add(sid)
        if self._halting != sid and reason != REASON_STOPPED:
            self._start_election(self.nodes[sid], reason)

    # -- simulated connections ---------------------------------------------------------------
    def _dial(self, sid: int, role: LearnerRole) -> None:
        if self.roles.get(sid) is not role or not self._running(sid):
            return
        lead = role.leader
        if lead not in self.nodes or not self.nodes[lead].alive or self.link_down(sid, lead, "quorum"):
            self._work.append((self._run_role, (sid, role, "on_dial_failed", (f"connect to node {lead}: refused",))))
            return
        self._conn_seq += 1
        c = _Conn(self._conn_seq, sid, lead, {sid: True, lead: True})
        self._conns[c.cid] = c
        for fid in set(self._on_link.get((sid, lead, "quorum"), ())) | set(self._on_link.get((lead, sid, "quorum"), ())):
            fault = self._faults[fid][0]
            if fault.reset_ms is not None and self._applies(fid, frozenset((sid, lead)), -c.cid):
                self._push(self.now_ms + fault.reset_ms, "qreset", (c.cid, fid))
        self._zsend(c, sid, "accept", f"sim:{sid}")
        self._work.append((self._run_role, (sid, role, "on_connected", (c.cid, f"sim:{lead}"))))

    def _zsend(self, c: _Conn, src: int, kind: str, payload: Any) -> None:
        """Bytes from `src` into the connection: they arrive in order, late, or (held) never."""
        dst = c.leader if src == c.learner else c.learner
        t = self.now_ms
        if self._on_link:
            if kind != "fin" and self.link_held(src, dst, "quorum", -c.cid):
                return  # held until the hold goes, which closes the connection
            # A hold drops bytes but passes the end of the stream as a close, as
            # Toxiproxy's timeout toxic does: a killed peer's FIN gets through.
            t += self.link_delay(src, dst, "quorum", -c.cid)
        t = max(t, c.tail.get(dst, 0.0))
        c.tail[dst] = t
        if t <= self.now_ms:
            self._work.append((self._arrive, (c.cid, dst, kind, payload)))
            self._drain()
        else:
            self._push(t, "zarrive", (c.cid, dst, kind, payload))

    def _on_zarrive(self, cid: int, dst: int, kind: str, payload: Any) -> None:
        self._work.append((self._arrive, (cid, dst, kind, payload)))
        self._drain()

    def _arrive(self, cid: int, dst: int, kind: str, payload: Any) -> None:
        """What reaches `dst`'s end: a new connection, a message, or the other end's FIN."""
        node = self.nodes[dst]
        c = self._conns.get(cid)
        if c is None or not node.alive or not c.open.get(dst):
            return
        if node.paused:
            node.deferred.append(("zarrive", (cid, dst, kind, payload)))
            return
        if kind == "fin":
            c.open[dst] = False
            if not any(c.open.values()):
                del self._conns[cid]
        role = self.roles.get(dst)
        if dst == c.leader:
            if kind == "accept":
                if not isinstance(role, LeaderRole):
                    self._close_end(c, dst, "not leading")  # the learner sees EOF and tries again
                    return
                c.accepted_by = role
                self._run_role(dst, role, "on_accept", (cid, payload))
                return
            if role is None or c.accepted_by is not role:
                return
        elif not isinstance(role, LearnerRole) or role.conn != cid:
            return
        if kind == "msg":
            self._run_role(dst, role, "on_message", (cid, payload))
        else:
            self._run_role(dst, role, "on_closed", (cid, payload))

    def _close_end(self, c: _Conn, sid: int, reason: str) -> None:
        """`sid` closes its end; the FIN travels to the other end like any byte."""
        if not c.open.get(sid):
            return
        c.open[sid] = False
        other = c.leader if sid == c.learner else c.learner
        if c.open.get(other):
            self._zsend(c, sid, "fin", reason)
        else:
            self._conns.pop(c.cid, None)

    def _sever(self, c: _Conn, reason: str) -> None:
        """The proxy ends the connection: both ends see it at once (deferred if paused)."""
        for sid in (c.learner, c.leader):
            if c.open.get(sid):
                self._work.append((self._arrive, (c.cid, sid, "fin", reason)))
        self._drain()

    # -- quorum-port faults ---------------------------------------------------------------
    def _fault_changed(self, fid: str, fault: LinkFault, links: tuple[LinkKey, ...], added: bool) -> None:
        quorum = {(a, b) for a, b, p in links if p == "quorum"}
        if not quorum:
            return
        for c in list(self._conns.values()):
            ab, ba = (c.learner, c.leader), (c.leader, c.learner)
            if ab not in quorum and ba not in quorum:
                continue
            if added and fault.down and ab in quorum:
                self._sever(c, "proxy disabled")
            elif added and fault.reset_ms is not None and self._applies(fid, frozenset(ab), -c.cid):
                self._push(self.now_ms + fault.reset_ms, "qreset", (c.cid, fid))
            elif not added and fault.hold:
                self._sever(c, "hold removed")

    def _on_qreset(self, cid: int, fid: str) -> None:
        if fid not in self._faults:
            return  # the toxic went before its timer ran out: removing it interrupts the reset
        c = self._conns.get(cid)
        if c is not None:
            self._sever(c, "connection reset")

    def pause(self, sid: int) -> None:
        super().pause(sid)
        self.dirty.add(sid)

    def resume(self, sid: int) -> None:
        super().resume(sid)  # what waited in its kernel buffers is read, in order
        self.dirty.add(sid)
        self._drain()

    def _on_tick(self) -> None:
        """The base simulator's periodic tick drives its own minimal Zab; the roles
        here wake at their own deadlines instead (``_schedule_wake``)."""
