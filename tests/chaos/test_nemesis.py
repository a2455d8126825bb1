"""The nemesis generator: never more than a minority impaired, one seed one schedule,
everything undone at the end; and the plain step each action equals."""
from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.nemesis import Action, NemesisSchedule, impaired_by_links
from chaos.plan import NEMESIS_FAULTS, Ensemble, FrozenDict, parse_plan
from chaos.plan.model import NodeStep, Partition, SilentDeath, Sleep, ToxicAdd
from chaos.plan.partitions import compile_partition
from chaos.steps.nemesis import child_step

# --------------------------------------------------------------------------- a model of the cluster


class Cluster:
    """What the actions do, tracked from the actions alone (not the generator's
    own bookkeeping): who is down, frozen, cut off, or behind a toxic."""

    def __init__(self, ens: Ensemble, baseline: frozenset[int]) -> None:
        self.ens = ens
        self.quorum = ens.quorum()
        self.baseline = baseline
        self.down: set[int] = set()
        self.paused: set[int] = set()
        self.named: dict[str, set[int]] = {}     # partition / toxic / silent death -> nodes cut
        self.silent: dict[str, int] = {}

    def impaired(self) -> set[int]:
        out = set(self.baseline) | self.down | self.paused
        for sids in self.named.values():
            out |= sids
        return out

    def quorum_left(self, more: set[int] = frozenset()) -> bool:
        return self.quorum.contains_quorum(set(self.ens.voters) - self.impaired() - set(more))

    def apply(self, a: Action) -> None:
        r = a.resolved
        sid = r["target"][0] if "target" in r else None
        if a.kind == "sleep":
            assert r["seconds"] > 0
        elif a.kind == "kill":
            assert sid not in self.impaired()
            self.down.add(sid)
        elif a.kind == "pause":
            assert sid not in self.impaired()
            self.paused.add(sid)
        elif a.kind == "resume":
            self.paused.remove(sid)
        elif a.kind == "restart":
            if sid in self.down:
                self.down.remove(sid)
            else:   # a restart of a running node impairs it while it takes
                assert sid not in self.impaired()
                assert self.quorum_left({sid})
        elif a.kind == "silent_death":
            assert sid not in self.impaired()
            self.named[r["name"]] = {sid}
            self.silent[r["name"]] = sid
        elif a.kind == "partition":
            cp = compile_partition(child_step(a, "p").spec, self.ens.sids, None, random.Random(0))
            assert sorted([x, y] for x, y in cp.blocked) == r["blocked"]
            (cut,) = r["groups"]
            assert not set(cut) & self.impaired()
            self.named[r["name"]] = set(cut)
        elif a.kind == "toxic":
            ends = [set(lk[:2]) for lk in r["links"]]
            (victim,) = set.intersection(*ends)
            assert victim == sid and victim not in self.impaired()
            self.named[r["name"]] = {victim}
        elif a.kind in ("heal", "untoxic"):
            self.named.pop(r["name"])
            if r["name"] in self.silent:
                self.down.add(self.silent.pop(r["name"]))   # the node stays down
        else:
            raise AssertionError(a.kind)


ensembles = st.one_of(
    st.integers(3, 9).map(lambda n: Ensemble(nodes=n)),
    st.integers(3, 7).map(lambda n: Ensemble(nodes=n, observers=1)),
    st.just(Ensemble(nodes=5, weights=FrozenDict({1: 1, 2: 1, 3: 1, 4: 0, 5: 0}))),
    st.just(Ensemble(nodes=5, weights=FrozenDict({1: 3, 2: 1, 3: 1, 4: 1, 5: 1}))),
    st.just(Ensemble(nodes=9, groups=((1, 2, 3), (4, 5, 6), (7, 8, 9)),
                     weights=FrozenDict({s: 1 for s in range(1, 10)}))),
)


@st.composite
def schedules(draw):
    ens = draw(ensembles)
    faults = draw(st.lists(st.sampled_from(NEMESIS_FAULTS), min_size=1, unique=True))
    lo = draw(st.integers(200, 2000)) / 1000
    hi = lo + draw(st.integers(0, 3000)) / 1000
    duration = draw(st.integers(1, 90))
    tolerable = [v for v in ens.voters if ens.is_quorum(set(ens.voters) - {v})]
    baseline = frozenset(draw(st.lists(st.sampled_from(tolerable), max_size=1)))
    seed = draw(st.integers(0, 2**31))
    leaders = draw(st.lists(st.sampled_from([None, *ens.sids]), min_size=1, max_size=8))
    return ens, faults, (lo, hi), float(duration), seed, baseline, leaders


def _run(ens, faults, interval, duration, seed, baseline, leaders):
    sched = NemesisSchedule(ens, faults, interval, duration, random.Random(seed), baseline)
    seq = itertools.cycle(leaders)
    return sched, sched.run(lambda: next(seq))


@settings(max_examples=200, deadline=None)
@given(schedules())
def test_never_more_than_a_minority_impaired_and_all_undone_at_the_end(case):
    ens, faults, interval, duration, seed, baseline, leaders = case
    sched, actions = _run(*case)
    cluster = Cluster(ens, baseline)
    for a in actions:
        cluster.apply(a)
        assert cluster.quorum_left(), (a, cluster.impaired())
    assert cluster.impaired() == set(baseline), "the nemesis left something impaired"
    assert sched.finished and not sched.active
    touched = {a.resolved["target"][0] for a in actions if "target" in a.resolved}
    touched |= {s for a in actions if a.kind == "partition" for s in a.resolved["groups"][0]}
    assert not touched & baseline, "it touched a node impaired before it began"
    assert sum(a.resolved["seconds"] for a in actions if a.kind == "sleep") == pytest.approx(duration, abs=0.01)
    assert {a.kind for a in actions} <= {"sleep", "kill", "pause", "resume", "restart", "silent_death",
                                          "partition", "heal", "toxic", "untoxic"}


@settings(max_examples=60, deadline=None)
@given(schedules())
def test_same_seed_same_schedule(case):
    _, first = _run(*case)
    _, again = _run(*case)
    assert [a.to_json() for a in first] == [a.to_json() for a in again]


def test_different_seeds_different_schedules():
    ens = Ensemble(nodes=5)
    runs = {tuple(str(a.to_json()) for a in NemesisSchedule(ens, NEMESIS_FAULTS, (1.0, 5.0), 60.0,
                                                             random.Random(seed)).run())
            for seed in range(5)}
    assert len(runs) == 5


def test_a_five_node_minute_uses_every_fault_and_two_at_once():
    ens = Ensemble(nodes=5)
    sched = NemesisSchedule(ens, NEMESIS_FAULTS, (1.0, 5.0), 60.0, random.Random(11))
    cluster, most = Cluster(ens, frozenset()), 0
    kinds = set()
    while not sched.finished:
        for a in sched.next(leader=5):
            cluster.apply(a)
            most = max(most, len(cluster.impaired()))
            kinds.add(a.kind)
    assert most == 2     # a minority of five, reached
    assert len(kinds) >= 7


def test_the_leader_is_hunted_when_allowed():
    ens = Ensemble(nodes=5)
    hits = 0
    for seed in range(20):
        sched = NemesisSchedule(ens, ("kill",), (1.0, 1.0), 3.0, random.Random(seed))
        first = next(a for a in sched.run(lambda: 4) if a.kind == "kill")
        hits += first.resolved["target"] == [4]
    assert 5 <= hits <= 18


def test_no_fault_when_nothing_can_be_impaired():
    ens = Ensemble(nodes=3)
    sched = NemesisSchedule(ens, NEMESIS_FAULTS, (1.0, 1.0), 5.0, random.Random(1), baseline=frozenset({3}))
    assert {a.kind for a in sched.run()} == {"sleep"}


def test_unknown_fault_is_refused():
    with pytest.raises(ValueError, match="unknown nemesis fault"):
        NemesisSchedule(Ensemble(nodes=3), ("explode",), (1.0, 1.0), 5.0, random.Random(1))


# --------------------------------------------------------------------------- the baseline


def test_impaired_by_links_keeps_a_set_that_reaches_itself():
    # isolate 1 of 5: only 1 is cut off
    iso = [(1, b) for b in range(2, 6)] + [(b, 1) for b in range(2, 6)]
    assert impaired_by_links(range(1, 6), iso) == {1}
    # halves of 4: two nodes go, whichever, and the two left reach each other
    halves = [(a, b) for a in (1, 2) for b in (3, 4)] + [(b, a) for a in (1, 2) for b in (3, 4)]
    gone = impaired_by_links(range(1, 5), halves)
    assert len(gone) == 2 and {frozenset(p) for p in halves}.isdisjoint(
        {frozenset((a, b)) for a in set(range(1, 5)) - gone for b in set(range(1, 5)) - gone})
    assert impaired_by_links(range(1, 4), []) == frozenset()


# --------------------------------------------------------------------------- actions as plain steps


def test_every_action_is_the_plain_step_of_its_kind():
    ens = Ensemble(nodes=5)
    actions = NemesisSchedule(ens, NEMESIS_FAULTS, (0.5, 1.0), 60.0, random.Random(3)).run(lambda: 2)
    seen = set()
    for k, a in enumerate(actions):
        step = child_step(a, f"steps[1].nemesis[{k}]")
        assert step.kind == a.kind and step.path == f"steps[1].nemesis[{k}]"
        assert step.label.startswith("nemesis: ")
        seen.add(type(step))
        if isinstance(step, Sleep):
            assert step.seconds == a.resolved["seconds"]
        elif isinstance(step, (NodeStep, SilentDeath)):
            assert step.target.value == a.resolved["target"][0]
        elif isinstance(step, ToxicAdd):
            assert (step.type, dict(step.attributes)) == (a.resolved["type"], a.resolved["attributes"])
        elif isinstance(step, Partition):
            assert step.bind_as == a.resolved["name"]
    assert {Sleep, NodeStep, SilentDeath, ToxicAdd, Partition} <= {c for c in seen} | {
        c for c in seen for c in c.__mro__}


def test_a_schedule_written_as_plain_steps_parses():
    """What `chaos shrink` does with the children: each one is a plan step."""
    ens = Ensemble(nodes=5)
    actions = NemesisSchedule(ens, NEMESIS_FAULTS, (0.5, 1.0), 30.0, random.Random(8)).run(lambda: 1)
    lines = []
    for a in actions:
        r = a.resolved
        if a.kind == "sleep":
            lines.append(f"  - sleep: {round(r['seconds'] * 1000)}ms")
        elif a.kind in ("kill", "pause", "resume", "restart"):
            lines.append(f"  - {a.kind}: {r['target'][0]}")
        elif a.kind == "silent_death":
            lines.append(f"  - silent_death: {r['target'][0]}\n    as: {r['name']}")
        elif a.kind == "partition":
            lines.append(f"  - partition: {{groups: {r['groups']}}}\n    as: {r['name']}")
        elif a.kind == "toxic":
            attrs = ", ".join(f"{k}: {v}" for k, v in r["attributes"].items())
            lines.append(f"  - toxic: {{name: {r['name']}, type: {r['type']}, attributes: {{{attrs}}},"
                         f" links: {{from: {r['target'][0]}, to: all, port: both}}}}")
        else:
            lines.append(f"  - {a.kind}: {r['name']}")
    plan = parse_plan("name: w\ndescription: d\ntime_limit: 2m\nensemble: {nodes: 5}\nsteps:\n"
                      + "\n".join(lines) + "\n", "w.yaml")
    assert [s.kind for s in plan.steps] == [a.kind for a in actions]


def test_the_baseline_counts_what_came_before_the_nemesis():
    from types import SimpleNamespace

    from chaos.faults import AppliedFault
    from chaos.steps.nemesis import baseline_impaired
    iso = [(1, b, p) for b in (2, 3, 4, 5) for p in ("election", "quorum")]
    iso += [(b, a, p) for a, b, p in iso]
    ctx = SimpleNamespace(
        plan=SimpleNamespace(ensemble=Ensemble(nodes=5)),
        paused=lambda: {4},
        target=SimpleNamespace(is_running=lambda s: s != 5),
        ledger=SimpleNamespace(active=lambda: [AppliedFault("f1", "partition", {}, tuple(iso), "cut")]))
    assert baseline_impaired(ctx) == {1, 4, 5}
