"""The broadcast phase's two roles, leader and learner, as sans-I/O state machines.

Why: the asyncio shell (`node.zab`) and the simulator (`node.sim_zab`) must run
one sequence, not two copies of it, so a Zab bug is the same bug in a
simulated run and in real processes. A role is told what happened — a
connection accepted or dialled, a message, a bad frame, a connection closed,
time passing — with the time in ms, and answers with effects its shell
carries out: :class:`Send`, :class:`Close`, :class:`Dial`, :class:`Emit`,
:class:`Established`, :class:`Ended`. Connections are the shell's integer ids.

The role writes its log through :class:`ZabLog`, synchronously
(``node.storage.Storage`` on disk, the simulator's ``SimLog`` in memory), so a
durable write happens before the effect that depends on it (fsync before
ACK). Every decision uses the rules in ``node.zab_core``. The sequence and
its timing are described in ``node.zab``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence, Union

from node.zab_core import (
    Ack, AckEpoch, Commit, EpochAction, FollowerInfo, Inform, LeaderInfo, LearnerSync, LearnerType, Message, Ping,
    Proposal, ProposalTracker, SyncMode, UpToDate, ZabProtocolError, counted_epoch_acks, epoch_to_propose,
    keeps_quorum, leader_read_timeout, learner_ahead, learner_epoch_action, learner_read_timeout, newleader_acks,
    plan_sync, sync_frames, voting_quorum,
)

__all__ = [
    "Send", "Close", "Dial", "Emit", "Established", "Ended", "Effect",
    "ZabLog", "ZabTiming", "LeaderRole", "LearnerRole", "Role",
    "REASON_NO_EPOCH_QUORUM", "REASON_QUORUM_LOST", "REASON_STOPPED", "REASON_FOLLOWER_AHEAD",
    "REASON_LEADER_SILENT", "REASON_LEADER_CLOSED", "REASON_CANNOT_CONNECT", "REASON_EPOCH_OLDER",
    "REASON_MALFORMED", "CONNECT_TRIES", "CONNECT_DELAY_MS",
]

REASON_NO_EPOCH_QUORUM = "no quorum for new epoch"
REASON_QUORUM_LOST = "quorum lost"
REASON_STOPPED = "stopped"
REASON_FOLLOWER_AHEAD = "follower ahead of leader"
REASON_LEADER_SILENT = "leader silent"
REASON_LEADER_CLOSED = "leader closed connection"
REASON_CANNOT_CONNECT = "cannot connect to leader"
REASON_EPOCH_OLDER = "leader epoch older than accepted epoch"
REASON_MALFORMED = "malformed frame from leader"

CONNECT_TRIES = 5          # a learner dials its leader this often ...
CONNECT_DELAY_MS = 100.0   # ... this far apart, all within initLimit

_LEADER_STOPPED = "leader stopped leading"


# ---- effects ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Send:
    conn: int
    msg: Message


@dataclass(frozen=True, slots=True)
class Close:
    """Close our end of `conn`; the role has forgotten it (no on_closed follows)."""
    conn: int
    reason: str


@dataclass(frozen=True, slots=True)
class Dial:
    """Learner: open a connection to the leader's quorum port within `timeout_ms`;
    answer with on_connected or on_dial_failed."""
    timeout_ms: float


@dataclass(frozen=True, slots=True)
class Emit:
    event: str
    fields: dict


@dataclass(frozen=True, slots=True)
class Established:
    """The epoch is this peer's currentEpoch now (the FLE vote carries it from here)."""
    epoch: int


@dataclass(frozen=True, slots=True)
class Ended:
    """The role is over; the peer goes back to LOOKING. Always the last effect."""
    reason: str


Effect = Union[Send, Close, Dial, Emit, Established, Ended]


class ZabLog(Protocol):
    """What a role reads and writes of its dataDir; every write is durable on return."""

    accepted_epoch: int
    current_epoch: int
    last_committed_zxid: int

    @property
    def last_zxid(self) -> int: ...
    def zxids(self) -> Sequence[int]: ...
    def entries_after(self, zxid: int) -> Sequence[tuple[int, bytes]]: ...
    def append(self, zxid: int, payload: bytes) -> None: ...
    def truncate_after(self, zxid: int) -> None: ...
    def mark_committed(self, zxid: int) -> None: ...
    def set_accepted_epoch(self, e: int) -> None: ...
    def set_current_epoch(self, e: int) -> None: ...


@dataclass(frozen=True, slots=True)
class ZabTiming:
    tick_ms: float
    init_limit: int
    sync_limit: int
    txn_interval_ms: float

    @property
    def init_ms(self) -> float:
        return self.init_limit * self.tick_ms

    @property
    def sync_ms(self) -> float:
        return self.sync_limit * self.tick_ms


def _make_zxid(epoch: int, counter: int) -> int:
    return (epoch << 32) | counter


class _Role:
    """What both roles share: the effect buffer and the end."""

    name = ""

    def __init__(self, sid: int, log: ZabLog, timing: ZabTiming) -> None:
        self.sid = sid
        self.log = log
        self.timing = timing
        self.ended: str | None = None
        self._out: list[Effect] = []

    def _flush(self) -> list[Effect]:
        out, self._out = self._out, []
        return out

    def _emit(self, event: str, **fields: Any) -> None:
        self._out.append(Emit(event, fields))

    def _establish(self, epoch: int, leader: int) -> None:
        self._emit("epoch_established", epoch=epoch, role=self.name, leader=leader, last_zxid=self.log.last_zxid)
        self._out.append(Established(epoch))

    def _end(self, reason: str) -> None:
        self.ended = reason
        self._out.append(Ended(reason))


# ---- leader -------------------------------------------------------------------

@dataclass(eq=False)
class LearnerLink:
    """The leader's side of one learner connection (a ``zab_core.LearnerView``)."""

    conn: int
    remote: str
    read_since: float | None      # the leader waits for this learner's next message since then
    sid: int = -1                 # -1 until FOLLOWERINFO
    observer: bool = False
    accepted_epoch: int = -1
    last_heard: float = 0.0
    ack_epoch: AckEpoch | None = None
    forwarding: bool = False      # its sync frames went out; proposals and commits follow them
    newleader_acked: bool = False
    uptodate_sent: bool = False


class LeaderRole(_Role):
    """Discovery, synchronisation and broadcast at the leader (ZooKeeper's Leader + LearnerHandler)."""

    name = "leader"

    def __init__(self, sid: int, verifier: Any, log: ZabLog, timing: ZabTiming, *, propose: bool = True) -> None:
        super().__init__(sid, log, timing)
        self.verifier = verifier
        self.propose = propose and timing.txn_interval_ms > 0
        self.tracker = ProposalTracker(self._quorum)
        self.links: dict[int, LearnerLink] = {}     # by connection
        self.learners: dict[int, LearnerLink] = {}  # by sid, once FOLLOWERINFO came
        self.epoch = -1
        self.established = False
        self.synced = False
        self.phase_since = 0.0
        self.next_half = math.inf
        self.half = 0
        self.counter = 0
        self.next_txn = math.inf
        self.payloads: dict[int, bytes] = {}

    # -- inputs ---------------------------------------------------------------------------
    def start(self, now: float) -> list[Effect]:
        self.phase_since = now
        self._progress(now)
        return self._flush()

    def on_accept(self, now: float, conn: int, remote: str) -> list[Effect]:
        if self.ended is None:
            self.links[conn] = LearnerLink(conn, remote, read_since=now, last_heard=now)
        return self._flush()

    def on_message(self, now: float, conn: int, msg: Message) -> list[Effect]:
        l = self.links.get(conn)
        if l is None or self.ended is not None:
            return []
        try:
            self._on_message(now, l, msg)
        except ZabProtocolError as e:
            self._malformed(l, str(e), None)
        return self._flush()

    def on_malformed(self, now: float, conn: int, reason: str, length: int | None) -> list[Effect]:
        l = self.links.get(conn)
        if l is not None and self.ended is None:
            self._malformed(l, reason, length)
        return self._flush()

    def on_closed(self, now: float, conn: int, reason: str) -> list[Effect]:
        l = self.links.get(conn)
        if l is not None and self.ended is None:
            self._drop(l, f"learner closed connection ({reason})")
        return self._flush()

    def on_tick(self, now: float) -> list[Effect]:
        if self.ended is not None:
            return []
        for l in list(self.links.values()):
            limit = self._read_limit(l)
            if limit is not None and l.read_since is not None and now - l.read_since >= limit:
                self._drop(l, "learner silent")
        if not self.synced:
            if now - self.phase_since >= self.timing.init_ms:
                self._give_up(REASON_NO_EPOCH_QUORUM, self._phase_detail())
            return self._flush()
        if now >= self.next_half:
            self.next_half = now + self.timing.tick_ms / 2
            self.half += 1
            for l in self.learners.values():
                if l.forwarding:
                    self._out.append(Send(l.conn, Ping()))
            if self.half % 2 == 0:
                leads, alive = keeps_quorum(self.sid, list(self.learners.values()), now, self.timing.sync_ms,
                                            self.verifier)
                if not leads:
                    self._give_up(REASON_QUORUM_LOST,
                                  f"Not sufficient followers synced, only synced with sids: {sorted(alive)}")
                    return self._flush()
        if now >= self.next_txn:
            self.next_txn = now + self.timing.txn_interval_ms
            self._propose()
        return self._flush()

    def next_wakeup(self) -> float:
        """The earliest time on_tick has something to do (for a shell with a real timer)."""
        if self.ended is not None:
            return math.inf
        t = self.phase_since + self.timing.init_ms if not self.synced else min(self.next_half, self.next_txn)
        for l in self.links.values():
            limit = self._read_limit(l)
            if limit is not None and l.read_since is not None:
                t = min(t, l.read_since + limit)
        return t

    def stop(self, now: float) -> list[Effect]:
        if self.ended is None:
            self._close_all()
            self._end(REASON_STOPPED)
        return self._flush()

    def counts(self) -> tuple[int, int, int]:
        """(learners connected, voters synced, observers synced): what `mntr` reports."""
        synced = [l for l in self.learners.values() if l.newleader_acked]
        return len(self.learners), sum(not l.observer for l in synced), sum(l.observer for l in synced)

    # -- the sequence ------------------------------------------------------------------------
    def _on_message(self, now: float, l: LearnerLink, msg: Message) -> None:
        if l.sid < 0:
            self._on_followerinfo(now, l, msg)
            return
        l.last_heard = now
        if l.ack_epoch is None:
            if self.epoch < 0 or not isinstance(msg, AckEpoch):
                raise ZabProtocolError(f"expected ACKEPOCH, got {type(msg).__name__}")
            l.ack_epoch = msg
            l.read_since = None  # the leader waits on its own quorum now
            self._progress(now)
            if self.established and not l.forwarding and self.ended is None:
                self._sync(now, l)
            return
        if l.read_since is not None:
            l.read_since = now
        if isinstance(msg, Ack):
            if not l.newleader_acked and l.forwarding and msg.zxid == _make_zxid(self.epoch, 0):
                l.newleader_acked = True
                if self.synced:
                    self._uptodate(l)
                else:
                    self._progress(now)
            elif not l.observer and l.newleader_acked:
                self._commit(self.tracker.ack(l.sid, msg.zxid))
        elif not isinstance(msg, Ping):
            raise ZabProtocolError(f"unexpected {type(msg).__name__} from learner")

    def _on_followerinfo(self, now: float, l: LearnerLink, msg: Message) -> None:
        if not isinstance(msg, FollowerInfo):
            raise ZabProtocolError(f"expected FOLLOWERINFO first, got {type(msg).__name__}")
        sid, v = msg.sid, self.verifier
        if sid == self.sid or (sid not in v.voting_members and sid not in v.observers):
            self._emit("handshake_rejected", remote=l.remote, reason=f"unknown or own sid {sid} on quorum port")
            self._forget(l, "rejected")
            return
        l.sid, l.accepted_epoch, l.last_heard = sid, msg.accepted_epoch, now
        l.observer = msg.learner_type is LearnerType.OBSERVER or sid not in v.voting_members
        old = self.learners.get(sid)
        if old is not None:
            self._drop(old, "replaced by a newer connection from the same learner")
        self.learners[sid] = l
        self._emit("connection_opened", peer=sid, port="quorum", direction="in",
                   reason="observer" if l.observer else "follower")
        if self.epoch >= 0:
            self._leaderinfo(now, l)
        else:
            l.read_since = None
            self._progress(now)

    def _progress(self, now: float) -> None:
        """Everything the leader can do now without waiting for a peer or for time."""
        log, me = self.log, self.sid
        if self.ended is not None:
            return
        if self.epoch < 0:
            if not self._quorum(self._connected()):
                return
            self.epoch = epoch_to_propose(log.accepted_epoch, [l.accepted_epoch for l in self._voters()])
            log.set_accepted_epoch(self.epoch)
            self._emit("epoch_accepted", epoch=self.epoch, leader=me)
            self.phase_since = now
            for l in list(self.learners.values()):
                self._leaderinfo(now, l)
        if not self.established:
            if not self._quorum(counted_epoch_acks(me, self._voters())):
                return
            ahead = learner_ahead(self._voters(), log.current_epoch, log.last_zxid)
            if ahead is not None:
                a = ahead.ack_epoch
                self._give_up(REASON_FOLLOWER_AHEAD,
                              f"follower {ahead.sid} is ahead: epoch {a.current_epoch} zxid {a.last_zxid:#x}")
                return
            log.set_current_epoch(self.epoch)
            self.established = True
            self.phase_since = now
            self._establish(self.epoch, me)
            for l in list(self.learners.values()):
                if l.ack_epoch is not None and not l.forwarding:
                    self._sync(now, l)
        if not self.synced:
            if not self._quorum(newleader_acks(me, self._voters())):
                return
            log.mark_committed(log.last_zxid)
            self.synced = True
            for l in self.learners.values():
                l.last_heard = max(l.last_heard, now)
                if l.newleader_acked:
                    self._uptodate(l)
            self.next_half = now + self.timing.tick_ms / 2
            if self.propose:
                self.next_txn = now + self.timing.txn_interval_ms

    def _leaderinfo(self, now: float, l: LearnerLink) -> None:
        self._out.append(Send(l.conn, LeaderInfo(self.epoch)))
        l.read_since = now

    def _sync(self, now: float, l: LearnerLink) -> None:
        """[TRUNC] DIFF TXN* NEWLEADER, then the learner joins the forwarding set at once,
        so every later proposal follows its history in order."""
        assert l.ack_epoch is not None
        log = self.log
        plan = plan_sync(list(log.zxids()), l.ack_epoch.last_zxid)
        for frame in sync_frames(plan, log.entries_after(plan.from_zxid), _make_zxid(self.epoch, 0)):
            self._out.append(Send(l.conn, frame))
        l.forwarding = True
        l.read_since = now

    def _uptodate(self, l: LearnerLink) -> None:
        if not l.uptodate_sent:
            l.uptodate_sent = True
            self._out.append(Send(l.conn, UpToDate(self.log.last_committed_zxid)))

    def _propose(self) -> None:
        self.counter += 1
        zxid = _make_zxid(self.epoch, self.counter)
        payload = f"sid={self.sid} epoch={self.epoch} counter={self.counter}".encode()
        self.log.append(zxid, payload)  # durable before anyone is asked to ack it
        self.tracker.propose(zxid, self.sid)
        self.payloads[zxid] = payload
        for l in self.learners.values():
            if l.forwarding and not l.observer:
                self._out.append(Send(l.conn, Proposal(zxid, payload)))
        self._commit(self.tracker.ack(self.sid, zxid))

    def _commit(self, zxids: list[int]) -> None:
        for z in zxids:
            self.log.mark_committed(z)
            self._emit("txn_committed", zxid=z)
            payload = self.payloads.pop(z, b"")
            for l in self.learners.values():
                if l.forwarding:
                    self._out.append(Send(l.conn, Inform(z, payload) if l.observer else Commit(z)))

    # -- ends -----------------------------------------------------------------------------
    def _read_limit(self, l: LearnerLink) -> float | None:
        """ZooKeeper's LearnerHandler socket timeout: initLimit during the handshake, then per
        ``learner_read_timeout``."""
        if not l.forwarding:
            return self.timing.init_ms
        return learner_read_timeout(l.newleader_acked, self.timing.init_ms, self.timing.sync_ms)

    def _malformed(self, l: LearnerLink, reason: str, length: int | None) -> None:
        self._emit("malformed_frame", peer=l.sid if l.sid >= 0 else l.remote, port="quorum", reason=reason,
                   length=length)
        self._drop(l, f"malformed frame: {reason}")

    def _forget(self, l: LearnerLink, reason: str) -> None:
        self.links.pop(l.conn, None)
        if l.sid >= 0 and self.learners.get(l.sid) is l:
            del self.learners[l.sid]
        l.forwarding = False
        self._out.append(Close(l.conn, reason))

    def _drop(self, l: LearnerLink, reason: str) -> None:
        self._forget(l, reason)
        if l.sid >= 0:
            self._emit("connection_closed", peer=l.sid, port="quorum", direction="in", reason=reason)

    def _close_all(self) -> None:
        for l in list(self.links.values()):
            self._drop(l, _LEADER_STOPPED)

    def _give_up(self, reason: str, detail: str) -> None:
        self._emit("quorum_lost", reason=detail)
        self._close_all()
        self._end(reason)

    def _phase_detail(self) -> str:
        if self.epoch < 0:
            return ("no voting quorum sent FOLLOWERINFO within initLimit; connected voters "
                    f"{sorted(self._connected())}")
        if not self.established:
            return ("no voting quorum of ACKEPOCH within initLimit; acked "
                    f"{sorted(counted_epoch_acks(self.sid, self._voters()))}")
        return ("no voting quorum acked NEWLEADER within initLimit; acked "
                f"{sorted(newleader_acks(self.sid, self._voters()))}")

    def _voters(self) -> list[LearnerLink]:
        return [l for l in self.learners.values() if not l.observer]

    def _connected(self) -> set[int]:
        return {self.sid} | {l.sid for l in self._voters()}

    def _quorum(self, sids: Iterable[int]) -> bool:
        return voting_quorum(sids, self.verifier)


# ---- learner ------------------------------------------------------------------

class LearnerRole(_Role):
    """A follower or observer of `leader` (ZooKeeper's Learner): dial, discovery, sync, broadcast."""

    def __init__(self, sid: int, leader: int, log: ZabLog, timing: ZabTiming, *, observer: bool = False) -> None:
        super().__init__(sid, log, timing)
        self.leader = leader
        self.observer = observer
        self.name = "observer" if observer else "follower"
        self.conn: int | None = None
        self.remote = ""
        self.tries = 0
        self.started = 0.0
        self.next_dial = math.inf
        self.dialling = False
        self.last_err = "no attempt"
        self.phase = "connect"      # connect → leaderinfo → sync → broadcast
        self.opened = False         # LEADERINFO came: connection_opened was written
        self.read_since = 0.0
        self.synced = False
        self.sync: LearnerSync | None = None
        self.mode, self.from_zxid, self.to_zxid = SyncMode.NONE, 0, 0

    # -- inputs ---------------------------------------------------------------------------
    def start(self, now: float) -> list[Effect]:
        self.started = now
        self._dial(now)
        return self._flush()

    def on_dial_failed(self, now: float, error: str) -> list[Effect]:
        if self.ended is None and self.dialling:
            self.dialling = False
            self.last_err = error
            self._retry(now)
        return self._flush()

    def on_connected(self, now: float, conn: int, remote: str) -> list[Effect]:
        if self.ended is not None or not self.dialling:
            return [Close(conn, "not dialling")]
        self.dialling = False
        self.conn, self.remote, self.phase = conn, remote, "leaderinfo"
        kind = LearnerType.OBSERVER if self.observer else LearnerType.PARTICIPANT
        self._out.append(Send(conn, FollowerInfo(self.sid, self.log.accepted_epoch, kind)))
        return self._flush()

    def on_message(self, now: float, conn: int, msg: Message) -> list[Effect]:
        if conn != self.conn or self.ended is not None:
            return []
        self.read_since = now
        try:
            self._on_message(now, msg)
        except ZabProtocolError as e:
            self._malformed(str(e), None)
        return self._flush()

    def on_malformed(self, now: float, conn: int, reason: str, length: int | None) -> list[Effect]:
        if conn == self.conn and self.ended is None:
            self._malformed(reason, length)
        return self._flush()

    def on_closed(self, now: float, conn: int, reason: str) -> list[Effect]:
        if conn != self.conn or self.ended is not None:
            return []
        if self.phase == "leaderinfo":  # no LEADERINFO yet: this attempt failed, try again
            self.conn, self.phase = None, "connect"
            self.last_err = f"no LEADERINFO (connection closed: {reason})"
            self._retry(now)
        else:
            self._lose(REASON_LEADER_CLOSED, f"leader closed connection ({reason})")
        return self._flush()

    def on_tick(self, now: float) -> list[Effect]:
        if self.ended is not None:
            return []
        if self.phase == "connect":
            if not self.dialling and now >= self.next_dial:
                self._dial(now)
        elif self.phase == "leaderinfo":
            if now >= self.started + self.timing.init_ms:
                self.last_err = "no LEADERINFO within initLimit"
                self._lose(REASON_CANNOT_CONNECT, self.last_err)
        elif now - self.read_since >= self._read_limit():
            self._lose(REASON_LEADER_SILENT, "leader silent")
        return self._flush()

    def next_wakeup(self) -> float:
        if self.ended is not None:
            return math.inf
        if self.phase == "connect":
            return math.inf if self.dialling else self.next_dial
        if self.phase == "leaderinfo":
            return self.started + self.timing.init_ms
        return self.read_since + self._read_limit()

    def stop(self, now: float) -> list[Effect]:
        if self.ended is None:
            self._close(REASON_STOPPED)
            self._end(REASON_STOPPED)
        return self._flush()

    # -- the sequence ------------------------------------------------------------------------
    def _on_message(self, now: float, msg: Message) -> None:
        log = self.log
        if self.phase == "leaderinfo":
            if not isinstance(msg, LeaderInfo):
                raise ZabProtocolError(f"expected LEADERINFO, got {type(msg).__name__}")
            self.opened = True
            self._emit("connection_opened", peer=self.leader, port="quorum", direction="out", reason=self.name,
                       remote=self.remote)
            action = learner_epoch_action(msg.epoch, log.accepted_epoch)
            if action is EpochAction.ABORT:
                self._lose(REASON_EPOCH_OLDER,
                           f"leader proposed epoch {msg.epoch} < accepted epoch {log.accepted_epoch}")
                return
            if action is EpochAction.STORE_AND_ACK:
                log.set_accepted_epoch(msg.epoch)
                self._emit("epoch_accepted", epoch=msg.epoch, leader=self.leader)
                self._out.append(Send(self.conn, AckEpoch(log.current_epoch, log.last_zxid)))
            else:
                self._out.append(Send(self.conn, AckEpoch(-1, log.last_zxid)))
            self.phase, self.sync = "sync", LearnerSync(log.last_zxid)
        elif self.phase == "sync":
            self._on_sync(msg)
        else:
            self._on_broadcast(msg)

    def _on_sync(self, msg: Message) -> None:
        log, sync = self.log, self.sync
        assert sync is not None
        trunc = sync.feed(msg)
        if trunc is not None:
            log.truncate_after(trunc.zxid)
            sync.truncated(log.last_zxid)
        if not sync.done:
            return
        epoch = sync.epoch(log.accepted_epoch)
        # currentEpoch first, then the history (ZooKeeper 3.8's order): a crash in
        # between leaves txns of an epoch we have not yet declared nowhere.
        log.set_current_epoch(epoch)
        for t in sync.pending:
            if t.zxid > log.last_zxid:
                log.append(t.zxid, t.payload)
        self.mode, self.from_zxid, self.to_zxid = sync.mode, sync.from_zxid, log.last_zxid
        self._establish(epoch, self.leader)
        assert sync.newleader is not None
        self._out.append(Send(self.conn, Ack(sync.newleader.zxid)))
        if log.last_zxid >> 32 == epoch:
            self._out.append(Send(self.conn, Ack(log.last_zxid)))
        self.phase, self.sync = "broadcast", None

    def _on_broadcast(self, msg: Message) -> None:
        log = self.log
        if isinstance(msg, Ping):
            self._out.append(Send(self.conn, Ping()))
        elif isinstance(msg, Proposal):
            if msg.zxid > log.last_zxid:
                log.append(msg.zxid, msg.payload)  # durable before the ACK
            self._out.append(Send(self.conn, Ack(msg.zxid)))
        elif isinstance(msg, Commit):
            log.mark_committed(msg.zxid)
            self._emit("txn_applied", zxid=msg.zxid)
        elif isinstance(msg, Inform):
            if msg.zxid > log.last_zxid:
                log.append(msg.zxid, msg.payload)
            log.mark_committed(msg.zxid)
            self._emit("txn_applied", zxid=msg.zxid)
        elif isinstance(msg, UpToDate):
            log.mark_committed(msg.committed_zxid)
            if not self.synced:
                self.synced = True
                self._emit("sync_finished", leader=self.leader, mode=self.mode.value, from_zxid=self.from_zxid,
                           to_zxid=self.to_zxid)
        else:
            raise ZabProtocolError(f"unexpected {type(msg).__name__} from leader")

    # -- dialling and ends --------------------------------------------------------------------
    def _dial(self, now: float) -> None:
        remaining = self.started + self.timing.init_ms - now
        if self.tries >= CONNECT_TRIES or remaining <= 0:
            self._lose(REASON_CANNOT_CONNECT, self.last_err)
            return
        self.tries += 1
        self.dialling = True
        self.next_dial = math.inf
        self._out.append(Dial(remaining))

    def _retry(self, now: float) -> None:
        if self.tries >= CONNECT_TRIES:
            self._lose(REASON_CANNOT_CONNECT, self.last_err)
        else:
            self.next_dial = now + CONNECT_DELAY_MS

    def _read_limit(self) -> float:
        """initLimit until UPTODATE (the leader pings only once a quorum synced), then syncLimit."""
        if self.phase == "sync":
            return self.timing.init_ms
        return leader_read_timeout(self.synced, self.timing.init_ms, self.timing.sync_ms)

    def _malformed(self, reason: str, length: int | None) -> None:
        self._emit("malformed_frame", peer=self.leader, port="quorum", reason=reason, length=length)
        self._lose(REASON_MALFORMED, reason)

    def _close(self, reason: str) -> None:
        if self.conn is not None:
            self._out.append(Close(self.conn, reason))
            if self.opened:
                self._emit("connection_closed", peer=self.leader, port="quorum", direction="out", reason=reason)
            self.conn = None

    def _lose(self, reason: str, detail: str) -> None:
        self._emit("leader_lost", reason=detail)
        self._close(reason)
        self._end(reason)


Role = Union[LeaderRole, LearnerRole]
