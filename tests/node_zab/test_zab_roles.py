"""The Zab roles as pure state machines: fed inputs at given times, judged by their effects.

No sockets and no timers: a tiny in-memory switchboard carries each Send to the
other end at once (or drops it, for a silent link), so every timeout is tested at
its exact edge. The asyncio shell and the simulator drive these same classes.
"""
from __future__ import annotations

from collections import deque

from node.sim_zab import SimLog
from node.zab_core import AckEpoch, FollowerInfo, LeaderInfo, Ping, Trunc
from node.zab_roles import (REASON_EPOCH_OLDER, REASON_LEADER_SILENT, REASON_NO_EPOCH_QUORUM, REASON_QUORUM_LOST,
                            Close, Dial, Emit, Ended, Established, LeaderRole, LearnerRole, Send, ZabTiming)
from zkrules.quorum import QuorumMaj

T = ZabTiming(tick_ms=100, init_limit=10, sync_limit=5, txn_interval_ms=0)   # initLimit 1 s, syncLimit 0.5 s
Q = QuorumMaj([1, 2, 3])


def z(epoch: int, n: int) -> int:
    return (epoch << 32) | n


def log_with(accepted: int, current: int, zxids: list[int] = ()) -> SimLog:
    log = SimLog(accepted_epoch=accepted, current_epoch=current)
    for x in zxids:
        log.append(x, b"p")
    return log


class Switchboard:
    """Leader 1 and learners; every connection is learner sid == conn id."""

    def __init__(self, leader: LeaderRole, learners: list[LearnerRole]) -> None:
        self.roles = {leader.sid: leader, **{r.sid: r for r in learners}}
        self.leader = leader
        self.now = 0.0
        self.events: list[tuple[int, str, dict]] = []
        self.ended: dict[int, str] = {}
        self.established: dict[int, int] = {}
        self.sent: list[tuple[int, int, object]] = []   # (from, conn, msg)
        self.silent: set[int] = set()                   # conns whose traffic vanishes
        self._q: deque = deque()

    def feed(self, sid: int, effects: list) -> None:
        self._q.append((sid, effects))
        while self._q:
            who, fx = self._q.popleft()
            for e in fx:
                self._apply(who, e)

    def _apply(self, who: int, e) -> None:
        if isinstance(e, Emit):
            self.events.append((who, e.event, e.fields))
        elif isinstance(e, Ended):
            self.ended[who] = e.reason
        elif isinstance(e, Established):
            self.established[who] = e.epoch
        elif isinstance(e, Dial):
            self._q.append((self.leader.sid, self.leader.on_accept(self.now, who, f"n{who}")))
            self._q.append((who, self.roles[who].on_connected(self.now, who, "n1")))
        elif isinstance(e, Send):
            self.sent.append((who, e.conn, e.msg))
            if e.conn in self.silent:
                return
            to = self.leader if who != self.leader.sid else self.roles[e.conn]
            self._q.append((to.sid, to.on_message(self.now, e.conn, e.msg)))
        elif isinstance(e, Close) and e.conn in self.roles:
            to = self.leader if who != self.leader.sid else self.roles[e.conn]
            self._q.append((to.sid, to.on_closed(self.now, e.conn, e.reason)))

    def start(self) -> None:
        for sid, r in self.roles.items():
            self.feed(sid, r.start(self.now))

    def tick(self, at: float) -> None:
        self.now = at
        for sid, r in self.roles.items():
            self.feed(sid, r.on_tick(at))

    def named(self, event: str) -> list[tuple[int, dict]]:
        return [(s, f) for s, e, f in self.events if e == event]


def ensemble(logs: dict[int, SimLog]) -> Switchboard:
    leader = LeaderRole(1, Q, logs[1], T)
    return Switchboard(leader, [LearnerRole(s, 1, logs[s], T) for s in sorted(logs) if s != 1])


def test_three_voters_establish_one_above_every_accepted_epoch_and_sync():
    logs = {1: log_with(2, 2, [z(2, 1)]), 2: log_with(4, 2, [z(2, 1)]), 3: log_with(1, 1)}
    sb = ensemble(logs)
    sb.start()
    assert sb.established == {1: 5, 2: 5, 3: 5}
    assert all(log.accepted_epoch == log.current_epoch == 5 for log in logs.values())
    assert logs[3].zxids() == [z(2, 1)]                       # DIFF brought node 3 up to the leader
    assert sb.leader.synced and all(r.synced for s, r in sb.roles.items() if s != 1)
    assert sorted(f["mode"] for _, f in sb.named("sync_finished")) == ["diff", "none"]
    assert [f["epoch"] for s, f in sb.named("epoch_established") if s == 1] == [5]


def test_a_learner_with_a_tail_the_leader_never_had_is_truncated():
    """Node 2 logged z(1,3), a proposal of epoch 1 that epoch 2's leader never had:
    it is behind in epochs, so the leader does not abort; it cuts the tail (TRUNC)."""
    logs = {1: log_with(2, 2, [z(1, 1), z(1, 2), z(2, 1)]), 2: log_with(1, 1, [z(1, 1), z(1, 2), z(1, 3)]),
            3: log_with(2, 2, [z(1, 1), z(1, 2), z(2, 1)])}
    sb = ensemble(logs)
    sb.start()
    assert any(isinstance(m, Trunc) and m.zxid == z(1, 2) for _, c, m in sb.sent if c == 2)
    assert logs[2].zxids() == [z(1, 1), z(1, 2), z(2, 1)]
    assert [f["mode"] for s, f in sb.named("sync_finished") if s == 2] == ["trunc"]


def test_a_leaderinfo_below_the_accepted_epoch_aborts_the_learner_untouched():
    logs = {1: log_with(3, 3), 2: log_with(3, 3), 3: log_with(9, 2)}
    sb = ensemble({1: logs[1], 2: logs[2]})
    sb.start()
    assert sb.established[1] == 4
    late = LearnerRole(3, 1, logs[3], T)
    sb.roles[3] = late
    sb.feed(3, late.start(sb.now))
    assert sb.ended[3] == REASON_EPOCH_OLDER
    assert (logs[3].accepted_epoch, logs[3].current_epoch) == (9, 2)
    assert not any(isinstance(m, AckEpoch) for s, _, m in sb.sent if s == 3)


def test_the_leader_gives_up_exactly_at_init_limit_without_a_quorum():
    logs = {1: log_with(0, 0)}
    sb = Switchboard(LeaderRole(1, Q, logs[1], T), [])
    sb.start()
    assert sb.leader.next_wakeup() == 1000
    sb.tick(999.0)
    assert 1 not in sb.ended
    sb.tick(1000.0)
    assert sb.ended[1] == REASON_NO_EPOCH_QUORUM
    assert "no voting quorum sent FOLLOWERINFO" in sb.named("quorum_lost")[0][1]["reason"]


def test_a_follower_gives_up_on_a_silent_leader_after_sync_limit_not_before():
    logs = {s: log_with(0, 0) for s in (1, 2, 3)}
    sb = ensemble(logs)
    sb.start()
    follower = sb.roles[2]                # from now on the leader says nothing
    assert follower.synced and follower.next_wakeup() == 500
    sb.feed(2, follower.on_tick(499.0))
    assert 2 not in sb.ended
    sb.feed(2, follower.on_tick(500.0))
    assert sb.ended[2] == REASON_LEADER_SILENT


def test_the_leader_loses_its_quorum_when_the_followers_go_quiet():
    logs = {s: log_with(0, 0) for s in (1, 2, 3)}
    sb = ensemble(logs)
    sb.start()
    sb.silent |= {2, 3}
    for t in range(50, 1001, 50):
        sb.tick(float(t))
        if 1 in sb.ended:
            break
    assert sb.ended[1] == REASON_QUORUM_LOST
    assert sb.now <= 600.0                # within syncLimit and one tick
    assert [f["reason"] for s, f in sb.named("connection_closed") if s == 1] == ["learner silent"] * 2


def test_pings_are_answered_and_keep_both_sides_alive():
    logs = {s: log_with(0, 0) for s in (1, 2, 3)}
    sb = ensemble(logs)
    sb.start()
    for t in range(50, 3001, 50):
        sb.tick(float(t))
    assert sb.ended == {}
    pings = [(s, c) for s, c, m in sb.sent if isinstance(m, Ping)]
    assert (1, 2) in pings and (2, 2) in pings   # the leader pings, the follower answers


def test_a_message_out_of_order_is_a_malformed_frame_not_a_crash():
    logs = {1: log_with(0, 0)}
    leader = LeaderRole(1, Q, logs[1], T)
    sb = Switchboard(leader, [])
    sb.start()
    sb.feed(1, leader.on_accept(0.0, 7, "127.0.0.1:5555"))
    sb.feed(1, leader.on_message(0.0, 7, Ping()))
    (_, ev), = sb.named("malformed_frame")
    assert ev["peer"] == "127.0.0.1:5555" and "expected FOLLOWERINFO" in ev["reason"]
    assert 7 not in leader.links and 1 not in sb.ended
    sb.feed(1, leader.on_accept(0.0, 8, "127.0.0.1:5556"))
    sb.feed(1, leader.on_message(0.0, 8, FollowerInfo(77, 100)))
    assert "unknown or own sid 77" in sb.named("handshake_rejected")[0][1]["reason"]
    assert logs[1].accepted_epoch == 0   # sid 77's epoch was not counted


def test_a_learner_reads_leaderinfo_only_first():
    logs = {2: log_with(0, 0)}
    learner = LearnerRole(2, 1, logs[2], T)
    assert learner.start(0.0) == [Dial(1000.0)]
    out = learner.on_connected(0.0, 5, "n1")
    assert out == [Send(5, FollowerInfo(2, 0))]
    out = learner.on_message(1.0, 5, Ping())
    assert isinstance(out[-1], Ended) and out[-1].reason == "malformed frame from leader"
    assert any(isinstance(e, Close) and e.conn == 5 for e in out)
    assert learner.on_message(2.0, 5, LeaderInfo(3)) == []   # ended: nothing more
