"""vote_backing: each decision is backed by the votes the decider received
(termPredicate on the quorum path; ooePredicate and checkLeader out of election)."""

from __future__ import annotations

import dataclasses

from chaos.invariants import vote_backing
from chaos.report.synth import JournalBuilder

Z1 = (1 << 32) | 3  # everyone's last zxid after the first epoch


def formed(n: int = 3, weights: dict[int, int] | None = None) -> JournalBuilder:
    b = JournalBuilder(n)
    if weights:
        b.nodes = [dataclasses.replace(x, weight=weights.get(x.sid, 1)) for x in b.nodes]
    b.rec("run_started", seed=7, command="chaos run plans/leader_kill.yaml")
    b.start()
    b.election(n, b.voters)
    for s in b.sids:
        b.zxid[s] = Z1
    b.advance(1.0)
    return b


def got(b: JournalBuilder, sid: int, frm: int, state: str, leader: int, rnd: int, *, zxid: int = Z1,
        peer_epoch: int = 1) -> int:
    return b.ev(sid, "notification_received", **{"from": frm}, state=state, leader=leader, zxid=zxid, round=rnd,
                peer_epoch=peer_epoch, version=2)


def sent(b: JournalBuilder, sid: int, leader: int, rnd: int, to: int = 1) -> int:
    return b.ev(sid, "notification_sent", to=to, state="LOOKING", leader=leader, zxid=Z1, round=rnd, peer_epoch=1)


def start(b: JournalBuilder, sid: int, clock: int) -> int:
    return b.ev(sid, "election_started", logical_clock=clock, vote={"leader": sid, "zxid": Z1, "peer_epoch": 1},
                last_zxid=Z1, current_epoch=1)


def finish(b: JournalBuilder, sid: int, leader: int, rnd: int, path: str = "quorum", *, received: int,
           sent_n: int = 0, peer_epoch: int = 1) -> int:
    return b.ev(sid, "election_finished", leader=leader, zxid=Z1, peer_epoch=peer_epoch, round=rnd, duration_ms=210,
                path=path, state="LEADING" if leader == sid else "FOLLOWING", notifications_sent=sent_n,
                notifications_received=received)


def judge(b: JournalBuilder):
    return vote_backing(b.journal(finished=False, invariants=()))


def test_synthetic_elections_are_backed():
    r = judge(formed())
    assert r.verdict == "valid" and r.message == "3 quorum-path and 0 out-of-election decision(s) backed"


def test_quorum_decision_backed_by_a_quorum_is_valid():
    b = formed()
    start(b, 1, 2)
    got(b, 1, 1, "LOOKING", 1, 2)
    got(b, 1, 2, "LOOKING", 1, 2)
    finish(b, 1, 1, 2, received=2)
    assert judge(b).verdict == "valid"


def test_quorum_decision_on_its_own_vote_alone_is_invalid():
    b = formed()
    s = start(b, 1, 2)
    got(b, 1, 1, "LOOKING", 1, 2)
    got(b, 1, 2, "LOOKING", 2, 2)  # node 2 votes for itself
    f = finish(b, 1, 1, 2, received=2)
    r = judge(b)
    assert r.verdict == "invalid"
    assert "node 1 decided leader 1 (zxid 0x100000003, peer epoch 1) in round 2 by quorum, but only [1]" in r.message
    assert "1:L→1, 2:L→2" in r.message
    assert s in r.evidence and f in r.evidence and r.first_violation == f


def test_votes_of_an_earlier_round_do_not_count():
    b = formed()
    start(b, 1, 3)
    got(b, 1, 1, "LOOKING", 1, 3)
    got(b, 1, 2, "LOOKING", 1, 2)  # node 2's vote is a round behind
    finish(b, 1, 1, 3, received=2)
    assert judge(b).verdict == "invalid"


def test_votes_of_the_previous_election_do_not_count():
    b = formed()
    start(b, 1, 2)
    got(b, 1, 2, "LOOKING", 1, 2)
    b.advance(0.5)
    start(b, 1, 2)  # a new election (same clock: the node restarted it)
    got(b, 1, 1, "LOOKING", 1, 2)
    finish(b, 1, 1, 2, received=1)
    assert judge(b).verdict == "invalid"


def test_own_vote_counts_from_what_it_sent():
    b = formed()
    start(b, 1, 2)
    sent(b, 1, 1, 2)
    got(b, 1, 2, "LOOKING", 1, 2)
    finish(b, 1, 1, 2, received=1, sent_n=1)
    assert judge(b).verdict == "valid"


def test_capped_notifications_make_it_unknown():
    b = formed()
    start(b, 1, 2)
    got(b, 1, 1, "LOOKING", 1, 2)
    finish(b, 1, 1, 2, received=40)  # the node received 40, the journal kept 1
    r = judge(b)
    assert r.verdict == "unknown" and r.message.startswith("unknown (capped)")
    assert "1 of 40 received notifications logged" in r.message


def test_echoes_with_a_non_voter_neither_back_a_decision_nor_leave_it_unknown():
    """A LOOKING voter and an OBSERVING observer (4) echo at machine speed; the
    node logs only a few of those and counts them apart (``nonvoter_echoes``):
    the voters' notifications are all there, so the decision is judged."""
    b = formed()
    start(b, 1, 2)
    for _ in range(3):
        got(b, 1, 4, "OBSERVING", 1, 2)
        sent(b, 1, 1, 2, to=4)
    got(b, 1, 1, "LOOKING", 1, 2)
    got(b, 1, 2, "LOOKING", 2, 2)  # node 2 votes for itself
    b.ev(1, "election_finished", leader=1, zxid=Z1, peer_epoch=1, round=2, duration_ms=210, path="quorum",
         state="LEADING", notifications_sent=900, notifications_received=902, nonvoter_echoes=900)
    r = judge(b)
    assert r.verdict == "invalid" and "but only [1]" in r.message


def test_weights_decide_what_a_quorum_is():
    b = formed(weights={3: 0})
    start(b, 1, 2)
    got(b, 1, 1, "LOOKING", 1, 2)
    got(b, 1, 3, "LOOKING", 1, 2)  # weight 0: its vote counts for nothing
    got(b, 1, 2, "LOOKING", 2, 2)
    finish(b, 1, 1, 2, received=3)
    assert judge(b).verdict == "invalid"


def test_out_of_election_join_with_followers_and_a_leading_leader_is_valid():
    b = formed()
    start(b, 1, 1)
    got(b, 1, 2, "FOLLOWING", 3, 1, peer_epoch=1)
    got(b, 1, 3, "LEADING", 3, 1, peer_epoch=1)
    finish(b, 1, 3, 1, "out_of_election", received=2)
    r = judge(b)
    assert r.verdict == "valid" and "1 out-of-election" in r.message


def test_out_of_election_without_the_leader_saying_leading_is_invalid():
    b = formed(5)
    start(b, 1, 1)
    for frm in (2, 4, 5):
        got(b, 1, frm, "FOLLOWING", 3, 1)
    got(b, 1, 3, "LOOKING", 3, 2)  # the leader has stepped down
    f = finish(b, 1, 3, 1, "out_of_election", received=4)
    r = judge(b)
    assert r.verdict == "invalid" and "node 3 never said LEADING in that election (it said: LOOKING)" in r.message
    assert r.first_violation == f


def test_out_of_election_without_a_quorum_is_invalid():
    b = formed(5)
    start(b, 1, 1)
    got(b, 1, 2, "FOLLOWING", 3, 1)
    got(b, 1, 3, "LEADING", 3, 1)
    finish(b, 1, 3, 1, "out_of_election", received=2)
    r = judge(b)
    assert r.verdict == "invalid" and "only [2, 3] said they follow or lead it" in r.message


def test_followers_of_another_epoch_and_round_do_not_back_it():
    b = formed()
    start(b, 1, 5)
    got(b, 1, 2, "FOLLOWING", 3, 1, peer_epoch=0)
    got(b, 1, 3, "LEADING", 3, 1, peer_epoch=2)
    finish(b, 1, 3, 5, "out_of_election", received=2, peer_epoch=2)
    assert judge(b).verdict == "invalid"


def test_same_round_followers_back_it_whatever_peer_epoch_they_still_show():
    """Seen in a clean run: a follower that has not yet updated its vote's
    peerEpoch still counts, as recvset compares the leader alone."""
    b = formed()
    start(b, 2, 6)
    got(b, 2, 1, "FOLLOWING", 3, 6, peer_epoch=3)
    got(b, 2, 2, "LOOKING", 3, 6, peer_epoch=3)
    got(b, 2, 3, "LEADING", 3, 6, peer_epoch=4)
    finish(b, 2, 3, 6, "out_of_election", received=3, peer_epoch=4)
    assert judge(b).verdict == "valid"


def test_restarted_node_trusting_stale_followers_that_it_leads_is_invalid():
    """ZK-1514: the followers still name the restarted node as leader."""
    b = formed()
    b.process(3, "killed")
    b.advance(0.5)
    b.start([3])
    start(b, 3, 1)
    sent(b, 3, 3, 1)
    got(b, 3, 1, "FOLLOWING", 3, 4)
    got(b, 3, 2, "FOLLOWING", 3, 4)
    finish(b, 3, 3, 4, "out_of_election", received=2, sent_n=1)
    r = judge(b)
    assert r.verdict == "invalid" and "ZK-1514" in r.message and "logical clock was 1" in r.message


def test_a_leader_deciding_in_its_own_round_is_fine():
    b = formed()
    start(b, 3, 4)
    sent(b, 3, 3, 4)
    got(b, 3, 1, "FOLLOWING", 3, 4)
    got(b, 3, 2, "FOLLOWING", 3, 4)
    finish(b, 3, 3, 4, "out_of_election", received=2, sent_n=1)
    assert judge(b).verdict == "valid"


def test_an_election_the_orchestrator_capped_is_unknown():
    b = formed()
    s = start(b, 1, 2)
    got(b, 1, 1, "LOOKING", 1, 2)
    finish(b, 1, 1, 2, received=1)  # the counts even agree: the cap record decides
    b.rec("notifications_capped", sid=1, election_seq=s, logical_clock=2, kept=1, dropped_received=5000,
          cap="per_election")
    r = judge(b)
    assert r.verdict == "unknown" and r.message.startswith("unknown (capped)")
