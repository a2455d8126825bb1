"""The nemesis: a seeded schedule of faults that never impairs more than a minority.

Theory of operation. :class:`NemesisSchedule` is pure: no clock, no I/O, one
``random.Random`` of its own. The ``nemesis`` step's handler
(:mod:`chaos.steps.nemesis`) calls :meth:`NemesisSchedule.next` with the
current leader and runs the :class:`Action` s it gets back, each as the plain
step of the same kind (``kill``, ``pause``, ``resume``, ``restart``,
``partition``, ``heal``, ``toxic``, ``untoxic``, ``silent_death``, ``sleep``).
An action's ``resolved`` is everything that step needs, in concrete sids: it
is journaled as the child step's ``resolved``, so ``--replay`` and a plan
written from the run redo it without asking the generator again.

Time is the schedule's own: the sum of the sleeps it hands out, each drawn
from the interval range and cut at the duration. Once that reaches the
duration, the next call returns the undo of every fault still in place, newest
first, and the schedule is finished. So one seed, one ensemble and one
sequence of leaders give one schedule, whatever the wall clock did.

**Impairment.** A node is impaired while it is killed, paused, silently dead
(frozen behind black-holed links, then dead until restarted), cut off by a
partition, or has a toxic on its links; a ``restart`` impairs its node for
the moment it takes. A fault is applied only if the voters left unimpaired
still hold a quorum by the ensemble's own rule (``Ensemble.is_quorum``:
majority, weights or groups), counting what was impaired before the nemesis
began (``baseline``), which it never touches. A partition cuts a set of
healthy nodes off from everyone else; the cut side is the impaired one, so
the rest stay one connected quorum.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from chaos.plan.model import NEMESIS_FAULTS, Ensemble

__all__ = ["Action", "NemesisSchedule", "NEMESIS_FAULTS", "impaired_by_links", "LATENCIES_MS",
           "RESET_TIMEOUTS_MS"]

# Toxic attributes a nemesis draws from. Latency stays under syncLimit at the
# plans' 200 ms tick (5 ticks = 1 s) with its jitter, so it slows, not cuts.
LATENCIES_MS = (50, 100, 200, 400)
RESET_TIMEOUTS_MS = (0, 200, 1000)
_UNDO_SHARE = 0.45      # chance of undoing a fault when a new one could be applied
_LEADER_SHARE = 0.5     # chance of aiming a single-node fault at the leader, when allowed


@dataclass(frozen=True, slots=True)
class Action:
    """One child step: its plain kind and what it needs, in concrete sids."""

    kind: str
    resolved: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "resolved": dict(self.resolved)}


@dataclass(slots=True)
class _Active:
    fault: str                   # a NEMESIS_FAULTS name; "dead" after a silent death's heal
    sids: frozenset[int]         # the nodes it impairs
    name: str | None = None      # the toxic / partition / silent death name
    at: float = 0.0              # schedule time it was applied


@dataclass
class NemesisSchedule:
    ensemble: Ensemble
    faults: Sequence[str]
    interval_s: tuple[float, float]
    duration_s: float
    rng: random.Random
    baseline: frozenset[int] = frozenset()
    prefix: str = "nemesis_"
    elapsed: float = 0.0
    finished: bool = False
    active: dict[str, _Active] = field(default_factory=dict)   # key -> fault, in apply order
    _count: int = 0

    def __post_init__(self) -> None:
        unknown = [f for f in self.faults if f not in NEMESIS_FAULTS]
        if unknown:
            raise ValueError(f"unknown nemesis fault(s): {', '.join(unknown)}")
        self.baseline = frozenset(self.baseline)
        self._voters = frozenset(self.ensemble.voters)
        self._quorum = self.ensemble.quorum()

    # ------------------------------------------------------------------ state
    def impaired(self) -> frozenset[int]:
        out = set(self.baseline)
        for f in self.active.values():
            out |= f.sids
        return frozenset(out)

    def _keeps_quorum(self, more: Iterable[int]) -> bool:
        return self._quorum.contains_quorum(self._voters - self.impaired() - set(more))

    def _name(self) -> str:
        self._count += 1
        return f"{self.prefix}{self._count}"

    # ------------------------------------------------------------------ the schedule
    def next(self, leader: int | None = None) -> list[Action]:
        """A sleep and then one fault or undo; once the duration is used up,
        the undo of everything still in place; ``[]`` when finished."""
        if self.finished:
            return []
        if self.elapsed >= self.duration_s - 1e-9:
            self.finished = True
            return self.heal_all()
        lo, hi = self.interval_s
        gap = round(self.rng.uniform(lo, hi), 3)
        gap = max(0.001, min(gap, round(self.duration_s - self.elapsed, 3)))
        self.elapsed = round(self.elapsed + gap, 3)
        out = [Action("sleep", {"seconds": gap})]
        if self.elapsed >= self.duration_s - 1e-9:
            return out   # the next call heals; no fault lands at the very end
        options = self._options()
        if self.active and (not options or self.rng.random() < _UNDO_SHARE):
            key = self.rng.choice(list(self.active))
            out += self._undo(key)
        elif options:
            fault = self.rng.choice(options)
            out += self._apply(fault, leader)
        return out

    def heal_all(self) -> list[Action]:
        """Undo everything in place, newest first (a silent death: heal, then restart)."""
        out: list[Action] = []
        while self.active:
            key = list(self.active)[-1]
            out += self._undo(key)
        return out

    def run(self, leader: Callable[[], int | None] = lambda: None) -> list[Action]:
        """The whole schedule at once (tests, and reading a seed's schedule)."""
        out: list[Action] = []
        while not self.finished:
            out += self.next(leader())
        return out

    # ------------------------------------------------------------------ choosing
    def _healthy(self) -> list[int]:
        bad = self.impaired()
        return [s for s in self.ensemble.sids if s not in bad]

    def _single_candidates(self) -> list[int]:
        return [s for s in self._healthy() if self._keeps_quorum({s})]

    def _options(self) -> list[str]:
        """The faults in the plan's list that some node can take right now."""
        return list(self.faults) if self._single_candidates() else []

    def _pick_one(self, leader: int | None) -> int:
        cands = self._single_candidates()
        if leader in cands and self.rng.random() < _LEADER_SHARE:
            return leader  # type: ignore[return-value]
        return self.rng.choice(sorted(cands))

    def _pick_cut(self, leader: int | None) -> list[int]:
        """A set of healthy nodes to cut off, as large as a drawn size and the quorum allow."""
        healthy = self._healthy()
        self.rng.shuffle(healthy)
        if leader in healthy and self.rng.random() < _LEADER_SHARE:
            healthy.remove(leader)  # type: ignore[arg-type]
            healthy.insert(0, leader)  # type: ignore[arg-type]
        size = self.rng.randint(1, max(1, len(healthy) // 2))
        cut: list[int] = []
        for s in healthy:
            if len(cut) >= size:
                break
            if self._keeps_quorum({*cut, s}):
                cut.append(s)
        return sorted(cut)

    def _apply(self, fault: str, leader: int | None) -> list[Action]:
        at = self.elapsed
        if fault == "partition":
            cut = self._pick_cut(leader)
            name = self._name()
            rest = [s for s in self.ensemble.sids if s not in cut]
            self.active[name] = _Active(fault, frozenset(cut), name, at)
            blocked = sorted([a, b] for a in cut for b in rest) + sorted([b, a] for a in cut for b in rest)
            return [Action("partition", {"name": name, "groups": [cut], "port": "both",
                                         "blocked": sorted(blocked)})]
        sid = self._pick_one(leader)
        if fault == "restart":
            return [Action("restart", {"target": [sid]})]
        if fault in ("kill", "pause"):
            self.active[f"{fault}_{sid}"] = _Active(fault, frozenset({sid}), None, at)
            return [Action(fault, {"target": [sid]})]
        name = self._name()
        self.active[name] = _Active(fault, frozenset({sid}), name, at)
        if fault == "silent_death":
            return [Action("silent_death", {"target": [sid], "name": name})]
        if fault == "latency":
            ms = self.rng.choice(LATENCIES_MS)
            attrs = {"latency": ms, "jitter": ms // 2}
        else:
            attrs = {"timeout": self.rng.choice(RESET_TIMEOUTS_MS)}
        links = sorted([a, b, p] for a, b in self._pairs(sid) for p in ("election", "quorum"))
        return [Action("toxic", {"name": name, "type": fault, "attributes": attrs,
                                 "toxicity": 1.0, "target": [sid], "links": links})]

    def _pairs(self, sid: int) -> list[tuple[int, int]]:
        others = [s for s in self.ensemble.sids if s != sid]
        return [(sid, o) for o in others] + [(o, sid) for o in others]

    def _undo(self, key: str) -> list[Action]:
        f = self.active.pop(key)
        sid = min(f.sids)
        if f.fault == "kill" or f.fault == "dead":
            return [Action("restart", {"target": [sid]})]
        if f.fault == "pause":
            return [Action("resume", {"target": [sid]})]
        if f.fault == "partition":
            return [Action("heal", {"name": f.name})]
        if f.fault == "silent_death":
            # Lifting it kills the frozen process; the node stays down, and
            # impaired, until a later undo restarts it.
            self.active[f"dead_{sid}"] = _Active("dead", f.sids, None, self.elapsed)
            out = [Action("heal", {"name": f.name})]
            if self.finished:
                out += self._undo(f"dead_{sid}")
            return out
        return [Action("untoxic", {"name": f.name})]


def impaired_by_links(candidates: Iterable[int], bad_pairs: Iterable[tuple[int, int]]) -> frozenset[int]:
    """The nodes to count as cut off by link faults the nemesis did not make:
    drop the node with the most faulty links among the rest until no faulty
    link is left between them (ties: the larger sid). What remains is a set
    of nodes that all reach each other; the dropped ones are impaired."""
    keep = set(candidates)
    bad = {frozenset(p) for p in bad_pairs if p[0] != p[1]}
    dropped: set[int] = set()
    while True:
        live = [p for p in bad if p <= keep]
        if not live:
            return frozenset(dropped)
        degree: dict[int, int] = {}
        for p in live:
            for s in p:
                degree[s] = degree.get(s, 0) + 1
        worst = max(degree, key=lambda s: (degree[s], s))
        keep.discard(worst)
        dropped.add(worst)
