"""Votes, notifications and zxids: the values FastLeaderElection reasons about,
and the order among votes (`total_order_predicate`) that picks a leader.

Pure data and pure functions, no I/O: the node's FLE core and the chaos
judge both decide "who should have won" with this one rule. Names follow ZooKeeper (`round` is ZooKeeper's
`electionEpoch`, the sender's logical clock; `peer_epoch` is the proposed
leader's currentEpoch) so a reader of the Java source finds them.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "LONG_MIN",
    "LONG_MAX",
    "ServerState",
    "Vote",
    "Notification",
    "zxid_epoch",
    "zxid_counter",
    "make_zxid",
    "total_order_predicate",
]

LONG_MIN = -(2**63)
"""Java's Long.MIN_VALUE: what a non-voter proposes for leader, zxid and epoch."""
LONG_MAX = 2**63 - 1


class ServerState(enum.IntEnum):
    """Peer state; the integer is the wire code of the notification's state field."""

    LOOKING = 0
    FOLLOWING = 1
    LEADING = 2
    OBSERVING = 3


def _to_int64(value: int) -> int:
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= (1 << 63) else value


def zxid_epoch(zxid: int) -> int:
    """High 32 bits, arithmetic shift as Java's `zxid >> 32` (so -1 gives -1)."""
    return _to_int64(zxid) >> 32


def zxid_counter(zxid: int) -> int:
    """Low 32 bits, always non-negative."""
    return zxid & 0xFFFFFFFF


def make_zxid(epoch: int, counter: int) -> int:
    """`(epoch << 32) | (counter & 0xffffffff)` wrapped to a signed 64-bit long."""
    return _to_int64((epoch << 32) | (counter & 0xFFFFFFFF))


def total_order_predicate(new_id: int, new_zxid: int, new_epoch: int,
                          cur_id: int, cur_zxid: int, cur_epoch: int, *, new_weight: int = 1) -> bool:
    """Does (new_epoch, new_zxid, new_id) beat the current proposal?

    ZooKeeper's totalOrderPredicate. A zero-weight server is never adopted
    (ZK-491; the caller passes `new_weight`, the verifier's weight of
    `new_id`); zxid and id only break ties between equal peer epochs (ZK-1419).
    """
    if new_weight == 0:
        return False
    return (new_epoch > cur_epoch) or (
        new_epoch == cur_epoch and (new_zxid > cur_zxid or (new_zxid == cur_zxid and new_id > cur_id))
    )


@dataclass(frozen=True, slots=True)
class Vote:
    """A vote as FLE stores it in recvset/outofelection and as currentVote.

    `__eq__` stays structural (useful in tests and sets); ZooKeeper's looser
    `Vote.equals`, which decides whether two votes count toward the same
    quorum, is `matches`.
    """

    leader: int
    zxid: int
    round: int
    peer_epoch: int
    state: ServerState = ServerState.LOOKING
    version: int = 0

    def matches(self, other: "Vote") -> bool:
        """ZooKeeper 3.8 `Vote.equals` (spec §3).

        A LOOKING vote must agree on every election field. Votes of peers that
        already left the election carry stale zxid/round (updateElectionVote
        only refreshes peerEpoch), so only the leader and its epoch must
        agree, and only the leader when exactly one side speaks the versioned
        format (rolling upgrades, ZK-1805).
        """
        if self.state == ServerState.LOOKING or other.state == ServerState.LOOKING:
            return (
                self.leader == other.leader
                and self.zxid == other.zxid
                and self.round == other.round
                and self.peer_epoch == other.peer_epoch
            )
        if (self.version > 0) != (other.version > 0):
            return self.leader == other.leader
        return self.leader == other.leader and self.peer_epoch == other.peer_epoch


@dataclass(frozen=True, slots=True)
class Notification:
    """One decoded election message from peer `sid` (what WorkerReceiver builds).

    `version` is what the codec read (0 for 28/40-byte frames as 3.8 does);
    `config` is the peer's config text for v2 frames. The core uses a static
    configuration and ignores `config` (reconfig is off, as in ZooKeeper's
    default).
    """

    sid: int
    state: ServerState
    leader: int
    zxid: int
    round: int
    peer_epoch: int
    version: int = 0
    config: str | None = None

    def vote(self) -> Vote:
        return Vote(self.leader, self.zxid, self.round, self.peer_epoch, self.state, self.version)
