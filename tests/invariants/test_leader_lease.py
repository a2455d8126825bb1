"""leader_lease: a leader cut off from a quorum of voters goes back to LOOKING
within (initLimit + syncLimit + 2) ticks plus a grace (5.4 s here)."""

from __future__ import annotations

from chaos.invariants import leader_lease
from chaos.records import Teardown
from chaos.report.synth import JournalBuilder


def formed(n: int = 3, observers: int = 0) -> JournalBuilder:
    b = JournalBuilder(n, observers=observers)
    b.ensemble.update(tick_time_ms=200, init_limit=10, sync_limit=5)
    b.rec("run_started", seed=7, command="chaos run plans/leader_isolated.yaml")
    b.start()
    b.election(n, b.voters)          # node n leads
    b.advance(1.0)
    return b


def isolate(b: JournalBuilder, sid: int, ports: tuple[str, ...] = ("election", "quorum"), fid: str = "f1") -> int:
    others = [s for s in b.sids if s != sid]
    links = [(a, c, p) for o in others for a, c in ((sid, o), (o, sid)) for p in ports]
    b.fault("requested", fid, "partition", {"spec": {"kind": "isolate"}}, links)
    return b.fault("effective", fid, "partition", {"spec": {"kind": "isolate"}}, links)


def step_down(b: JournalBuilder, sid: int) -> int:
    b.state[sid] = "LOOKING"
    return b.ev(sid, "state_changed", **{"from": "LEADING", "to": "LOOKING"})


def judge(b: JournalBuilder):
    return leader_lease(b.journal(finished=False, invariants=()))


def test_a_leader_that_gives_way_in_time_is_valid():
    b = formed()
    isolate(b, 3)
    b.advance(1.5)
    step_down(b, 3)
    b.advance(10.0)
    b.ev(1, "notification_timeout", next_timeout_ms=400, resent=True)
    r = judge(b)
    assert r.verdict == "valid" and r.message.startswith("1 time(s) a leader could reach no quorum")


def test_a_leader_that_keeps_leading_a_minority_is_invalid():
    b = formed()
    lead = next(r.seq for r in b.records if getattr(r, "event", None) == "state_changed"
                and r.sid == 3 and r.get("to") == "LEADING")
    cut = isolate(b, 3)
    b.advance(6.0)
    late = b.ev(1, "notification_timeout", next_timeout_ms=400, resent=True)
    r = judge(b)
    assert r.verdict == "invalid"
    assert "node 3 kept leading 6.0 s (unpaused) after it could reach no quorum of voters" in r.message
    assert "bound of 5.4 s" in r.message
    assert r.evidence == (lead, cut, late) and r.first_violation == late


def test_a_cut_of_the_election_port_alone_leaves_the_quorum_reachable():
    b = formed()
    isolate(b, 3, ports=("election",))
    b.advance(20.0)
    b.ev(1, "notification_timeout", next_timeout_ms=400, resent=True)
    r = judge(b)
    assert r.verdict == "valid" and r.message == "no leader was ever cut off from its quorum"


def test_a_cut_healed_within_the_bound_is_valid():
    b = formed()
    isolate(b, 3)
    b.advance(3.0)
    b.fault("undone", "f1", "partition")
    b.advance(20.0)
    b.ev(1, "notification_timeout", next_timeout_ms=400, resent=True)
    assert judge(b).verdict == "valid"


def test_paused_followers_are_not_reachable():
    b = formed()
    b.process(1, "paused")
    b.process(2, "paused")
    b.advance(6.0)
    b.process(1, "resumed")
    assert judge(b).verdict == "invalid"


def test_the_time_the_leader_itself_is_paused_does_not_count():
    b = formed()
    isolate(b, 3)
    b.process(3, "paused")
    b.advance(30.0)
    b.process(3, "resumed")
    b.advance(1.0)
    step_down(b, 3)
    assert judge(b).verdict == "valid"


def test_observers_do_not_keep_a_leader_alive():
    b = formed(n=3, observers=1)
    for s in (1, 2):
        b.process(s, "killed")
    b.advance(6.0)
    b.ev(4, "notification_timeout", next_timeout_ms=400, resent=True)
    r = judge(b)
    assert r.verdict == "invalid" and "node 3 kept leading" in r.message


def test_latency_is_not_a_cut():
    b = formed()
    links = [(3, 1, "quorum"), (1, 3, "quorum"), (3, 2, "quorum"), (2, 3, "quorum")]
    b.fault("effective", "f1", "toxic", {"type": "latency", "attributes": {"latency": 3000}}, links)
    b.advance(20.0)
    b.ev(1, "notification_timeout", next_timeout_ms=400, resent=True)
    assert judge(b).verdict == "valid"


def test_nothing_after_teardown_is_judged():
    b = formed()
    isolate(b, 3)
    b.advance(1.0)
    b.rec(Teardown, reason="finished")
    b.advance(10.0)
    b.ev(1, "notification_timeout", next_timeout_ms=400, resent=True)
    assert judge(b).verdict == "valid"
