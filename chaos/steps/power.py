"""``power_loss``: nodes lose power at once, and with it what they never fsync'ed.

One fault per node in the ledger, kind ``power_loss``, with no undo (a
restart starts a new process on what survived, it does not undo the cut).
First every selected node's process is killed — a frozen (paused or silently
dead) one too, ending that fault — then each node's lazy disk drops its
unsynced writes (``unsynced_lost`` record: files, bytes). Killing all before
dropping any is what "at once" means: no selected node acts after another
lost its cache. The runner put the nodes' ``version-2`` directories on lazy
disks at setup because the plan has this step (:mod:`chaos.lazyfs`).
"""
from __future__ import annotations

from typing import Any

from chaos.context import RunContext
from chaos.records import UnsyncedLost
from chaos.steps import StepScope, handles
from chaos.steps.lifecycle import end_silent_death

POWER_LOSS = "power_loss"


@handles(POWER_LOSS)
def power_loss(step: Any, ctx: RunContext, scope: StepScope) -> None:
    def union() -> tuple[int, ...]:
        return tuple(sorted({s for sel in step.targets for s in ctx.resolve(sel)}))
    try:
        sids = tuple(scope.resolved_or("target", union))
    except Exception as e:
        raise scope.fail(str(e)) from None
    if not sids:
        raise scope.fail(f"'{step.describe()}' matches no node")
    scope.begin()
    cut = getattr(ctx.target, "power_loss", None)
    if cut is None or not getattr(ctx.target, "disks", None):
        raise scope.fail(f"the {ctx.target.kind} target has no lazy disks: power_loss cannot drop "
                         "unsynced writes there")
    for sid in sids:
        def do(fid: str, sid: int = sid) -> None:
            paused = ctx.ledger.find("pause", lambda f: f.target.get("sid") == sid)
            if paused is not None:
                ctx.ledger.forget(paused.fault_id, sid=sid, by=POWER_LOSS)
            end_silent_death(ctx, sid)   # kills the frozen node, lifts its black hole
            cut(sid)
            return None
        ctx.ledger.apply(POWER_LOSS, {"sid": sid, "at_once": list(sids)}, do)
    for sid in sids:
        try:
            ctx.record(UnsyncedLost, sid=sid, **ctx.target.lose_unsynced(sid))
        except Exception as e:
            ctx.record(UnsyncedLost, sid=sid, error=f"{type(e).__name__}: {e}")
            raise scope.fail(f"node {sid}: unsynced writes not dropped: {e}") from None
    ctx.bind(step.bind_as, sids)
