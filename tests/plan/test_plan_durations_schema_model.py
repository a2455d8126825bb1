"""Durations, the JSON Schema itself, and the model's helpers."""
from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from chaos.plan import (PLAN_SCHEMA, DurationError, Ensemble, FrozenDict, NodeStep, Selector,
                        format_duration, parse_duration, parse_duration_ms, parse_plan,
                        schema_json)


@pytest.mark.parametrize("text,seconds", [
    ("200ms", 0.2), ("2s", 2.0), ("1.5s", 1.5), ("1m", 60.0), (250, 0.25), (0, 0.0),
    ("0ms", 0.0), (" 3s ", 3.0), ("2.5m", 150.0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["2x", "s", "1.5", "-1s", "1h", "", "2 sec", 1.5, True, None,
                                 [1], -3])
def test_bad_durations(bad):
    with pytest.raises(DurationError, match="expected a duration like 200ms"):
        parse_duration(bad)


def test_duration_ms_must_be_whole():
    assert parse_duration_ms("1.5s") == 1500
    with pytest.raises(DurationError, match="whole milliseconds"):
        parse_duration_ms("0.5ms")


@given(st.integers(0, 10**7))
def test_format_round_trips(ms):
    assert parse_duration_ms(format_duration(ms / 1000)) == ms


def test_schema_is_valid_draft_2020_12():
    Draft202012Validator.check_schema(json.loads(schema_json()))
    assert json.loads(schema_json()) == json.loads(json.dumps(PLAN_SCHEMA))


def test_schema_rejects_what_it_should():
    v = Draft202012Validator(json.loads(schema_json()))
    base = {"name": "x", "description": "d", "ensemble": {"nodes": 3}, "steps": [{"wait": "stable"}]}
    assert not list(v.iter_errors(base))
    for bad in [
        {**base, "extra": 1},
        {**base, "steps": [{"kill": "leader", "pause": "leader"}]},
        {**base, "steps": [{"sleep": "soon"}]},
        {**base, "steps": [{"toxic": {"type": "flood"}}]},
        {**base, "ensemble": {"nodes": 0}},
        {**base, "steps": [{"wait": {"for": "leader", "timeout": 1.5}}]},
    ]:
        assert list(v.iter_errors(bad)), bad


FROZEN_TEXT = """\
name: m
description: d
ensemble: {nodes: 5, groups: [[1, 2, 3], [4, 5]], weights: {3: 0}}
steps:
  - kill: leader
    as: x
"""


def test_model_is_frozen_and_hashable():
    plan = parse_plan(FROZEN_TEXT, "m.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.name = "other"  # type: ignore[misc]
    assert plan == parse_plan(FROZEN_TEXT, "m.yaml")
    assert hash(plan) == hash(parse_plan(FROZEN_TEXT, "m.yaml"))
    assert plan.steps[0] == NodeStep("kill", Selector.role("leader"), "x", "steps[0]", "kill leader")
    with pytest.raises(TypeError):
        plan.ensemble.weights[3] = 1  # type: ignore[index]


def test_ensemble_helpers():
    ens = parse_plan("""\
name: m
description: d
ensemble: {nodes: 5, observers: 2, groups: [[1, 2, 3], [4, 5]], weights: {3: 0}}
steps: [{wait: stable}]
""").ensemble
    assert ens.participants == (1, 2, 3, 4, 5)
    assert ens.observer_sids == (6, 7) and ens.sids == tuple(range(1, 8))
    assert ens.voters == (1, 2, 4, 5)
    assert [ens.weight(s) for s in ens.sids] == [1, 1, 0, 1, 1, 0, 0]
    assert [ens.group_of(s) for s in (1, 4, 6)] == [1, 2, None]
    assert ens.is_observer(6) and not ens.is_observer(5)
    plain = Ensemble(nodes=3)
    assert plain.voters == (1, 2, 3) and plain.group_of(1) is None and not plain.hierarchical


def test_to_json_is_plain_and_complete():
    plan = parse_plan("""\
name: j
description: d
seed: 5
ensemble: {nodes: 3}
invariants: {convergence: {within: 2s}, single_leader: {}}
steps:
  - toxic: {name: slow, type: latency, attributes: {latency: 1s},
            links: {from: leader, to: 2, port: quorum, direction: one}}
  - partition: {kind: majority_minority, leader_in: minority}
    as: cut
  - heal: cut
  - repeat: {times: 2, steps: [{sleep: 10ms}]}
  - untoxic: slow
""", "j.yaml")
    data = json.loads(json.dumps(plan.to_json()))
    assert data["seed"] == 5 and data["source_path"] == "j.yaml"
    # every invariant runs; the listed ones carry their tuning
    assert data["invariants"] == [{"name": "single_leader", "params": {}},
                                  {"name": "convergence", "params": {"within": 2.0}},
                                  {"name": "out_of_election_join", "params": {}},
                                  {"name": "leader_validity", "params": {}},
                                  {"name": "no_committed_txn_lost", "params": {}},
                                  {"name": "log_agreement", "params": {}},
                                  {"name": "leader_eligibility", "params": {}},
                                  {"name": "epoch_promises", "params": {}},
                                  {"name": "election_cost", "params": {}},
                                  {"name": "vote_backing", "params": {}},
                                  {"name": "vote_rules", "params": {}},
                                  {"name": "leader_lease", "params": {}},
                                  {"name": "interposition", "params": {}}]
    toxic = data["steps"][0]
    assert toxic["attributes"] == {"latency": 1000}
    assert toxic["links"] == {"from": "leader", "to": 2, "port": "quorum", "direction": "one"}
    assert data["steps"][1]["spec"]["leader_in"] == "minority"
    assert data["steps"][3]["steps"][0]["path"] == "steps[3].repeat.steps[0]"


def test_default_invariants_are_all_of_them():
    plan = parse_plan("name: d\ndescription: d\nensemble: {nodes: 1}\nsteps: [{wait: stable}]\n")
    assert [i.name for i in plan.invariants] == ["single_leader", "convergence",
                                                 "out_of_election_join", "leader_validity",
                                                 "no_committed_txn_lost", "log_agreement",
                                                 "leader_eligibility", "epoch_promises", "election_cost", "vote_backing", "vote_rules", "leader_lease", "interposition"]
    assert plan.invariant("convergence").params["within"] == 15.0
    assert FrozenDict({"a": 1}) == {"a": 1}


def test_invariant_can_be_switched_off():
    plan = parse_plan("name: d\ndescription: d\nensemble: {nodes: 3}\n"
                      "invariants: {single_leader: {}, convergence: false}\nsteps: [{wait: stable}]\n")
    assert [i.name for i in plan.invariants] == [
        "single_leader", "out_of_election_join", "leader_validity", "no_committed_txn_lost", "log_agreement",
        "leader_eligibility", "epoch_promises", "election_cost", "vote_backing", "vote_rules", "leader_lease", "interposition"]
