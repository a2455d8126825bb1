"""Steps on the links between nodes: toxic, untoxic, partition, heal.

Every link fault goes through the ledger with an undo that removes exactly
what it put on, so ``untoxic``/``heal`` and the end of the run undo each fault
once. ``down`` is a plan-level fault, not a server toxic: it disables the
proxies of its links (closing their connections) and re-enables them on undo.
"""
from __future__ import annotations

from typing import Any

from chaos.context import RunContext
from chaos.plan.model import Direction
from chaos.plan.partitions import compile_partition
from chaos.records import Link
from chaos.steps import StepScope, handles

DOWN = "down"


def _toxic_links(step: Any, ctx: RunContext) -> list[Link]:
    sel = step.links
    src, dst = ctx.resolve(sel.src), ctx.resolve(sel.dst)
    out = set()
    for a in src:
        for b in dst:
            if a == b:
                continue
            for p in sel.port.ports:
                out.add((a, b, p))
                if sel.direction is Direction.BOTH:
                    out.add((b, a, p))
    return sorted(out)


@handles("toxic")
def toxic(step: Any, ctx: RunContext, scope: StepScope) -> None:
    links = [tuple(lk) for lk in scope.resolved_or("links", lambda: _toxic_links(step, ctx))]
    scope.begin()
    if not links:
        raise scope.fail("the link selector matches no link")
    target = {"name": step.name, "type": step.type, "attributes": dict(step.attributes),
              "toxicity": step.toxicity}

    def do(fid: str):
        try:
            if step.type == DOWN:
                ctx.links.down(fid, links)
            else:
                ctx.links.add_toxic(fid, "toxic", links, step.type, step.attributes, step.toxicity)
        except BaseException:
            # Half of the links may carry it already: make that half undoable.
            ctx.ledger.adopt(fid, "toxic", target, lambda: ctx.links.undo(fid), links=links, name=step.name)
            raise
        return lambda: ctx.links.undo(fid)

    ctx.ledger.apply("toxic", target, do, links=links, name=step.name)
    ctx.previous = tuple(sorted({lk[1] for lk in links}))


@handles("untoxic")
def untoxic(step: Any, ctx: RunContext, scope: StepScope) -> None:
    scope.begin()
    faults = ctx.ledger.active(kind="toxic", name=None if step.name == "all" else step.name)
    if step.name != "all" and not faults:
        raise scope.fail(f"no active toxic named '{step.name}'")
    for f in faults:
        ctx.ledger.undo(f.fault_id)


@handles("partition")
def partition(step: Any, ctx: RunContext, scope: StepScope) -> None:
    rep = scope.replayed()
    if rep is not None and "blocked" in rep:
        blocked = sorted(tuple(p) for p in rep["blocked"])
        scope.resolved.update(rep)
    else:
        v = ctx.view()
        try:
            cp = compile_partition(step.spec, ctx.plan.ensemble.sids, v.leader, ctx.rng,
                                   view=v, bindings=ctx.bindings)
        except Exception as e:
            raise scope.fail(str(e)) from None
        blocked = sorted(cp.blocked)
        scope.resolved.update(cp.to_json())
        scope.resolved["leader"] = v.leader
    scope.begin()
    ports = step.spec.port.ports
    links = [(a, b, p) for a, b in blocked for p in ports]
    target = {"spec": step.spec.to_json(), "blocked": [list(p) for p in blocked], "name": step.bind_as}

    def do(fid: str):
        try:
            ctx.links.block(fid, blocked, ports)
        except BaseException:
            ctx.ledger.adopt(fid, "partition", target, lambda: ctx.links.undo(fid), links=links,
                             name=step.bind_as)
            raise
        return lambda: ctx.links.undo(fid)

    ctx.ledger.apply("partition", target, do, links=links, name=step.bind_as)


# A silent death is healed like a partition: its undo kills the frozen node and
# lifts its black hole (chaos.steps.lifecycle).
HEALED_BY_HEAL = ("partition", "silent_death")


@handles("heal")
def heal(step: Any, ctx: RunContext, scope: StepScope) -> None:
    scope.begin()
    name = None if step.name is None or step.name == "all" else step.name
    faults = [f for f in ctx.ledger.active(name=name) if f.kind in HEALED_BY_HEAL]
    if name is not None and not faults:
        raise scope.fail(f"no active partition or silent death named '{step.name}'")
    for f in faults:
        ctx.ledger.undo(f.fault_id)
