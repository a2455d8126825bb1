"""Shrinking: ddmin and the oracle on synthetic tests (fast, no processes), then
one real shrink of a run that is invalid only because of one of its faults."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from chaos import cli as chaos_cli
from chaos.outcome import InvariantResult
from chaos.plan import parse_plan
from chaos.records import Fault, Journal, PlanInfo, RunInfo, StepFinished, StepStarted
from chaos.schedule import Schedule, ScheduleStep, StepRole
from chaos.shrink import (BudgetExhausted, Oracle, ShrinkOptions, ShrinkUsage, TryResult, ddmin, sequential,
                          shrink_run)
from chaoshelp import ROOT, chaos_cmd, chaos_env, needs_node, needs_toxiproxy, procs_mentioning, run_chaos

# --------------------------------------------------------------------------- ddmin


@pytest.mark.parametrize("n, culprits", [
    (8, {5}), (10, {2, 7}), (16, {0, 8, 15}), (5, {0, 1, 2, 3, 4}), (1, {0}), (33, {31, 32}),
])
def test_ddmin_finds_a_one_minimal_failing_subset(n, culprits):
    def fails(sub):
        return culprits <= set(sub)

    got = ddmin(list(range(n)), sequential(fails))
    assert set(got) == culprits
    assert got == sorted(got), "order is kept"
    for x in got:
        assert not fails([y for y in got if y != x])


def test_ddmin_needs_few_tests_for_one_culprit():
    calls = []

    def fails(sub):
        calls.append(len(sub))
        return 41 in sub

    assert ddmin(list(range(64)), sequential(fails)) == [41]
    assert len(calls) <= 2 * 6 + 2
    assert 0 not in calls, "the empty set is only tried when asked"


def test_ddmin_tries_complements_when_no_chunk_fails_alone():
    """Fails when 1 and 6 are both there: no half holds both, so the search
    splits finer and keeps complements."""
    seen = []

    def first_failing(cands):
        seen.append([len(c) for c in cands])
        return next((i for i, c in enumerate(cands) if {1, 6} <= set(c)), None)

    assert ddmin(list(range(8)), first_failing) == [1, 6]
    assert any(len(round_) == 8 for round_ in seen), "4 chunks and their 4 complements in one round"


def test_ddmin_with_empty_first_and_a_failure_that_needs_nothing():
    asked = []

    def fails(sub):
        asked.append(list(sub))
        return True

    assert ddmin([1, 2, 3], sequential(fails), empty=True) == []
    assert asked == [[]]


# --------------------------------------------------------------------------- the oracle, with fake runs


def _schedule(*units: str) -> Schedule:
    steps = [ScheduleStep("wait", {"for": "stable"})]
    for u in units:
        steps.append(ScheduleStep("kill" if u.startswith("k") else "toxic", u, unit=u, role=StepRole.FAULT))
    return Schedule("fake", steps=tuple(steps), ensemble={"nodes": 3})


class _Fake:
    """A run that ends after `polls` polls with `result`; records being stopped."""

    def __init__(self, result: TryResult, polls: int = 1) -> None:
        self.result, self.polls, self.stopped = result, polls, False

    def poll(self):
        self.polls -= 1
        return self.result if self.polls <= 0 else None

    def stop(self):
        self.stopped = True


class _Launcher:
    def __init__(self, decide) -> None:
        self.decide = decide   # (schedule, try number from 1) -> (TryResult, polls)
        self.launched: list[tuple[Schedule, Path, _Fake]] = []

    def __call__(self, schedule, run_dir):
        k = 1 + sum(1 for s, _, _ in self.launched if s == schedule)
        result, polls = self.decide(schedule, k)
        fake = _Fake(result, polls)
        self.launched.append((schedule, run_dir, fake))
        return fake


INVALID = TryResult(1, ("convergence",))
VALID = TryResult(0)


def _oracle(launcher, tmp_path, **kw) -> Oracle:
    kw.setdefault("failing_on", ("convergence",))
    return Oracle(launcher, tmp_path / "shrink", sleep=lambda s: None, **kw)


def test_a_candidate_fails_if_any_of_its_tries_is_invalid(tmp_path):
    third = _Launcher(lambda s, k: (INVALID if k == 3 else VALID, 1))
    o = _oracle(third, tmp_path, tries=3)
    assert o.first_failing([_schedule("k1")], "t", ["x"]) == 0
    assert o.runs == 3 and [r["exit_code"] for r in o.candidates[0].runs] == [0, 0, 1]
    once = _oracle(_Launcher(lambda s, k: (INVALID if k == 3 else VALID, 1)), tmp_path, tries=2)
    assert once.first_failing([_schedule("k1")], "t", ["x"]) is None


@pytest.mark.parametrize("result", [TryResult(3), TryResult(2), TryResult(1, ("single_leader",)), VALID])
def test_unknown_or_another_violation_is_not_the_failure(tmp_path, result):
    o = _oracle(_Launcher(lambda s, k: (result, 1)), tmp_path, tries=2)
    assert o.first_failing([_schedule("k1")], "t", ["x"]) is None
    assert o.runs == 2


def test_the_first_failing_candidate_in_order_wins_even_when_a_later_one_fails_sooner(tmp_path):
    # candidate 0 fails slowly (on its second try), 1 fails at once, 2 never runs to the end
    def decide(s, k):
        units = s.units()
        if units == ("k1",):
            return (INVALID if k == 2 else VALID, 5)
        if units == ("k2",):
            return (INVALID, 1)
        return (VALID, 50)

    launcher = _Launcher(decide)
    o = _oracle(launcher, tmp_path, tries=2, jobs=5)
    cands = [_schedule("k1"), _schedule("k2"), _schedule("t3")]
    assert o.first_failing(cands, "faults", ["a", "b", "c"]) == 0
    assert o.candidates[0].failing is True and o.candidates[1].failing is True
    dirs = [d.name for _, d, _ in launcher.launched]
    assert dirs == ["c001-t1", "c001-t2", "c002-t1", "c002-t2", "c003-t1"]
    stopped = [d.name for _, d, f in launcher.launched if f.stopped]
    assert stopped == ["c002-t2", "c003-t1"], "runs that no longer matter are stopped"
    # with fewer jobs, nothing after a failing candidate even starts
    launcher = _Launcher(decide)
    assert _oracle(launcher, tmp_path / "b", tries=2, jobs=3).first_failing(cands, "faults", ["a", "b", "c"]) == 0
    assert not [s for s, _, _ in launcher.launched if s.units() == ("t3",)]


def test_the_budget_stops_the_runs_in_flight(tmp_path):
    now = [0.0]
    launcher = _Launcher(lambda s, k: (VALID, 10 ** 6))

    def sleep(s):
        now[0] += s

    o = Oracle(launcher, tmp_path / "shrink", tries=1, jobs=2, deadline=5.0, clock=lambda: now[0], sleep=sleep)
    with pytest.raises(BudgetExhausted):
        o.first_failing([_schedule("k1"), _schedule("k2")], "t", ["a", "b"])
    assert len(launcher.launched) == 2 and all(f.stopped for _, _, f in launcher.launched)
    assert all(r.get("stopped") for c in o.candidates for r in c.runs)


def test_a_candidate_already_tried_is_not_run_again(tmp_path):
    launcher = _Launcher(lambda s, k: (VALID, 1))
    o = _oracle(launcher, tmp_path, tries=2)
    assert o.first_failing([_schedule("k1")], "t", ["x"]) is None
    assert o.first_failing([_schedule("k1"), _schedule("k1", "t2")], "t", ["x", "y"]) is None
    assert o.runs == 4 and o.candidates[1].cached and not o.candidates[1].runs


# --------------------------------------------------------------------------- shrink_run, with fake runs


def _run_dir(tmp_path: Path, verdict: str = "invalid") -> Path:
    """A run of: wait; toxic a; sleep; untoxic a; kill leader; sleep; restart; wait; toxic b; untoxic b."""
    recs: list = []

    def add(cls, **kw):
        recs.append(cls(seq=len(recs) + 1, t=len(recs) / 10, **kw))

    def step(path, kind, resolved=None, faults=()):
        add(StepStarted, step=path, kind=kind, label=kind, resolved=resolved or {})
        for f in faults:
            add(Fault, **f)
        add(StepFinished, step=path, kind=kind, label=kind, resolved=resolved or {}, ok=True)

    links = [(1, 2, "election"), (2, 1, "election")]
    tox = {"type": "latency", "attributes": {"latency": 5}, "toxicity": 1.0}
    step("steps[0]", "wait", {"leader": 3})
    step("steps[1]", "toxic", {}, [dict(phase="requested", fault_id="f1", kind="toxic",
                                         target={**tox, "name": "a"}, links=links)])
    step("steps[2]", "sleep")
    step("steps[3]", "untoxic", {}, [dict(phase="undone", fault_id="f1", kind="toxic", target={}, links=links)])
    step("steps[4]", "kill", {"target": [3]}, [dict(phase="requested", fault_id="f2", kind="kill",
                                                    target={"sid": 3})])
    step("steps[5]", "sleep")
    step("steps[6]", "restart", {"target": [3]})
    step("steps[7]", "wait", {"node": [3], "leader": 2})
    step("steps[8]", "toxic", {}, [dict(phase="requested", fault_id="f3", kind="toxic",
                                        target={**tox, "name": "b"}, links=links)])
    step("steps[9]", "untoxic", {}, [dict(phase="undone", fault_id="f3", kind="toxic", target={}, links=links)])
    plan = {"name": "fake_run", "description": "d", "seed": 4, "time_limit_s": 30.0,
            "ensemble": {"nodes": 3, "tick_time_ms": 200, "init_limit": 10, "sync_limit": 5,
                         "txn_interval_ms": 100, "protocol": "3.8"},
            "invariants": [{"name": "convergence", "params": {"within": 0.1}}],
            "steps": [{"kind": "wait", "path": "steps[0]", "for": "stable", "timeout_s": 15.0},
                      {"kind": "sleep", "path": "steps[2]", "seconds": 2.0},
                      {"kind": "sleep", "path": "steps[5]", "seconds": 1.0},
                      {"kind": "wait", "path": "steps[7]", "for": "joined", "node": "old", "timeout_s": 9.0}]}
    j = Journal(run=RunInfo(id="abcd1234", plan_name="fake_run", seed=4), plan=PlanInfo.from_json(plan),
                records=tuple(recs), verdict=verdict,
                invariants=(InvariantResult("convergence", verdict, "made up"),))
    d = tmp_path / "run"
    d.mkdir()
    (d / "journal.json").write_text(json.dumps(j.to_json()))
    return d


def _kill_is_the_culprit(schedule, k):
    return (INVALID if any(s.kind == "kill" for s in schedule.steps) else VALID, 1)


def test_shrink_keeps_the_culprit_and_drops_the_rest(tmp_path):
    run_dir = _run_dir(tmp_path)
    launcher = _Launcher(_kill_is_the_culprit)
    res = shrink_run(ShrinkOptions(run_dir, tries=2, launch=launcher, say=lambda m: None))
    assert (res.exit_code, res.outcome) == (0, "shrunk")
    assert res.original.units() == ("t1", "k1", "t2")
    assert res.best.units() == ("k1",)
    assert [s.kind for s in res.best.steps] == ["wait", "kill", "restart"]
    plan = parse_plan((run_dir / "minimal.yaml").read_text())
    assert plan.name == "fake_run_minimal" and plan.seed == 4
    assert [s.kind for s in plan.steps] == ["wait", "kill", "restart"]
    log = json.loads((run_dir / "shrink.json").read_text())
    assert log["outcome"] == "shrunk" and log["failed_on"] == ["convergence"]
    assert log["minimal"]["faults"] == ["k1"] and log["original"]["faults"] == ["t1", "k1", "t2"]
    phases = [c["phase"] for c in log["candidates"]]
    assert phases[0] == "reproduce" and {"faults", "sleeps", "waits"} <= set(phases)
    assert all(c["failing"] is not None for c in log["candidates"])
    assert (run_dir / "schedule.yaml").is_file()
    assert 'href="minimal.yaml"' in (run_dir / "report.html").read_text()


def test_a_failure_that_does_not_reproduce_gives_exit_3_and_no_minimal(tmp_path):
    run_dir = _run_dir(tmp_path)
    res = shrink_run(ShrinkOptions(run_dir, tries=2, launch=_Launcher(lambda s, k: (TryResult(3), 1)),
                                   say=lambda m: None))
    assert (res.exit_code, res.outcome, res.minimal) == (3, "not_reproduced", None)
    assert not (run_dir / "minimal.yaml").exists()
    assert json.loads((run_dir / "shrink.json").read_text())["runs"] == 2


def test_a_run_whose_header_cannot_be_written_is_not_shrunk(tmp_path):
    run_dir = _run_dir(tmp_path)
    raw = json.loads((run_dir / "journal.json").read_text())
    raw["plan"]["invariants"] = [{"name": "convergence", "params": {"within": -1.0}}]
    (run_dir / "journal.json").write_text(json.dumps(raw))
    launcher = _Launcher(_kill_is_the_culprit)
    res = shrink_run(ShrinkOptions(run_dir, launch=launcher, say=lambda m: None))
    assert (res.exit_code, res.outcome) == (3, "header_not_as_run") and not launcher.launched


def test_only_an_invalid_run_is_shrunk(tmp_path):
    with pytest.raises(ShrinkUsage, match="not a run"):
        shrink_run(ShrinkOptions(tmp_path))
    with pytest.raises(ShrinkUsage, match="verdict is valid"):
        shrink_run(ShrinkOptions(_run_dir(tmp_path, verdict="valid")))
    res = CliRunner().invoke(chaos_cli.cli, ["shrink", str(tmp_path / "run")])
    assert res.exit_code == 2 and "not invalid" in res.output
    res = CliRunner().invoke(chaos_cli.cli, ["shrink", str(tmp_path / "run"), "--budget", "soon"])
    assert res.exit_code == 2


def test_run_with_shrink_shrinks_each_invalid_run(tmp_path, monkeypatch):
    from chaos import runner, shrink
    from chaos.runner import RunResult
    calls = []
    monkeypatch.setattr(runner, "run_plan", lambda opts: RunResult(1, "invalid", tmp_path / "r", 7))
    monkeypatch.setattr(shrink, "shrink_run", lambda opts: calls.append(opts) or shrink.ShrinkResult(
        0, "shrunk", tmp_path / "r" / "minimal.yaml", tmp_path / "r" / "shrink.json", None, None, 5))
    plan = tmp_path / "culprit.yaml"
    plan.write_text(CULPRIT)
    res = CliRunner().invoke(chaos_cli.cli, ["run", str(plan), "--shrink", "--shrink-budget", "90s",
                                             "--time-limit", "50s"])
    assert res.exit_code == 1, res.output
    assert len(calls) == 1 and calls[0].run_dir == tmp_path / "r" and calls[0].budget_s == 90
    assert list(calls[0].run_args) == ["--time-limit", "50.0s"]
    assert "minimal: " in res.output
    monkeypatch.setattr(runner, "run_plan", lambda opts: RunResult(0, "valid", tmp_path / "r", 7))
    res = CliRunner().invoke(chaos_cli.cli, ["run", str(plan), "--shrink"])
    assert res.exit_code == 0 and len(calls) == 1


# --------------------------------------------------------------------------- a real shrink

CULPRIT = """\
name: shrink_culprit
description: |
  Three harmless latency toxics, then a leader kill under a convergence bound
  (100ms) no election can meet: the run is invalid because of the kill alone.
seed: 5
time_limit: 40s
ensemble:
  nodes: 3
  tick_time: 200ms
  init_limit: 10
  sync_limit: 5
  txn_interval: 100ms
invariants:
  convergence: {within: 100ms}
steps:
  - wait: {for: stable, timeout: 15s}
  - toxic: {name: a, type: latency, attributes: {latency: 5ms}, links: {from: 1, to: 2, port: election, direction: one}}
  - toxic: {name: b, type: latency, attributes: {latency: 5ms}, links: {from: 2, to: 3, port: election, direction: one}}
  - untoxic: a
  - untoxic: b
  - toxic: {name: c, type: latency, attributes: {latency: 5ms}, links: {from: 3, to: 1, port: election, direction: one}}
  - untoxic: c
  - kill: leader
"""
# No sleeps and one wait, so the real shrink is three rounds of runs (reproduce,
# then ddmin's halves and quarters two at a time); the other phases are tested above.


@pytest.mark.slow
@needs_node
@needs_toxiproxy
def test_shrink_a_real_run_down_to_its_culprit_and_stop_cleanly_on_ctrl_c(tmp_path):
    plan = tmp_path / "culprit.yaml"
    plan.write_text(CULPRIT)
    run_dir = tmp_path / "runs" / "culprit"
    res = run_chaos("run", str(plan), "--out", str(run_dir), timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    spare = tmp_path / "spare"   # the same run, for the interrupted shrink below
    spare.mkdir()
    for name in ("journal.json", "journal.jsonl"):
        shutil.copy(run_dir / name, spare / name)

    res = run_chaos("shrink", str(run_dir), "--tries", "1", "--jobs", "2", "--budget", "4m", timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    minimal = run_dir / "minimal.yaml"
    assert f"minimal: {minimal}" in res.stdout
    text = minimal.read_text()
    parsed = parse_plan(text, str(minimal))
    assert [s.kind for s in parsed.steps if s.kind in ("kill", "toxic", "untoxic")] == ["kill"]
    assert parsed.seed == 5 and dict(parsed.invariant("convergence").params) == {"within": 0.1}
    assert run_chaos("validate", str(minimal), timeout=60).returncode == 0
    log = json.loads((run_dir / "shrink.json").read_text())
    assert log["minimal"]["faults"] == ["k1"] and len(log["original"]["faults"]) == 4
    for c in log["candidates"]:
        for r in c["runs"]:
            assert Path(r["dir"]).parent == run_dir / "shrink"
            assert (Path(r["dir"]) / "plan.yaml").is_file()
    assert 'href="minimal.yaml"' in (run_dir / "report.html").read_text()
    assert not procs_mentioning(str(run_dir))

    # Ctrl-C while a candidate runs: the run is stopped and cleaned up, exit 3.
    proc = subprocess.Popen(chaos_cmd("shrink", str(spare), "--tries", "1"), cwd=ROOT, env=chaos_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = spare / "shrink" / "c001-t1" / "journal.jsonl"
        end = time.monotonic() + 60
        while not first.exists() and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.2)
        assert first.exists(), "the first candidate never started"
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, out + err
    assert json.loads((spare / "shrink.json").read_text())["outcome"] == "interrupted"
    # On a loaded machine the first candidate may have finished (and failed)
    # before the interrupt: then minimal.yaml holds the best found so far and
    # must be a whole plan, never a half-written file.
    if (spare / "minimal.yaml").exists():
        parse_plan((spare / "minimal.yaml").read_text(), str(spare / "minimal.yaml"))
    assert not procs_mentioning(str(spare))
