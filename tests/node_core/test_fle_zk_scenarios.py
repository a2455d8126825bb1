"""ZooKeeper's own election tests (spec §7), expressed against the pure core."""
from __future__ import annotations

import pytest

from node.fle import FINALIZE_TIMER, PATH_OUT_OF_ELECTION, PATH_QUORUM, Decided, FastLeaderElection, Send
from zkrules.quorum import QuorumMaj
from zkrules.vote import Notification, ServerState, Vote, make_zxid

L, F, LD, O = ServerState.LOOKING, ServerState.FOLLOWING, ServerState.LEADING, ServerState.OBSERVING


def n(sid, state, leader, zxid=0, rnd=1, epoch=1, version=2):
    return Notification(sid, state, leader, zxid, rnd, epoch, version)


def decided(fx):
    return [e for e in fx if isinstance(e, Decided)]


def pump(cores, effects, now=0.0, drop=lambda s, m: False):
    """Deliver Sends between cores in FIFO order until quiet; fire finalize timers at the end.

    Returns every effect produced on the way, tagged with the producing sid.
    """
    queue = [(sid, e) for sid, fx in effects for e in fx if isinstance(e, Send)]
    out = []
    while queue:
        src, m = queue.pop(0)
        if m.to not in cores or drop(src, m):
            continue
        note = Notification(src, m.state, m.leader, m.zxid, m.round, m.peer_epoch, 2)
        fx = cores[m.to].on_notification(now, note)
        out += [(m.to, e) for e in fx]
        queue += [(m.to, e) for e in fx if isinstance(e, Send)]
    for sid, c in cores.items():
        if c.finalizing:
            out += [(sid, e) for e in c.on_timer(now + 300, FINALIZE_TIMER, have_delivered=True)]
    return out


def test_fle_join_third_peer_follows_and_never_leads():
    """FLETest.testJoin (ZK-975): 2 of 3 formed an ensemble, the 3rd starts."""
    c = FastLeaderElection(3, QuorumMaj([1, 2, 3]))
    c.start_election(0, make_zxid(1, 50), 1)  # the newcomer even has the highest zxid
    c.on_notification(1, n(1, F, 2, zxid=make_zxid(1, 5), rnd=1, epoch=2))
    fx = c.on_notification(2, n(2, LD, 2, zxid=make_zxid(1, 5), rnd=1, epoch=2))
    assert c.state == F and decided(fx)[0].vote.leader == 2


def test_fle_join_inconsistent_ensemble():
    """FLETest.testJoinInconsistentEnsemble (ZK-1732): one vote has zxid+100, round+100."""
    c = FastLeaderElection(3, QuorumMaj([1, 2, 3]))
    c.start_election(0, make_zxid(1, 1), 1)
    c.on_notification(1, n(1, F, 2, zxid=make_zxid(1, 105), rnd=101, epoch=2))
    fx = c.on_notification(2, n(2, LD, 2, zxid=make_zxid(1, 5), rnd=1, epoch=2))
    assert c.state == F and decided(fx)[0].path == PATH_OUT_OF_ELECTION


def test_fle_backward_election_round():
    """FLEBackwardElectionRoundTest (ZK-1514): a rerun must not lead on stale FOLLOWING votes."""
    c = FastLeaderElection(0, QuorumMaj([0, 1, 2]))
    c.start_election(0, 0, 0)
    c.on_notification(1, n(1, F, 0, zxid=0, rnd=1, epoch=1))
    fx = c.on_notification(1, n(2, F, 0, zxid=0, rnd=1, epoch=1))
    assert c.state == LD and decided(fx)  # first run: my round, my votes
    c.start_election(10, 0, 0)  # the leader gave up (initLimit) and reruns: round 2
    c.on_notification(11, n(1, F, 0, zxid=0, rnd=1, epoch=1))
    fx = c.on_notification(11, n(2, F, 0, zxid=0, rnd=1, epoch=1))
    assert c.state == L and not decided(fx)


def test_fle_lost_message():
    """FLELostMessageTest (ZK-480): a peer whose reply got lost then says FOLLOWING me."""
    c = FastLeaderElection(1, QuorumMaj([0, 1, 2]))
    c.start_election(0, 0, 0)
    c.on_notification(0, n(1, L, 1, zxid=0, rnd=1, epoch=0))  # my own loopback
    c.on_notification(1, n(0, L, 0, zxid=0, rnd=1, epoch=0))
    fx = c.on_notification(2, n(0, F, 1, zxid=0, rnd=1, epoch=0))
    assert c.state == LD and decided(fx)[0].vote.leader == 1


def _ooe_core(sid=1, voters=(1, 2, 3, 4, 5)):
    c = FastLeaderElection(sid, QuorumMaj(voters))
    c.start_election(0, 0, 1)
    return c


@pytest.mark.parametrize("votes, target, quorum", [
    # mixed zxid and round among FOLLOWING votes still agree (leader + peerEpoch)
    ({2: Vote(3, 0x100, 1, 1, F, 2), 4: Vote(3, 0x200, 2, 1, F, 2), 3: Vote(3, 0x300, 3, 1, LD, 2)},
     Vote(3, 0x300, 3, 1, LD, 2), True),
    # a different peerEpoch splits them
    ({2: Vote(3, 0x100, 1, 2, F, 2), 4: Vote(3, 0x200, 2, 1, F, 2), 3: Vote(3, 0x300, 3, 1, LD, 2)},
     Vote(3, 0x300, 3, 1, LD, 2), False),
    # ...unless exactly one side is versioned (ZK-1805): leader only
    ({2: Vote(3, 0x100, 1, 2, F, 0), 4: Vote(3, 0x200, 2, 5, F, 0), 3: Vote(3, 0x300, 3, 1, LD, 0)},
     Vote(3, 0x300, 3, 1, LD, 2), True),
    # LOOKING votes must agree on every field
    ({2: Vote(3, 0x100, 1, 1), 4: Vote(3, 0x100, 2, 1), 3: Vote(3, 0x100, 1, 1)}, Vote(3, 0x100, 1, 1), False),
    ({2: Vote(3, 0x100, 1, 1), 4: Vote(3, 0x100, 1, 1), 3: Vote(3, 0x100, 1, 1)}, Vote(3, 0x100, 1, 1), True),
    # a non-voter's vote is not counted
    ({2: Vote(3, 0, 1, 1, F), 9: Vote(3, 0, 1, 1, F), 3: Vote(3, 0, 1, 1, LD)}, Vote(3, 0, 1, 1, LD), False),
])
def test_fle_out_of_election_tracker(votes, target, quorum):
    """FLEOutOfElectionTest (ZK-1818) / FLEDontCareTest (ZK-1817)."""
    assert _ooe_core().term_predicate(votes, target) is quorum


@pytest.mark.parametrize("votes, leader, rnd, ok", [
    ({3: Vote(3, 0, 1, 1, LD)}, 3, 1, True),
    ({3: Vote(3, 0, 1, 1, F)}, 3, 1, False),   # the leader does not say LEADING
    ({}, 3, 1, False),                          # nothing from the leader
    ({}, 1, 1, True),                           # me, in my round
    ({}, 1, 0, False),                          # me, in another round (ZK-1514)
])
def test_fle_dont_care_check_leader(votes, leader, rnd, ok):
    assert _ooe_core().check_leader(votes, leader, rnd) is ok


def test_fle_out_of_election_one_real_four_fake_voters():
    """The black-box form: 4 fakes report FOLLOWING/LEADING with mixed zxid/round/version."""
    c = _ooe_core()
    c.on_notification(1, n(2, F, 5, zxid=0x10, rnd=3, epoch=4, version=0))
    c.on_notification(1, n(3, F, 5, zxid=0x20, rnd=4, epoch=4, version=2))
    assert c.state == L
    fx = c.on_notification(1, n(5, LD, 5, zxid=0x30, rnd=5, epoch=4, version=2))
    assert c.state == F and decided(fx)[0].vote.leader == 5 and c.logical_clock == 5


@pytest.mark.parametrize("new, cur, wins", [
    ((2, 0x10, 1), (1, 0x10, 1), True),    # id breaks a tie
    ((1, 0x10, 1), (2, 0x10, 1), False),
    ((1, 0x11, 1), (2, 0x10, 1), True),    # zxid before id
    ((2, 0x10, 1), (1, 0x11, 1), False),
    ((1, 0x01, 2), (2, 0x99, 1), True),    # peer epoch before zxid (ZK-1419)
    ((2, 0x99, 1), (1, 0x01, 2), False),
    ((2, 0x10, 1), (2, 0x10, 1), False),   # equal: no change
])
def test_fle_predicate_total_order(new, cur, wins):
    """FLEPredicateTest (ZK-1419)."""
    c = FastLeaderElection(1, QuorumMaj([1, 2, 3]))
    (nid, nz, ne), (cid, cz, ce) = new, cur
    assert c.total_order_predicate(nid, nz, ne, cid, cz, ce) is wins


def test_fle_new_epoch_fresh_peer_adopts_higher_round_better_vote():
    """FLENewEpochTest (ZK-275): 1 and 2 elected, 2 left, 1 reruns at a higher round, fresh 0 joins."""
    qv = QuorumMaj([0, 1, 2])
    one = FastLeaderElection(1, qv)
    one.start_election(0, make_zxid(1, 8), 1)
    one.start_election(1, make_zxid(1, 8), 1)
    one.start_election(2, make_zxid(1, 8), 1)  # round 3 now
    zero = FastLeaderElection(0, qv)
    cores = {0: zero, 1: one}
    fx0 = zero.start_election(3, make_zxid(1, 2), 1)
    fx1 = one.on_timer(4, "notification", have_delivered=True)
    out = pump(cores, [(0, fx0), (1, fx1)], now=5)
    assert zero.logical_clock == 3 and one.logical_clock == 3
    assert [type(e) for _, e in out if isinstance(e, Decided)] == [Decided, Decided]
    assert zero.state == F and one.state == LD
    assert zero.current_vote.leader == 1 and one.current_vote.leader == 1


def test_fle_three_cores_elect_highest_in_memory():
    """FLETest.testSingleElection-like: three cores, lossless FIFO delivery."""
    qv = QuorumMaj([1, 2, 3])
    cores = {s: FastLeaderElection(s, qv) for s in (1, 2, 3)}
    zx = {1: make_zxid(2, 5), 2: make_zxid(2, 9), 3: make_zxid(1, 99)}
    fx = [(s, c.start_election(0, zx[s], 2 if s < 3 else 1)) for s, c in cores.items()]
    out = pump(cores, fx)
    assert {s: c.state for s, c in cores.items()} == {1: F, 2: LD, 3: F}
    assert {e.path for _, e in out if isinstance(e, Decided)} == {PATH_QUORUM}


def test_observer_le_observer_votes_for_nobody_and_ends_observing():
    """ObserverLETest-ish: voters never count the observer; it ends OBSERVING."""
    qv = QuorumMaj([1, 2, 3], observers=[4])
    cores = {s: FastLeaderElection(s, qv) for s in (1, 2, 3, 4)}
    fx = [(s, c.start_election(0, make_zxid(1, s), 1)) for s, c in cores.items()]
    pump(cores, fx)
    assert cores[3].state == LD and cores[4].state == L  # voters answered with their startup votes
    out = pump(cores, [(4, cores[4].on_timer(500, "notification", have_delivered=True))], now=500)
    assert cores[4].state == O and cores[4].current_vote.leader == 3
    assert [e.path for _, e in out if isinstance(e, Decided)] == [PATH_OUT_OF_ELECTION]
    assert cores[3].state == LD
    assert all(4 not in cores[s].recvset for s in (1, 2, 3))
