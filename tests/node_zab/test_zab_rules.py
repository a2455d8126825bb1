"""The leader's rules in node.zab_core, shared by node.zab and node.sim_zab."""
from __future__ import annotations

from dataclasses import dataclass

from node.zab_core import (AckEpoch, Diff, NewLeader, SyncMode, SyncPlan, Trunc, Txn, counted_epoch_acks,
                           keeps_quorum, learner_ahead, learner_read_timeout, newleader_acks, sync_frames,
                           voting_quorum)
from zkrules.quorum import QuorumMaj


@dataclass
class L:
    sid: int
    observer: bool = False
    last_heard: float = 0.0
    ack_epoch: AckEpoch | None = None
    newleader_acked: bool = False


QV = QuorumMaj([1, 2, 3, 4, 5], [6, 7, 8])


def test_observers_never_make_a_voting_quorum():
    assert not voting_quorum({1, 6, 7, 8}, QV)
    assert voting_quorum({1, 2, 3}, QV)


def test_an_ackepoch_of_minus_one_and_an_observers_ack_do_not_count():
    ls = [L(2, ack_epoch=AckEpoch(-1, 0)), L(3, ack_epoch=AckEpoch(4, 9)), L(6, True, ack_epoch=AckEpoch(4, 9)), L(4)]
    assert counted_epoch_acks(1, ls) == {1, 3}


def test_a_follower_ahead_is_found_but_not_one_that_acked_minus_one():
    ls = [L(2, ack_epoch=AckEpoch(-1, 99)), L(3, ack_epoch=AckEpoch(5, 1))]
    assert learner_ahead(ls, 5, 1) is None
    assert learner_ahead(ls, 4, 50).sid == 3
    assert learner_ahead([L(3, ack_epoch=AckEpoch(5, 2))], 5, 1).sid == 3


def test_the_periodic_check_counts_voters_heard_within_sync_limit_only():
    ls = [L(2, newleader_acked=True, last_heard=9.0), L(3, newleader_acked=True, last_heard=5.0),
          L(6, True, newleader_acked=True, last_heard=10.0), L(7, True, newleader_acked=True, last_heard=10.0),
          L(4, newleader_acked=False, last_heard=10.0)]
    leads, alive = keeps_quorum(1, ls, now=10.0, sync_limit=2.0, verifier=QV)
    assert alive == {1, 2} and not leads
    ls[1].last_heard = 8.5
    assert keeps_quorum(1, ls, now=10.0, sync_limit=2.0, verifier=QV) == (True, {1, 2, 3})
    assert newleader_acks(1, ls) == {1, 2, 3}


def test_sync_frames_send_trunc_only_when_the_plan_truncates():
    diff = sync_frames(SyncPlan(SyncMode.DIFF, None, 5, 7), [(6, b"a"), (7, b"b")], 1 << 32)
    assert diff == [Diff(5, 7), Txn(6, b"a"), Txn(7, b"b"), NewLeader(1 << 32)]
    trunc = sync_frames(SyncPlan(SyncMode.TRUNC, 4, 4, 7), [(7, b"c")], 2 << 32)
    assert trunc[0] == Trunc(4) and trunc[-1] == NewLeader(2 << 32)


def test_the_leader_waits_init_limit_for_a_learner_then_sync_limit():
    assert learner_read_timeout(False, 2.0, 1.0) == 2.0
    assert learner_read_timeout(True, 2.0, 1.0) == 1.0


def test_learner_sync_truncates_then_takes_the_diff_and_checks_the_newleader_epoch():
    import pytest

    from node.zab_core import LearnerSync, ZabProtocolError
    s = LearnerSync(last_zxid=(1 << 32) | 9)
    assert s.feed(Trunc((1 << 32) | 5)) == Trunc((1 << 32) | 5)
    s.truncated((1 << 32) | 5)
    for m in (Diff((1 << 32) | 5, (2 << 32) | 1), Txn((2 << 32) | 1, b"x"), NewLeader(3 << 32)):
        assert s.feed(m) is None
    assert s.done and s.mode is SyncMode.TRUNC and s.from_zxid == (1 << 32) | 5
    assert [t.zxid for t in s.pending] == [(2 << 32) | 1]
    assert s.epoch(3) == 3
    with pytest.raises(ZabProtocolError):
        s.epoch(4)
    d = LearnerSync(last_zxid=5)
    d.feed(Diff(5, 7))
    assert d.mode is SyncMode.DIFF
    with pytest.raises(ZabProtocolError):
        d.feed(AckEpoch(1, 1))


def test_a_learner_waits_init_limit_for_its_leader_until_uptodate_then_sync_limit():
    from node.zab_core import leader_read_timeout
    assert leader_read_timeout(False, 2.0, 1.0) == 2.0
    assert leader_read_timeout(True, 2.0, 1.0) == 1.0
