"""One test per behaviour of lookForLeader / WorkerReceiver (seed + spec §3)."""
from __future__ import annotations

import pytest

from node.fle import (
    FINALIZE_TIMER, NOTIFICATION_TIMER, PATH_OUT_OF_ELECTION, PATH_QUORUM,
    CancelTimer, ConnectAll, Decided, EventOut, FastLeaderElection, Send, SetTimer, StateChanged,
)
from zkrules.quorum import QuorumHierarchical, QuorumMaj
from zkrules.vote import LONG_MIN, Notification, ServerState, Vote, make_zxid

L, F, LD, O = ServerState.LOOKING, ServerState.FOLLOWING, ServerState.LEADING, ServerState.OBSERVING
Z1 = make_zxid(1, 10)


def core(sid=1, voters=(1, 2, 3), observers=(), protocol="3.8", **kw):
    return FastLeaderElection(sid, QuorumMaj(voters, observers), protocol=protocol, **kw)


def started(sid=1, zxid=Z1, epoch=1, **kw):
    c = core(sid, **kw)
    c.start_election(0, zxid, epoch)
    return c


def n(sid, state, leader, zxid=Z1, rnd=1, epoch=1, version=2):
    return Notification(sid, state, leader, zxid, rnd, epoch, version)


def sends(fx):
    return [e for e in fx if isinstance(e, Send)]


def of(fx, kind):
    return [e for e in fx if isinstance(e, kind)]


def ignored(fx):
    return [e.fields["reason"] for e in fx if isinstance(e, EventOut) and e.event == "notification_ignored"]


# -- lookForLeader entry ---------------------------------------------------------

def test_logical_clock_incremented_once_per_election():
    c = core()
    assert c.logical_clock == 0
    c.start_election(0, Z1, 1)
    assert c.logical_clock == 1
    c.on_notification(1, n(2, L, 2, rnd=1))
    c.on_notification(2, n(3, L, 3, rnd=1))
    assert c.logical_clock == 1
    c.start_election(3, Z1, 1)
    assert c.logical_clock == 2


def test_initial_vote_is_own_sid_last_zxid_current_epoch_and_election_started_event():
    c = core(2)
    fx = c.start_election(5, make_zxid(3, 7), 3)
    assert c.proposal == Vote(2, make_zxid(3, 7), 1, 3)
    ev = [e for e in of(fx, EventOut) if e.event == "election_started"][0]
    assert ev.fields == {"logical_clock": 1, "vote": {"leader": 2, "zxid": make_zxid(3, 7), "peer_epoch": 3},
                         "last_zxid": make_zxid(3, 7), "current_epoch": 3}
    assert c.current_vote == Vote(2, make_zxid(3, 7), -1, 3)  # startLeaderElection's vote


def test_non_voter_proposes_long_min_and_never_sends_to_itself():
    c = core(4, observers=(4,))
    fx = c.start_election(0, Z1, 1)
    assert c.proposal == Vote(LONG_MIN, LONG_MIN, 1, LONG_MIN)
    assert sorted(s.to for s in sends(fx)) == [1, 2, 3]
    assert all(s.leader == LONG_MIN and s.zxid == LONG_MIN and s.peer_epoch == LONG_MIN for s in sends(fx))


def test_send_notifications_to_every_voter_including_self():
    fx = core(2, voters=(1, 2, 3, 4, 5), observers=(6,)).start_election(0, Z1, 1)
    assert [s.to for s in sends(fx)] == [1, 2, 3, 4, 5]
    assert all(s.state == L and s.leader == 2 and s.round == 1 for s in sends(fx))
    assert of(fx, SetTimer) == [SetTimer(NOTIFICATION_TIMER, 200)]


def test_start_election_from_following_reports_state_change():
    c = started(1)
    c.on_notification(1, n(2, LD, 2))
    c.on_notification(1, n(3, F, 2))
    assert c.state == F
    fx = c.start_election(10, Z1, 1)
    assert of(fx, StateChanged) == [StateChanged(F, L)]


# -- notification timeout ---------------------------------------------------------

def test_notification_timeout_doubles_up_to_max():
    c = started(min_notification_interval=200, max_notification_interval=1000)
    delays = []
    for _ in range(6):
        fx = c.on_timer(0, NOTIFICATION_TIMER, have_delivered=True)
        delays += [t.delay_ms for t in of(fx, SetTimer)]
    assert delays == [400, 800, 1000, 1000, 1000, 1000]


def test_notification_timeout_default_caps_at_60s():
    c = started()
    for _ in range(12):
        fx = c.on_timer(0, NOTIFICATION_TIMER, have_delivered=True)
    assert of(fx, SetTimer) == [SetTimer(NOTIFICATION_TIMER, 60000)]


@pytest.mark.parametrize("have_delivered, resent, connect_all", [(True, 3, 0), (False, 0, 1)])
def test_timeout_resends_when_delivered_else_connects_all(have_delivered, resent, connect_all):
    fx = started().on_timer(0, NOTIFICATION_TIMER, have_delivered=have_delivered)
    assert len(sends(fx)) == resent
    assert len(of(fx, ConnectAll)) == connect_all


def test_any_notification_restarts_the_poll_timeout():
    c = started()
    c.on_timer(0, NOTIFICATION_TIMER, have_delivered=True)
    fx = c.on_notification(1, n(2, L, 2, zxid=0))  # a worse vote: nothing else happens
    assert of(fx, SetTimer) == [SetTimer(NOTIFICATION_TIMER, 400)]


def test_timer_not_armed_is_ignored():
    c = started()
    assert c.on_timer(0, FINALIZE_TIMER, have_delivered=True) == []
    c.on_notification(1, n(2, LD, 2))
    c.on_notification(1, n(3, F, 2))
    assert c.on_timer(0, NOTIFICATION_TIMER, have_delivered=True) == []  # cancelled by the decision


# -- LOOKING notifications ------------------------------------------------------------

def test_higher_round_clears_recvset_and_adopts_better_of_initial():
    c = started(1, zxid=make_zxid(1, 5))
    c.on_notification(1, n(3, L, 3, zxid=make_zxid(1, 9)))  # adopt 3 in round 1
    assert c.proposal.leader == 3 and 3 in c.recvset
    # round 4 with a vote worse than my proposal (3) but better than my initial vote (1)
    fx = c.on_notification(2, n(2, L, 2, zxid=make_zxid(1, 7), rnd=4))
    assert c.logical_clock == 4
    assert c.proposal == Vote(2, make_zxid(1, 7), 4, 1)
    assert set(c.recvset) == {2}
    assert [s.to for s in sends(fx)] == [1, 2, 3] and all(s.round == 4 and s.leader == 2 for s in sends(fx))


def test_higher_round_with_worse_vote_falls_back_to_initial_vote():
    c = started(1, zxid=make_zxid(1, 5))
    c.on_notification(1, n(3, L, 3, zxid=make_zxid(1, 9)))
    c.on_notification(2, n(2, L, 2, zxid=make_zxid(1, 1), rnd=4))
    assert c.proposal == Vote(1, make_zxid(1, 5), 4, 1)


def test_lower_round_looking_is_ignored_and_answered_with_proposal():
    c = started(1)
    c.on_notification(0, n(2, L, 2, rnd=5))  # now round 5, proposal 2
    fx = c.on_notification(1, n(3, L, 3, zxid=make_zxid(9, 9), rnd=2, epoch=9))
    assert sends(fx) == [Send(3, L, 2, Z1, 5, 1)]
    assert c.proposal.leader == 2 and 3 not in c.recvset
    assert "round below my logical clock" in ignored(fx)


@pytest.mark.parametrize("leader, zxid, epoch, adopted", [
    (2, Z1, 1, True),                    # same epoch+zxid, higher sid
    (3, make_zxid(1, 11), 1, True),      # higher zxid
    (3, make_zxid(0, 99), 2, True),      # higher peer epoch beats a higher zxid
    (3, make_zxid(1, 9), 1, False),      # lower zxid
    (3, make_zxid(2, 99), 0, False),     # lower peer epoch
])
def test_equal_round_adopts_only_a_better_vote_and_resends(leader, zxid, epoch, adopted):
    c = started(1)
    fx = c.on_notification(1, n(leader, L, leader, zxid=zxid, epoch=epoch))
    assert (c.proposal.leader == leader) is adopted
    assert len(sends(fx)) == (3 if adopted else 0)
    assert c.recvset[leader] == Vote(leader, zxid, 1, epoch)


def test_term_predicate_quorum_starts_finalize_wait_instead_of_deciding():
    c = started(1)
    c.on_notification(0, n(1, L, 1))  # loopback
    fx = c.on_notification(1, n(2, L, 1))
    assert c.finalizing and c.state == L
    assert CancelTimer(NOTIFICATION_TIMER) in fx and SetTimer(FINALIZE_TIMER, 200) in fx
    assert of(fx, Decided) == []


def _finalizing_core():
    c = started(3, zxid=make_zxid(1, 5))
    c.on_notification(0, n(3, L, 3, zxid=make_zxid(1, 5)))
    c.on_notification(1, n(1, L, 3, zxid=make_zxid(1, 5)))
    assert c.finalizing
    return c


def test_finalize_wait_consumes_non_beating_notification_and_restarts_quiet_period():
    c = _finalizing_core()
    fx = c.on_notification(50, n(2, L, 2, zxid=make_zxid(1, 5)))  # worse: consumed
    assert of(fx, SetTimer) == [SetTimer(FINALIZE_TIMER, 200)]
    assert 2 not in c.recvset and c.finalizing
    assert "consumed during finalize wait" in ignored(fx)


def test_finalize_wait_requeues_beating_notification_and_abandons_wait():
    c = _finalizing_core()
    fx = c.on_notification(50, n(2, L, 2, zxid=make_zxid(1, 9)))  # better: processed normally
    assert not c.finalizing and c.proposal.leader == 2
    assert CancelTimer(FINALIZE_TIMER) in fx and len(sends(fx)) == 3
    assert of(fx, SetTimer)[-1] == SetTimer(NOTIFICATION_TIMER, 200)
    assert c.on_timer(250, FINALIZE_TIMER, have_delivered=True) == []  # the cancelled wait no longer decides


@pytest.mark.parametrize("sid, leader, expected", [(3, 3, LD), (1, 3, F)])
def test_finalize_expiry_decides_by_quorum(sid, leader, expected):
    c = started(sid, zxid=Z1)
    c.on_notification(0, n(sid, L, sid))
    c.on_notification(1, n(3 if sid != 3 else 2, L, leader))
    c.on_notification(2, n(2 if sid != 2 else 1, L, leader))
    assert c.finalizing
    fx = c.on_timer(300, FINALIZE_TIMER, have_delivered=True)
    assert c.state == expected
    d = of(fx, Decided)[0]
    assert (d.vote.leader, d.path, d.round, d.duration_ms) == (leader, PATH_QUORUM, 1, 300.0)
    assert d.notifications_received == 3 and d.notifications_sent >= 3
    assert of(fx, StateChanged) == [StateChanged(L, expected)]
    assert c.current_vote.leader == leader


def test_observer_decides_observing_from_a_voter_quorum():
    c = core(4, observers=(4,))
    c.start_election(0, Z1, 1)
    c.on_notification(1, n(3, L, 3))
    c.on_notification(1, n(2, L, 3))
    assert c.finalizing
    c.on_timer(300, FINALIZE_TIMER, have_delivered=True)
    assert c.state == O and c.current_vote.leader == 3


@pytest.mark.parametrize("protocol, my_zxid, their_zxid, counted", [
    ("3.8", Z1, -1, False), ("3.8", -1, Z1, False), ("3.8", Z1, Z1, True),
    ("3.4", Z1, -1, True), ("3.4", -1, Z1, True),
])
def test_zxid_minus_one_is_ignored_in_3_8_only(protocol, my_zxid, their_zxid, counted):
    c = started(1, zxid=my_zxid, protocol=protocol)
    fx = c.on_notification(1, n(2, L, 2, zxid=their_zxid))
    assert (2 in c.recvset) is counted
    if not counted:
        assert any("ZK-261" in r for r in ignored(fx))


@pytest.mark.parametrize("protocol, counted", [("3.8", False), ("3.4", True)])
def test_proposed_leader_must_be_a_voter_in_3_8(protocol, counted):
    c = started(1, protocol=protocol)
    c.on_notification(1, n(2, L, 9))  # sid 9 is in no configuration
    assert (2 in c.recvset) is counted
    assert c.proposal.leader == 1  # an unknown sid has no weight: never adopted


def test_observing_notification_is_ignored():
    c = started(1, voters=(1, 2, 3))
    fx = c.on_notification(1, n(2, O, 3))
    assert 2 not in c.recvset and 2 not in c.outofelection
    assert "notification from an observer" in ignored(fx)


# -- WorkerReceiver replies -------------------------------------------------------------

def test_non_voter_sender_gets_current_vote_and_never_reaches_the_loop():
    c = started(1, observers=(4,))
    fx = c.on_notification(1, n(4, L, 4, rnd=7))
    assert sends(fx) == [Send(4, L, 1, Z1, 1, 1)]  # currentVote fields, my logical clock, my state
    assert 4 not in c.recvset and c.logical_clock == 1


def test_echoes_with_non_voters_are_counted_apart_in_the_decision():
    """A LOOKING voter and an OBSERVING observer answer each other at once, as
    ZooKeeper does: the decision says how many of its notifications were that."""
    c = started(1, observers=(4,))
    for _ in range(5):
        c.on_notification(1, n(4, O, 3))
    c.on_notification(2, n(2, L, 3))
    fx = c.on_notification(3, n(3, L, 3))
    fx += c.on_timer(500, FINALIZE_TIMER, have_delivered=True)
    d = of(fx, Decided)[0]
    assert d.vote.leader == 3 and d.nonvoter_echoes == 5
    assert d.notifications_received == 7 and d.notifications_sent >= 5 + 3


def test_an_observer_counts_its_answers_to_a_voter_a_round_behind_as_echoes():
    """The observer's half of that exchange: a voter still LOOKING in an older
    round answers each observer notification with its current vote at once,
    and the observer, LOOKING in a newer round, answers a lagging LOOKING
    sender back, so the two trade at machine speed until the voter decides.
    A voter's own notifications in the observer's round are no echo."""
    c = started(4, observers=(4,))
    c.on_notification(1, n(1, L, 1, rnd=3))                 # the ensemble is in round 3
    for _ in range(5):
        fx = c.on_notification(2, n(2, L, 1, rnd=2))        # voter 2 is still in round 2
        assert [s.to for s in sends(fx)] == [2] and sends(fx)[0].round == 3
    fx = c.on_notification(3, n(2, F, 1, rnd=3)) + c.on_notification(3, n(1, LD, 1, rnd=3))
    d = of(fx, Decided)[0]
    assert d.vote.leader == 1 and d.nonvoter_echoes == 5
    assert d.notifications_received == 8 and d.notifications_sent >= 5


def test_a_voter_answering_a_voter_a_round_behind_counts_no_echo():
    c = started(1)
    c.on_notification(1, n(2, L, 3, rnd=3))
    for _ in range(3):
        assert [s.to for s in sends(c.on_notification(2, n(3, L, 3, rnd=2)))] == [3]
    fx = c.on_notification(3, n(3, L, 3, rnd=3))
    fx += c.on_timer(500, FINALIZE_TIMER, have_delivered=True)
    assert of(fx, Decided)[0].nonvoter_echoes == 0

def test_not_looking_answers_looking_sender_with_current_vote_and_its_round():
    c = started(1)
    c.on_notification(1, n(2, LD, 2, rnd=1))
    c.on_notification(1, n(3, F, 2, rnd=1))
    assert c.state == F
    c.update_election_vote(5)
    fx = c.on_notification(2, n(3, L, 3, rnd=9))
    assert sends(fx) == [Send(3, F, 2, Z1, 1, 5)]


@pytest.mark.parametrize("version, epoch", [(0, 1), (1, 5)])
def test_3_4_answers_version_0_sender_with_bc_vote(version, epoch):
    c = started(1, protocol="3.4")
    c.on_notification(1, n(2, LD, 2, version=1))
    c.on_notification(1, n(3, F, 2, version=1))
    assert c.state == F
    c.update_election_vote(5)
    fx = c.on_notification(2, n(3, L, 3, rnd=9, version=version))
    assert sends(fx) == [Send(3, F, 2, Z1, 1, epoch)]


def test_not_looking_ignores_non_looking_senders():
    c = started(1)
    c.on_notification(1, n(2, LD, 2))
    c.on_notification(1, n(3, F, 2))
    assert sends(c.on_notification(2, n(3, F, 2))) == []


def test_looking_sender_with_current_round_gets_no_reply():
    c = started(1)
    assert sends(c.on_notification(1, n(2, L, 1))) == []


# -- FOLLOWING / LEADING notifications --------------------------------------------------

def test_same_round_following_quorum_with_leader_leading_decides_out_of_election():
    c = started(1, voters=(1, 2, 3, 4, 5))
    assert of(c.on_notification(1, n(2, F, 3)), Decided) == []
    fx = c.on_notification(1, n(3, LD, 3))
    assert of(fx, Decided) == []  # {2,3} is not a quorum of 5
    fx = c.on_notification(1, n(4, F, 3))
    d = of(fx, Decided)[0]
    assert d.path == PATH_OUT_OF_ELECTION and d.vote.leader == 3 and c.state == F


def test_quorum_without_the_leaders_own_leading_vote_does_not_decide():
    c = started(1, voters=(1, 2, 3, 4, 5))
    for s in (2, 4, 5):
        fx = c.on_notification(1, n(s, F, 3, rnd=7))
    assert of(fx, Decided) == [] and c.state == L
    fx = c.on_notification(1, n(3, LD, 3, rnd=7))
    assert of(fx, Decided)[0].vote.leader == 3


def test_out_of_election_join_sets_logical_clock_to_their_round_even_downwards():
    c = started(1)
    c.on_notification(0, n(2, L, 2, rnd=9))
    assert c.logical_clock == 9
    c.on_notification(1, n(2, LD, 2, rnd=4))
    fx = c.on_notification(1, n(3, F, 2, rnd=4))
    assert of(fx, Decided)[0].round == 4 and c.logical_clock == 4


def test_out_of_election_vote_is_kept_for_every_round():
    c = started(1)
    c.on_notification(1, n(2, LD, 2, rnd=3))
    assert set(c.outofelection) == {2} and 2 not in c.recvset
    c.on_notification(1, n(3, F, 3, rnd=1))
    assert set(c.outofelection) == {2, 3} and c.recvset[3].state == F


def test_check_leader_requires_my_round_when_i_am_named_leader():
    """ZK-1514: FOLLOWING votes for me from an old round must not make me lead."""
    c = started(1)
    c.start_election(10, Z1, 1)  # second run: logical clock 2
    c.on_notification(11, n(2, F, 1, rnd=1))
    fx = c.on_notification(11, n(3, F, 1, rnd=1))
    assert of(fx, Decided) == [] and c.state == L


@pytest.mark.parametrize("protocol, decides", [("3.8", True), ("3.4", False)])
def test_same_round_ooe_uses_state_aware_recvset_in_3_8_only(protocol, decides):
    """ZK-3537: 3.8 keeps n.state in recvset and checks the leader there.

    The follower already refreshed its peerEpoch; the leader's notification
    still carries the old one. 3.8's recvset votes (version 0) against a v2
    target compare the leader only; 3.4 stores LOOKING-state votes, compares
    every field, and its outofelection compares leader and peerEpoch.
    """
    c = started(1, protocol=protocol)
    assert of(c.on_notification(1, n(2, F, 3, epoch=2, version=2)), Decided) == []
    fx = c.on_notification(1, n(3, LD, 3, epoch=1, version=2))
    assert bool(of(fx, Decided)) is decides
    assert c.state == (F if decides else L)


def test_update_election_vote_replaces_only_peer_epoch():
    c = started(1)
    c.on_notification(1, n(2, LD, 2, zxid=make_zxid(1, 3), rnd=1))
    c.on_notification(1, n(3, F, 2, zxid=make_zxid(1, 3), rnd=1))
    before = c.current_vote
    c.update_election_vote(2)
    after = c.current_vote
    assert (after.leader, after.zxid, after.round, after.peer_epoch) == (before.leader, before.zxid, before.round, 2)


def test_zero_weight_server_is_never_adopted():
    qv = QuorumHierarchical([1, 2, 3], {1: [1, 2, 3]}, {3: 0})
    c = FastLeaderElection(1, qv)
    c.start_election(0, Z1, 1)
    c.on_notification(1, n(3, L, 3, zxid=make_zxid(5, 5), epoch=5))
    assert c.proposal.leader == 1


def test_notification_before_start_is_ignored_without_crash():
    c = core()
    fx = c.on_notification(0, n(2, L, 2))
    assert sends(fx) == [] and ignored(fx) == ["election not started yet"]


def test_bad_construction_parameters_raise_clear_errors():
    with pytest.raises(ValueError, match="protocol"):
        core(protocol="3.5")
    with pytest.raises(ValueError, match="minNotificationInterval"):
        core(min_notification_interval=0)
    with pytest.raises(ValueError, match="finalizeWait"):
        core(finalize_wait=0)


def test_unknown_state_from_a_voter_is_dropped_without_reply():
    c = started(1)
    fx = c.on_notification(1, Notification(2, 7, 2, Z1, 1, 1))  # type: ignore[arg-type]
    assert sends(fx) == [] and ignored(fx) == ["unknown state 7"] and 2 not in c.recvset
