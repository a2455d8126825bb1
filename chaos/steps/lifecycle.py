"""Steps on a node's life beyond kill and restart: start, snapshot, silent_death, reboot.

``start`` brings up a node that is not running (one the ensemble's ``start:``
left out, or one killed or stopped), and refuses a running one.

``snapshot`` copies a stopped node's dataDir through the target
(``snapshot(sid, name)``); ``restart: {node, from}`` (:mod:`chaos.steps.nodes`)
puts the copy back (``restore(sid, name)``) before the node starts.

``silent_death`` is one fault in the ledger, kind ``silent_death``: the process
is frozen (SIGSTOP) and every link of the node black-holed behind it (the
timeout-0 toxic drops bytes and leaves the connections open). It is not
killed there: a killed process's kernel sends a FIN on every socket, the
proxy sees it as the end of the stream and the timeout toxic passes that on
as a close (so does Toxiproxy's), and its peers would know at once. A frozen
one sends nothing. The undo — ``heal``, or the end of the steps — kills the
process (if it is still the frozen one) and then lifts the black hole, so the
peers' connections end only then, and the node stays down until a
``restart`` (which ends a silent death first) or a ``start``.

``reboot`` is one fault per node, kind ``reboot``, made and undone inside the
step: the node's wire is cut in the kernel (:mod:`chaos.wirecut`), the
process killed behind it, and after ``down`` the cut is lifted (the undo) and
the node started. Unlike a silent death's heal, lifting the cut closes
nothing: the peers' connections to the dead process stay half-open.
"""
from __future__ import annotations

from typing import Any

from chaos.context import RunContext
from chaos.links import PORTS
from chaos.steps import StepScope, handles

__all__ = ["silent_death_of", "end_silent_death", "REBOOT"]

SILENT_DEATH = "silent_death"
REBOOT = "reboot"


@handles("start")
def start(step: Any, ctx: RunContext, scope: StepScope) -> None:
    sids = scope.target(step.target)
    scope.begin()
    running = [s for s in sids if ctx.target.is_running(s)]
    if running:
        raise scope.fail(f"node {running[0]} is already running; restart stops and starts a node")
    for sid in sids:
        ctx.target.start(sid)
    ctx.bind(step.bind_as, sids)


@handles("snapshot")
def snapshot(step: Any, ctx: RunContext, scope: StepScope) -> None:
    sids = scope.target(step.node)
    scope.resolved["as"] = step.name
    if len(sids) != 1:
        raise scope.fail(f"a snapshot copies one node's dataDir; '{step.node}' is nodes {list(sids)}")
    sid = sids[0]
    if ctx.target.is_running(sid):
        raise scope.fail(f"node {sid} is running: snapshot copies a stopped node's dataDir "
                         "(stop or kill it first)")
    take = getattr(ctx.target, "snapshot", None)
    if take is None:
        raise scope.fail(f"the {ctx.target.kind} target cannot copy a dataDir")
    try:
        scope.resolved.update(take(sid, step.name))
    except (OSError, RuntimeError, ValueError) as e:
        raise scope.fail(f"snapshot of node {sid}: {e}") from None
    scope.begin()


def silent_death_of(ctx: RunContext, sid: int) -> str | None:
    f = ctx.ledger.find(SILENT_DEATH, lambda f: f.target.get("sid") == sid)
    return f.fault_id if f else None


def end_silent_death(ctx: RunContext, sid: int) -> None:
    """Undo the silent death of ``sid``, if any (a restart brings the node back with its links)."""
    fid = silent_death_of(ctx, sid)
    if fid is not None:
        ctx.ledger.undo(fid, sid=sid)


@handles("silent_death")
def silent_death(step: Any, ctx: RunContext, scope: StepScope) -> None:
    sids = scope.target(step.target)
    name = step.bind_as
    scope.begin()
    for sid in sids:
        if not ctx.target.is_running(sid):
            raise scope.fail(f"node {sid} is not running")
        if silent_death_of(ctx, sid) is not None:
            raise scope.fail(f"node {sid} is silently dead already")
    for sid in sids:
        others = [s for s in ctx.plan.ensemble.sids if s != sid]
        pairs = [(sid, o) for o in others] + [(o, sid) for o in others]
        links = sorted((a, b, p) for a, b in pairs for p in PORTS)
        target = {"sid": sid, "name": name, "blocked": sorted([a, b] for a, b in pairs)}
        pid = ctx.target.pid(sid) if hasattr(ctx.target, "pid") else None

        def undo(fid: str, sid: int = sid, pid: int | None = pid) -> Any:
            still = pid is None or (hasattr(ctx.target, "pid") and ctx.target.pid(sid) == pid)
            if still and ctx.target.is_running(sid):
                ctx.target.kill(sid)   # the FIN goes out now, behind the black hole still
            return ctx.links.undo(fid)

        def do(fid: str, sid: int = sid, pairs: list = pairs, target: dict = target,
               links: list = links) -> Any:
            try:
                # Frozen first: it acts no more from this instant (putting the
                # toxics on takes a while, and a live node would notice its
                # links going quiet and close them itself).
                paused = ctx.ledger.find("pause", lambda f: f.target.get("sid") == sid)
                if paused is not None:   # frozen already: the silent death takes the freeze over
                    ctx.ledger.forget(paused.fault_id, sid=sid, by=SILENT_DEATH)
                else:
                    ctx.target.pause(sid)
                ctx.links.block(fid, pairs, PORTS)
            except BaseException:
                ctx.ledger.adopt(fid, SILENT_DEATH, target, lambda: undo(fid), links=links, name=name)
                raise
            return lambda: undo(fid)

        ctx.ledger.apply(SILENT_DEATH, target, do, links=links, name=name)
    ctx.bind(step.bind_as, sids)


@handles("reboot")
def reboot(step: Any, ctx: RunContext, scope: StepScope) -> None:
    sids = scope.target(step.target)
    scope.resolved["down_ms"] = round(step.down_s * 1000)
    scope.begin()
    wire = ctx.wire
    if wire is None:   # the runner makes one for every plan that reboots
        raise scope.fail("this run has no wire cutter (chaos.wirecut)")
    for sid in sids:
        if not ctx.target.is_running(sid):
            raise scope.fail(f"node {sid} is not running")
        if silent_death_of(ctx, sid) is not None:
            raise scope.fail(f"node {sid} is silently dead; a reboot needs a running node")
    fids = []
    for sid in sids:
        def do(fid: str, sid: int = sid) -> Any:
            try:
                wire.cut(sid)
                paused = ctx.ledger.find("pause", lambda f: f.target.get("sid") == sid)
                if paused is not None:
                    ctx.ledger.forget(paused.fault_id, sid=sid, by=REBOOT)
                ctx.target.kill(sid)    # its FINs die at the cut
                wire.forget(sid)        # and its kernel's sockets with them, as a reboot's would
            except BaseException:
                ctx.ledger.adopt(fid, REBOOT, {"sid": sid}, lambda: wire.lift(sid))
                raise
            return lambda: wire.lift(sid)
        fids.append(ctx.ledger.apply(REBOOT, {"sid": sid, "down_ms": scope.resolved["down_ms"]}, do))
    cut_short = not ctx.sleep_within_limit(step.down_s)
    for fid, sid in zip(fids, sids):
        ctx.ledger.undo(fid, sid=sid)   # the wire back; half-open connections stay
        ctx.target.start(sid)
    ctx.bind(step.bind_as, sids)
    if cut_short:   # the node is back, but not after the down time the plan asked for
        raise scope.fail(f"time limit of {ctx.time_limit:g}s reached while node(s) {list(sids)} were down")
