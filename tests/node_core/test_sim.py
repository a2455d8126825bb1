"""The core in the simulator: whole elections, faults, Zab-lite consequences."""
from __future__ import annotations

import random

import pytest

from node.fle import PATH_OUT_OF_ELECTION, PATH_QUORUM
from node.sim import SafetyViolation, Simulator
from zkrules.quorum import QuorumHierarchical, QuorumMaj
from zkrules.vote import ServerState, make_zxid

L, F, LD, O = ServerState.LOOKING, ServerState.FOLLOWING, ServerState.LEADING, ServerState.OBSERVING


def varied_peers(n, seed):
    rng = random.Random(seed)
    peers = {}
    for sid in range(1, n + 1):
        epoch = rng.randint(1, 3)
        peers[sid] = (make_zxid(epoch, rng.randint(0, 5)), epoch)
    return peers


def safe(sim):
    sim.check_safety(same_round_agreement=True)


@pytest.mark.parametrize("n", [3, 5, 7])
@pytest.mark.parametrize("seed", range(4))
def test_sim_elects_exactly_one_leader_holding_the_max_vote(n, seed):
    peers = varied_peers(n, seed)
    sim = Simulator(QuorumMaj(peers), peers, seed=seed)
    sim.start()
    assert sim.run_until_stable(15_000, check=safe), sim.trace[-10:]
    leader = sim.stable()
    assert sim.leaders() == [leader]
    best = max((epoch, zxid, sid) for sid, (zxid, epoch) in peers.items())
    assert leader == best[2]
    # every peer decided once, in round 1, for the same leader
    assert {(d.leader, d.round) for node in sim.nodes.values() for d in node.decisions} == {(leader, 1)}
    est = sim.established[-1]
    assert est.leader == leader and est.epoch == max(e for _, e in peers.values()) + 1
    assert all(node.current_epoch == est.epoch for node in sim.nodes.values())
    assert all(node.core.current_vote.peer_epoch == est.epoch for node in sim.nodes.values())


@pytest.mark.parametrize("n", [3, 5, 7])
@pytest.mark.parametrize("seed", range(3))
def test_sim_lossy_slow_network_still_ends_with_one_leader_ahead_of_its_electors(n, seed):
    peers = varied_peers(n, 100 + seed)
    sim = Simulator(QuorumMaj(peers), peers, seed=seed, drop_rate=0.2, max_delay_ms=300, reorder=True)
    sim.start()
    assert sim.run_until_stable(120_000, check=lambda s: s.check_safety())
    leader = sim.stable()
    assert sim.leaders() == [leader]
    assert any(d.acked for d in sim.nodes[leader].decisions) or sim.nodes[leader].decisions[-1].path != PATH_QUORUM
    assert all(n.core.current_vote.leader == leader for n in sim.nodes.values())


def test_sim_protocol_3_4_elects_the_same_leader():
    peers = varied_peers(5, 11)
    best = max((e, z, s) for s, (z, e) in peers.items())[2]
    for protocol in ("3.8", "3.4"):
        sim = Simulator(QuorumMaj(peers), peers, seed=3, protocol=protocol)
        sim.start()
        assert sim.run_until_stable(15_000, check=safe)
        assert sim.stable() == best


def test_sim_leader_crash_reelects_with_higher_epoch_and_restart_joins_out_of_election():
    peers = {s: (make_zxid(1, s), 1) for s in (1, 2, 3, 4, 5)}
    sim = Simulator(QuorumMaj(peers), peers, seed=1, txn_interval_ms=100)
    sim.start()
    assert sim.run_until_stable(10_000, check=safe)
    old = sim.stable()
    sim.run_for(1_000)
    committed = sim.committed[-1]
    sim.crash(old)
    assert sim.run_until_stable(20_000, check=lambda s: s.check_safety())
    new = sim.stable()
    assert new != old and sim.established[-1].epoch == sim.established[-2].epoch + 1
    assert sim.nodes[new].last_zxid >= committed  # no committed txn lost
    sim.restart(old)
    assert sim.run_until(sim.now_ms + 10_000, stop=lambda s: s.nodes[old].synced, check=lambda s: s.check_safety())
    assert sim.nodes[old].state == F and sim.stable() == new
    assert sim.nodes[old].decisions[-1].path == PATH_OUT_OF_ELECTION


def test_sim_isolated_leader_steps_down_after_sync_limit_and_rejoins_after_heal():
    peers = {s: (make_zxid(1, 0), 1) for s in (1, 2, 3)}
    sim = Simulator(QuorumMaj(peers), peers, seed=2, sync_limit_ms=1000)
    sim.start()
    assert sim.run_until_stable(10_000)
    assert sim.stable() == 3
    t0 = sim.now_ms
    sim.partition([[3], [1, 2]])
    assert sim.run_until(t0 + 5_000, stop=lambda s: s.nodes[3].state == L, check=lambda s: s.check_safety())
    assert 1000 <= sim.now_ms - t0 <= 1000 + 2 * sim.tick_ms
    assert sim.run_until_stable(10_000, check=lambda s: s.check_safety())
    assert sim.stable() == 2
    sim.heal()
    assert sim.run_until(sim.now_ms + 70_000, stop=lambda s: s.nodes[3].synced, check=lambda s: s.check_safety())
    assert sim.nodes[3].state == F and sim.stable() == 2


def test_sim_leader_without_followers_returns_to_looking_after_init_limit():
    peers = {s: (make_zxid(1, 0), 1) for s in (1, 2, 3)}
    sim = Simulator(QuorumMaj(peers), peers, seed=2, init_limit_ms=2000)
    sim.start()
    # stop 3's followers from reaching it right after they decide
    assert sim.run_until(5_000, stop=lambda s: s.nodes[3].state == LD)
    sim.partition([[3], [1, 2]])
    t0 = sim.nodes[3].decided_at
    assert sim.run_until(t0 + 4_000, stop=lambda s: s.nodes[3].state == L)
    assert sim.nodes[3].established_epoch is None and 2000 <= sim.now_ms - t0 <= 2000 + 2 * sim.tick_ms
    assert sim.established == [] or all(e.leader != 3 for e in sim.established)


def test_sim_fle_zero_weight_no_sid_above_2_ever_leads():
    """FLEZeroWeightTest (ZK-491): 9 peers, 3 groups, weights 0 for sids 3-8."""
    qv = QuorumHierarchical(range(9), {1: [0, 1, 2], 2: [3, 4, 5], 3: [6, 7, 8]}, {s: 0 for s in range(3, 9)})
    peers = {s: (make_zxid(1, 10 if s > 2 else s), 1) for s in range(9)}  # the weightless hold the highest zxids

    def no_weightless_leader(sim):
        assert all(s <= 2 for s in sim.leaders())

    sim = Simulator(qv, peers, seed=5)
    sim.start()
    assert sim.run_until_stable(30_000, check=no_weightless_leader)
    assert sim.stable() == 2


def test_sim_observer_is_never_counted():
    """ObserverLETest (ZK-1294): with its followers gone, a leader abdicates despite an observer."""
    qv = QuorumMaj([1, 2, 3], observers=[4])
    peers = {s: (make_zxid(1, s), 1) for s in (1, 2, 3, 4)}
    sim = Simulator(qv, peers, seed=4)
    sim.start()
    assert sim.run_until_stable(30_000, check=safe)
    assert sim.stable() == 3 and sim.nodes[4].state == O and sim.nodes[4].synced
    assert all(4 not in e.quorum or qv.contains_quorum(e.quorum - {4}) for e in sim.established)
    sim.crash(1)
    sim.crash(2)
    t0 = sim.now_ms
    assert sim.run_until(t0 + 5_000, stop=lambda s: s.nodes[3].state == L)
    assert sim.now_ms - t0 <= sim.sync_limit_ms + 2 * sim.tick_ms
    sim.run_for(10_000)
    assert sim.leaders() == [] and sim.nodes[4].state != O


def test_sim_restart_after_first_election_all_finish():
    """FLERestartTest (ZK-453)."""
    peers = {s: (make_zxid(1, s), 1) for s in (1, 2, 3)}
    sim = Simulator(QuorumMaj(peers), peers, seed=8)
    sim.start()
    assert sim.run_until_stable(10_000)
    sim.restart(1)
    assert sim.nodes[1].core.logical_clock == 1  # a fresh core
    assert sim.run_until(sim.now_ms + 10_000, stop=lambda s: s.nodes[1].synced and s.stable() is not None)
    assert sim.stable() == 3


def test_sim_same_seed_same_history():
    def history(seed):
        peers = varied_peers(5, 1)
        sim = Simulator(QuorumMaj(peers), peers, seed=seed, max_delay_ms=300, drop_rate=0.1)
        sim.start()
        sim.run_for(20_000)
        return [(t, sid, what) for t, sid, what, _ in sim.trace]

    assert history(7) == history(7)
    assert history(7) != history(8)


def test_check_safety_reports_two_leaders_in_one_epoch():
    peers = {s: (0, 1) for s in (1, 2, 3)}
    sim = Simulator(QuorumMaj(peers), peers)
    from node.sim import Established
    sim.established += [Established(1, 2, 5, frozenset({1, 2}), 0), Established(2, 3, 5, frozenset({2, 3}), 0)]
    with pytest.raises(SafetyViolation, match="epoch 5 established by 2 and 3"):
        sim.check_safety()


def test_sim_slow_messages_split_a_round_but_only_one_leader_establishes():
    """FLE alone can finish one round with two leaders when a vote is slower than
    finalizeWait; the epoch step (a quorum must follow) keeps that safe."""
    split = 0
    for seed in range(60):
        peers = {s: (make_zxid(1, 0), 1) for s in (1, 2, 3)}
        sim = Simulator(QuorumMaj(peers), peers, seed=seed, max_delay_ms=600)
        sim.start()
        assert sim.run_until_stable(30_000, check=lambda s: s.check_safety())
        try:
            sim.check_safety(same_round_agreement=True)
        except SafetyViolation:
            split += 1
            leaders_round_1 = {d.leader for n in sim.nodes.values() for d in n.decisions
                               if d.round == 1 and d.path == PATH_QUORUM}
            assert len(leaders_round_1) == 2 and len({e.epoch for e in sim.established}) == len(sim.established)
    assert split > 0
