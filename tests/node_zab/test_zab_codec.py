"""node.zab_core: codec round trips, garbage handling, sync planning, commit order."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from node.storage import make_zxid
from node.zab_core import (
    MAX_FRAME, Ack, AckEpoch, Commit, Diff, FollowerInfo, FrameDecoder, Inform, LeaderInfo,
    LearnerType, NewLeader, Ping, Proposal, ProposalTracker, SyncMode, Trunc, Txn, UpToDate,
    ZabProtocolError, encode, plan_sync,
)
from zkrules.quorum import QuorumMaj

MESSAGES = [
    FollowerInfo(3, 7), FollowerInfo(9, 0, LearnerType.OBSERVER), LeaderInfo(8),
    AckEpoch(-1, make_zxid(2, 5)), Trunc(make_zxid(1, 3)), Diff(0, make_zxid(4, 1)),
    Txn(make_zxid(1, 1), b"x" * 100), NewLeader(make_zxid(5, 0)), Ack(make_zxid(5, 9)),
    UpToDate(make_zxid(5, 2)), Proposal(make_zxid(5, 3), b""), Commit(make_zxid(5, 3)),
    Inform(make_zxid(5, 4), b"\x00\xff"), Ping(),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip_whole_and_byte_by_byte(msg):
    wire = encode(msg)
    assert struct.unpack(">i", wire[:4])[0] == len(wire) - 4
    d = FrameDecoder()
    d.feed(wire + encode(Ping()))  # trailing data stays for the next call
    assert d.next_message() == msg
    assert d.next_message() == Ping()
    assert d.next_message() is None
    d = FrameDecoder()
    for i in range(len(wire) - 1):
        d.feed(wire[i:i + 1])
        assert d.next_message() is None
    d.feed(wire[-1:])
    assert d.next_message() == msg


@pytest.mark.parametrize("frame, reason", [
    (struct.pack(">i", 0), "frame length 0"),
    (struct.pack(">i", -1), "frame length -1"),
    (struct.pack(">i", MAX_FRAME + 1), "outside"),
    (b"GET / HTTP/1.1\r\n", "outside"),
    (struct.pack(">i", 1) + b"\x63", "unknown message type 99"),
    (struct.pack(">i", 2) + b"\x0d\x00", "PING: expected 0 body bytes"),
    (struct.pack(">i", 5) + b"\x08abcd", "ACK: expected 8 body bytes, got 4"),
    (struct.pack(">i", 22) + bytes([1]) + struct.pack(">qqBi", 1, 1, 7, 0x10000), "unknown learner type 7"),
    (struct.pack(">i", 22) + bytes([1]) + struct.pack(">qqBi", 1, 1, 0, 5), "protocol version"),
])
def test_garbage_raises_the_remote_error(frame, reason):
    d = FrameDecoder()
    d.feed(frame)
    with pytest.raises(ZabProtocolError, match=reason):
        d.next_message()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_bytes_parse_or_raise_protocol_error(data):
    d = FrameDecoder()
    d.feed(data)
    try:
        while d.next_message() is not None:
            pass
    except ZabProtocolError:
        pass


Z = make_zxid


@pytest.mark.parametrize("leader, learner, expect", [
    ([], 0, (SyncMode.NONE, None, 0, 0)),
    ([Z(1, 1), Z(1, 2)], Z(1, 2), (SyncMode.NONE, None, Z(1, 2), Z(1, 2))),
    ([Z(1, 1), Z(1, 2), Z(2, 1)], 0, (SyncMode.DIFF, None, 0, Z(2, 1))),
    ([Z(1, 1), Z(1, 2), Z(2, 1)], Z(1, 1), (SyncMode.DIFF, None, Z(1, 1), Z(2, 1))),
    # uncommitted tail of a dead epoch: cut back to the shared prefix
    ([Z(1, 1), Z(1, 2), Z(2, 1)], Z(1, 4), (SyncMode.TRUNC, Z(1, 2), Z(1, 2), Z(2, 1))),
    # learner ahead of an empty leader
    ([], Z(1, 1), (SyncMode.TRUNC, 0, 0, 0)),
    ([Z(1, 1)], Z(1, 3), (SyncMode.TRUNC, Z(1, 1), Z(1, 1), Z(1, 1))),
])
def test_plan_sync(leader, learner, expect):
    p = plan_sync(leader, learner)
    assert (p.mode, p.trunc_zxid, p.from_zxid, p.to_zxid) == expect


def test_tracker_commits_in_order_on_voting_quorum_only():
    v = QuorumMaj([1, 2, 3], [4])
    t = ProposalTracker(v.contains_quorum)
    t.propose(Z(1, 1), 1)
    t.propose(Z(1, 2), 1)
    assert t.ack(4, Z(1, 2)) == []           # an observer's ack counts for nothing
    assert t.ack(2, Z(1, 2)) == [Z(1, 1), Z(1, 2)]  # cumulative ack
    t.propose(Z(1, 3), 1)
    t.propose(Z(1, 4), 1)
    assert t.ack(3, Z(1, 3)) == [Z(1, 3)]
    assert list(t.outstanding) == [Z(1, 4)]


def test_epoch_rules_of_discovery():
    from node.zab_core import EpochAction, epoch_to_propose, is_more_recent, learner_epoch_action
    assert epoch_to_propose(3, [5, 1]) == 6
    assert epoch_to_propose(7, []) == 8
    assert learner_epoch_action(6, 5) is EpochAction.STORE_AND_ACK
    assert learner_epoch_action(6, 6) is EpochAction.ACK_ALREADY
    assert learner_epoch_action(6, 9) is EpochAction.ABORT
    assert is_more_recent(2, 0, 1, 99)
    assert is_more_recent(1, 5, 1, 4)
    assert not is_more_recent(1, 4, 1, 4)
    assert not is_more_recent(0, 99, 1, 0)
