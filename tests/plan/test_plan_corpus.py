"""The shipped plans all validate; every broken plan fails with exactly its one expected issue."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from chaos.plan import (NodeStep, PlanError, Wait, WaitCondition, iter_steps, load_plan,
                        schema_json)

ROOT = Path(__file__).resolve().parents[2]
PLANS = sorted((ROOT / "plans").glob("*.yaml"))
BROKEN = sorted((Path(__file__).parent / "broken").glob("*.yaml"))
REQUIRED_PLANS = {"leader_kill", "follower_restart", "leader_isolated", "minority_partition",
                  "latency_storm", "reset_peer_flaps", "rolling_restart", "pause_leader",
                  "partial_frames", "observer_and_weights",
                  # issue 8: schedules that hunt
                  "stale_leader_notifications", "epoch_tie_without_txns", "silent_peer_death",
                  "nemesis_one_minute", "rejoin_while_leader_isolated", "staggered_start",
                  "followers_frozen", "observers_outnumber_voters", "garbage_notifications"}
# Plans whose point is to differ from the nightly defaults, and how.
LONG_PLANS = {"nemesis_one_minute": 90}          # a minute of faults; its wall time is ~65 s
NO_TXN_PLANS = {"epoch_tie_without_txns", "promise_to_a_failed_leader",   # txn_interval 0: equal zxids
                "lost_vote_after_heal", "same_round_join"}


def test_required_plans_exist():
    assert REQUIRED_PLANS <= {p.stem for p in PLANS}


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.stem)
def test_plan_validates(path):
    plan = load_plan(path)
    assert plan.name == path.stem
    assert len(plan.description.split()) >= 15, "the description must say what the plan proves"
    assert plan.time_limit_s <= LONG_PLANS.get(plan.name, 40), \
        "nightly runs every plan on 2 cores: keep it short"
    assert plan.seed is not None, "shipped plans pin their seed so a nightly failure replays"
    ens = plan.ensemble
    txn = 0 if plan.name in NO_TXN_PLANS else 100
    assert (ens.tick_time_ms, ens.init_limit, ens.sync_limit, ens.txn_interval_ms) == (200, 10, 5, txn)
    # Nothing but sleeping and starting nodes before the ensemble is stable: a fault
    # before then would judge a run that never formed.
    first = next(i for i, st in enumerate(plan.steps) if not (getattr(st, "kind", None) == "start"
                                                              or type(st).__name__ == "Sleep"))
    assert isinstance(plan.steps[first], Wait) and plan.steps[first].condition is WaitCondition.STABLE
    assert first == 0 or ens.start, "only a staggered start may come before the first wait for stable"
    json.dumps(plan.to_json())


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.stem)
def test_schema_accepts_plan(path):
    from chaos.plan.loader import load_yaml
    doc, issues = load_yaml(path.read_text(), str(path))
    assert not issues
    errors = list(Draft202012Validator(json.loads(schema_json())).iter_errors(doc.data))
    assert errors == []


def test_leader_kill_restarts_the_node_it_killed():
    plan = load_plan(ROOT / "plans" / "leader_kill.yaml")
    kill = next(s for s in plan.steps if isinstance(s, NodeStep) and s.kind == "kill")
    restart = next(s for s in plan.steps if isinstance(s, NodeStep) and s.kind == "restart")
    assert kill.bind_as and restart.target.value == kill.bind_as
    joined = [s for s in plan.steps if isinstance(s, Wait) and s.condition is WaitCondition.JOINED]
    assert joined and joined[0].node == restart.target


def test_observer_and_weights_has_zero_weight_voter_and_observer():
    ens = load_plan(ROOT / "plans" / "observer_and_weights.yaml").ensemble
    assert len(ens.participants) == 5 and ens.observer_sids == (6,)
    assert 0 in ens.weights.values() and ens.groups is not None
    zero = [s for s in ens.participants if ens.weight(s) == 0]
    assert zero and not set(zero) & set(ens.voters)


def test_random_faults_uses_choice_inside_repeat():
    plan = load_plan(ROOT / "plans" / "random_faults.yaml")
    kinds = {s.kind for s in iter_steps(plan.steps)}
    assert {"repeat", "choice"} <= kinds


_EXPECT = re.compile(r"^# expect: (.+)$")


def _expected(path: Path) -> str:
    m = _EXPECT.match(path.read_text().splitlines()[0])
    assert m, f"{path.name}: first line must be '# expect: LINE:COL PATH: MESSAGE'"
    return m.group(1).strip()


def test_corpus_is_big_enough():
    assert len(BROKEN) >= 30


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_plan_fails_with_expected_issue(path):
    expected = _expected(path)
    with pytest.raises(PlanError) as info:
        load_plan(path)
    issues = info.value.errors
    assert len(issues) == 1, "\n".join(map(str, issues))
    assert str(issues[0]).startswith(f"{path}:")
    assert expected in str(issues[0])[len(str(path)) + 1:]
    assert re.match(r"^\d+:\d+[: ]", expected), "the expectation names line:col"


def test_the_hunting_plans_use_what_they_are_about():
    """Issue 8: what the plans before it never did."""
    def kinds(name):
        return {s.kind for s in iter_steps(load_plan(ROOT / "plans" / f"{name}.yaml").steps)}
    assert "nemesis" in kinds("nemesis_one_minute")
    assert load_plan(ROOT / "plans" / "nemesis_one_minute.yaml").ensemble.nodes == 5
    assert "silent_death" in kinds("silent_peer_death")
    assert "silent_death" in kinds("stale_leader_notifications")
    assert "inject" in kinds("garbage_notifications")
    assert load_plan(ROOT / "plans" / "observers_outnumber_voters.yaml").ensemble.observers == 2
    tie = load_plan(ROOT / "plans" / "epoch_tie_without_txns.yaml")
    assert tie.ensemble.txn_interval_ms == 0 and {"snapshot", "restart"} <= kinds(tie.name)
    assert any(getattr(s, "snapshot", None) for s in iter_steps(tie.steps))
    assert "reboot" in kinds("reboot_half_open_links")
    weights = load_plan(ROOT / "plans" / "zero_weight_largest_sid.yaml").ensemble
    assert [s for s in weights.sids if weights.weights[s] == 0] == [max(weights.sids)], \
        "the zero-weight voter has the largest sid"
    staggered = load_plan(ROOT / "plans" / "staggered_start.yaml")
    assert staggered.ensemble.start and "start" in kinds(staggered.name)
