"""leader_eligibility: no weight-0 voter and no observer ever leads an established epoch."""

from __future__ import annotations

import dataclasses

from chaos.invariants import leader_eligibility
from chaos.report.synth import JournalBuilder


def started(n: int = 3, observers: int = 0, weights: dict[int, int] | None = None) -> JournalBuilder:
    b = JournalBuilder(n, observers)
    b.nodes = [dataclasses.replace(x, weight=(weights or {}).get(x.sid, 1)) for x in b.nodes]
    b.rec("run_started", seed=7, command="chaos run plans/observer_and_weights.yaml")
    b.start()
    return b


def test_weight_zero_voter_following_is_valid():
    b = started(weights={3: 0})
    b.election(2, b.voters)
    r = leader_eligibility(b.journal(finished=False, invariants=()))
    assert r.verdict == "valid", r.message
    assert "never led: 3" in r.message


def test_weight_zero_leader_is_invalid():
    b = started(weights={3: 0})
    e = b.election(3, b.voters)
    r = leader_eligibility(b.journal(finished=False, invariants=()))
    assert r.verdict == "invalid"
    assert "node 3, a voter of weight 0, established epoch 1 as leader" in r.message
    assert r.evidence == (e["established"][3],)


def test_observer_leading_is_invalid_even_when_only_its_followers_say_so():
    b = started(3, 1)
    b.election(3, b.voters)
    b.advance(1.0)
    seq = b.ev(1, "epoch_established", epoch=2, role="follower", leader=4, last_zxid=0)
    r = leader_eligibility(b.journal(finished=False, invariants=()))
    assert r.verdict == "invalid"
    assert "node 4, an observer, was followed by node 1 in established epoch 2" in r.message
    assert r.first_violation == seq


def test_synced_leading_poll_counts_as_established():
    b = started(weights={2: 0})
    b.election(3, b.voters)
    seq = b.rec("status", sid=2, up=True, state="LEADING", leader=2, epoch=2, synced=True)
    r = leader_eligibility(b.journal(finished=False, invariants=()))
    assert r.verdict == "invalid" and r.evidence == (seq,)


def test_unsynced_leading_poll_is_not_a_claim():
    b = started(weights={2: 0})
    b.election(3, b.voters)
    b.rec("status", sid=2, up=True, state="LEADING", leader=2, epoch=1, synced=False)
    assert leader_eligibility(b.journal(finished=False, invariants=())).verdict == "valid"
