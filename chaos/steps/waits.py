"""The wait step: block until the cluster reaches a condition, or fail.

``stable`` is what the invariants need to see: every live voter running and
answering, exactly one node LEADING with an established (synced) epoch, and
every other live node FOLLOWING/OBSERVING it, synced, in that epoch — shown
by a poll journaled after everything that came before the wait.
"""
from __future__ import annotations

from typing import Any

from chaos.context import RunContext
from chaos.plan.model import NodeState, WaitCondition
from chaos.steps import StepScope, handles


def condition_met(ctx: RunContext, step: Any, targets: tuple[int, ...]) -> bool:
    v = ctx.status()
    live = ctx.live_voters()
    if any(not v[s].up for s in live):
        return False
    leaders = [s for s in live if v[s].state == "LEADING"]
    cond = step.condition
    if cond is WaitCondition.STATE:
        want = (step.state or NodeState.LEADING).value.upper()
        return bool(targets) and all(v[s].up and v[s].state == want for s in targets)
    if cond is WaitCondition.LEADER:
        # A deposed leader cut off in a minority may still say LEADING
        # for up to syncLimit ticks; one with an established quorum is enough.
        return any(v[s].synced for s in leaders)
    if len(leaders) != 1:
        return False
    lead = v[leaders[0]]
    if not lead.synced:
        return False

    def joined(s: int) -> bool:
        st = v[s]
        want = "OBSERVING" if ctx.plan.ensemble.is_observer(s) else "FOLLOWING"
        return (st.up and st.state == want and st.leader == lead.sid and st.synced
                and (st.epoch == lead.epoch or st.epoch is None))

    if cond is WaitCondition.JOINED:
        return bool(targets) and all(s == lead.sid or joined(s) for s in targets)
    return all(s == lead.sid or joined(s) for s in live)


def _confirmed(ctx: RunContext, step: Any, targets: tuple[int, ...]) -> bool:
    ctx.observer.confirm(s for s in ctx.plan.ensemble.sids if ctx.target.is_running(s))
    return condition_met(ctx, step, targets)


@handles("wait")
def wait(step: Any, ctx: RunContext, scope: StepScope) -> None:
    targets: tuple[int, ...] = ()
    if step.node is not None:
        try:
            targets = tuple(scope.resolved_or("node", lambda: ctx.resolve(step.node)))
        except Exception as e:  # no such node right now: the step fails, the run goes on to judge
            raise scope.fail(str(e)) from None
    elif step.condition in (WaitCondition.JOINED, WaitCondition.STATE):
        targets = tuple(ctx.live_voters())
    scope.begin()
    timeout = min(step.timeout_s, max(0.0, ctx.deadline_left()))
    end = ctx.clock() + timeout
    while True:
        # Met on the live view, then confirmed by a fresh poll of every running
        # node that goes into the journal: what the wait saw is what the
        # invariants will see, after any fault that came before it.
        if condition_met(ctx, step, targets) and _confirmed(ctx, step, targets):
            if step.condition in (WaitCondition.STABLE, WaitCondition.LEADER):
                ctx.formed = True
            scope.resolved["leader"] = ctx.view().leader
            return
        ctx.check_exits()
        left = end - ctx.clock()
        if left <= 0:
            why = ("time limit of the run reached" if ctx.deadline_left() <= 0
                   else f"timed out after {timeout:g}s")
            raise scope.fail(f"wait for {step.condition.value}: {why} (liveness failure); "
                             f"last seen: {ctx.describe_view()}")
        ctx.observer.wait_change(min(left, 0.25))
        ctx.progress.status()
