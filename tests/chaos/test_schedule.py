"""The schedule writer: a run's resolved steps back as a plan `chaos run` executes.

Fast tests read hand-built journals (a nemesis's children among them, whose
kinds the plan language may not have a step for); slow ones run real plans,
write their schedules, validate and run those, and check that the rerun did
the same concrete things.
"""
from __future__ import annotations


import pytest

from chaos.journal import load
from chaos.outcome import InvariantResult
from chaos.plan import STEP_TYPES, parse_plan
from chaos.records import Fault, Journal, PlanInfo, RunInfo, StepFinished, StepStarted
from chaos.schedule import (Schedule, ScheduleStep, StepRole, _components, _link_selectors, _one_way_cuts,
                            plan_text, schedule_from_journal, schedule_from_run, write_plan)
from chaoshelp import PLANS, needs_node, needs_toxiproxy, run_chaos

SIDS = (1, 2, 3)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("blocked, groups", [
    ({(1, 2), (2, 1), (1, 3), (3, 1)}, [[1], [2, 3]]),             # isolate 1
    ({(2, 1), (1, 2), (2, 3), (3, 2)}, [[1, 3], [2]]),             # halves
    ({(1, 2)}, None),                                              # one way
    ({(1, 3), (3, 1)}, None),                                      # bridge: 2 reaches both
    (set(), None),
])
def test_a_symmetric_split_is_written_as_groups(blocked, groups):
    assert _components(blocked, SIDS) == groups


@pytest.mark.parametrize("blocked, cuts", [
    ({(3, 1), (3, 2)}, [(3, "all")]),                 # the leader cannot send
    ({(1, 3), (2, 3)}, [("all", 3)]),                 # nobody reaches 3
    ({(1, 3), (3, 1)}, [(1, 3), (3, 1)]),             # bridge through 2
    ({(1, 2), (1, 3), (2, 3)}, [(1, "all"), (2, 3)]),
])
def test_other_cuts_are_one_way_cuts_of_exactly_the_same_pairs(blocked, cuts):
    got = _one_way_cuts(blocked, SIDS)
    assert got == cuts
    covered = set()
    for a, b in got:
        pairs = {(x, y) for x in (SIDS if a == "all" else (a,)) for y in (SIDS if b == "all" else (b,)) if x != y}
        assert not covered & pairs, "a pair is cut twice"
        covered |= pairs
    assert covered == blocked


def test_toxic_links_are_written_as_few_exact_selectors():
    every = [(a, b, "election") for a in SIDS for b in SIDS if a != b]
    assert _link_selectors(every, SIDS) == [{"from": "all", "to": "all", "port": "election", "direction": "one"}]
    around_5 = [(5, b, p) for b in (1, 2, 3, 4) for p in ("election", "quorum")]
    around_5 += [(b, 5, p) for b in (1, 2, 3, 4) for p in ("election", "quorum")]
    assert _link_selectors(around_5, (1, 2, 3, 4, 5)) == [
        {"from": 5, "to": "all", "port": "both", "direction": "both"}]
    assert _link_selectors(around_5[:8], (1, 2, 3, 4, 5)) == [
        {"from": 5, "to": "all", "port": "both", "direction": "one"}]
    both_ports_both_ways = [(1, 3, p) for p in ("election", "quorum")] + [(3, 1, p) for p in ("election", "quorum")]
    assert _link_selectors(both_ports_both_ways, SIDS) == [
        {"from": 1, "to": 3, "port": "both", "direction": "both"}]
    assert _link_selectors([(2, 1, "quorum")], SIDS) == [
        {"from": 2, "to": 1, "port": "quorum", "direction": "one"}]


# --------------------------------------------------------------------------- hand-built journals


class _J:
    """Step and fault records in journal order, as the runner writes them."""

    def __init__(self) -> None:
        self.records: list = []
        self.seq = 0
        self.faults = 0

    def _add(self, cls, **kw):
        self.seq += 1
        self.records.append(cls(seq=self.seq, t=self.seq / 10, **kw))

    def start(self, path, kind, resolved=None, label=""):
        self._add(StepStarted, step=path, kind=kind, label=label or kind, resolved=resolved or {})

    def finish(self, path, kind, resolved=None, ok=True, error=None):
        self._add(StepFinished, step=path, kind=kind, label=kind, resolved=resolved or {}, ok=ok, error=error)

    def fault(self, kind, target, links=(), phase="requested", fid=None):
        if fid is None:
            self.faults += 1
            fid = f"f{self.faults}"
        self._add(Fault, phase=phase, fault_id=fid, kind=kind, target=target, links=tuple(links))
        return fid

    def undone(self, fid, kind, target, links=()):
        self.fault(kind, target, links, phase="undone", fid=fid)

    def step(self, path, kind, resolved=None, body=lambda: None, **kw):
        self.start(path, kind, resolved)
        out = body()
        self.finish(path, kind, resolved, **kw)
        return out

    def journal(self, plan_steps, *, invariants=None, verdict="invalid", ensemble=None) -> Journal:
        plan = {"name": "synthetic", "description": "hand-built", "seed": 9, "time_limit_s": 60.0,
                "ensemble": ensemble or {"nodes": 3, "observers": 0, "weights": {}, "groups": None,
                                         "tick_time_ms": 200, "init_limit": 10, "sync_limit": 5,
                                         "txn_interval_ms": 100, "protocol": "3.8"},
                "invariants": invariants if invariants is not None else
                [{"name": "single_leader", "params": {}}, {"name": "convergence", "params": {"within": 2.5}}],
                "steps": plan_steps}
        return Journal(run=RunInfo(id="feedf00d", plan_name="synthetic", seed=9), plan=PlanInfo.from_json(plan),
                       records=tuple(self.records), verdict=verdict,
                       invariants=(InvariantResult("convergence", verdict, "made up"),))


def _links(pairs, ports=("election", "quorum")):
    return [(a, b, p) for a, b in pairs for p in ports]


def _nemesis_journal() -> Journal:
    """wait; nemesis: toxic, partition, kill, pause, sleep, resume, untoxic, heal, restart,
    silent_death, heal, restart — each child with its fault records."""
    j = _J()
    j.step("steps[0]", "wait", {"leader": 3})
    j.start("steps[1]", "nemesis")
    n = "steps[1].nemesis"
    tox_links = _links([(2, 1), (1, 2)]) + [(3, 2, "election")]
    tox = j.step(f"{n}[0]", "toxic", {"name": "nemesis_1", "links": [list(x) for x in tox_links]},
                 lambda: j.fault("toxic", {"name": "nemesis_1", "type": "latency",
                                           "attributes": {"latency": 100, "jitter": 50}, "toxicity": 1.0},
                                 tox_links))
    cut = [(1, 2), (1, 3), (2, 1), (3, 1)]
    part = j.step(f"{n}[1]", "partition", {"name": "nemesis_2", "blocked": [list(p) for p in cut]},
                  lambda: j.fault("partition", {"blocked": [list(p) for p in cut], "name": "nemesis_2"},
                                  _links(cut)))
    j.step(f"{n}[2]", "kill", {"target": [3]}, lambda: j.fault("kill", {"sid": 3}))
    pause = j.step(f"{n}[3]", "pause", {"target": [2]}, lambda: j.fault("pause", {"sid": 2}))
    j.step(f"{n}[4]", "sleep", {"seconds": 1.25})
    j.step(f"{n}[5]", "resume", {"target": [2]}, lambda: j.undone(pause, "pause", {"sid": 2}))
    j.step(f"{n}[6]", "untoxic", {"name": "nemesis_1"}, lambda: j.undone(tox, "toxic", {}, tox_links))
    j.step(f"{n}[7]", "heal", {"name": "nemesis_2"}, lambda: j.undone(part, "partition", {}, _links(cut)))
    j.step(f"{n}[8]", "restart", {"target": [3]})
    sd_links = _links([(1, 2), (2, 1), (3, 2), (2, 3)])
    sd = j.step(f"{n}[9]", "silent_death", {"target": [2], "name": "nemesis_3"},
                lambda: [j.fault("toxic", {"name": "nemesis_3", "type": "timeout", "attributes": {"timeout": 0}},
                                 sd_links), j.fault("pause", {"sid": 2})])
    j.step(f"{n}[10]", "heal", {"name": "nemesis_3"},
           lambda: [j.undone(sd[1], "pause", {"sid": 2}), j.undone(sd[0], "toxic", {}, sd_links)])
    j.step(f"{n}[11]", "restart", {"target": [2]})
    j.finish("steps[1]", "nemesis")
    steps = [{"kind": "wait", "path": "steps[0]", "for": "stable", "node": None, "state": None,
              "timeout_s": 15.0},
             {"kind": "nemesis", "path": "steps[1]", "duration_s": 10.0, "faults": ["kill"],
              "interval_s": [1.0, 2.0]}]
    return j.journal(steps)


def test_a_nemesis_comes_out_as_the_plain_steps_it_took():
    s = schedule_from_journal(_nemesis_journal())
    assert s.actions() == [
        ("wait", "{for: stable, timeout: 15s}", None),
        ("toxic", "{name: t1, type: latency, attributes: {latency: 100ms, jitter: 50ms}, "
                  "links: {from: 1, to: 2, port: both, direction: both}}", None),
        ("toxic", "{name: t1, type: latency, attributes: {latency: 100ms, jitter: 50ms}, "
                  "links: {from: 3, to: 2, port: election, direction: one}}", None),
        ("partition", "{groups: [[1], [2, 3]], port: both}", "p1"),
        ("kill", "3", None),
        ("pause", "2", None),
        ("sleep", "1250ms", None),
        ("resume", "2", None),
        ("untoxic", "t1", None),
        ("heal", "p1", None),
        ("restart", "3", None),
        ("silent_death", "2", "d1"),
        ("heal", "d1", None),
        ("restart", "2", None),
    ]
    # every fault goes with its undo; a kill with the restart after it
    assert s.units() == ("t1", "p1", "k1", "z1", "d1")
    by_unit = {u: [x.kind for x in s.steps if x.unit == u] for u in s.units()}
    assert by_unit == {"t1": ["toxic", "toxic", "untoxic"], "p1": ["partition", "heal"],
                       "k1": ["kill", "restart"], "z1": ["pause", "resume"],
                       "d1": ["silent_death", "heal", "restart"]}
    assert [x.role for x in s.steps if x.unit == "t1"] == [StepRole.FAULT, StepRole.FAULT, StepRole.UNDO]
    assert all("steps[1].nemesis[" in x.source for x in s.steps[1:])


@pytest.mark.skipif("silent_death" not in STEP_TYPES, reason="the plan language has no silent_death yet")
def test_the_written_nemesis_schedule_is_a_plan(tmp_path):
    s = schedule_from_journal(_nemesis_journal())
    path = write_plan(s, tmp_path / "nemesis.yaml")
    plan = parse_plan(path.read_text(), str(path))
    assert plan.name == "synthetic_schedule" and plan.seed == 9
    assert [st.kind for st in plan.steps] == [a[0] for a in s.actions()]


def test_dropping_a_fault_drops_its_undo_and_nothing_else():
    s = schedule_from_journal(_nemesis_journal())
    smaller = s.keep_units(["k1", "d1"])
    assert [x.kind for x in smaller.steps] == ["wait", "kill", "sleep", "restart", "silent_death", "heal",
                                               "restart"]
    # one of two toxic steps of t1 dropped: its untoxic stays; both dropped: it goes
    t1 = s.fault_steps("t1")
    assert "untoxic" in [x.kind for x in s.without(t1[:1]).steps]
    assert "untoxic" not in [x.kind for x in s.without(t1).steps]
    assert "sleep" not in [x.kind for x in s.without([6]).steps] and len(s.without([6]).steps) == 13


def test_a_failed_step_is_kept_with_its_error_and_a_pick_only_names():
    j = _J()
    j.step("steps[0]", "wait", {"leader": 1})
    j.step("steps[1]", "pick", {"target": [1]})
    j.step("steps[2]", "kill", {"target": [2]}, ok=False, error="node 2 is not running")
    steps = [{"kind": "wait", "path": "steps[0]", "for": "stable", "node": None, "state": None, "timeout_s": 9.0},
             {"kind": "pick", "path": "steps[1]", "target": "leader", "as": "x"},
             {"kind": "kill", "path": "steps[2]", "target": "follower", "as": None}]
    s = schedule_from_journal(j.journal(steps))
    assert s.actions() == [("wait", "{for: stable, timeout: 9s}", None), ("kill", "2", None)]
    assert "FAILED in the run: node 2 is not running" in s.steps[1].comment
    assert any("pick" in n and "names only" in n for n in s.notes)
    text = plan_text(s)
    assert "# steps[2]: kill" in text and "FAILED" in text
    parse_plan(text)


def test_waits_keep_their_condition_and_name_resolved_sids():
    j = _J()
    j.step("steps[0]", "wait", {"node": [2, 3], "leader": 1})
    j.step("steps[1]", "wait", {"leader": 1})
    steps = [{"kind": "wait", "path": "steps[0]", "for": "joined", "node": "victims", "state": None,
              "timeout_s": 10.0},
             {"kind": "wait", "path": "steps[1]", "for": "state", "node": "followers", "state": "following",
              "timeout_s": 2.5}]
    s = schedule_from_journal(j.journal(steps))
    assert s.actions() == [("wait", "{for: joined, node: 2, timeout: 10s}", None),
                           ("wait", "{for: joined, node: 3, timeout: 10s}", None),
                           ("wait", "{for: state, node: followers, state: following, timeout: 2500ms}", None)]
    assert "one wait per node" in s.steps[0].comment


def test_the_header_is_the_one_the_run_used(tmp_path):
    ens = {"nodes": 5, "observers": 1, "weights": {"1": 1, "2": 1, "3": 0, "4": 1, "5": 1},
           "groups": [[1, 2, 3], [4], [5]], "tick_time_ms": 250, "init_limit": 7, "sync_limit": 3,
           "txn_interval_ms": 0, "protocol": "3.4"}
    j = _J()
    j.step("steps[0]", "sleep")
    s = schedule_from_journal(j.journal([{"kind": "sleep", "path": "steps[0]", "seconds": 0.5}], ensemble=ens,
                                        invariants=[{"name": "convergence", "params": {"within": 2.5}}]))
    assert s.notes == () and s.exact_header
    plan = parse_plan(plan_text(s))
    assert plan.ensemble.to_json() | {"start": None} == ens | {"start": None}
    assert dict(plan.invariant("convergence").params) == {"within": 2.5}
    # what the run did not check stays off
    assert plan.invariant("single_leader") is None and s.invariants["single_leader"] is False
    assert plan.seed == 9 and plan.time_limit_s == 60.0
    assert "feedf00d" in plan.description and "seed 9" in plan.description


def test_a_header_that_cannot_be_written_as_run_is_flagged():
    j = _J()
    j.step("steps[0]", "sleep")
    s = schedule_from_journal(j.journal([{"kind": "sleep", "path": "steps[0]", "seconds": 0.5}],
                                        invariants=[{"name": "convergence", "params": {"within": -1.0}}]))
    assert not s.exact_header
    assert any("NOT AS RUN: invariant convergence.within" in n for n in s.notes)
    assert "# note: NOT AS RUN" in plan_text(s)


def test_a_schedule_that_does_not_parse_is_refused(tmp_path):
    bad = Schedule("x", steps=(ScheduleStep("heal", "nowhere"),), ensemble={"nodes": 3})
    with pytest.raises(Exception, match="does not parse"):
        write_plan(bad, tmp_path / "bad.yaml")
    assert not (tmp_path / "bad.yaml").exists()


# --------------------------------------------------------------------------- real runs


SILENT_LEADER = """\
name: silent_leader
description: The leader dies silently behind black-holed links; healed, restarted, it rejoins.
seed: 3
time_limit: 40s
ensemble: {nodes: 3}
steps:
  - wait: {for: stable, timeout: 15s}
  - silent_death: leader
    as: gone
  - wait: {for: leader, timeout: 15s}
  - heal: gone
  - restart: gone
  - wait: {for: stable, timeout: 15s}
"""


@pytest.mark.slow
@needs_node
@needs_toxiproxy
def test_written_schedules_run_and_redo_the_same_actions(tmp_path):
    """random_faults: repeat, choice, a partition (halves) and toxics; one_way_partition:
    a cut that is not a split; leader_links_down: a `down` toxic on both ports, both ways;
    silent_leader: a silent death healed, then a restart (a plan of this test's own)."""
    names = ["random_faults", "one_way_partition", "leader_links_down", "silent_leader"]
    (tmp_path / "silent_leader.yaml").write_text(SILENT_LEADER)
    sources = [PLANS / f"{n}.yaml" for n in names[:3]] + [tmp_path / "silent_leader.yaml"]
    res = run_chaos("run", *map(str, sources), "--jobs", "4",
                    "--out", str(tmp_path / "orig"), timeout=300)
    assert res.returncode in (0, 1), res.stdout + res.stderr   # a verdict either way: the runs ran
    written = []
    for n in names:
        run_dir = tmp_path / "orig" / f"{n}-1"
        s = schedule_from_run(run_dir)
        assert s.units(), n
        written.append(write_plan(s, tmp_path / "plans" / f"{n}.yaml"))
        text = written[-1].read_text()
        assert load(run_dir).run.id in text and "seed" in text
    rf = schedule_from_run(tmp_path / "orig" / "random_faults-1")
    kinds = [x.kind for x in rf.steps]
    assert "repeat" not in kinds and "choice" not in kinds and "partition" in kinds
    assert any("groups" in x.value for x in rf.steps if x.kind == "partition")
    ow_dir = tmp_path / "orig" / "one_way_partition-1"
    leader = next(r.resolved["target"][0] for r in load(ow_dir).of_type(StepFinished) if r.kind == "pick")
    assert [x.value for x in schedule_from_run(ow_dir).steps if x.kind == "partition"] == [
        {"one_way": {"from": leader, "to": "all"}, "port": "both"}]

    sl = schedule_from_run(tmp_path / "orig" / "silent_leader-1")
    assert [(x.kind, x.unit) for x in sl.steps if x.unit] == [("silent_death", "d1"), ("heal", "d1"),
                                                             ("restart", "d1")]

    res = run_chaos("validate", *map(str, written), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    res = run_chaos("run", *map(str, written), "--jobs", "4", "--out", str(tmp_path / "again"), timeout=300)
    assert res.returncode in (0, 1), res.stdout + res.stderr
    for n in names:
        before = schedule_from_run(tmp_path / "orig" / f"{n}-1")
        after = schedule_from_run(tmp_path / "again" / f"{n}_schedule-1")
        assert after.actions() == before.actions(), n
        assert before.exact_header and after.exact_header, (n, before.notes, after.notes)
        assert _judged_by(tmp_path / "again" / f"{n}_schedule-1") == _judged_by(tmp_path / "orig" / f"{n}-1"), n


def _judged_by(run_dir) -> dict:
    """The invariants a run checked, with their parameters (a baseline's
    `source` is where the bounds came from, not a bound)."""
    return {name: {k: v for k, v in params.items() if k != "source"}
            for name, params in load(run_dir).plan.invariants.items()}
