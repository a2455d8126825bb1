"""Steps on node processes: pick, kill, pause, resume, stop, restart (also from a snapshot).

A pause is a fault with an undo (SIGCONT); a kill or stop is journaled as a
fault but has none — a restart starts a new process, it does not undo the
old one's death. Killing or stopping a paused node ends its pause too.
"""
from __future__ import annotations

from typing import Any

from chaos.context import RunContext
from chaos.steps import StepScope, handles
from chaos.steps.lifecycle import end_silent_death


@handles("pick")
def pick(step: Any, ctx: RunContext, scope: StepScope) -> None:
    sids = scope.target(step.target)
    scope.begin()
    ctx.bind(step.bind_as, sids)


def _pause_of(ctx: RunContext, sid: int) -> str | None:
    f = ctx.ledger.find("pause", lambda f: f.target.get("sid") == sid)
    return f.fault_id if f else None


@handles("kill", "stop", "pause")
def end_or_freeze(step: Any, ctx: RunContext, scope: StepScope) -> None:
    sids = scope.target(step.target)
    scope.begin()
    for sid in sids:
        if not ctx.target.is_running(sid):
            raise scope.fail(f"node {sid} is not running")
        if step.kind == "pause":
            def do(fid: str, sid: int = sid):
                ctx.target.pause(sid)
                return lambda: ctx.target.resume(sid)
        else:
            def do(fid: str, sid: int = sid):
                paused = _pause_of(ctx, sid)
                if paused is not None:
                    ctx.ledger.forget(paused, sid=sid, by=step.kind)
                (ctx.target.kill if step.kind == "kill" else ctx.target.stop)(sid)
                return None
        ctx.ledger.apply(step.kind, {"sid": sid}, do)
    ctx.bind(step.bind_as, sids)


@handles("resume")
def resume(step: Any, ctx: RunContext, scope: StepScope) -> None:
    sids = scope.target(step.target)
    scope.begin()
    for sid in sids:
        fid = _pause_of(ctx, sid)
        if fid is None:
            raise scope.fail(f"node {sid} is not paused")
        ctx.ledger.undo(fid, sid=sid)
    ctx.bind(step.bind_as, sids)


@handles("restart")
def restart(step: Any, ctx: RunContext, scope: StepScope) -> None:
    """Start again with the same dataDir, stopping it first if it still runs;
    a silent death ends first (killed, links lifted). With ``from``, the
    dataDir is first replaced by that snapshot (:mod:`chaos.steps.lifecycle`)."""
    sids = scope.target(step.target)
    source = getattr(step, "snapshot", None)
    if source is not None:
        scope.resolved["from"] = source
        if len(sids) != 1:
            raise scope.fail(f"restart from snapshot '{source}' takes one node; "
                             f"'{step.target}' is nodes {list(sids)}")
        if not hasattr(ctx.target, "restore"):
            raise scope.fail(f"the {ctx.target.kind} target cannot restore a dataDir")
    scope.begin()
    for sid in sids:
        fid = _pause_of(ctx, sid)
        if fid is not None:
            ctx.ledger.undo(fid, sid=sid)
        end_silent_death(ctx, sid)
        if source is None:
            ctx.target.restart(sid)
            continue
        if ctx.target.is_running(sid):
            ctx.target.stop(sid)
        try:
            ctx.target.restore(sid, source)
        except (OSError, RuntimeError, ValueError) as e:
            raise scope.fail(f"restart of node {sid} from snapshot '{source}': {e}") from None
        ctx.target.start(sid)
    ctx.bind(step.bind_as, sids)
