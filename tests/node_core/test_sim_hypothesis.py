"""Random schedules in the simulator: safety after every step, liveness after healing."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.sim import Simulator
from zkrules.quorum import QuorumMaj
from zkrules.vote import make_zxid

LIVENESS_BOUND_MS = 60_000  # virtual; max notification interval is 6.4 s here

fault = st.one_of(
    st.tuples(st.just("partition"), st.randoms(use_true_random=False)),
    st.tuples(st.just("crash"), st.integers(0, 6)),
    st.tuples(st.just("restart"), st.integers(0, 6)),
    st.tuples(st.just("drops"), st.sampled_from([0.0, 0.1, 0.3, 0.6])),
    st.tuples(st.just("delay"), st.sampled_from([20.0, 150.0, 400.0, 1500.0])),
    st.tuples(st.just("heal"), st.none()),
)


@st.composite
def schedules(draw):
    n = draw(st.sampled_from([3, 5, 7]))
    epochs = {sid: draw(st.integers(0, 3)) for sid in range(1, n + 1)}
    # a state a real ensemble can be in: some quorum accepted the highest epoch
    quorum = draw(st.permutations(sorted(epochs)))[: n // 2 + 1]
    top = max(epochs.values())
    peers = {}
    for sid, epoch in epochs.items():
        peers[sid] = (make_zxid(epoch, draw(st.integers(0, 4))), epoch, top if sid in quorum else epoch)
    steps = draw(st.lists(st.tuples(fault, st.integers(0, 4000)), min_size=1, max_size=8))
    observers = draw(st.sampled_from([0, 0, 1]))
    for sid in range(n + 1, n + 1 + observers):
        peers[sid] = (make_zxid(top, 0), top)
    return dict(
        voters=list(range(1, n + 1)),
        peers=peers,
        seed=draw(st.integers(0, 2**32 - 1)),
        protocol=draw(st.sampled_from(["3.8", "3.8", "3.4"])),
        reorder=draw(st.booleans()),
        txn=draw(st.sampled_from([0.0, 150.0])),
        clean_ms=draw(st.integers(0, 3000)),
        steps=steps,
    )


def _apply(sim: Simulator, sids: list[int], f) -> None:
    kind, arg = f
    if kind == "partition":
        shuffled = sids[:]
        arg.shuffle(shuffled)
        cut = arg.randint(1, len(shuffled) - 1)
        sim.partition([shuffled[:cut], shuffled[cut:]])
    elif kind == "crash":
        sim.crash(sids[arg % len(sids)])
    elif kind == "restart":
        sim.restart(sids[arg % len(sids)])
    elif kind == "drops":
        sim.drop_rate = arg
    elif kind == "delay":
        sim.max_delay_ms = arg
    else:
        sim.heal()


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules())
def test_random_schedules_keep_safety_and_recover_after_healing(s):
    peers = s["peers"]
    sids = sorted(peers)
    sim = Simulator(QuorumMaj(s["voters"], [x for x in sids if x not in s["voters"]]), peers, seed=s["seed"], protocol=s["protocol"], reorder=s["reorder"],
                    max_delay_ms=50.0, txn_interval_ms=s["txn"], max_notification_interval=6400)
    sim.start()
    # fault-free start, every message well within finalizeWait: one round, one leader
    sim.run_for(s["clean_ms"], check=lambda x: x.check_safety(same_round_agreement=True))
    strict = lambda x: x.check_safety()  # noqa: E731
    for f, run_ms in s["steps"]:
        _apply(sim, sids, f)
        sim.run_for(run_ms, check=strict)
    # heal everything and restore a sane network
    sim.heal()
    sim.drop_rate, sim.max_delay_ms = 0.0, 50.0
    for sid in sids:
        if not sim.nodes[sid].alive:
            sim.restart(sid)
    committed = list(sim.committed)
    assert sim.run_until_stable(LIVENESS_BOUND_MS, check=strict), (
        f"no stable leader {LIVENESS_BOUND_MS} ms after healing: "
        f"{[(n.sid, n.state.name, n.core.logical_clock, n.core.current_vote.leader) for n in sim.nodes.values()]}")
    leader = sim.stable()
    assert sim.leaders() == [leader]
    # the leader holds every txn a quorum committed before the heal
    if committed:
        assert sim.nodes[leader].last_zxid >= max(committed)
