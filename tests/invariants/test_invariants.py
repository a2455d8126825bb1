"""Each invariant: a violating journal → invalid with the right evidence seqs,
a clean one → valid, a setup failure → unknown."""

from __future__ import annotations

import pytest

from chaos.invariants import (
    DEFAULT_CONVERGENCE_S,
    INVARIANTS,
    Context,
    Finding,
    InvariantResult,
    check_all,
    convergence,
    invariant,
    leader_validity,
    no_committed_txn_lost,
    out_of_election_join,
    overall,
    setup_failure,
    single_leader,
)
from chaos.journal import JournalWriter, load
from chaos.records import Journal, NodeEvent, Process, Status
from chaos.report.synth import JournalBuilder, realistic_journal


def journal(b: JournalBuilder, *, finished: bool = True) -> Journal:
    """The builder's records so far; a finished run ends with ``run_finished``.
    The verdicts are the test's to compute, not the builder's."""
    return b.journal(finished=finished, invariants=())


def poll(b: JournalBuilder, sid: int, state: str, leader: int, epoch: int, *, synced: bool) -> int:
    """A status poll that says whether the node has synced (established) its epoch."""
    return b.rec("status", sid=sid, up=True, state=state, leader=leader, epoch=epoch, synced=synced)


def formed(n: int = 3) -> tuple[JournalBuilder, dict]:
    """Three nodes start and elect node n (the highest sid wins on equal zxid)."""
    b = JournalBuilder(n)
    b.rec("run_started", seed=7, command="chaos run plans/leader_kill.yaml")
    b.start()
    e = b.election(n, b.voters)
    return b, e


def kill_and_reelect(b: JournalBuilder, old: int, new: int, survivors: list[int]) -> dict:
    b.advance(1.0)
    b.fault("requested", "f1", "kill", {"node": old})
    b.kill(old)
    b.fault("effective", "f1", "kill", {"node": old})
    b.advance(0.5)
    return b.election(new, survivors)


# ---------------------------------------------------------------- clean runs


def test_clean_realistic_run_is_valid_for_every_invariant():
    j = realistic_journal(nodes=5, seconds=30)
    results = check_all(j)
    assert [r.name for r in results] == list(INVARIANTS)
    # its out-of-election joins log no notifications: vote_backing cannot judge them
    by_name = {r.name: r for r in results}
    assert by_name.pop("vote_backing").message.startswith("unknown (capped)")
    assert {r.verdict for r in by_name.values()} == {"valid"}, results
    assert overall(list(by_name.values())) == "valid"
    # the realistic run really exercises the joins and leader changes
    assert "joined the running leader" in next(r for r in results if r.name == "out_of_election_join").message


def test_clean_kill_and_reelect_is_valid():
    b, _ = formed()
    b.commit(3, [1, 2])
    kill_and_reelect(b, 3, 2, [1, 2])
    b.commit(2, [1])
    b.log_summaries()
    j = journal(b, finished=False)
    for fn in INVARIANTS.values():
        assert fn(j, None).verdict == "valid", fn.name


# ---------------------------------------------------------------- setup failures


def test_no_records_is_unknown_everywhere():
    j = journal(JournalBuilder(3), finished=False)
    results = check_all(j)
    assert {r.verdict for r in results} == {"unknown"}
    assert all("no run data" in r.message for r in results)
    assert overall(results) == "unknown"


def test_never_formed_before_first_fault_is_unknown_not_invalid():
    b = JournalBuilder(3)
    b.start()  # all LOOKING, nobody leads
    b.fault("requested", "f1", "kill", {"node": 3})
    b.kill(3)
    # later two nodes claim epoch 1 with different leaders — would be invalid,
    # but a run that never formed is a setup failure, not an election bug
    b.ev(1, "epoch_established", epoch=1, role="leader", leader=1, last_zxid=0)
    b.ev(2, "epoch_established", epoch=1, role="leader", leader=2, last_zxid=0)
    j = journal(b, finished=False)
    assert "setup failure" in setup_failure(j)
    results = check_all(j)
    assert {r.verdict for r in results} == {"unknown"}, results
    assert all(r.first_violation is None for r in results)


def test_leader_without_following_quorum_is_not_formed():
    b = JournalBuilder(5)
    b.start()
    b.status(5, "LEADING", 5, 1)
    b.status(4, "FOLLOWING", 5, 1)  # 2 of 5: no quorum
    b.fault("requested", "f1", "pause", {"node": 5})
    assert setup_failure(journal(b, finished=False)) is not None
    assert single_leader(journal(b, finished=False)).verdict == "unknown"


# ---------------------------------------------------------------- single_leader


def test_two_leaders_established_in_one_epoch_is_invalid_with_both_claims():
    b, e = formed()
    b.advance(1)
    b.fault("requested", "f1", "partition", {"isolate": 3}, [[3, 1, "election"], [3, 2, "election"]])
    # node 2 establishes epoch 1 too: split brain
    bad = b.ev(2, "epoch_established", epoch=1, role="leader", leader=2, last_zxid=0)
    r = single_leader(journal(b, finished=False))
    assert r.verdict == "invalid"
    assert r.evidence == (e["established"][3], bad)
    assert r.first_violation == bad
    assert "epoch 1" in r.message


def test_followers_of_different_leaders_in_one_epoch_is_invalid():
    b, e = formed()
    b.advance(1)
    b.fault("requested", "f1", "partition", {"isolate": 3})
    b.state[2], b.leader_of[2] = "LOOKING", -1
    b.status(2)  # LOOKING at epoch 1
    bad = poll(b, 2, "FOLLOWING", 1, 2, synced=True)  # follows 1 in epoch 2 ...
    b.ev(1, "epoch_established", epoch=2, role="leader", leader=1, last_zxid=0)
    ok = poll(b, 3, "FOLLOWING", 3, 2, synced=True)  # ... fine so far; now a voter follows 3 in epoch 2
    r = single_leader(journal(b, finished=False))
    assert r.verdict == "invalid"
    assert r.evidence == (bad, ok)


def test_unestablished_second_leader_is_allowed():
    """ZAB lets a partitioned old leader keep LEADING while a new one is elected;
    only two leaders of one *established* epoch are a violation."""
    b, _ = formed()
    b.fault("requested", "f1", "partition", {"isolate": 3})
    b.election(2, [1, 2], established=False)  # 2 LEADING with stale epoch 1, 3 still LEADING epoch 1
    assert single_leader(journal(b, finished=False)).verdict == "valid"


# ---------------------------------------------------------------- convergence


def test_convergence_within_bound_is_valid_and_reports_time():
    b, _ = formed()
    b.advance(1)
    b.fault("requested", "f1", "kill", {"node": 3})
    b.kill(3)
    b.fault("undone", "f1", "kill", {"node": 3})
    b.advance(2.0)
    b.election(2, [1, 2])
    b.advance(20)
    b.status(1)
    r = convergence(journal(b), {"within": "15s"})
    assert r.verdict == "valid"
    assert "leader 2" in r.message and "2." in r.message


def test_agreeing_on_a_leader_that_never_establishes_its_epoch_is_not_convergence():
    """Everyone names node 3, but it never gathers its epoch's acks (an epoch
    proposed twice, say): the ensemble loops through elections and never serves."""
    b, _ = formed()
    b.advance(1)
    b.fault("requested", "f1", "kill", {"node": 3})
    b.kill(3)
    b.fault("undone", "f1", "kill", {"node": 3})
    b.advance(0.5)
    b.election(2, [1, 2], established=False)
    b.advance(20)
    b.status(1)
    r = convergence(journal(b), {"within": "15s"})
    assert r.verdict == "invalid"
    assert "did not agree on one leader within 15 s" in r.message and "1:FOLLOWING→2, 2:LEADING" in r.message
    b.ev(2, "epoch_established", epoch=2, role="leader", leader=2, last_zxid=0)
    b.ev(1, "epoch_established", epoch=2, role="follower", leader=2, last_zxid=0)
    assert convergence(journal(b), {"within": "40s"}).verdict == "valid"


def test_no_agreement_within_bound_is_invalid_with_last_disagreement():
    b, _ = formed()
    b.advance(1)
    b.fault("requested", "f1", "partition", {"isolate": 3})
    b.fault("undone", "f1", "partition", {"isolate": 3})
    b.advance(0.5)
    s1 = b.status(1, "LOOKING", -1)
    s2 = b.status(2, "LOOKING", -1)
    b.advance(3)
    s1b = b.status(1)  # still LOOKING
    b.advance(30)
    b.status(1, "FOLLOWING", 3)  # too late: after the 5 s bound
    j = journal(b)
    r = convergence(j, {"within": 5})
    assert r.verdict == "invalid"
    last3 = max(r.seq for r in j.records
                if isinstance(r, (Status, Process, NodeEvent)) and r.sid == 3 and r.seq < s1)
    assert r.evidence == tuple(sorted((s1b, s2, last3)))
    assert r.first_violation == s1b
    assert "within 5 s" in r.message


def test_convergence_bound_defaults_to_15s():
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"node": 3})
    b.kill(3)
    b.advance(14.0)
    b.election(2, [1, 2])
    assert convergence(journal(b), None).verdict == "valid"
    b2, _ = formed()
    b2.fault("requested", "f1", "kill", {"node": 3})
    b2.kill(3)
    b2.advance(16.0)
    b2.election(2, [1, 2])
    assert convergence(journal(b2), None).verdict == "invalid"


def test_convergence_on_partial_journal_still_within_bound_is_unknown():
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"node": 3})
    b.kill(3)
    b.advance(2)
    b.status(1, "LOOKING", -1)
    assert convergence(journal(b, finished=False), {"within": 15}).verdict == "unknown"


def test_a_running_node_that_stops_answering_is_not_excused_from_convergence():
    """A vote storm makes a node too busy to answer polls; its process still
    runs, so it is live and not agreeing: no "no quorum alive" excuse."""
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"node": 3})
    b.kill(3)
    b.fault("effective", "f1", "kill", {"node": 3})
    b.advance(0.5)
    b.status(1, "LOOKING", -1)
    b.status(2, up=False)          # not answering, never killed
    b.advance(20)
    b.status(1)
    r = convergence(journal(b), {"within": 10})
    assert r.verdict == "invalid", r.message


def test_teardown_inside_the_bound_is_unknown_not_a_liveness_failure():
    """An interrupted run: the harness undoes the faults and stops every node
    2 s into a 15 s bound. The voters never agreed, but the bound was never given."""
    b, _ = formed()
    b.fault("requested", "f1", "partition", {"isolate": 3})
    b.advance(2)
    b.status(1, "LOOKING", -1)
    b.rec("teardown", reason="interrupted")
    b.fault("undone", "f1", "partition", {"isolate": 3})
    for sid in (1, 2, 3):
        b.rec("process", sid=sid, action="stopped", pid=100 + sid, exit_code=0)
    r = convergence(journal(b), {"within": 15})
    assert r.verdict == "unknown" and "torn down" in r.message


def test_teardown_after_the_bound_still_judges_the_failure():
    b, _ = formed()
    b.fault("requested", "f1", "partition", {"isolate": 3})
    b.fault("undone", "f1", "partition", {"isolate": 3})
    b.advance(0.5)
    b.status(1, "LOOKING", -1)
    b.advance(6)
    b.rec("teardown", reason="finished")
    r = convergence(journal(b), {"within": 5})
    assert r.verdict == "invalid"


# ---------------------------------------------------------------- out_of_election_join


def _restart_into(b: JournalBuilder, sid: int, leader: int, *, path: str = "out_of_election",
                  joined_leader: int | None = None) -> dict:
    seqs = {"restart": b.process(sid, "started")}
    b.ev(sid, "node_started", pid=b.pid[sid], protocol="3.8", peer_type="participant",
         last_zxid=b.zxid[sid], accepted_epoch=b.accepted[sid], current_epoch=b.epoch[sid])
    b.advance(0.2)
    to = joined_leader if joined_leader is not None else leader
    seqs["finished"] = b.ev(sid, "election_finished", leader=to, zxid=b.zxid[to], peer_epoch=b.epoch[to],
                            round=1, duration_ms=200, path=path, state="FOLLOWING",
                            notifications_sent=2, notifications_received=2)
    b.epoch[sid] = b.epoch[to]
    seqs["status"] = b.status(sid, "FOLLOWING", to)
    return seqs


def test_no_restart_is_valid_not_applicable():
    b, _ = formed()
    r = out_of_election_join(journal(b))
    assert r.verdict == "valid" and r.message == "no restart into a running ensemble"


def test_restart_joins_out_of_election():
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"node": 1})
    b.kill(1)
    b.advance(1)
    _restart_into(b, 1, 3)
    r = out_of_election_join(journal(b))
    assert r.verdict == "valid" and "1 restart" in r.message


def test_restart_that_joins_by_quorum_path_is_invalid():
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"node": 1})
    b.kill(1)
    b.advance(1)
    s = _restart_into(b, 1, 3, path="quorum")
    r = out_of_election_join(journal(b))
    assert r.verdict == "invalid"
    assert r.evidence == (s["restart"], s["finished"])
    assert r.first_violation == s["finished"]


def _restart_onto_votes(b: JournalBuilder, *, voter_state: str) -> dict:
    """Node 1 restarts while 3 leads; node 2's LOOKING vote for 2 in round 5 reaches it
    while node 2 is in `voter_state` by its own log, and node 1 decides 2 by the quorum path."""
    seqs = {"restart": b.process(1, "started")}
    b.advance(0.05)
    if voter_state == "LOOKING":
        b.ev(2, "state_changed", **{"from": "FOLLOWING", "to": "LOOKING"})
    b.advance(0.05)
    vote = dict(leader=2, zxid=b.zxid[2], peer_epoch=b.epoch[2], round=5, version=2)
    b.ev(1, "notification_received", **{"from": 2}, state="LOOKING", **vote)
    b.ev(1, "notification_received", **{"from": 1}, state="LOOKING", **vote)
    b.advance(0.2)
    seqs["finished"] = b.ev(1, "election_finished", leader=2, zxid=vote["zxid"], peer_epoch=vote["peer_epoch"],
                            round=5, duration_ms=300, path="quorum", state="FOLLOWING",
                            notifications_sent=2, notifications_received=2)
    return seqs


def test_a_restart_misled_by_votes_re_sent_from_a_finished_election_is_not_the_joins_fault():
    """Node 2 left its election (it FOLLOWS 3) but its last LOOKING vote reaches the
    restarted node, which counts it: ZooKeeper's QuorumCnxManager re-sends it too."""
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"node": 1})
    b.kill(1)
    b.advance(1)
    _restart_onto_votes(b, voter_state="FOLLOWING")
    r = out_of_election_join(journal(b))
    assert r.verdict == "valid"
    assert "needed LOOKING votes from 2" in r.message and "already left" in r.message


def test_a_restart_that_joins_a_peer_still_looking_by_the_quorum_path_is_invalid():
    """The same votes from a peer that really is LOOKING: no excuse, the join went wrong."""
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"node": 1})
    b.kill(1)
    b.advance(1)
    s = _restart_onto_votes(b, voter_state="LOOKING")
    r = out_of_election_join(journal(b))
    assert r.verdict == "invalid"
    assert r.evidence == (s["restart"], s["finished"])


def test_restart_that_bumps_the_epoch_is_invalid():
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"node": 1})
    b.kill(1)
    b.advance(1)
    restart = b.process(1, "started")
    b.advance(0.3)
    bump = b.ev(3, "epoch_established", epoch=2, role="leader", leader=3, last_zxid=0)
    r = out_of_election_join(journal(b))
    assert r.verdict == "invalid"
    assert r.evidence == (restart, bump)


def test_restart_while_a_partition_unseats_the_leader_is_not_judged_as_a_join():
    """The leader lost its quorum to a partition before the restarted node's
    election finished: joining by the quorum path is then right."""
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"node": 1})
    b.kill(1)
    b.advance(1)
    b.process(1, "started")
    b.fault("requested", "p1", "partition", {"isolate": 3})
    b.fault("effective", "p1", "partition", {"isolate": 3})
    b.advance(0.3)
    b.status(3, "LOOKING", -1)
    b.advance(0.3)
    b.ev(1, "election_finished", leader=2, zxid=b.zxid[2], peer_epoch=2, round=2, duration_ms=500,
         path="quorum", state="FOLLOWING", notifications_sent=4, notifications_received=4)
    r = out_of_election_join(journal(b))
    assert r.verdict == "valid", r.message


def test_a_leader_that_steps_down_with_no_fault_after_a_restart_is_still_judged():
    """Without a link fault, a leader stepping down right after a restart is
    the restart's doing (the historical bug): the quorum-path join is invalid."""
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"node": 1})
    b.kill(1)
    b.advance(1)
    b.process(1, "started")
    b.advance(0.3)
    b.status(3, "LOOKING", -1)
    b.advance(0.3)
    b.ev(1, "election_finished", leader=3, zxid=b.zxid[3], peer_epoch=2, round=2, duration_ms=500,
         path="quorum", state="FOLLOWING", notifications_sent=4, notifications_received=4)
    assert out_of_election_join(journal(b)).verdict == "invalid"


def test_restart_that_never_joins_is_invalid_once_the_run_ended():
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"node": 1})
    b.kill(1)
    restart = b.process(1, "started")
    b.status(1, "LOOKING", -1)
    assert out_of_election_join(journal(b, finished=False)).verdict == "unknown"
    r = out_of_election_join(journal(b))
    assert r.verdict == "invalid" and r.evidence == (restart,)


def test_restart_before_the_new_leader_established_its_epoch_is_not_a_bump():
    """Issue 8: the restart lands after node 2 went LEADING (still showing
    epoch 1) but before it established epoch 2. Epoch 1 had no running leader
    then, so establishing epoch 2 is the election finishing, not the restart
    moving the ensemble to a new epoch."""
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"node": 3})
    b.kill(3)
    b.advance(0.5)
    b.election(2, [1, 2], established=False)  # 2 LEADING, 1 FOLLOWING it, both at epoch 1
    b.advance(0.1)
    b.process(3, "started")
    b.advance(0.1)
    for s, role in ((2, "leader"), (1, "follower")):
        b.epoch[s] = b.accepted[s] = 2
        b.ev(s, "epoch_established", epoch=2, role=role, leader=2, last_zxid=0)
    b.advance(0.2)
    b.ev(3, "election_finished", leader=2, zxid=0, peer_epoch=2, round=1, duration_ms=300,
         path="out_of_election", state="FOLLOWING", notifications_sent=2, notifications_received=2)
    b.status(3, "FOLLOWING", 2, 2)
    r = out_of_election_join(journal(b))
    assert r.verdict == "valid", r
    assert r.message == "no restart into a running ensemble"


def test_restart_before_a_synced_poll_of_the_new_leader_is_not_a_bump():
    """Issue 8 seen through status polls only: LEADING unsynced at epoch 1,
    then synced at epoch 2."""
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"node": 3})
    b.kill(3)
    poll(b, 2, "LEADING", 2, 1, synced=False)
    poll(b, 1, "FOLLOWING", 2, 1, synced=False)
    b.process(3, "started")
    poll(b, 2, "LEADING", 2, 2, synced=True)
    poll(b, 1, "FOLLOWING", 2, 2, synced=True)
    assert out_of_election_join(journal(b)).verdict == "valid"


def test_restart_into_a_leader_established_by_synced_poll_is_judged():
    """A synced LEADING poll is an established epoch: a restart after it that
    is followed by a newer led epoch is a violation."""
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"node": 3})
    b.kill(3)
    poll(b, 2, "LEADING", 2, 1, synced=False)
    poll(b, 1, "FOLLOWING", 2, 1, synced=False)
    poll(b, 2, "LEADING", 2, 2, synced=True)
    restart = b.process(3, "started")
    poll(b, 1, "LOOKING", -1, 2, synced=False)
    bump = poll(b, 1, "LEADING", 1, 3, synced=True)
    r = out_of_election_join(journal(b))
    assert r.verdict == "invalid"
    assert r.evidence == (restart, bump) and r.first_violation == bump
    assert "epoch 2 led by 2" in r.message and "led epoch 3" in r.message


def test_only_a_synced_leading_poll_moves_the_epoch_of_a_join():
    """After a restart into epoch 1, a LEADING poll of a higher epoch counts
    once it is synced, not before."""
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"node": 1})
    b.kill(1)
    restart = b.process(1, "started")
    poll(b, 2, "LEADING", 2, 2, synced=False)
    assert out_of_election_join(journal(b, finished=False)).verdict == "unknown"  # not joined yet, no bump
    bump = poll(b, 2, "LEADING", 2, 2, synced=True)
    r = out_of_election_join(journal(b, finished=False))
    assert r.verdict == "invalid" and r.evidence == (restart, bump)


# ---------------------------------------------------------------- leader_validity


def test_leader_with_lower_zxid_than_a_voter_is_invalid():
    b, _ = formed()
    b.commit(3, [1, 2])
    b.commit(3, [1])  # node 1 has one more txn than node 2
    b.advance(1)
    b.fault("requested", "f1", "kill", {"node": 3})
    b.kill(3)
    e = b.election(2, [1, 2])  # 2 wins although 1 has the higher zxid
    r = leader_validity(journal(b))
    assert r.verdict == "invalid"
    assert r.first_violation == min(e["finished"].values())
    assert e["started"][1] in r.evidence and e["finished"][1] in r.evidence
    assert "voter 1" in r.message


def test_highest_zxid_wins_is_valid_and_out_of_election_is_not_judged():
    b, _ = formed()
    b.commit(3, [1, 2])
    b.commit(3, [1])
    b.fault("requested", "f1", "kill", {"node": 3})
    b.kill(3)
    b.election(1, [1, 2])
    b.election(2, [1, 2], path="out_of_election")  # not the quorum path: not judged
    r = leader_validity(journal(b))
    assert r.verdict == "valid" and "2 quorum-path" in r.message


# ---------------------------------------------------------------- no_committed_txn_lost


def test_new_leader_behind_a_committed_txn_is_invalid():
    b, _ = formed()
    b.commit(3, [1, 2])
    z, seq = b.commit(3, [1], applied=True)  # committed with the ack of 1 only
    b.fault("requested", "f1", "partition", {"isolate": 3})
    b.advance(1)
    e = b.election(2, [2], established=True)  # 2 becomes leader without txn z
    r = no_committed_txn_lost(journal(b))
    assert r.verdict == "invalid"
    assert r.evidence == (seq, e["established"][2])


def test_committed_txn_missing_from_new_leader_log_is_invalid():
    b, _ = formed()
    z1, s1 = b.commit(3, [1, 2])
    z2, s2 = b.commit(3, [1, 2])
    kill_and_reelect(b, 3, 2, [1, 2])
    b.log[2][1] = [2, 2]  # the log lost txn counter 1 of epoch 1
    sums = b.log_summaries()
    r = no_committed_txn_lost(journal(b))
    assert r.verdict == "invalid"
    assert r.evidence[0] == s1 and r.evidence[-1] == sums[2]
    assert r.first_violation == sums[2]


def test_unreadable_log_is_not_a_lost_txn():
    b, _ = formed()
    b.commit(3, [1, 2])
    kill_and_reelect(b, 3, 2, [1, 2])
    b.rec("log_summary", sid=2, runs=None, error="OSError: gone")
    assert no_committed_txn_lost(journal(b)).verdict == "valid"


def test_no_txns_is_valid():
    b, _ = formed()
    assert no_committed_txn_lost(journal(b)).message == "no committed txn observed"


# ---------------------------------------------------------------- check_all / overall


def test_check_all_follows_spec_order_and_flags_unknown_names():
    b, _ = formed()
    rs = check_all(journal(b, finished=False), {"convergence": {"within": "1s"}, "nonsense": {}})
    assert [r.name for r in rs] == ["convergence", "nonsense"]
    assert rs[1].verdict == "unknown"


@pytest.mark.parametrize(
    "verdicts,expected",
    [(["valid", "valid"], "valid"), (["valid", "unknown"], "unknown"),
     (["unknown", "invalid"], "invalid"), ([], "unknown")],
)
def test_overall(verdicts, expected):
    assert overall([InvariantResult("x", v, "") for v in verdicts]) == expected


def test_two_leaders_seen_only_through_status_polls_is_invalid():
    """Without node events (events.jsonl tailing off), synced polls still count."""
    b = JournalBuilder(3)
    b.start()
    for s in (1, 2):
        poll(b, s, "FOLLOWING", 3, 1, synced=True)
    first = poll(b, 3, "LEADING", 3, 1, synced=True)
    b.fault("requested", "f1", "partition", {"isolate": 3})
    poll(b, 2, "LOOKING", -1, 1, synced=False)
    second = poll(b, 2, "LEADING", 2, 1, synced=False)  # not synced: not established, allowed
    assert single_leader(journal(b, finished=False)).verdict == "valid"
    poll(b, 2, "LOOKING", -1, 1, synced=False)
    poll(b, 2, "LEADING", 2, 2, synced=True)
    poll(b, 1, "LOOKING", -1, 1, synced=False)
    unsynced = poll(b, 1, "LEADING", 1, 2, synced=False)  # a second LEADING of epoch 2, not yet synced
    assert single_leader(journal(b, finished=False)).verdict == "valid"
    third = poll(b, 1, "LEADING", 1, 2, synced=True)  # two synced leaders of epoch 2
    r = single_leader(journal(b, finished=False))
    assert r.verdict == "invalid" and r.first_violation == third
    assert first not in r.evidence and second not in r.evidence and unsynced not in r.evidence


def test_paused_node_does_not_block_convergence():
    b, _ = formed(5)
    b.fault("requested", "f1", "pause", {"node": 1})
    b.process(1, "paused")
    b.fault("undone", "f1", "pause", {"node": 1})
    b.advance(1)
    b.status(2)
    assert convergence(journal(b), {"within": "2s"}).verdict == "valid"


def test_agreement_needs_an_observation_after_the_fault():
    """State known at the fault record may be stale (polls lag); only a record
    after it can show convergence."""
    b, _ = formed()
    b.fault("requested", "t1", "toxic", {"type": "latency"}, [[3, 1, "election"]])
    b.fault("undone", "t1", "toxic", {"type": "latency"}, [[3, 1, "election"]])
    assert convergence(journal(b, finished=False), {"within": "15s"}).verdict == "unknown"
    b.advance(0.2)
    b.status(1)
    r = convergence(journal(b, finished=False), {"within": "15s"})
    assert r.verdict == "valid" and "0.20 s after the last fault/undo" in r.message


def test_convergence_counts_from_the_restart_of_a_killed_node():
    """The plan restarts a killed node with no `undone` record: the restart is
    the undo, and the restarted node must be part of the agreement."""
    b, _ = formed()
    b.fault("requested", "f1", "kill", {"sid": 3})
    b.kill(3)
    b.fault("effective", "f1", "kill", {"sid": 3})
    b.advance(0.5)
    b.election(2, [1, 2])
    b.advance(1)
    b.process(3, "started")
    b.status(3, "LOOKING", -1)
    b.advance(20)
    b.status(1)
    j = journal(b)
    r = convergence(j, {"within": "5s"})
    assert r.verdict == "invalid" and "3:LOOKING" in r.message


def test_synced_status_counts_as_established():
    b = JournalBuilder(3)
    b.start()
    b.rec("status", sid=3, up=True, state="LEADING", leader=3, epoch=1, synced=True)
    b.rec("status", sid=1, up=True, state="FOLLOWING", leader=3, epoch=1, synced=True)
    b.fault("requested", "f1", "partition", {"isolate": 3})
    bad = b.rec("status", sid=2, up=True, state="FOLLOWING", leader=2, epoch=1, synced=True)
    r = single_leader(journal(b, finished=False))
    assert r.verdict == "invalid" and r.first_violation == bad


def test_late_arriving_node_events_are_judged_in_time_order():
    """The old leader's txn_committed is tailed after the new leader's
    epoch_established arrived; by time it came first, so it must survive."""
    b, _ = formed()
    b.commit(3, [1, 2])
    j = journal(b, finished=False).to_json()
    commit = next(r for r in j["records"] if r.get("event") == "txn_committed")
    j["records"].remove(commit)
    b2_t = j["records"][-1]["t"] + 1.0
    lead = {"seq": 900, "t": b2_t, "mono_ms": 0, "type": "node_event", "sid": 2, "event": "epoch_established",
            "epoch": 2, "role": "leader", "leader": 2, "last_zxid": 0}  # behind the committed txn
    j["records"] += [lead, {**commit, "seq": 901}]  # arrival: leader first, the commit later
    r = no_committed_txn_lost(Journal.from_json(j))
    assert r.verdict == "invalid" and r.evidence == (901, 900)


def _grouped_journal(followers: list[int]) -> Journal:
    """Two groups {1,2,3} {4,5}: leader 3, the given followers, then a fault."""
    nodes = [{"sid": s, "role": "participant", "weight": 1, "group": 1 if s <= 3 else 2} for s in range(1, 6)]
    recs, t = [], 0.0

    def rec(**f):
        nonlocal t
        t += 0.1
        recs.append({"seq": len(recs) + 1, "t": t, "mono_ms": t * 1000, **f})

    for s in range(1, 6):
        rec(type="process", sid=s, action="started", pid=100 + s)
    rec(type="node_event", sid=3, event="epoch_established", epoch=1, role="leader", leader=3, last_zxid=0)
    for s in followers:
        rec(type="node_event", sid=s, event="epoch_established", epoch=1, role="follower", leader=3, last_zxid=0)
    rec(type="fault", phase="requested", fault_id="f1", kind="kill", target={"sid": 3}, links=[])
    return Journal.from_json({"schema_version": 1, "run": {}, "nodes": nodes, "records": recs})


def test_hierarchical_quorum_decides_whether_the_ensemble_formed():
    """3 of 5 voters is a plain majority but not a quorum of groups {1,2,3},{4,5}."""
    assert setup_failure(_grouped_journal([1, 2])) is not None
    assert setup_failure(_grouped_journal([1, 4])) is not None  # group {4,5} needs both
    assert setup_failure(_grouped_journal([1, 4, 5])) is None


# ---------------------------------------------------------------- registry, context, typed journals


def test_registry_is_the_plan_vocabulary():
    from chaos.plan import parse
    from chaos.plan.model import INVARIANT_NAMES

    assert list(INVARIANTS) == list(INVARIANT_NAMES)
    assert parse.DEFAULT_CONVERGENCE_S is DEFAULT_CONVERGENCE_S


def test_a_registered_invariant_runs_in_check_all_behind_the_setup_preamble():
    @invariant("test_records_seen")
    def records_seen(ctx: Context, spec) -> Finding:
        return Finding.valid(f"{len(ctx.records)} records, {spec['x']}")

    try:
        b, _ = formed()
        j = journal(b, finished=False)
        r = check_all(j, {"test_records_seen": {"x": "spec"}})
        assert r == [InvariantResult("test_records_seen", "valid", f"{len(j.records)} records, spec")]
        empty = check_all(journal(JournalBuilder(3), finished=False), {"test_records_seen": {"x": 1}})
        assert empty[0].verdict == "unknown" and "no run data" in empty[0].message
        with pytest.raises(ValueError):
            invariant("test_records_seen")(records_seen.check)
    finally:
        INVARIANTS.pop("test_records_seen", None)


def test_check_all_builds_the_shared_context_once(monkeypatch):
    built = []
    of = Context.of

    def counting(journal):
        built.append(journal)
        return of(journal)

    monkeypatch.setattr(Context, "of", staticmethod(counting))
    b, _ = formed()
    results = check_all(journal(b))
    assert len(results) == len(INVARIANTS) and len(built) == 1


def test_journal_written_by_journal_writer_is_judged(tmp_path):
    """The runner's path: typed records through JournalWriter, judged live
    (snapshot) and after loading; a split brain is invalid both ways."""
    now = [100.0]
    w = JournalWriter(tmp_path, clock=lambda: now[0], wall_clock=lambda: 1_800_000_000.0)
    w.set_header(nodes=[{"sid": s, "role": "participant", "weight": 1} for s in (1, 2, 3)])

    def rec(cls, **fields):
        now[0] += 0.1
        return w.record(cls, **fields).seq

    for s in (1, 2, 3):
        rec(Process, sid=s, action="started", pid=100 + s)
    first = rec(NodeEvent, sid=3, event="epoch_established", data={"epoch": 1, "role": "leader", "leader": 3})
    for s in (1, 2):
        rec(Status, sid=s, up=True, state="FOLLOWING", leader=3, epoch=1, synced=True)
    live = check_all(w.snapshot())
    assert {r.verdict for r in live} <= {"valid", "unknown"}
    assert next(r for r in live if r.name == "single_leader").verdict == "valid"
    from chaos.records import Fault
    rec(Fault, phase="requested", fault_id="f1", kind="partition", target={"isolate": 3})
    bad = rec(Status, sid=2, up=True, state="LEADING", leader=2, epoch=1, synced=True)
    snap = single_leader(w.snapshot())
    assert snap.verdict == "invalid" and snap.evidence == (first, bad)
    w.finish([snap], "invalid", 1)
    w.close()
    assert single_leader(load(tmp_path)) == snap
