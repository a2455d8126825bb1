"""election_cost: rounds, notifications and duration per election, against the plan's bounds."""

from __future__ import annotations

from chaos.invariants import check_all, election_cost
from chaos.invariants.cost import judged_costs, p99
from chaos.report.synth import JournalBuilder

BOUNDS = {"max_rounds": 2, "max_notifications": 30, "max_ms": 1500.0}


def formed() -> JournalBuilder:
    b = JournalBuilder(3)
    b.rec("run_started", seed=7, command="chaos run plans/leader_kill.yaml")
    b.start()
    b.election(3, b.voters)
    b.advance(1.0)
    return b


def election(b: JournalBuilder, sid: int, rounds=(2,), *, received: int = 3, sent: int | None = None,
             duration_ms: float = 300.0, path: str = "quorum", log_sends: bool = True,
             extra: dict | None = None) -> tuple[int, int]:
    start = b.ev(sid, "election_started", logical_clock=rounds[0], vote={"leader": sid, "zxid": 0, "peer_epoch": 1},
                 last_zxid=0, current_epoch=1)
    n = 0
    for rnd in rounds:
        for to in b.voters:
            if log_sends:
                b.ev(sid, "notification_sent", to=to, state="LOOKING", leader=sid, zxid=0, round=rnd, peer_epoch=1)
            n += 1
    b.advance(duration_ms / 1000.0)
    fin = b.ev(sid, "election_finished", leader=3, zxid=0, peer_epoch=1, round=rounds[-1], duration_ms=duration_ms,
               path=path, state="FOLLOWING", notifications_sent=n if sent is None else sent,
               notifications_received=received, **(extra or {}))
    return start, fin


def test_without_bounds_it_is_valid_with_the_counts():
    b = formed()
    election(b, 1, rounds=(2, 3, 4), duration_ms=900)
    r = election_cost(b.journal(finished=False, invariants=()), {})
    assert r.verdict == "valid"
    assert "no bounds set; 1 election(s): rounds max 3 (node 1" in r.message
    assert "notifications max 12" in r.message and "duration max 900 ms" in r.message
    assert "3 at formation or teardown not judged" in r.message


def test_within_bounds_is_valid():
    b = formed()
    election(b, 1, rounds=(2, 3))
    r = election_cost(b.journal(finished=False, invariants=()), {**BOUNDS, "source": "plans/baselines.json"})
    assert r.verdict == "valid" and r.message.startswith("within [max_rounds 2, max_notifications 30, max_ms 1500]")
    assert "(plans/baselines.json)" in r.message


def test_an_extra_round_is_invalid_with_the_election_as_evidence():
    b = formed()
    election(b, 2, rounds=(2,))
    start, fin = election(b, 1, rounds=(2, 3, 4))
    r = election_cost(b.journal(finished=False, invariants=()), BOUNDS)
    assert r.verdict == "invalid"
    assert f"node 1 election at seq {fin} (quorum): 3 rounds > 2" in r.message
    assert r.evidence == (start, fin) and r.first_violation == fin


def test_a_resend_storm_is_invalid():
    b = formed()
    start, fin = election(b, 2, received=40)
    r = election_cost(b.journal(finished=False, invariants=()), BOUNDS)
    assert r.verdict == "invalid" and "43 notifications > 30" in r.message


def test_echoes_with_non_voters_are_not_election_cost():
    """The node counts echoes with observers in its totals and apart
    (``nonvoter_echoes``); they measure the CPU, not the election."""
    b = formed()
    election(b, 1, rounds=(2,), received=3 + 4000, sent=3 + 4000, extra={"nonvoter_echoes": 4000})
    r = election_cost(b.journal(finished=False, invariants=()), BOUNDS)
    assert r.verdict == "valid", r.message
    b = formed()
    election(b, 1, rounds=(2,), received=3 + 4000, sent=3 + 4000, extra={"nonvoter_echoes": 3980})
    r = election_cost(b.journal(finished=False, invariants=()), BOUNDS)
    assert r.verdict == "invalid" and "46 notifications > 30" in r.message  # 20 of them were not echoes


def test_a_slow_election_is_invalid():
    b = formed()
    election(b, 2, duration_ms=2500)
    r = election_cost(b.journal(finished=False, invariants=()), BOUNDS)
    assert r.verdict == "invalid" and "2500 ms > 1500 ms" in r.message


def test_the_nodes_own_rounds_field_wins():
    b = formed()
    election(b, 2, rounds=(2,), extra={"rounds": 5})
    r = election_cost(b.journal(finished=False, invariants=()), BOUNDS)
    assert r.verdict == "invalid" and "5 rounds > 2" in r.message


def test_capped_notification_events_make_rounds_unknown_not_invalid():
    b = formed()
    election(b, 2, rounds=(2,), sent=3, log_sends=False)
    r = election_cost(b.journal(finished=False, invariants=()), BOUNDS)
    assert r.verdict == "unknown" and "unknown (capped)" in r.message
    # without a rounds bound the counts the node reported are enough
    r = election_cost(b.journal(finished=False, invariants=()), {"max_notifications": 30})
    assert r.verdict == "valid"


def test_elections_before_formation_and_during_teardown_are_not_judged():
    b = JournalBuilder(3)
    b.rec("run_started", seed=7, command="x")
    b.start()
    b.election(3, b.voters, duration=5.0)  # a slow first election: processes start one by one
    b.advance(1.0)
    b.rec("teardown", reason="finished")
    election(b, 1, duration_ms=9000)
    j = b.journal(finished=False, invariants=())
    assert judged_costs(j) == []
    r = election_cost(j, BOUNDS)
    assert r.verdict == "valid" and "no election to judge (4 at formation or teardown)" in r.message


def test_a_restart_abandons_the_open_election():
    b = formed()
    b.ev(1, "election_started", logical_clock=2, vote={}, last_zxid=0, current_epoch=1)
    b.advance(5.0)
    b.process(1, "killed")
    b.start([1])
    start, fin = election(b, 1, rounds=(1, 2), duration_ms=50)
    costs = judged_costs(b.journal(finished=False, invariants=()))
    assert [(c.start_seq, c.finish_seq, c.rounds) for c in costs] == [(start, fin, 2)]


def test_p99_is_nearest_rank():
    assert p99([]) == 0.0
    assert p99([5.0]) == 5.0
    assert p99(range(1, 101)) == 99
    assert p99(range(1, 11)) == 10


def test_default_check_all_runs_it():
    b = formed()
    election(b, 1)
    names = [r.name for r in check_all(b.journal(finished=False, invariants=()))]
    assert "election_cost" in names


def test_a_capped_election_has_rounds_unknown_but_its_counts_still_judged():
    b = formed()
    start, fin = election(b, 2, rounds=(2,), received=6000)
    b.rec("notifications_capped", sid=2, election_seq=start, kept=3, dropped_received=5997, cap="per_election")
    r = election_cost(b.journal(finished=False, invariants=()), BOUNDS)
    assert r.verdict == "invalid" and "6003 notifications > 30" in r.message
    r = election_cost(b.journal(finished=False, invariants=()), {"max_rounds": 2})
    assert r.verdict == "unknown" and "unknown (capped)" in r.message


def _open_election(b: JournalBuilder, sid: int, seconds: float, sends: int) -> int:
    start = b.ev(sid, "election_started", logical_clock=2, vote={"leader": sid, "zxid": 0, "peer_epoch": 1},
                 last_zxid=0, current_epoch=1)
    for k in range(sends):
        b.ev(sid, "notification_sent", to=1 + k % 3, state="LOOKING", leader=sid, zxid=0, round=2 + k // 3,
             peer_epoch=1)
    b.advance(seconds)
    return start


def test_a_runaway_election_that_never_finishes_goes_over_the_bounds():
    """No election_finished ever comes: judged on what it cost until teardown."""
    b = formed()
    start = _open_election(b, 2, 12.0, 60)
    b.rec("teardown", reason="finished")
    r = election_cost(b.journal(finished=True, invariants=()), BOUNDS)
    assert r.verdict == "invalid", r.message
    assert "never finished" in r.message and start in r.evidence


def test_an_election_open_briefly_at_teardown_or_on_a_killed_node_is_not_judged():
    b = formed()
    _open_election(b, 1, 0.1, 2)
    b.process(1, "killed", exit_code=-9)  # its election ended with its process, not by slowness
    b.advance(20)
    b.rec("teardown", reason="finished")
    assert election_cost(b.journal(finished=True, invariants=()), BOUNDS).verdict == "valid"
    b2 = formed()
    _open_election(b2, 2, 0.2, 3)         # cut short by the teardown, within every bound
    b2.rec("teardown", reason="finished")
    assert election_cost(b2.journal(finished=True, invariants=()), BOUNDS).verdict == "valid"
