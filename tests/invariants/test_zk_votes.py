"""Vote-level checks on ZooKeeper journals: judged on every voter notification
a server logged as received since its process started."""

from __future__ import annotations

import dataclasses

import pytest

from chaos.invariants import check_all
from chaos.report.synth import JournalBuilder

Z = (1 << 32) | 5


def zk(nodes: int = 3) -> JournalBuilder:
    b = JournalBuilder(nodes)
    b.run = dataclasses.replace(b.run, target=dataclasses.replace(b.run.target, kind="zookeeper", version="3.8.0"))
    b.rec("run_started", seed=7, command="chaos run plans/leader_kill.yaml --target zookeeper")
    for s in b.sids:
        b.process(s, "started")
    for s in b.sids:   # formed: the checks judge what comes after
        st(b, s, "LEADING" if s == nodes else "FOLLOWING", nodes)
    b.advance(0.1)
    return b


def st(b: JournalBuilder, sid: int, state: str, leader: int | None) -> int:
    return b.rec("status", sid=sid, up=True, state=state, leader=leader, epoch=1, accepted_epoch=1, zxid=Z,
                 logical_clock=None, synced=True)


def start(b: JournalBuilder, sid: int, rnd: int = 1, *, epoch: int = 1, zxid: int = Z) -> int:
    return b.ev(sid, "election_started", logical_clock=rnd, current_epoch=epoch, last_zxid=zxid,
                vote={"leader": sid, "zxid": zxid, "peer_epoch": epoch})


def send(b: JournalBuilder, sid: int, leader: int, rnd: int = 1, *, epoch: int = 1, zxid: int = Z) -> int:
    return b.ev(sid, "notification_sent", to=1, state="LOOKING", leader=leader, zxid=zxid, round=rnd,
                peer_epoch=epoch)


def got(b: JournalBuilder, sid: int, frm: int, leader: int, rnd: int = 1, state: str = "LOOKING", *,
        epoch: int = 1, zxid: int = Z, my_state: str = "LOOKING") -> int:
    return b.ev(sid, "notification_received", **{"from": frm}, state=state, leader=leader, zxid=zxid, round=rnd,
                peer_epoch=epoch, version=2, my_state=my_state)


def finish(b: JournalBuilder, sid: int, leader: int, *, zxid: int = Z) -> int:
    b.advance(0.2)
    return b.ev(sid, "election_finished", state="LEADING" if leader == sid else "FOLLOWING", duration_ms=230,
                leader=leader, zxid=zxid)


def verdicts(b: JournalBuilder, *names: str) -> dict[str, tuple[str, str]]:
    rs = check_all(b.journal(finished=True, invariants=()), {n: {} for n in names})
    return {r.name: (str(r.verdict), r.message) for r in rs}


def elect_three(b: JournalBuilder, winner: int = 3) -> None:
    for s in b.sids:
        start(b, s)
        send(b, s, s)
    for s in b.sids:
        for f in b.sids:
            got(b, s, f, winner)
    for s in b.sids:
        finish(b, s, winner)


def test_decisions_backed_by_a_round_quorum_are_valid():
    b = zk()
    elect_three(b)
    v = verdicts(b, "vote_backing", "leader_validity")
    assert v["vote_backing"][0] == "valid" and v["vote_backing"][1].startswith("3 decision(s) backed")
    assert v["leader_validity"][0] == "valid"


def test_a_decision_nothing_received_supports_is_invalid():
    b = zk()
    s1 = start(b, 1)
    got(b, 1, 1, 1)
    got(b, 1, 2, 3)                  # node 2 named 3, nobody named 2
    f = finish(b, 1, 2)
    kind, msg = verdicts(b, "vote_backing")["vote_backing"]
    assert kind == "invalid" and "node 1 decided leader 2 (FOLLOWING)" in msg
    assert "of the 2 voter notification(s) it received since it started" in msg
    r = check_all(b.journal(finished=True, invariants=()), {"vote_backing": {}})[0]
    assert r.evidence == (s1, f) and r.first_violation == f


def test_votes_of_different_rounds_do_not_make_a_quorum():
    b = zk()
    start(b, 1, 2)
    got(b, 1, 1, 3, rnd=2)
    got(b, 1, 3, 3, rnd=1)
    finish(b, 1, 3)
    assert verdicts(b, "vote_backing")["vote_backing"][0] == "invalid"


def test_a_quorum_of_another_round_than_the_deciders_does_not_back_it():
    b = zk()
    start(b, 1, 2)
    send(b, 1, 3, rnd=2)
    got(b, 1, 1, 3, rnd=1)
    got(b, 1, 3, 3, rnd=1)     # a quorum, but of round 1; node 1 votes in round 2
    finish(b, 1, 3)
    assert verdicts(b, "vote_backing")["vote_backing"][0] == "invalid"


def test_out_of_election_backing_needs_the_leaders_own_leading():
    b = zk()
    start(b, 1)
    send(b, 1, 1)                                # its round is 1
    got(b, 1, 1, 1)
    got(b, 1, 2, 3, rnd=4, state="FOLLOWING")
    got(b, 1, 3, 3, rnd=4, state="FOLLOWING")   # not LEADING: checkLeader fails
    finish(b, 1, 3)
    assert verdicts(b, "vote_backing")["vote_backing"][0] == "invalid"
    b2 = zk()
    start(b2, 1)
    got(b2, 1, 1, 1)
    got(b2, 1, 2, 3, rnd=4, state="FOLLOWING")
    got(b2, 1, 3, 3, rnd=5, state="LEADING")
    finish(b2, 1, 3)
    kind, msg = verdicts(b2, "vote_backing")["vote_backing"]
    assert kind == "valid" and "(1 only out of election)" in msg


def test_a_vote_logged_while_following_may_still_reach_the_next_election():
    """ZooKeeper 3.8.0 logs the line, then reads its state again to decide
    whether to queue it: a vote logged "my state:FOLLOWING" was seen consumed."""
    b = zk()
    start(b, 1)
    got(b, 1, 1, 3)
    got(b, 1, 3, 3, my_state="FOLLOWING")
    finish(b, 1, 3)
    assert verdicts(b, "vote_backing")["vote_backing"][0] == "valid"
    b = zk()
    start(b, 3)
    send(b, 3, 3)
    got(b, 3, 1, 1, epoch=4, my_state="FOLLOWING")
    got(b, 3, 3, 3)
    send(b, 3, 1, epoch=4)
    assert rules(b)[0] == "valid"


def test_a_log_without_the_servers_own_notification_is_unknown_not_invalid():
    b = zk()
    start(b, 1)
    got(b, 1, 2, 3)
    finish(b, 1, 2)
    kind, msg = verdicts(b, "vote_backing")["vote_backing"]
    assert kind == "unknown" and "lacks what the server received" in msg


def test_a_restart_of_the_process_forgets_what_it_received_before():
    b = zk()
    start(b, 1)
    got(b, 1, 1, 3)
    got(b, 1, 3, 3)
    b.process(1, "killed")
    b.process(1, "started")
    start(b, 1)
    got(b, 1, 1, 1)
    finish(b, 1, 3)
    assert verdicts(b, "vote_backing")["vote_backing"][0] == "invalid"


def test_deciding_for_a_proposal_below_the_own_starting_vote_is_invalid():
    b = zk()
    s = start(b, 3, epoch=2, zxid=Z)             # node 3 starts with epoch 2
    last = send(b, 3, 1, epoch=1, zxid=Z + 9)    # yet proposes node 1's (epoch 1, longer log)
    for f in (3, 2):
        got(b, 3, f, 1, epoch=1, zxid=Z + 9)
    fin = finish(b, 3, 1, zxid=Z + 9)
    kind, msg = verdicts(b, "leader_validity", "vote_backing")["leader_validity"]
    assert kind == "invalid", msg
    assert "node 3 decided leader 1 (epoch 1, zxid 0x10000000e)" in msg and "(epoch 2, zxid 0x100000005, sid 3)" in msg
    r = check_all(b.journal(finished=True, invariants=()), {"leader_validity": {}})[0]
    assert r.evidence == (s, last, fin)


def test_a_worse_leader_is_fine_as_an_out_of_election_join():
    b = zk()
    start(b, 3, epoch=2, zxid=Z)
    send(b, 3, 1, epoch=1, zxid=Z + 9)
    got(b, 3, 3, 3, epoch=2)
    got(b, 3, 2, 1, rnd=3, state="FOLLOWING", epoch=1, zxid=Z + 9)
    got(b, 3, 1, 1, rnd=3, state="LEADING", epoch=1, zxid=Z + 9)
    finish(b, 3, 1, zxid=Z + 9)
    assert verdicts(b, "leader_validity")["leader_validity"][0] == "valid"


def _running(b: JournalBuilder) -> None:
    b.advance(0.5)
    b.process(1, "killed")
    b.advance(0.5)
    b.process(1, "started")
    start(b, 1)
    send(b, 1, 1)
    got(b, 1, 1, 1)


def test_a_restart_into_a_running_ensemble_must_join_out_of_election():
    b = zk()
    _running(b)
    got(b, 1, 2, 3, rnd=1, state="FOLLOWING")
    got(b, 1, 3, 3, rnd=1, state="LEADING")
    finish(b, 1, 3)
    st(b, 1, "FOLLOWING", None)   # mntr names no leader
    assert verdicts(b, "out_of_election_join")["out_of_election_join"][0] == "valid"


def test_a_restart_decided_by_looking_votes_alone_did_not_join():
    b = zk()
    _running(b)
    got(b, 1, 2, 3)
    got(b, 1, 3, 3)
    got(b, 1, 1, 3)
    finish(b, 1, 3)
    kind, msg = verdicts(b, "out_of_election_join")["out_of_election_join"]
    assert kind == "invalid" and "via path quorum" in msg


def rules(b: JournalBuilder) -> tuple[str, str]:
    return verdicts(b, "vote_rules")["vote_rules"]


@pytest.mark.parametrize("me, other, other_round, adopted, verdict, says", [
    (1, 3, 1, 3, "valid", "1 proposal change(s)"),          # 3's vote beats its own: same epoch and zxid
    (1, 3, 2, 3, "invalid", "none of the 1 LOOKING vote(s) of that round it had received proposes"),
    (3, 1, 1, 1, "invalid", "which does not beat it in the total order"),
], ids=["better-received", "of-another-round", "worse"])
def test_a_proposal_changes_only_to_a_better_vote_of_its_round_it_received(me, other, other_round, adopted,
                                                                            verdict, says):
    b = zk()
    start(b, me)
    send(b, me, me)
    got(b, me, me, me)
    got(b, me, other, other, rnd=other_round)
    send(b, me, adopted)
    kind, msg = rules(b)
    assert kind == verdict and says in msg


def test_a_round_jump_proposes_the_better_of_the_received_vote_and_its_own():
    b = zk()
    start(b, 3)
    send(b, 3, 3)
    got(b, 3, 3, 3)
    got(b, 3, 1, 1, rnd=4)
    send(b, 3, 3, rnd=4)   # its own vote is better than 1's
    assert rules(b) == ("valid", "1 election(s) replayed: 0 proposal change(s), 1 round jump(s)")
    b = zk()
    start(b, 3)
    send(b, 3, 3)
    got(b, 3, 3, 3)
    got(b, 3, 1, 1, rnd=4)
    send(b, 3, 1, rnd=4)   # took 1's worse vote with the new round
    kind, msg = rules(b)
    assert kind == "invalid" and "moved to round 4 and proposed (leader 1" in msg
