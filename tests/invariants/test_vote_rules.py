"""vote_rules: a LOOKING node bumps its logical clock per election and moves its
proposal only as lookForLeader does (round jumps, better votes of its round)."""

from __future__ import annotations

import dataclasses

import pytest

from chaos.invariants import vote_rules
from chaos.records import NotificationsCapped
from chaos.report.synth import JournalBuilder

E1 = 1
Z1 = (1 << 32) | 3     # everyone's last zxid after the first epoch
Z2 = (1 << 32) | 9     # a longer history in the same epoch


def formed(n: int = 3, weights: dict[int, int] | None = None, observers: int = 0) -> JournalBuilder:
    b = JournalBuilder(n, observers=observers)
    if weights:
        b.nodes = [dataclasses.replace(x, weight=weights.get(x.sid, 1)) for x in b.nodes]
    b.rec("run_started", seed=7, command="chaos run plans/leader_kill.yaml")
    b.start()
    b.election(n, b.voters)
    b.advance(1.0)
    return b


def start(b: JournalBuilder, sid: int, clock: int, *, zxid: int = Z1, epoch: int = E1) -> int:
    return b.ev(sid, "election_started", logical_clock=clock, vote={"leader": sid, "zxid": zxid, "peer_epoch": epoch},
                last_zxid=zxid, current_epoch=epoch)


def got(b: JournalBuilder, sid: int, frm: int, leader: int, rnd: int, *, zxid: int = Z1, epoch: int = E1,
        state: str = "LOOKING") -> int:
    return b.ev(sid, "notification_received", **{"from": frm}, state=state, leader=leader, zxid=zxid, round=rnd,
                peer_epoch=epoch, version=2)


def sent(b: JournalBuilder, sid: int, leader: int, rnd: int, *, zxid: int = Z1, epoch: int = E1, to: int = 1) -> int:
    return b.ev(sid, "notification_sent", to=to, state="LOOKING", leader=leader, zxid=zxid, round=rnd,
                peer_epoch=epoch)


def finish(b: JournalBuilder, sid: int, leader: int, rnd: int) -> int:
    return b.ev(sid, "election_finished", leader=leader, zxid=Z1, peer_epoch=E1, round=rnd, duration_ms=210,
                path="quorum", state="LEADING" if leader == sid else "FOLLOWING", notifications_sent=1,
                notifications_received=1)


def judge(b: JournalBuilder):
    return vote_rules(b.journal(finished=False, invariants=()))


def test_synthetic_elections_follow_the_rules():
    r = judge(formed())
    assert r.verdict == "valid", r.message
    assert r.message == "3 election(s) replayed: 2 proposal change(s), 0 round jump(s)"


def test_adopting_a_better_vote_of_the_same_round_is_valid():
    b = formed()
    start(b, 1, 2)
    sent(b, 1, 1, 2)
    got(b, 1, 3, 3, 2)
    sent(b, 1, 3, 2)
    sent(b, 1, 3, 2, to=2)       # the rest of the same broadcast
    assert judge(b).verdict == "valid"


def test_an_election_that_does_not_bump_the_clock_is_invalid():
    b = formed()                 # everyone decided in round 1
    s = start(b, 1, 1)
    r = judge(b)
    assert r.verdict == "invalid"
    assert "node 1 started an election with logical clock 1, but it decided its previous election in round 1" \
        in r.message
    assert r.evidence == (s,)


def test_a_restarted_process_starts_its_clock_again():
    b = formed()
    b.kill(1)
    b.start([1])
    start(b, 1, 1)
    assert judge(b).verdict == "valid"


def test_a_proposal_change_without_a_notification_is_invalid():
    b = formed()
    start(b, 1, 2)
    got(b, 1, 2, 2, 2)           # node 2's vote, worse than node 1's own... and not what it switches to
    s = sent(b, 1, 3, 2)
    r = judge(b)
    assert r.verdict == "invalid" and "without a notification proposing it" in r.message
    assert r.first_violation == s


def test_adopting_a_vote_of_an_older_round_is_invalid():
    b = formed()
    start(b, 1, 3)
    sent(b, 1, 1, 3)
    g = got(b, 1, 3, 3, 2)       # a stale round-2 notification with a better vote
    s = sent(b, 1, 3, 3)
    r = judge(b)
    assert r.verdict == "invalid"
    assert "from node 3's notification of round 2 while in round 3" in r.message
    assert g in r.evidence and r.first_violation == s


def test_adopting_a_worse_vote_is_invalid_whatever_breaks_the_tie():
    b = formed()
    start(b, 3, 2)
    sent(b, 3, 3, 2)
    got(b, 3, 1, 1, 2)           # same epoch and zxid, smaller sid: an inverted tie-break adopts it
    sent(b, 3, 1, 2)
    r = judge(b)
    assert r.verdict == "invalid" and "does not beat it in the total order" in r.message


def test_a_higher_zxid_of_a_lower_epoch_does_not_beat_a_higher_epoch():
    b = formed()
    start(b, 1, 2, zxid=Z1, epoch=2)
    sent(b, 1, 1, 2, zxid=Z1, epoch=2)
    got(b, 1, 3, 3, 2, zxid=Z2, epoch=1)
    sent(b, 1, 3, 2, zxid=Z2, epoch=1)
    assert judge(b).verdict == "invalid"


def test_a_zero_weight_server_is_never_adopted():
    b = formed(weights={2: 0})
    assert judge(b).verdict == "valid"
    start(b, 1, 2)
    sent(b, 1, 1, 2)
    got(b, 1, 2, 2, 2)           # node 2 would win the sid tie-break, but has weight 0
    sent(b, 1, 2, 2)
    r = judge(b)
    assert r.verdict == "invalid" and "never a zero-weight server" in r.message


def test_a_round_jump_takes_the_better_of_the_notification_and_its_own_vote():
    b = formed()
    start(b, 1, 2)
    got(b, 1, 3, 3, 5)           # round 5, a better vote
    sent(b, 1, 3, 5)
    assert judge(b).verdict == "valid"
    b = formed()
    start(b, 3, 2)
    got(b, 3, 1, 1, 5)           # round 5, a worse vote: keep its own
    sent(b, 3, 3, 5)
    r = judge(b)
    assert r.verdict == "valid" and "1 round jump(s)" in r.message


def test_a_round_jump_back_to_its_own_worse_vote_is_invalid():
    b = formed()
    start(b, 1, 2)
    got(b, 1, 3, 3, 5)
    s = sent(b, 1, 1, 5)         # ZK-275: votes for itself although node 3's vote beats it
    r = judge(b)
    assert r.verdict == "invalid"
    assert "moved to round 5 on node 3's vote" in r.message and r.first_violation == s


def test_the_answer_to_an_observer_carries_the_last_decided_vote():
    b = formed(n=3, observers=1)
    start(b, 1, 2)
    sent(b, 1, 1, 2)
    got(b, 1, 4, 3, 2)
    b.ev(1, "notification_sent", to=4, state="LOOKING", leader=3, zxid=Z1, round=2, peer_epoch=E1)
    assert judge(b).verdict == "valid"


def test_adopting_a_vote_from_an_observer_is_invalid():
    b = formed(n=3, observers=1)
    start(b, 1, 2)
    sent(b, 1, 1, 2)
    got(b, 1, 4, 3, 2)
    sent(b, 1, 3, 2)
    r = judge(b)
    assert r.verdict == "invalid" and "node 4, which is not a voter" in r.message


def test_a_broken_rule_in_a_capped_election_is_unknown():
    b = formed()
    s = start(b, 1, 2)
    got(b, 1, 2, 2, 2)
    sent(b, 1, 3, 2)
    b.rec(NotificationsCapped.type, sid=1, election_seq=s, logical_clock=2, kept=5000, dropped_sent=10,
          dropped_received=10, cap="run")
    r = judge(b)
    assert r.verdict == "unknown" and r.message.startswith("unknown (capped)")


def test_without_election_events_there_is_nothing_to_judge():
    b = JournalBuilder(3)
    b.start()
    b.election(3, b.voters, notifications=False)
    b.records = [r for r in b.records if getattr(r, "event", None) != "election_started"]
    assert judge(b).verdict == "unknown"


def _finalizing(b: JournalBuilder) -> int:
    """Node 1 (finalizeWait 200 ms) starts round 2, adopts 3's vote and reaches a quorum for it."""
    b.ev(1, "node_started", pid=b.pid[1], protocol="3.8", peer_type="participant", last_zxid=Z1,
         accepted_epoch=E1, current_epoch=E1, finalize_wait_ms=200)
    start(b, 1, 2)
    sent(b, 1, 1, 2)
    got(b, 1, 3, 3, 2)
    sent(b, 1, 3, 2)
    got(b, 1, 2, 3, 2)
    return b.ev(1, "quorum_reached", leader=3, logical_clock=2)


def test_a_decision_after_the_finalize_wait_is_valid():
    b = formed()
    _finalizing(b)
    b.advance(0.2)
    finish(b, 1, 3, 2)
    assert judge(b).verdict == "valid"


def test_a_decision_before_the_finalize_wait_ran_out_is_invalid():
    b = formed()
    q = _finalizing(b)
    b.advance(0.02)
    f = finish(b, 1, 3, 2)
    r = judge(b)
    assert r.verdict == "invalid" and "20 ms after its quorum_reached" in r.message
    assert r.evidence == (q, f)


def test_consuming_a_better_vote_during_the_finalize_wait_is_invalid():
    b = formed()
    _finalizing(b)
    b.advance(0.05)
    better = got(b, 1, 2, 3, 2, zxid=Z2)  # node 3's vote with a longer history beats the proposal
    b.ev(1, "notification_ignored", reason="consumed during finalize wait", **{"from": 2}, state="LOOKING", round=2)
    r = judge(b)
    assert r.verdict == "invalid" and "beats its proposal" in r.message
    assert r.evidence[0] == better


def test_consuming_a_worse_vote_during_the_finalize_wait_is_valid():
    b = formed()
    _finalizing(b)
    b.advance(0.05)
    got(b, 1, 2, 2, 2)  # node 2 proposing itself: sid 2 loses to 3 on equal epoch and zxid
    b.ev(1, "notification_ignored", reason="consumed during finalize wait", **{"from": 2}, state="LOOKING", round=2)
    b.advance(0.2)
    finish(b, 1, 3, 2)
    assert judge(b).verdict == "valid"


def _joining(b: JournalBuilder, *, protocol: str = "3.8", leader_epoch: int = E1) -> int:
    """Node 1 in round 2 holds node 2's LOOKING vote for 3, then hears 3 LEADING in that round."""
    b.ev(1, "node_started", pid=b.pid[1], protocol=protocol, peer_type="participant", last_zxid=Z1,
         accepted_epoch=E1, current_epoch=E1, finalize_wait_ms=200)
    start(b, 1, 2)
    sent(b, 1, 1, 2)
    got(b, 1, 1, 1, 2)
    got(b, 1, 2, 3, 2)           # 3 beats 1: adopted
    sent(b, 1, 3, 2)
    return got(b, 1, 3, 3, 2, epoch=leader_epoch, state="LEADING")


def _followed(b: JournalBuilder, leader: int = 3) -> None:
    b.ev(1, "state_changed", **{"from": "LOOKING"}, to="FOLLOWING")
    b.ev(1, "election_finished", leader=leader, zxid=Z1, peer_epoch=E1, round=2, duration_ms=30,
         path="out_of_election", state="FOLLOWING", notifications_sent=2, notifications_received=3)


def test_following_at_once_on_a_decisive_same_round_leading_vote_is_valid():
    b = formed()
    _joining(b)
    _followed(b)
    r = judge(b)
    assert r.verdict == "valid", r.message


def test_not_following_a_decisive_same_round_leading_vote_is_invalid():
    """ZOOKEEPER-3537: the leader looked up in outofelection, where it is not yet."""
    b = formed()
    leading = _joining(b)
    b.advance(0.4)
    nxt = b.ev(1, "notification_timeout", next_timeout_ms=800, resent=True)
    r = judge(b)
    assert r.verdict == "invalid" and "did not follow it" in r.message and "nodes 2, 3" in r.message, r.message
    assert r.evidence[1:] == (leading, nxt)


# Going on after a same-round LEADING vote is right when that vote decides nothing:
# - "established": updateElectionVote refreshed the leader's peerEpoch, so its
#   LEADING vote no longer equals the round's LOOKING votes and recvset holds no quorum;
# - "3.4": 3.4.6 checked the leader in outofelection, which is its documented rule;
# - "ignored": the core logged the notification as ignored, so it never entered recvset.
@pytest.mark.parametrize("case", ["established", "3.4", "ignored"])
def test_going_on_after_a_same_round_vote_that_decides_nothing_is_valid(case):
    b = formed()
    _joining(b, leader_epoch=E1 + 1 if case == "established" else E1, protocol="3.4" if case == "3.4" else "3.8")
    if case == "ignored":
        b.ev(1, "notification_ignored", reason="consumed during finalize wait", **{"from": 3}, state="LEADING",
             round=2)
    b.advance(0.4)
    b.ev(1, "notification_timeout", next_timeout_ms=800, resent=True)
    assert judge(b).verdict == "valid"


def test_following_another_leader_than_the_decisive_vote_is_invalid():
    b = formed()
    _joining(b)
    _followed(b, leader=2)
    r = judge(b)
    assert r.verdict == "invalid" and "did not follow it" in r.message
