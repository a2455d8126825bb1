"""Sans-I/O parts of the broadcast phase: wire codec, the leader's bookkeeping and rules.

The asyncio shell (`node.zab`) owns sockets, timers and the disk; everything
here is a pure function of its inputs so it can be tested table-driven. The
protocol itself (message sequence, timing) is described in `node.zab`.

The rules a leader and a learner decide by — the epoch to propose, what a
learner does with LEADERINFO, which ACKEPOCHs count, when a follower is ahead,
the sync frames, who counts as synced and alive — live here, and both the
asyncio shell and the simulator (`node.sim_zab`) call them, so a bug in one of
them is the same bug in simulation and in real processes.

Frame: int32 length (1..MAX_FRAME) then a body whose first byte is the
message type. Integers are big-endian; zxids and epochs are int64.
"""
from __future__ import annotations

import bisect
import enum
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence, Union

from node.codec import FrameDecoder as _ElectionFrameDecoder
from node.codec import ProtocolError

__all__ = [
    "MAX_FRAME",
    "PROTOCOL_VERSION",
    "MsgType",
    "LearnerType",
    "ZabProtocolError",
    "FollowerInfo",
    "LeaderInfo",
    "AckEpoch",
    "Trunc",
    "Diff",
    "Txn",
    "NewLeader",
    "Ack",
    "UpToDate",
    "Proposal",
    "Commit",
    "Inform",
    "Ping",
    "Message",
    "encode",
    "decode",
    "FrameDecoder",
    "SyncMode",
    "SyncPlan",
    "plan_sync",
    "ProposalTracker",
    "EpochAction",
    "epoch_to_propose",
    "learner_epoch_action",
    "is_more_recent",
    "LearnerView",
    "voting_quorum",
    "counted_epoch_acks",
    "learner_ahead",
    "newleader_acks",
    "synced_and_heard",
    "keeps_quorum",
    "learner_read_timeout",
    "leader_read_timeout",
    "sync_frames",
    "LearnerSync",
]

MAX_FRAME = (1 << 20) + 64
PROTOCOL_VERSION = 0x10000  # ZooKeeper's Zab 1.0 protocol number, kept for familiarity


class ZabProtocolError(Exception):
    """The remote peer sent bytes that are not a valid message; drop that connection."""


class MsgType(enum.IntEnum):
    FOLLOWERINFO = 1
    LEADERINFO = 2
    ACKEPOCH = 3
    TRUNC = 4
    DIFF = 5
    TXN = 6
    NEWLEADER = 7
    ACK = 8
    UPTODATE = 9
    PROPOSAL = 10
    COMMIT = 11
    INFORM = 12
    PING = 13


class LearnerType(enum.IntEnum):
    PARTICIPANT = 0
    OBSERVER = 1


@dataclass(frozen=True, slots=True)
class FollowerInfo:
    sid: int
    accepted_epoch: int
    learner_type: LearnerType = LearnerType.PARTICIPANT
    protocol_version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    epoch: int
    protocol_version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class AckEpoch:
    """current_epoch is -1 when the learner had already accepted this epoch (ZooKeeper's rule)."""
    current_epoch: int
    last_zxid: int


@dataclass(frozen=True, slots=True)
class Trunc:
    zxid: int


@dataclass(frozen=True, slots=True)
class Diff:
    from_zxid: int
    to_zxid: int


@dataclass(frozen=True, slots=True)
class Txn:
    zxid: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class NewLeader:
    zxid: int  # make_zxid(new_epoch, 0)


@dataclass(frozen=True, slots=True)
class Ack:
    zxid: int


@dataclass(frozen=True, slots=True)
class UpToDate:
    committed_zxid: int


@dataclass(frozen=True, slots=True)
class Proposal:
    zxid: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    zxid: int


@dataclass(frozen=True, slots=True)
class Inform:
    zxid: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    pass


Message = Union[FollowerInfo, LeaderInfo, AckEpoch, Trunc, Diff, Txn, NewLeader, Ack,
                UpToDate, Proposal, Commit, Inform, Ping]

_Q = struct.Struct(">q")
_QQ = struct.Struct(">qq")
_FI = struct.Struct(">qqBi")
_LI = struct.Struct(">qi")

_TYPE_OF: dict[type, MsgType] = {
    FollowerInfo: MsgType.FOLLOWERINFO, LeaderInfo: MsgType.LEADERINFO,
    AckEpoch: MsgType.ACKEPOCH, Trunc: MsgType.TRUNC, Diff: MsgType.DIFF, Txn: MsgType.TXN,
    NewLeader: MsgType.NEWLEADER, Ack: MsgType.ACK, UpToDate: MsgType.UPTODATE,
    Proposal: MsgType.PROPOSAL, Commit: MsgType.COMMIT, Inform: MsgType.INFORM,
    Ping: MsgType.PING,
}


def _body(msg: Message) -> bytes:
    match msg:
        case FollowerInfo():
            return _FI.pack(msg.sid, msg.accepted_epoch, int(msg.learner_type), msg.protocol_version)
        case LeaderInfo():
            return _LI.pack(msg.epoch, msg.protocol_version)
        case AckEpoch():
            return _QQ.pack(msg.current_epoch, msg.last_zxid)
        case Diff():
            return _QQ.pack(msg.from_zxid, msg.to_zxid)
        case Txn() | Proposal() | Inform():
            return _Q.pack(msg.zxid) + msg.payload
        case Trunc() | NewLeader() | Ack() | Commit():
            return _Q.pack(msg.zxid)
        case UpToDate():
            return _Q.pack(msg.committed_zxid)
        case Ping():
            return b""
    raise TypeError(f"not a Zab message: {msg!r}")


def encode(msg: Message) -> bytes:
    """One frame: int32 length, type byte, body."""
    body = bytes([_TYPE_OF[type(msg)]]) + _body(msg)
    if len(body) > MAX_FRAME:
        raise ValueError(f"{type(msg).__name__} of {len(body)} bytes exceeds MAX_FRAME")
    return struct.pack(">i", len(body)) + body


def _need(body: bytes, n: int, what: str) -> None:
    if len(body) != n:
        raise ZabProtocolError(f"{what}: expected {n} body bytes, got {len(body)}")


def decode(frame: bytes) -> Message:
    """Decode one frame body (without the length prefix)."""
    if not frame:
        raise ZabProtocolError("empty frame")
    try:
        t = MsgType(frame[0])
    except ValueError:
        raise ZabProtocolError(f"unknown message type {frame[0]}") from None
    b = frame[1:]
    name = t.name
    if t is MsgType.FOLLOWERINFO:
        _need(b, _FI.size, name)
        sid, acc, lt, pv = _FI.unpack(b)
        try:
            learner = LearnerType(lt)
        except ValueError:
            raise ZabProtocolError(f"{name}: unknown learner type {lt}") from None
        if pv != PROTOCOL_VERSION:
            raise ZabProtocolError(f"{name}: protocol version {pv:#x}, expected {PROTOCOL_VERSION:#x}")
        return FollowerInfo(sid, acc, learner, pv)
    if t is MsgType.LEADERINFO:
        _need(b, _LI.size, name)
        ep, pv = _LI.unpack(b)
        if pv != PROTOCOL_VERSION:
            raise ZabProtocolError(f"{name}: protocol version {pv:#x}, expected {PROTOCOL_VERSION:#x}")
        return LeaderInfo(ep, pv)
    if t in (MsgType.ACKEPOCH, MsgType.DIFF):
        _need(b, _QQ.size, name)
        a, c = _QQ.unpack(b)
        return AckEpoch(a, c) if t is MsgType.ACKEPOCH else Diff(a, c)
    if t in (MsgType.TXN, MsgType.PROPOSAL, MsgType.INFORM):
        if len(b) < 8:
            raise ZabProtocolError(f"{name}: expected at least 8 body bytes, got {len(b)}")
        (z,) = _Q.unpack_from(b)
        cls = {MsgType.TXN: Txn, MsgType.PROPOSAL: Proposal, MsgType.INFORM: Inform}[t]
        return cls(z, bytes(b[8:]))
    if t is MsgType.PING:
        _need(b, 0, name)
        return Ping()
    _need(b, 8, name)
    (z,) = _Q.unpack(b)
    return {MsgType.TRUNC: Trunc, MsgType.NEWLEADER: NewLeader, MsgType.ACK: Ack,
            MsgType.UPTODATE: UpToDate, MsgType.COMMIT: Commit}[t](z)


class FrameDecoder:
    """Bytes in, messages out; a bad length or body raises ZabProtocolError.

    Framing is the election port's (int32 length, bounded), so it reuses the
    election codec's decoder with the quorum port's own size bound.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._frames: deque[bytes] = deque()
        self._inner = _ElectionFrameDecoder(max_frame)
        self._error: ZabProtocolError | None = None
        self.last_length: int | None = None

    def feed(self, data: bytes) -> None:
        if self._error is not None:
            return
        try:
            self._frames.extend(self._inner.feed(data))
        except ProtocolError as e:
            self.last_length = e.length
            self._error = ZabProtocolError(e.reason)
            return
        bad = self._inner.error
        if bad is not None:  # frames before a bad length were kept; the stream ends here
            self.last_length = bad.length
            self._error = ZabProtocolError(bad.reason)

    def next_message(self) -> Message | None:
        if self._frames:
            frame = self._frames.popleft()
            self.last_length = len(frame)
            return decode(frame)
        if self._error is not None:
            raise self._error
        return None


# ---- discovery (spec §4) ---------------------------------------------------

class EpochAction(enum.Enum):
    """What a learner does with LEADERINFO(e)."""
    STORE_AND_ACK = "store"   # e > acceptedEpoch: persist e, ACKEPOCH(currentEpoch, lastZxid)
    ACK_ALREADY = "already"   # e == acceptedEpoch: ACKEPOCH(-1, lastZxid), not counted
    ABORT = "abort"           # e < acceptedEpoch: it promised a newer leader


def epoch_to_propose(own_accepted: int, voters_accepted: Iterable[int]) -> int:
    """One above every acceptedEpoch of the quorum, so no member has promised it away."""
    return max([own_accepted, *voters_accepted]) + 1


def learner_epoch_action(proposed: int, accepted: int) -> EpochAction:
    if proposed > accepted:
        return EpochAction.STORE_AND_ACK
    if proposed == accepted:
        return EpochAction.ACK_ALREADY
    return EpochAction.ABORT


def is_more_recent(epoch: int, zxid: int, than_epoch: int, than_zxid: int) -> bool:
    """ZooKeeper's StateSummary.isMoreRecentThan: a follower ahead aborts the leader."""
    return epoch > than_epoch or (epoch == than_epoch and zxid > than_zxid)


# ---- synchronisation -------------------------------------------------------

class SyncMode(enum.Enum):
    NONE = "none"
    DIFF = "diff"
    TRUNC = "trunc"


@dataclass(frozen=True, slots=True)
class SyncPlan:
    mode: SyncMode
    trunc_zxid: int | None  # TRUNC target, else None
    from_zxid: int           # the learner keeps everything up to here
    to_zxid: int             # the leader's last zxid


def plan_sync(leader_zxids: list[int], learner_last_zxid: int) -> SyncPlan:
    """What a learner with `learner_last_zxid` needs to match the leader's history.

    Zab keeps histories prefix-ordered, so a learner's log can only diverge in
    a tail the leader never had (uncommitted proposals of a dead epoch). If the
    learner's last zxid is in the leader's history it only needs the rest
    (DIFF); otherwise it cuts back to the last zxid both can share (TRUNC),
    then gets the rest.
    """
    to = leader_zxids[-1] if leader_zxids else 0
    if learner_last_zxid == to:
        return SyncPlan(SyncMode.NONE, None, learner_last_zxid, to)
    if learner_last_zxid == 0 or _contains(leader_zxids, learner_last_zxid):
        return SyncPlan(SyncMode.DIFF, None, learner_last_zxid, to)
    shared = _last_below(leader_zxids, learner_last_zxid)
    return SyncPlan(SyncMode.TRUNC, shared, shared, to)


def _contains(sorted_zxids: list[int], z: int) -> bool:
    i = bisect.bisect_left(sorted_zxids, z)
    return i < len(sorted_zxids) and sorted_zxids[i] == z


def _last_below(sorted_zxids: list[int], z: int) -> int:
    i = bisect.bisect_left(sorted_zxids, z)
    return sorted_zxids[i - 1] if i > 0 else 0


# ---- commit bookkeeping ----------------------------------------------------

@dataclass(slots=True)
class ProposalTracker:
    """Outstanding proposals and who acked them; commits strictly in zxid order.

    Acks are cumulative: a follower logs in zxid order and fsyncs before it
    acks, so ACK(z) vouches for every outstanding proposal up to z.
    """
    contains_quorum: Callable[[Iterable[int]], bool]
    outstanding: dict[int, set[int]] = field(default_factory=dict)

    def propose(self, zxid: int, self_sid: int) -> None:
        self.outstanding[zxid] = {self_sid}

    def ack(self, sid: int, zxid: int) -> list[int]:
        for z, ackers in self.outstanding.items():
            if z <= zxid:
                ackers.add(sid)
        return self._ready()

    def _ready(self) -> list[int]:
        done: list[int] = []
        for z in list(self.outstanding):
            if not self.contains_quorum(self.outstanding[z]):
                break
            del self.outstanding[z]
            done.append(z)
        return done


# ---- the leader's rules (shared by node.zab and node.sim_zab) -----------------

class LearnerView(Protocol):
    """What the rules read of one learner connection at the leader."""

    sid: int
    observer: bool
    last_heard: float
    ack_epoch: AckEpoch | None
    newleader_acked: bool


def voting_quorum(sids: Iterable[int], verifier: Any) -> bool:
    """Do the voters among `sids` form a quorum (observers and strangers never count)?"""
    return bool(verifier.contains_quorum(set(sids) & set(verifier.voting_members)))


def counted_epoch_acks(me: int, learners: Iterable[LearnerView]) -> set[int]:
    """The leader plus every voter whose ACKEPOCH counts: -1 (epoch accepted before) does not."""
    return {me} | {l.sid for l in learners
                   if not l.observer and l.ack_epoch is not None and l.ack_epoch.current_epoch != -1}


def learner_ahead(learners: Iterable[LearnerView], current_epoch: int, last_zxid: int) -> LearnerView | None:
    """A voter whose counted ACKEPOCH is more recent than the leader: the leader must abort."""
    for l in learners:
        a = l.ack_epoch
        if not l.observer and a is not None and a.current_epoch != -1 and is_more_recent(
                a.current_epoch, a.last_zxid, current_epoch, last_zxid):
            return l
    return None


def newleader_acks(me: int, learners: Iterable[LearnerView]) -> set[int]:
    return {me} | {l.sid for l in learners if not l.observer and l.newleader_acked}


def synced_and_heard(me: int, learners: Iterable[LearnerView], now: float, sync_limit: float) -> set[int]:
    """The leader plus voters that ACKed NEWLEADER and were heard within syncLimit
    (`now` and `sync_limit` in one unit): an open connection alone proves nothing."""
    return {me} | {l.sid for l in learners
                   if not l.observer and l.newleader_acked and now - l.last_heard <= sync_limit}


def learner_read_timeout(newleader_acked: bool, init_limit: float, sync_limit: float) -> float | None:
    """How long the leader waits for a learner's next message (ZooKeeper's
    LearnerHandler socket timeout): initLimit until it ACKed NEWLEADER, then
    syncLimit; past it the learner is dropped. None: wait for ever."""
    return sync_limit if newleader_acked else init_limit


def leader_read_timeout(synced: bool, init_limit: float, sync_limit: float) -> float:
    """How long a learner waits for its leader's next message: initLimit until
    UPTODATE (the leader pings only once a quorum synced), then syncLimit."""
    return sync_limit if synced else init_limit


def keeps_quorum(me: int, learners: Iterable[LearnerView], now: float, sync_limit: float,
                 verifier: Any) -> tuple[bool, set[int]]:
    """The leader's periodic check (ZooKeeper's synced()): does it still lead a quorum?"""
    alive = synced_and_heard(me, learners, now, sync_limit)
    return voting_quorum(alive, verifier), alive


def sync_frames(plan: SyncPlan, entries: Sequence[tuple[int, bytes]], newleader_zxid: int) -> list["Message"]:
    """What the leader sends a learner after its ACKEPOCH: [TRUNC] DIFF TXN* NEWLEADER.
    `entries` are the leader's (zxid, payload) after `plan.from_zxid`."""
    out: list[Message] = []
    if plan.mode is SyncMode.TRUNC:
        out.append(Trunc(plan.trunc_zxid))
    out.append(Diff(plan.from_zxid, plan.to_zxid))
    out.extend(Txn(z, p) for z, p in entries)
    out.append(NewLeader(newleader_zxid))
    return out


@dataclass
class LearnerSync:
    """A learner's sync phase, fed the leader's frames in order: [TRUNC] DIFF TXN* NEWLEADER.

    :meth:`feed` returns the TRUNC the caller must apply to its log at once
    (then :meth:`truncated` with the new last zxid); after NEWLEADER, ``done``
    holds, :meth:`epoch` checks it against the acceptedEpoch, and the caller
    stores currentEpoch first, then appends ``pending`` (ZooKeeper 3.8's order).
    """

    last_zxid: int
    mode: SyncMode = SyncMode.NONE
    from_zxid: int = -1
    pending: list[Txn] = field(default_factory=list)
    newleader: NewLeader | None = None

    def __post_init__(self) -> None:
        if self.from_zxid < 0:
            self.from_zxid = self.last_zxid

    @property
    def done(self) -> bool:
        return self.newleader is not None

    def feed(self, msg: "Message") -> Trunc | None:
        if isinstance(msg, Trunc):
            return msg
        if isinstance(msg, Diff):
            if self.mode is not SyncMode.TRUNC and msg.to_zxid != msg.from_zxid:
                self.mode = SyncMode.DIFF
        elif isinstance(msg, Txn):
            self.pending.append(msg)
        elif isinstance(msg, NewLeader):
            self.newleader = msg
        elif not isinstance(msg, Ping):
            raise ZabProtocolError(f"unexpected {type(msg).__name__} during sync")
        return None

    def truncated(self, last_zxid: int) -> None:
        self.mode, self.from_zxid, self.last_zxid = SyncMode.TRUNC, last_zxid, last_zxid

    def epoch(self, accepted_epoch: int) -> int:
        """NEWLEADER's epoch, which must be the one this learner accepted."""
        assert self.newleader is not None
        epoch = self.newleader.zxid >> 32
        if epoch != accepted_epoch:
            raise ZabProtocolError(f"NEWLEADER epoch {epoch} != accepted epoch {accepted_epoch}")
        return epoch
