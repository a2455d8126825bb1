"""The issue-8 additions to the plan language: nemesis, silent_death, start and
`ensemble.start`, snapshot and `restart: {node, from}`."""
from __future__ import annotations

import pytest

from chaos.plan import (Ensemble, FrozenDict, Nemesis, NodeStep, PlanError, Restart, SilentDeath,
                        Snapshot, Start, parse_plan)

HEAD = "name: h\ndescription: d\ntime_limit: 90s\nensemble: {nodes: 5}\nsteps:\n"


def _plan(*steps: str, head: str = HEAD):
    return parse_plan(head + "".join(f"  - {s}\n" for s in steps), "h.yaml")


def _issues(*steps: str, head: str = HEAD) -> list[str]:
    with pytest.raises(PlanError) as info:
        _plan(*steps, head=head)
    return [f"{i.path}: {i.message}" for i in info.value.errors]


def test_restart_takes_a_selector_or_node_and_snapshot():
    plan = _plan("{stop: 3, as: three}", "{snapshot: {node: three, as: before}}",
                 "{restart: three}", "{restart: {node: three, from: before}}", "{restart: {node: 2}}")
    plain, source, mapped = plan.steps[2], plan.steps[3], plan.steps[4]
    assert isinstance(plain, Restart) and isinstance(plain, NodeStep) and plain.snapshot is None
    assert plain.to_json() == {"kind": "restart", "path": "steps[2]", "label": "restart three",
                               "target": "three", "as": None}
    assert (source.target.value, source.snapshot, source.label) == ("three", "before",
                                                                    "restart three from before")
    assert source.to_json()["from"] == "before"
    assert mapped.target.value == 2 and mapped.snapshot is None
    snap = plan.steps[1]
    assert isinstance(snap, Snapshot) and snap.to_json() == {
        "kind": "snapshot", "path": "steps[1]", "label": "snapshot three as before",
        "node": "three", "as": "before"}


def test_snapshot_names_are_checked_in_plan_order_and_across_choices():
    assert _issues("{restart: {node: 1, from: later}}", "{snapshot: {node: 1, as: later}}") == [
        "steps[0].restart.from: restarting from snapshot 'later' that no earlier snapshot step takes"]
    # taken in one branch: possibly there, as a toxic named in one branch is
    _plan("{choice: {steps: [[{snapshot: {node: 1, as: s}}], [{sleep: 1s}]]}}",
          "{restart: {node: 1, from: s}}")
    # a snapshot name is not a node name, nor a partition name
    assert _issues("{snapshot: {node: 1, as: s}}", "{kill: s}")[0].startswith(
        "steps[1].kill: unknown node selector 's'")


def test_silent_death_names_a_node_for_restart_and_a_fault_for_heal():
    plan = _plan("{silent_death: leader, as: ghost}", "{heal: ghost}", "{restart: ghost}")
    sd = plan.steps[0]
    assert isinstance(sd, SilentDeath) and sd.bind_as == "ghost"
    assert sd.to_json() == {"kind": "silent_death", "path": "steps[0]", "label": "silent_death leader",
                            "target": "leader", "as": "ghost"}
    assert SilentDeath.binds == "nodes"
    assert _issues("{silent_death: 1, as: leader}") == [
        "steps[0].as: 'leader' is a node selector; pick another name for as:"]


def test_start_and_the_ensembles_start_list():
    plan = _plan("{start: 5, as: late}", head=HEAD.replace("{nodes: 5}", "{nodes: 5, start: [3, 1, 2]}"))
    assert plan.ensemble.start == (1, 2, 3) and plan.ensemble.initial == (1, 2, 3)
    assert plan.ensemble.to_json()["start"] == [1, 2, 3]
    assert isinstance(plan.steps[0], Start) and plan.steps[0].bind_as == "late"
    assert Ensemble(nodes=3).initial == (1, 2, 3) and Ensemble(nodes=3).to_json()["start"] is None
    assert _issues("{wait: stable}", head=HEAD.replace("{nodes: 5}", "{nodes: 5, start: [0]}")) == [
        "ensemble.start[0]: expected at least 1, got 0"]


def test_txn_interval_zero_is_an_ensemble_of_no_txns():
    plan = _plan("{wait: stable}", head=HEAD.replace("{nodes: 5}", "{nodes: 3, txn_interval: 0}"))
    assert plan.ensemble.txn_interval_ms == 0


def test_no_txns_names_participants_that_propose_nothing_when_they_lead(tmp_path):
    head = HEAD.replace("{nodes: 5}", "{nodes: 3, observers: 1, no_txns: [2, 1]}")
    spec = _plan("{wait: stable}", head=head).ensemble
    assert spec.no_txns == (1, 2) and spec.to_json()["no_txns"] == [1, 2]
    assert [spec.txn_interval_of(s) for s in spec.sids] == [0, 0, 100, 100]
    assert "no_txns" not in Ensemble(nodes=3).to_json()
    assert _issues("{wait: stable}", head=HEAD.replace("{nodes: 5}", "{nodes: 3, observers: 1, no_txns: [4, 2, 2]}")) \
        == ["ensemble.no_txns[0]: sid 4 is not a participant (1..3): only a participant can lead and propose",
            "ensemble.no_txns[2]: sid 2 is listed twice"]


def test_nemesis_defaults_and_json():
    n = _plan("{nemesis: {duration: 1m, faults: [kill, silent_death]}}").steps[0]
    assert isinstance(n, Nemesis)
    assert (n.duration_s, n.faults, n.interval_s) == (60.0, ("kill", "silent_death"), (1.0, 5.0))
    assert n.label == "nemesis 1m every 1s..5s: kill, silent_death"
    assert n.to_json() == {"kind": "nemesis", "path": "steps[0]", "label": n.label,
                           "duration_s": 60.0, "faults": ["kill", "silent_death"],
                           "interval_s": [1.0, 5.0]}
    fixed = _plan("{nemesis: {duration: 10s, faults: [pause], interval: 2s}}").steps[0]
    assert fixed.interval_s == (2.0, 2.0) and fixed.label == "nemesis 10s every 2s: pause"
    spaced = _plan("{nemesis: {duration: 10s, faults: [pause], interval: 500ms .. 1.5s}}").steps[0]
    assert spaced.interval_s == (0.5, 1.5)


def test_nemesis_errors_all_at_once():
    assert sorted(_issues("{nemesis: {duration: 2m, faults: [kill, kil, kill], interval: 3s..1s}}")) == [
        "steps[0].nemesis.duration: nemesis duration 120s exceeds time_limit 90s",
        "steps[0].nemesis.faults[1]: expected one of kill, pause, restart, partition, latency, "
        "reset_peer, silent_death, got 'kil'; did you mean 'kill'?",
        "steps[0].nemesis.faults[2]: fault 'kill' is listed twice",
        "steps[0].nemesis.interval: interval 3s..1s: the range a..b needs a <= b"]


@pytest.mark.parametrize("ensemble,ok", [
    ("{nodes: 3}", True), ("{nodes: 2}", False), ("{nodes: 1}", False),
    ("{nodes: 3, weights: {3: 0}}", False),      # two voters left: neither can go
    ("{nodes: 3, weights: {1: 2}}", True),       # 2 or 3 can go; 1 cannot
    ("{nodes: 4, weights: {1: 0}}", True),
    ("{nodes: 3, observers: 2}", True),
])
def test_nemesis_needs_a_voter_it_can_spare(ensemble, ok):
    head = HEAD.replace("{nodes: 5}", ensemble)
    step = "{nemesis: {duration: 10s, faults: [kill]}}"
    if ok:
        _plan(step, head=head)
    else:
        assert "cannot lose any one and keep a quorum" in _issues(step, head=head)[0]


def test_the_ensembles_own_quorum_rule():
    assert Ensemble(nodes=5).is_quorum({1, 2, 3}) and not Ensemble(nodes=5).is_quorum({4, 5})
    weighted = Ensemble(nodes=3, weights=FrozenDict({1: 2, 2: 1, 3: 1}))
    assert weighted.is_quorum({1, 2}) and not weighted.is_quorum({2, 3})
    groups = Ensemble(nodes=6, groups=((1, 2, 3), (4, 5, 6)), weights=FrozenDict({s: 1 for s in range(1, 7)}))
    assert groups.is_quorum({1, 2, 4, 5}) and not groups.is_quorum({1, 2, 3, 4})
