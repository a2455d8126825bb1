"""log_agreement: the txn logs are one history, at each established epoch and at the end."""

from __future__ import annotations

import pytest

from chaos.invariants import log_agreement
from chaos.invariants.logs import first_divergence
from chaos.records import Journal
from chaos.report.synth import JournalBuilder


def journal(b: JournalBuilder) -> Journal:
    return b.journal(finished=False, invariants=())


def formed_with_txns(n: int = 3, txns: int = 3) -> JournalBuilder:
    b = JournalBuilder(n)
    b.rec("run_started", seed=7, command="chaos run plans/leader_kill.yaml")
    b.start()
    b.election(n, b.voters)
    for _ in range(txns):
        b.commit(n, [s for s in b.voters if s != n])
    return b


def kill_and_reelect(b: JournalBuilder, old: int, new: int, survivors: list[int]) -> dict:
    b.advance(1.0)
    b.fault("requested", "f1", "kill", {"node": old})
    b.kill(old)
    b.fault("effective", "f1", "kill", {"node": old})
    b.advance(0.5)
    return b.election(new, survivors)


@pytest.mark.parametrize("a, b, expect", [
    (((1, 1, 5),), ((1, 1, 5),), None),
    (((1, 1, 3),), ((1, 1, 5),), ((1, 4), "b", False)),             # a behind b: a prefix
    (((1, 1, 5),), ((1, 1, 3),), ((1, 4), "a", False)),             # a beyond b
    (((1, 1, 4), (2, 1, 2)), ((1, 1, 3), (2, 1, 2)), ((1, 4), "a", True)),  # a kept a truncated txn
    (((1, 1, 3), (2, 2, 2)), ((1, 1, 3), (2, 1, 2)), ((2, 1), "b", True)),  # a hole in a
    (((1, 1, 2), (1, 3, 5)), ((1, 1, 5),), None),                    # runs split differently, same txns
    ((), ((1, 1, 1),), ((1, 1), "b", False)),
])
def test_first_divergence(a, b, expect):
    d = first_divergence(a, b)
    assert (None if d is None else (d.at, d.holder, d.other_goes_on)) == expect


def test_clean_leader_change_agrees():
    b = formed_with_txns()
    kill_and_reelect(b, 3, 2, [1, 2])
    b.commit(2, [1])
    b.log_summaries()
    r = log_agreement(journal(b))
    assert r.verdict == "valid", r.message
    assert "prefixes of the final leader 2's" in r.message
    assert "not judged for their tail: 3 (last synced with 3 in epoch 1)" in r.message


def test_dead_leader_with_an_uncommitted_tail_is_not_judged_for_it():
    b = formed_with_txns()
    b.log[3][1] = [1, 5]  # two proposals nobody acked
    b.zxid[3] = (1 << 32) | 5
    kill_and_reelect(b, 3, 2, [1, 2])
    b.commit(2, [1])
    b.log_summaries()
    r = log_agreement(journal(b))
    assert r.verdict == "valid", r.message
    assert "3 (last synced with 3 in epoch 1; tail not judged, parts at 0x100000004 (1:4))" in r.message


def test_follower_keeping_a_txn_the_quorum_truncated_is_invalid():
    b = formed_with_txns()
    kill_and_reelect(b, 3, 2, [1, 2])
    b.commit(2, [1])
    b.log[1][1] = [1, 4]  # node 1 still holds 1:4, which leader 2 never had
    sums = b.log_summaries()
    r = log_agreement(journal(b))
    assert r.verdict == "invalid"
    assert "node 1 (synced with 2 in epoch 2) keeps 0x100000004 (1:4)" in r.message
    assert sums[1] in r.evidence and sums[2] in r.evidence


def test_follower_with_a_hole_is_invalid():
    b = formed_with_txns()
    kill_and_reelect(b, 3, 2, [1, 2])
    b.commit(2, [1])
    b.commit(2, [1])
    b.log[1][2] = [2, 2]  # 2:1 missing
    b.log_summaries()
    r = log_agreement(journal(b))
    assert r.verdict == "invalid"
    assert "node 1 (synced with 2 in epoch 2) lacks 0x200000001 (2:1)" in r.message


def test_restarted_old_leader_that_skipped_trunc_is_invalid_at_its_establishment():
    b = formed_with_txns()
    b.log[3][1] = [1, 5]
    b.zxid[3] = (1 << 32) | 5
    kill_and_reelect(b, 3, 2, [1, 2])
    b.advance(1.0)
    b.start([3])
    # it follows 2 but keeps 1:4 and 1:5 (TRUNC to 1:3 not applied)
    seq = b.ev(3, "epoch_established", epoch=2, role="follower", leader=2, last_zxid=(1 << 32) | 5)
    r = log_agreement(journal(b))
    assert r.verdict == "invalid"
    assert "node 3 established epoch 2 following 2 with last zxid 0x100000005 (1:5)" in r.message
    assert "last zxid 0x100000003 (1:3)" in r.message and "TRUNC" in r.message
    assert r.first_violation == seq


def test_follower_established_short_of_the_leaders_history_is_invalid():
    b = formed_with_txns()
    kill_and_reelect(b, 3, 2, [1, 2])
    b.advance(1.0)
    b.start([3])
    b.ev(3, "epoch_established", epoch=2, role="follower", leader=2, last_zxid=(1 << 32) | 1)
    r = log_agreement(journal(b))
    assert r.verdict == "invalid" and "DIFF" in r.message


def test_follower_established_with_txns_of_its_epoch_is_fine():
    b = formed_with_txns()
    kill_and_reelect(b, 3, 2, [1, 2])
    b.commit(2, [1])
    b.advance(1.0)
    b.start([3])
    b.ev(3, "epoch_established", epoch=2, role="follower", leader=2, last_zxid=(2 << 32) | 1)
    b.log[3] = {e: list(v) for e, v in b.log[2].items()}
    b.log_summaries()
    r = log_agreement(journal(b))
    assert r.verdict == "valid", r.message


def test_unsynced_node_parting_below_its_commit_mark_is_invalid():
    b = formed_with_txns()
    kill_and_reelect(b, 3, 2, [1, 2])
    b.commit(2, [1])
    b.log[3][1] = [1, 5]
    sums = b.log_summaries([1, 2])
    s3 = b.rec("log_summary", sid=3, runs=[[1, 1, 5]], last_committed_zxid=(1 << 32) | 5)
    r = log_agreement(journal(b))
    assert r.verdict == "invalid"
    assert "node 3 marked its log committed up to 0x100000005 (1:5)" in r.message
    assert s3 in r.evidence and sums[2] in r.evidence


def test_two_logs_sharing_a_later_epoch_must_agree_below_it():
    b = formed_with_txns()
    kill_and_reelect(b, 3, 2, [1, 2])
    b.commit(2, [1])
    b.log_summaries([1, 2])
    # node 3 never established epoch 2, yet holds 2:1 on top of a txn leader 2 lacks
    b.rec("log_summary", sid=3, runs=[[1, 1, 4], [2, 1, 1]])
    r = log_agreement(journal(b))
    assert r.verdict == "invalid" and "both hold txns of epoch 2" in r.message


def test_unreadable_final_leader_log_is_unknown():
    b = formed_with_txns()
    b.log_summaries([1, 2])
    b.rec("log_summary", sid=3, runs=None, error="no dataDir")
    r = log_agreement(journal(b))
    assert r.verdict == "unknown" and "no dataDir" in r.message


def test_partial_journal_judges_the_epochs_so_far():
    b = formed_with_txns()
    r = log_agreement(journal(b))
    assert r.verdict == "valid" and "so far" in r.message


def test_node_restarted_after_its_last_sync_and_never_resynced_is_not_judged():
    """restart {from: snapshot}: the dataDir may be an older copy with a tail the quorum truncated."""
    b = formed_with_txns()
    kill_and_reelect(b, 3, 2, [1, 2])
    b.commit(2, [1])
    b.advance(1.0)
    b.process(1, "stopped")
    b.start([1])  # from an old copy: it holds 1:4, which leader 2 never had, and has not synced yet
    b.log[1] = {1: [1, 4]}
    b.log_summaries()
    r = log_agreement(journal(b))
    assert r.verdict == "valid", r.message
    assert "1 (restarted at seq" in r.message and "never re-synced" in r.message


def test_final_leader_restarted_from_an_older_copy_is_no_reference():
    b = formed_with_txns()
    b.advance(1.0)
    b.process(3, "stopped")
    b.start([3])
    b.log[3] = {1: [1, 1]}  # its dataDir restored from a copy taken early
    b.log_summaries()
    r = log_agreement(journal(b))
    assert r.verdict == "valid" and "its log is no reference" in r.message
