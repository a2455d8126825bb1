"""The nemesis step: a seeded schedule of faults, run as plain child steps.

Theory of operation. :class:`chaos.nemesis.NemesisSchedule` decides; this
handler only acts. Each :class:`~chaos.nemesis.Action` becomes the plain step
of its kind (``kill``, ``pause``, ``resume``, ``restart``, ``silent_death``,
``partition``, ``heal``, ``toxic``, ``untoxic``, ``sleep``) and runs through
:func:`chaos.steps.run_step` at the journal path ``<nemesis path>.nemesis[k]``,
with the action's ``resolved`` (concrete sids, names, attributes, seconds)
journaled on it. So every fault goes through the plain handler and the
:class:`~chaos.faults.FaultLedger`, ``step_started``/``step_finished`` tell a
reader (and ``chaos shrink``) the plain plan it equals, and the end of the
run undoes whatever a failed nemesis left.

The nemesis's own ``resolved`` holds ``seed`` (drawn from the run's RNG),
``baseline`` (the nodes impaired before it began, which it leaves alone) and
``actions`` (the children's kinds, in order). ``--replay`` re-runs exactly
those children with their recorded ``resolved`` instead of asking the
generator, so the replayed schedule is the recorded one even where the
cluster (who leads) turned out differently.
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Mapping

from chaos.context import RunContext
from chaos.nemesis import Action, NemesisSchedule, impaired_by_links
from chaos.plan.durations import format_duration
from chaos.plan.model import (Direction, FrozenDict, Heal, LinkSelector, NodeStep, Partition,
                              PartitionKind, PartitionSpec, Port, Restart, Role, Selector,
                              SilentDeath, Sleep, Step, ToxicAdd, ToxicRemove)
from chaos.steps import StepScope, handles, run_step

__all__ = ["child_step", "baseline_impaired", "HEAL_MARGIN_S"]

# Stop drawing faults when less than this is left of the run's time limit, so
# the undo of everything in place still fits.
HEAL_MARGIN_S = 8.0
_LINK_FAULTS = ("toxic", "partition", "silent_death")


def child_step(action: Action, path: str) -> Step:
    """The plain step an action equals, at its journal path."""
    r = action.resolved
    kind = action.kind
    if kind == "sleep":
        seconds = float(r["seconds"])
        return Sleep(seconds, path, f"nemesis: sleep {format_duration(seconds)}")
    if kind in ("kill", "pause", "resume", "restart", "silent_death"):
        (sid,) = r["target"]
        sel = Selector.sid(int(sid))
        if kind == "silent_death":
            step: Step = SilentDeath(sel, r.get("name"), path)
        elif kind == "restart":
            step = Restart("restart", sel, None, path)
        else:
            step = NodeStep(kind, sel, None, path)
    elif kind == "partition":
        groups = tuple(tuple(int(s) for s in g) for g in r["groups"])
        spec = PartitionSpec(PartitionKind.GROUPS, groups=groups, port=Port(r.get("port", "both")))
        step = Partition(spec, r["name"], path)
    elif kind == "heal":
        step = Heal(r["name"], path)
    elif kind == "toxic":
        (sid,) = r["target"]
        links = LinkSelector(Selector.sid(int(sid)), Selector.role(Role.ALL), Port.BOTH,
                             Direction.BOTH)
        step = ToxicAdd(r["name"], r["type"], FrozenDict(r["attributes"]),
                        float(r.get("toxicity", 1.0)), links, path)
    elif kind == "untoxic":
        step = ToxicRemove(r["name"], path)
    else:
        raise ValueError(f"a nemesis has no action '{kind}'")
    return _labelled(step)


def _labelled(step: Step) -> Step:
    return replace(step, label=f"nemesis: {step.describe()}") if not step.label else step


def baseline_impaired(ctx: RunContext) -> frozenset[int]:
    """Nodes impaired by what came before the nemesis: down, frozen, or cut
    off by link faults (the fewest nodes whose removal leaves the rest all
    reaching each other)."""
    sids = ctx.plan.ensemble.sids
    frozen = ctx.paused()
    down = {s for s in sids if not ctx.target.is_running(s) or s in frozen}
    bad = {(a, b) for f in ctx.ledger.active() if f.kind in _LINK_FAULTS for a, b, _ in f.links}
    return frozenset(down) | impaired_by_links([s for s in sids if s not in down], bad)


@handles("nemesis")
def nemesis(step: Any, ctx: RunContext, scope: StepScope) -> None:
    previous = ctx.previous
    kinds: list[str] = []
    rep = scope.replayed()
    try:
        if rep is not None and isinstance(rep.get("actions"), (list, tuple)):
            scope.resolved.update({k: _plain(rep[k]) for k in ("seed", "baseline") if k in rep})
            scope.resolved["actions"] = kinds
            scope.begin()
            for k, kind in enumerate(rep["actions"]):
                recorded = (ctx.replay.get(_child_path(scope, k)) or [{}])[0]
                _run(ctx, scope, k, Action(kind, _plain(recorded)), kinds)
            return
        seed = scope.resolved_or("seed", lambda: ctx.rng.randrange(2**31))
        baseline = baseline_impaired(ctx)
        scope.resolved["baseline"] = sorted(baseline)
        scope.resolved["actions"] = kinds
        sched = NemesisSchedule(ctx.plan.ensemble, step.faults, step.interval_s, step.duration_s,
                                random.Random(seed), baseline)
        scope.begin()
        k = 0
        while not sched.finished:
            if ctx.deadline_left() < HEAL_MARGIN_S:
                scope.resolved["cut_short"] = True
                sched.finished = True
                actions = sched.heal_all()
            else:
                actions = sched.next(ctx.view().leader)
            for action in actions:
                _run(ctx, scope, k, action, kinds)
                k += 1
    finally:
        ctx.previous = previous


def _plain(value: Any) -> Any:
    """A journal value (read back frozen: tuples, read-only mappings) as plain JSON types."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _child_path(scope: StepScope, k: int) -> str:
    return f"{scope.path}.nemesis[{k}]"


def _run(ctx: RunContext, scope: StepScope, k: int, action: Action, kinds: list[str]) -> None:
    path = _child_path(scope, k)
    kinds.append(action.kind)
    run_step(ctx, child_step(action, path), path, resolved=action.resolved)
