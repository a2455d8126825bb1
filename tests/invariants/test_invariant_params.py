"""The new invariants' parameters in the plan language: validated up front,
with FILE:LINE:COL path: message, and `election_cost: baseline` read from the
baselines.json beside the plan."""

from __future__ import annotations

import json

import pytest

from chaos import baselines
from chaos.plan import PLAN_SCHEMA, PlanError, load_plan, parse_plan

PLAN = """name: costly
description: d
ensemble: {nodes: 3}
invariants:
  election_cost: %s
steps: [{wait: stable}]
"""


def errors(value: str) -> list[str]:
    with pytest.raises(PlanError) as e:
        parse_plan(PLAN % value, "c.yaml")
    return [str(i) for i in e.value.errors]


def test_bounds_parse_to_numbers_with_max_ms_in_milliseconds():
    plan = parse_plan(PLAN % "{max_rounds: 2, max_notifications: 60, max_ms: 1.5s}", "c.yaml")
    assert dict(plan.invariant("election_cost").params) == {"max_rounds": 2, "max_notifications": 60,
                                                            "max_ms": 1500.0}
    plan = parse_plan(PLAN % "{max_ms: 1500}", "c.yaml")
    assert dict(plan.invariant("election_cost").params) == {"max_ms": 1500.0}


def test_new_invariants_run_by_default_and_can_be_turned_off():
    plan = parse_plan(PLAN % "{}", "c.yaml")
    names = [i.name for i in plan.invariants]
    for name in ("log_agreement", "leader_eligibility", "election_cost", "vote_backing"):
        assert name in names
    plan = parse_plan(PLAN.replace("election_cost: %s", "vote_backing: false\n  log_agreement: false"), "c.yaml")
    assert "vote_backing" not in [i.name for i in plan.invariants]
    assert "log_agreement" not in [i.name for i in plan.invariants]


@pytest.mark.parametrize("value, message", [
    ("{max_rounds: 0}", "c.yaml:5:19 invariants.election_cost.max_rounds: expected at least 1, got 0"),
    ("{max_notifications: many}",
     "c.yaml:5:19 invariants.election_cost.max_notifications: expected a whole number, got 'many'"),
    ("7", "c.yaml:5:3 invariants.election_cost: expected baseline, false, or a mapping of max_rounds, "
          "max_notifications, max_ms, got 7"),
    ("{max_ms: fast}", "c.yaml:5:19 invariants.election_cost.max_ms: expected a duration like 200ms, got 'fast'"),
    ("{max_round: 2}", "c.yaml:5:19 invariants.election_cost.max_round: unknown key 'max_round'; "
                       "did you mean 'max_rounds'?"),
    ("basline", "c.yaml:5:3 invariants.election_cost: expected baseline, false, or a mapping of max_rounds, "
                "max_notifications, max_ms, got 'basline'"),
])
def test_bad_parameters_are_refused_with_their_position(value, message):
    assert errors(value) == [message]


def test_other_new_invariants_take_no_parameters():
    with pytest.raises(PlanError) as e:
        parse_plan(PLAN.replace("election_cost: %s", "log_agreement: {strict: true}"), "c.yaml")
    assert [str(i) for i in e.value.errors] == [
        "c.yaml:5:19 invariants.log_agreement.strict: unknown key 'strict'"]


def test_schema_lists_the_new_invariants():
    props = PLAN_SCHEMA["properties"]["invariants"]["properties"]
    assert {"log_agreement", "leader_eligibility", "election_cost", "vote_backing"} <= set(props)
    assert props["election_cost"]["pattern"] == "^(baseline)$"
    assert "pattern" not in props["vote_backing"]


def write_plan(tmp_path, table: dict | None):
    path = tmp_path / "costly.yaml"
    path.write_text(PLAN % "baseline", encoding="utf-8")
    if table is not None:
        (tmp_path / "baselines.json").write_text(json.dumps(table), encoding="utf-8")
    return path


def test_baseline_reads_the_table_beside_the_plan(tmp_path):
    entry = {"runs": 5, "elections": 12, "max_rounds": 2, "max_notifications": 20, "p99_ms": 400.0}
    path = write_plan(tmp_path, {"version": 1, "plans": {"costly": entry}})
    params = dict(load_plan(path).invariant("election_cost").params)
    assert params == {"max_rounds": 3, "max_notifications": 45, "max_ms": 2900.0,
                      "source": str(tmp_path / "baselines.json")}


def test_baseline_without_an_entry_is_a_plan_error(tmp_path):
    path = write_plan(tmp_path, {"version": 1, "plans": {}})
    with pytest.raises(PlanError) as e:
        load_plan(path)
    (issue,) = e.value.errors
    assert str(issue).startswith(f"{path}:5:3 invariants.election_cost: no fle baseline for plan 'costly' in ")
    assert "chaos baseline" in str(issue)
    path = write_plan(tmp_path / "none" if (tmp_path / "none").mkdir() is None else tmp_path, None)
    with pytest.raises(PlanError):
        load_plan(path)


def test_recording_a_baseline_sets_no_bounds(tmp_path, monkeypatch):
    path = write_plan(tmp_path, None)
    monkeypatch.setenv(baselines.RECORDING_ENV, "1")
    params = dict(load_plan(path).invariant("election_cost").params)
    assert not set(params) & {"max_rounds", "max_notifications", "max_ms"}


@pytest.mark.parametrize("entry, bounds", [
    ({"max_rounds": 1, "max_notifications": 8, "p99_ms": 100.0},
     {"max_rounds": 2, "max_notifications": 33, "max_ms": 2600.0}),    # small counts: +25, short: +2.5 s
    ({"max_rounds": 2, "max_notifications": 50, "p99_ms": 5465.2},
     {"max_rounds": 3, "max_notifications": 100, "max_ms": 21861.0}),  # larger ones: x2, x4
])
def test_bounds_from_observations(entry, bounds):
    assert baselines.bounds_from(entry) == bounds


def test_the_repo_table_covers_every_plan_that_asks_for_it():
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    table = json.loads((root / "plans" / baselines.BASELINES_FILE).read_text())
    for plan_file in sorted((root / "plans").glob("*.yaml")):
        if "election_cost: baseline" in plan_file.read_text():
            plan = load_plan(plan_file)
            assert plan.name in table["plans"], plan_file
            assert plan.invariant("election_cost").params["max_rounds"] >= 2


def test_another_target_takes_its_own_row_or_says_it_has_none(tmp_path):
    mine = {"runs": 5, "elections": 12, "max_rounds": 2, "max_notifications": 20, "p99_ms": 400.0}
    theirs = {"runs": 5, "elections": 9, "max_rounds": 3, "max_notifications": 40, "p99_ms": 3000.0}
    path = write_plan(tmp_path, {"version": 1, "plans": {"costly": mine, "costly@zookeeper": theirs}})
    plan = load_plan(path)
    zk = baselines.for_target(plan, "zookeeper")
    assert dict(zk.invariant("election_cost").params) == {
        "max_rounds": 4, "max_notifications": 80, "max_ms": 12000.0, "source": str(tmp_path / "baselines.json")}
    assert baselines.for_target(plan, "fle") is plan
    path.with_name("baselines.json").write_text(json.dumps({"version": 1, "plans": {"costly": mine}}))
    missing = dict(baselines.for_target(plan, "zookeeper").invariant("election_cost").params)
    assert set(missing) == {"missing"} and "chaos baseline --target zookeeper" in missing["missing"]
    from chaos.invariants import election_cost
    from chaos.report.synth import formed
    r = election_cost(formed().journal(finished=True, invariants=()), missing)
    assert r.verdict == "unknown" and r.message.startswith("no bounds to judge by: no zookeeper baseline")
