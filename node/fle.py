"""FastLeaderElection as a pure state machine (ZooKeeper 3.8 rules, 3.4.6 on request).

Theory of operation
-------------------
ZooKeeper runs FLE as two threads around a queue: WorkerReceiver turns frames
into notifications, answers some senders at once and queues the rest;
`lookForLeader` polls that queue with a timeout. Here both collapse into one
object that takes inputs and returns effects, so the same core runs in the
asyncio node and in the simulator:

    start_election(now, last_zxid, current_epoch)   -- lookForLeader entry
    on_notification(now, n)                         -- WorkerReceiver + one loop turn
    on_timer(now, name, have_delivered=...)         -- the poll timed out
    -> [Send | SetTimer | CancelTimer | ConnectAll | StateChanged | Decided | EventOut]

The blocking polls become two timers. "notification" is `poll(notTimeout)`:
every notification that reaches the loop restarts it, and when it fires the
core re-sends (or asks the transport to reconnect) and doubles the timeout.
"finalize" is `poll(finalizeWait)` after a quorum: a notification that does
not beat the proposal is consumed and restarts the quiet period; one that
beats it is processed as a normal notification and the wait is abandoned;
silence decides. A `SetTimer` with a name already armed replaces it; a timer
the core did not arm (or already cancelled) is ignored when it fires.

The core never reads a clock or an RNG: `now_ms` only feeds durations.

protocol="3.4" switches the rules 3.4.6 has and 3.8 changed: no -1 zxid
filter (ZK-261) and no valid-voter check of the proposed leader (ZK-2988);
a same-round FOLLOWING/LEADING vote is stored in recvset as a LOOKING vote
and the leader is checked in outofelection (the ooePredicate form, before
ZK-3537); a LOOKING sender of version 0 is answered with the BC vote (the
vote before updateElectionVote). Everything else (Vote.equals with
versions, zero weight, ZK-1514) is what 3.4.6 already had. Deliberately not
reproduced: 3.4's NPE on an unknown leader's weight (here it weighs 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Union

from zkrules.quorum import QuorumVerifier
from zkrules.vote import LONG_MIN, Notification, ServerState, Vote, total_order_predicate

__all__ = [
    "Send",
    "SetTimer",
    "CancelTimer",
    "ConnectAll",
    "StateChanged",
    "Decided",
    "EventOut",
    "Effect",
    "FastLeaderElection",
    "NOTIFICATION_TIMER",
    "FINALIZE_TIMER",
    "PATH_QUORUM",
    "PATH_OUT_OF_ELECTION",
]

NOTIFICATION_TIMER = "notification"
FINALIZE_TIMER = "finalize"
PATH_QUORUM = "quorum"
PATH_OUT_OF_ELECTION = "out_of_election"

LOOKING, FOLLOWING, LEADING, OBSERVING = (
    ServerState.LOOKING,
    ServerState.FOLLOWING,
    ServerState.LEADING,
    ServerState.OBSERVING,
)


@dataclass(frozen=True, slots=True)
class Send:
    """Send one notification. `to` == own sid means loop back into on_notification."""

    to: int
    state: ServerState
    leader: int
    zxid: int
    round: int
    peer_epoch: int


@dataclass(frozen=True, slots=True)
class SetTimer:
    name: str
    delay_ms: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class ConnectAll:
    """QCM.connectAll(): (re)dial every peer that ever had a send queue."""


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: ServerState
    new: ServerState


@dataclass(frozen=True, slots=True)
class Decided:
    """lookForLeader returned: `vote` becomes the current vote."""

    vote: Vote
    path: str
    round: int
    duration_ms: float
    notifications_sent: int
    notifications_received: int
    nonvoter_echoes: int = 0
    """Exchanges with the other side of the voter line, one notification
    received and one answered at once each (so in both counts above). A voter
    answers every non-voter at once with its current vote, as ZooKeeper's
    WorkerReceiver does; a LOOKING observer answers such an answer back when
    it comes from an older round. So a voter and an observer echo at machine
    speed until both decide: the CPU's work, not the election's."""


@dataclass(frozen=True, slots=True)
class EventOut:
    """Something worth a JSON-lines event that has no effect of its own."""

    event: str
    fields: dict = field(default_factory=dict)


Effect = Union[Send, SetTimer, CancelTimer, ConnectAll, StateChanged, Decided, EventOut]


class FastLeaderElection:
    """One peer's election logic. Not thread-safe: the shell serialises calls."""

    def __init__(
        self,
        sid: int,
        verifier: QuorumVerifier,
        *,
        protocol: str = "3.8",
        min_notification_interval: int = 200,
        max_notification_interval: int = 60000,
        finalize_wait: int = 200,
    ) -> None:
        if protocol not in ("3.8", "3.4"):
            raise ValueError(f"fle.protocol must be '3.8' or '3.4', not {protocol!r}")
        if min_notification_interval <= 0 or max_notification_interval < min_notification_interval:
            raise ValueError(
                "notification intervals need 0 < fle.minNotificationInterval <= fle.maxNotificationInterval"
            )
        if finalize_wait <= 0:
            raise ValueError("fle.finalizeWait must be positive")
        self.sid = sid
        self.verifier = verifier
        self.protocol = protocol
        self.min_notification_interval = min_notification_interval
        self.max_notification_interval = max_notification_interval
        self.finalize_wait = finalize_wait

        self._state = LOOKING
        self._started = False
        self._logical_clock = 0
        self._prop = (-1, -1, -1)  # proposedLeader, proposedZxid, proposedEpoch
        self._init = (-1, -1, -1)
        self._current_vote = Vote(sid, -1, -1, -1)
        self._bc_vote: Vote | None = None
        self._recvset: dict[int, Vote] = {}
        self._outofelection: dict[int, Vote] = {}
        self._not_timeout = min_notification_interval
        self._finalizing = False
        self._armed: set[str] = set()
        self._start_ms = 0.0
        self._sent = 0
        self._received = 0
        self._echoes = 0
        self._fx: list[Effect] = []

    # -- read-only views ---------------------------------------------------
    @property
    def state(self) -> ServerState:
        return self._state

    @property
    def logical_clock(self) -> int:
        return self._logical_clock

    @property
    def proposal(self) -> Vote:
        """getVote(): what this peer currently proposes, with its logical clock."""
        leader, zxid, epoch = self._prop
        return Vote(leader, zxid, self._logical_clock, epoch)

    @property
    def current_vote(self) -> Vote:
        """QuorumPeer.currentVote: the last decision (or the startup vote)."""
        return self._current_vote

    @property
    def bc_vote(self) -> Vote:
        """3.4's getBCVote(): current vote before updateElectionVote, if any."""
        return self._bc_vote if self._bc_vote is not None else self._current_vote

    @property
    def recvset(self) -> dict[int, Vote]:
        return dict(self._recvset)

    @property
    def outofelection(self) -> dict[int, Vote]:
        return dict(self._outofelection)

    @property
    def notification_timeout(self) -> int:
        return self._not_timeout

    @property
    def finalizing(self) -> bool:
        return self._finalizing

    @property
    def is_voter(self) -> bool:
        return self.sid in self.verifier.voting_members

    # -- predicates (ZooKeeper names) -------------------------------------
    def total_order_predicate(self, new_id: int, new_zxid: int, new_epoch: int,
                              cur_id: int, cur_zxid: int, cur_epoch: int) -> bool:
        """`zkrules.vote.total_order_predicate` with this configuration's weights."""
        return total_order_predicate(new_id, new_zxid, new_epoch, cur_id, cur_zxid, cur_epoch,
                                     new_weight=self.verifier.weight(new_id))

    def term_predicate(self, votes: dict[int, Vote], target: Vote) -> bool:
        """Do the voters whose vote matches `target` form a quorum?

        With a static configuration the SyncedLearnerTracker of 3.8 covers one
        verifier, which is exactly 3.4's HashSet + containsQuorum.
        """
        acked = {sid for sid, v in votes.items() if target.matches(v) and sid in self.verifier.voting_members}
        return self.verifier.contains_quorum(acked)

    def check_leader(self, votes: dict[int, Vote], leader: int, election_epoch: int) -> bool:
        """Trust a leader only if it says LEADING itself; trust myself only in my own round (ZK-1514)."""
        if leader != self.sid:
            v = votes.get(leader)
            return v is not None and v.state == LEADING
        return self._logical_clock == election_epoch

    def ooe_predicate(self, recv: dict[int, Vote], ooe: dict[int, Vote], n: Notification) -> bool:
        """3.4.6's form: quorum in `recv`, leader check in `ooe` (3.6+ checks `recv`, ZK-3537)."""
        return self.term_predicate(recv, n.vote()) and self.check_leader(ooe, n.leader, n.round)

    def valid_voter(self, sid: int) -> bool:
        return sid in self.verifier.voting_members

    # -- inputs ------------------------------------------------------------
    def start_election(self, now_ms: float, last_zxid: int, current_epoch: int) -> list[Effect]:
        """lookForLeader entry: the only place logical_clock is incremented."""
        fx = self._begin()
        if not self._started:
            # startLeaderElection(): non-voters show this until a decision
            self._current_vote = Vote(self.sid, last_zxid, -1, current_epoch)
            self._started = True
        self._set_state(LOOKING)
        self._bc_vote = None  # 3.4 QuorumPeer.run: setBCVote(null) before lookForLeader
        self._recvset.clear()
        self._outofelection.clear()
        self._not_timeout = self.min_notification_interval
        self._finalizing = False
        self._cancel_timer(FINALIZE_TIMER)
        self._start_ms = now_ms
        self._sent = 0
        self._received = 0
        self._echoes = 0
        self._logical_clock += 1
        if self.is_voter:
            self._init = (self.sid, last_zxid, current_epoch)
        else:
            self._init = (LONG_MIN, LONG_MIN, LONG_MIN)
        self._prop = self._init
        self._event(
            "election_started",
            logical_clock=self._logical_clock,
            vote={"leader": self._prop[0], "zxid": self._prop[1], "peer_epoch": self._prop[2]},
            last_zxid=last_zxid,
            current_epoch=current_epoch,
        )
        self._send_notifications()
        self._set_timer(NOTIFICATION_TIMER, self._not_timeout)
        return fx

    def on_notification(self, now_ms: float, n: Notification) -> list[Effect]:
        fx = self._begin()
        if not self._started:
            self._ignore(n, "election not started yet")
            return fx
        self._received += 1
        if not self.valid_voter(n.sid):
            # WorkerReceiver: a non-voter gets my current vote at once and never reaches the loop
            cv = self._current_vote
            self._echoes += 1
            self._send(n.sid, self._state, cv.leader, cv.zxid, self._logical_clock, cv.peer_epoch)
            self._ignore(n, "sender is not a voter; answered with current vote")
            return fx
        if n.state not in ServerState._value2member_map_:
            self._ignore(n, f"unknown state {n.state!r}")
            return fx
        if self._state == LOOKING:
            if n.state == LOOKING and n.round < self._logical_clock:
                leader, zxid, epoch = self._prop
                self._send(n.sid, LOOKING, leader, zxid, self._logical_clock, epoch)
                if not self.is_voter:
                    self._echoes += 1  # a voter's at-once answer, a round behind, answered back
            self._loop_turn(now_ms, n)
        elif n.state == LOOKING:
            if self.protocol == "3.4" and n.version == 0:
                v = self.bc_vote
            else:
                v = self._current_vote
            self._send(n.sid, self._state, v.leader, v.zxid, v.round, v.peer_epoch)
        return fx

    def on_timer(self, now_ms: float, name: str, *, have_delivered: bool) -> list[Effect]:
        fx = self._begin()
        if name not in self._armed:
            return fx
        self._armed.discard(name)
        if self._state != LOOKING:
            return fx
        if name == NOTIFICATION_TIMER and not self._finalizing:
            if have_delivered:
                self._send_notifications()
            else:
                fx.append(ConnectAll())
            self._not_timeout = min(self._not_timeout * 2, self.max_notification_interval)
            self._event("notification_timeout", next_timeout_ms=self._not_timeout, resent=have_delivered)
            self._set_timer(NOTIFICATION_TIMER, self._not_timeout)
        elif name == FINALIZE_TIMER and self._finalizing:
            leader, zxid, epoch = self._prop
            self._decide(now_ms, Vote(leader, zxid, self._logical_clock, epoch), PATH_QUORUM)
        return fx

    def update_election_vote(self, new_epoch: int) -> None:
        """After Zab settles an epoch: refresh only peerEpoch (zxid/round stay stale)."""
        self._bc_vote = self._current_vote
        self._current_vote = replace(self._current_vote, peer_epoch=new_epoch)

    # -- the lookForLeader loop body -------------------------------------
    def _loop_turn(self, now_ms: float, n: Notification) -> None:
        if self._finalizing:
            leader, zxid, epoch = self._prop
            if self.total_order_predicate(n.leader, n.zxid, n.peer_epoch, leader, zxid, epoch):
                self._finalizing = False
                self._cancel_timer(FINALIZE_TIMER)
                self._event("finalize_abandoned", by=n.sid, leader=n.leader)
            else:
                self._ignore(n, "consumed during finalize wait")
                self._set_timer(FINALIZE_TIMER, self.finalize_wait)
                return
        self._handle(now_ms, n)
        if self._state == LOOKING and not self._finalizing:
            self._set_timer(NOTIFICATION_TIMER, self._not_timeout)

    def _handle(self, now_ms: float, n: Notification) -> None:
        if self.protocol == "3.8" and not self.valid_voter(n.leader):
            self._ignore(n, "proposed leader is not a voter (ZK-2988)")
            return
        if n.state == LOOKING:
            self._handle_looking(n)
        elif n.state == OBSERVING:
            self._ignore(n, "notification from an observer")
        else:  # FOLLOWING or LEADING
            self._handle_out_of_election(now_ms, n)

    def _handle_looking(self, n: Notification) -> None:
        if self.protocol == "3.8":
            # ZK-261: a peer with an empty, untrusted database must not lead or be counted
            if self._init[1] == -1:
                self._ignore(n, "my zxid is -1 (ZK-261)")
                return
            if n.zxid == -1:
                self._ignore(n, "notification zxid is -1 (ZK-261)")
                return
        if n.round > self._logical_clock:
            self._logical_clock = n.round
            self._recvset.clear()
            if self.total_order_predicate(n.leader, n.zxid, n.peer_epoch, *self._init):
                self._prop = (n.leader, n.zxid, n.peer_epoch)
            else:
                self._prop = self._init
            self._send_notifications()
        elif n.round < self._logical_clock:
            self._ignore(n, "round below my logical clock")
            return
        elif self.total_order_predicate(n.leader, n.zxid, n.peer_epoch, *self._prop):
            self._prop = (n.leader, n.zxid, n.peer_epoch)
            self._send_notifications()
        self._recvset[n.sid] = Vote(n.leader, n.zxid, n.round, n.peer_epoch)
        leader, zxid, epoch = self._prop
        if self.term_predicate(self._recvset, Vote(leader, zxid, self._logical_clock, epoch)):
            self._finalizing = True
            self._cancel_timer(NOTIFICATION_TIMER)
            self._set_timer(FINALIZE_TIMER, self.finalize_wait)
            self._event("quorum_reached", leader=leader, logical_clock=self._logical_clock)

    def _handle_out_of_election(self, now_ms: float, n: Notification) -> None:
        target = n.vote()
        if n.round == self._logical_clock:
            if self.protocol == "3.8":
                self._recvset[n.sid] = Vote(n.leader, n.zxid, n.round, n.peer_epoch, n.state)
                ok = self.term_predicate(self._recvset, target) and self.check_leader(
                    self._recvset, n.leader, n.round)  # ZK-3537: leader checked in recvset
            else:
                self._recvset[n.sid] = Vote(n.leader, n.zxid, n.round, n.peer_epoch)
                ok = self.ooe_predicate(self._recvset, self._outofelection, n)
            if ok:
                self._decide(now_ms, Vote(n.leader, n.zxid, n.round, n.peer_epoch), PATH_OUT_OF_ELECTION)
                return
        self._outofelection[n.sid] = target
        if self.term_predicate(self._outofelection, target) and self.check_leader(
                self._outofelection, n.leader, n.round):
            self._logical_clock = n.round  # may go down: join the round of the running ensemble
            self._decide(now_ms, Vote(n.leader, n.zxid, n.round, n.peer_epoch), PATH_OUT_OF_ELECTION)

    # -- helpers -----------------------------------------------------------
    def _decide(self, now_ms: float, vote: Vote, path: str) -> None:
        if vote.leader == self.sid:
            new = LEADING
        elif self.is_voter:
            new = FOLLOWING
        else:
            new = OBSERVING
        self._finalizing = False
        self._cancel_timer(NOTIFICATION_TIMER)
        self._cancel_timer(FINALIZE_TIMER)
        self._set_state(new)
        self._current_vote = replace(vote, state=new)
        self._fx.append(Decided(
            vote=self._current_vote,
            path=path,
            round=self._logical_clock,
            duration_ms=float(now_ms - self._start_ms),
            notifications_sent=self._sent,
            notifications_received=self._received,
            nonvoter_echoes=self._echoes,
        ))

    def _begin(self) -> list[Effect]:
        self._fx = []
        return self._fx

    def _send_notifications(self) -> None:
        leader, zxid, epoch = self._prop
        for sid in sorted(self.verifier.voting_members):
            self._send(sid, LOOKING, leader, zxid, self._logical_clock, epoch)

    def _send(self, to: int, state: ServerState, leader: int, zxid: int, rnd: int, epoch: int) -> None:
        self._sent += 1
        self._fx.append(Send(to, ServerState(state), leader, zxid, rnd, epoch))

    def _set_state(self, new: ServerState) -> None:
        if new != self._state:
            self._fx.append(StateChanged(self._state, new))
            self._state = new

    def _set_timer(self, name: str, delay_ms: int) -> None:
        self._armed.add(name)
        self._fx.append(SetTimer(name, delay_ms))

    def _cancel_timer(self, name: str) -> None:
        if name in self._armed:
            self._armed.discard(name)
            self._fx.append(CancelTimer(name))

    def _event(self, event: str, **fields: object) -> None:
        self._fx.append(EventOut(event, dict(fields)))

    def _ignore(self, n: Notification, reason: str) -> None:
        state = n.state.name if isinstance(n.state, ServerState) else int(n.state)
        self._event("notification_ignored", reason=reason, **{"from": n.sid}, state=state, round=n.round)
