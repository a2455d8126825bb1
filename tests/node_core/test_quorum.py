"""Quorum verifiers (spec §5) and the vote/zxid helpers they sit next to."""
from __future__ import annotations

import pytest

from zkrules.quorum import QuorumHierarchical, QuorumMaj, QuorumVerifier
from zkrules.vote import ServerState, Vote, make_zxid, zxid_counter, zxid_epoch

F, LD, L = ServerState.FOLLOWING, ServerState.LEADING, ServerState.LOOKING


@pytest.mark.parametrize("voters, acks, quorum", [
    ([1, 2, 3], [1, 2], True),
    ([1, 2, 3], [3], False),
    ([1, 2, 3, 4], [1, 2], False),
    ([1, 2, 3, 4], [1, 2, 4], True),
    ([1, 2, 3, 4, 5], [1, 2, 9, 10], False),   # non-members never count
    ([1], [1], True),
    ([1, 2, 3], [], False),
])
def test_quorum_maj_is_a_strict_majority_of_voters(voters, acks, quorum):
    assert QuorumMaj(voters, observers=[9]).contains_quorum(acks) is quorum


def test_quorum_maj_weights_and_protocol():
    qv = QuorumMaj([1, 2, 3], observers=[4])
    assert isinstance(qv, QuorumVerifier)
    assert [qv.weight(s) for s in (1, 2, 3, 4, 99)] == [1, 1, 1, 0, 0]
    assert qv.voting_members == frozenset({1, 2, 3}) and qv.observers == frozenset({4})


def _hier(weights=None):
    # ZooKeeper's HierarchicalQuorumTest layout: groups {1,2,3},{4,5}, weights 1,1,1,0,0
    return QuorumHierarchical([1, 2, 3, 4, 5], {1: [1, 2, 3], 2: [4, 5]},
                              weights if weights is not None else {4: 0, 5: 0})


@pytest.mark.parametrize("acks, quorum", [
    ([1, 2], True),           # the only weighted group has a majority
    ([1], False),
    ([4, 5, 1], False),       # weight-0 group adds nothing
    ([], False),
])
def test_quorum_hierarchical_zero_weight_group_is_ignored(acks, quorum):
    assert _hier().contains_quorum(acks) is quorum


@pytest.mark.parametrize("acks, quorum", [
    ([1, 2, 4], False),          # one group of two
    ([1, 2, 4, 5], True),        # both groups
    ([1, 2, 3], False),
])
def test_quorum_hierarchical_needs_majority_of_groups(acks, quorum):
    assert _hier({}).contains_quorum(acks) is quorum


def test_quorum_hierarchical_weighted_majority_inside_group():
    qv = QuorumHierarchical([1, 2, 3], {1: [1, 2, 3]}, {1: 3, 2: 1, 3: 1})
    assert qv.contains_quorum([1]) is True      # 3 > 5 // 2
    assert qv.contains_quorum([2, 3]) is False  # 2 > 2 is false
    assert qv.weight(1) == 3 and qv.weight(4) == 0


def test_observer_weight_is_accepted_and_unused():
    qv = QuorumHierarchical([1, 2], {1: [1, 2]}, {3: 5}, observers=[3])
    assert qv.weight(3) == 0 and not qv.contains_quorum([1, 3])


def test_fle_zero_weight_layout_quorum():
    """FLEZeroWeightTest's layout: 9 peers, 3 groups, sids 3-8 weigh 0."""
    qv = QuorumHierarchical(range(9), {1: [0, 1, 2], 2: [3, 4, 5], 3: [6, 7, 8]}, {s: 0 for s in range(3, 9)})
    assert qv.num_groups == 1
    assert qv.contains_quorum([0, 1]) and not qv.contains_quorum([0, 3, 4, 5, 6, 7, 8])


@pytest.mark.parametrize("kwargs, message", [
    (dict(participants=[1, 2], groups={1: [1, 2], 2: [2]}, weights={}), "server 2 is in two groups"),
    (dict(participants=[1, 2, 3], groups={1: [1, 2]}, weights={}), "participant 3 is in no group"),
    (dict(participants=[1, 2], groups={1: [1, 2, 7]}, weights={}), "server 7, which is not a participant"),
    (dict(participants=[1, 2], groups={1: [1, 2]}, weights={2: -1}), "weight.2=-1"),
    (dict(participants=[1, 2], groups={1: [1, 2]}, weights={8: 1}), "weight.8 names a server that is not in"),
    (dict(participants=[1, 2], groups={1: [1, 2, 3]}, weights={}, observers=[3]), "observer 3"),
    (dict(participants=[1, 2], groups={}, weights={}), "at least one group"),
    (dict(participants=[], groups={1: [1]}, weights={}), "no participants"),
])
def test_quorum_hierarchical_config_errors_name_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QuorumHierarchical(**kwargs)


@pytest.mark.parametrize("args, message", [
    (([], ()), "no participants"),
    (([1, 2], [2]), "both a participant and an observer"),
    (([1, 1], ()), "listed twice"),
    (([-1], ()), "not a non-negative integer"),
])
def test_quorum_maj_config_errors(args, message):
    with pytest.raises(ValueError, match=message):
        QuorumMaj(*args)


def test_config_text_maj_lists_servers_then_version_last():
    qv = QuorumMaj([2, 1], observers=[3])
    text = qv.to_config_text({1: "127.0.0.1:2888:3888", 2: "127.0.0.1:2889:3889;127.0.0.1:2182",
                              3: "127.0.0.1:2890:3890"})
    assert text == ("server.1=127.0.0.1:2888:3888:participant\n"
                    "server.2=127.0.0.1:2889:3889:participant;127.0.0.1:2182\n"
                    "server.3=127.0.0.1:2890:3890:observer\n"
                    "version=0")


def test_config_text_hierarchical_has_groups_and_weights():
    text = _hier().to_config_text({s: f"h:{s}1:{s}2" for s in range(1, 6)})
    lines = text.split("\n")
    assert lines[-1] == "version=0" and "group.1=1:2:3" in lines and "group.2=4:5" in lines
    assert "weight.4=0" in lines and "weight.1=1" in lines
    with pytest.raises(ValueError, match="no address for server 5"):
        _hier().to_config_text({s: "h:1:2" for s in range(1, 5)})


@pytest.mark.parametrize("zxid, epoch, counter", [
    (0, 0, 0),
    (0x100000005, 1, 5),
    (-1, -1, 0xFFFFFFFF),                # arithmetic shift, as Java's >> 32
    (0x7FFFFFFF00000001, 0x7FFFFFFF, 1),
])
def test_zxid_utils(zxid, epoch, counter):
    assert zxid_epoch(zxid) == epoch and zxid_counter(zxid) == counter
    assert make_zxid(epoch, counter) == zxid


def test_make_zxid_masks_counter_and_wraps_to_signed_long():
    assert make_zxid(1, 0x1_0000_0002) == make_zxid(1, 2)
    assert make_zxid(0x80000000, 0) == -(2**63)


@pytest.mark.parametrize("a, b, match", [
    (Vote(1, 5, 1, 1), Vote(1, 5, 1, 1), True),
    (Vote(1, 5, 1, 1), Vote(1, 5, 2, 1), False),                   # LOOKING: the round too
    (Vote(1, 5, 1, 1, F), Vote(1, 5, 1, 1), True),
    (Vote(1, 5, 1, 1, F), Vote(1, 6, 1, 1), False),                # one LOOKING side: every field
    (Vote(1, 5, 1, 1, F), Vote(1, 9, 7, 1, LD), True),             # stale zxid/round ignored
    (Vote(1, 5, 1, 1, F), Vote(1, 5, 1, 2, LD), False),            # peerEpoch compared
    (Vote(1, 5, 1, 1, F, 2), Vote(1, 5, 1, 2, LD, 0), True),       # exactly one versioned: id only
    (Vote(1, 5, 1, 1, F, 2), Vote(1, 5, 1, 2, LD, 1), False),
    (Vote(1, 5, 1, 1, F, 2), Vote(2, 5, 1, 1, LD, 0), False),
])
def test_vote_matches_is_zookeeper_vote_equals(a, b, match):
    assert a.matches(b) is match and b.matches(a) is match


def test_vote_eq_stays_structural():
    assert Vote(1, 5, 1, 1, F) != Vote(1, 9, 7, 1, LD)
    with pytest.raises(AttributeError):
        Vote(1, 1, 1, 1).leader = 2  # frozen
