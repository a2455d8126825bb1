"""leader_eligibility: only a voter that carries weight may lead.

ZooKeeper never adopts a zero-weight server as leader (totalOrderPredicate
returns false for it, ZK-491) and an observer never proposes itself. The
journal header says each node's role and weight; every established claim of
leadership is checked against it: a node's own ``epoch_established`` as
leader, a ``status`` poll showing it LEADING and synced, and a voter that
established an epoch following it. ``leader_validity`` keeps the ordering
check; this one is about who may stand at all.
"""

from __future__ import annotations

from typing import Any, Mapping

from chaos.records import NodeEvent, Status

from .core import Context, Finding, as_int, invariant

__all__ = ["leader_eligibility"]


def _why_ineligible(ctx: Context, sid: int) -> str | None:
    node = ctx.journal.node(sid)
    if node is None:
        return None  # a header-less journal: nothing to judge by
    if node.is_observer:
        return "an observer"
    if node.weight == 0:
        return "a voter of weight 0"
    return None


@invariant("leader_eligibility")
def leader_eligibility(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """No established leader is an observer or a weight-0 voter."""
    claims = 0
    for r in ctx.records:
        leader, how = None, ""
        if isinstance(r, NodeEvent) and r.event == "epoch_established":
            epoch = as_int(r.get("epoch"))
            if r.get("role") == "leader":
                leader, how = r.sid, f"established epoch {epoch} as leader"
            elif r.get("role") in ("follower", "observer"):
                leader = as_int(r.get("leader"))
                how = f"was followed by node {r.sid} in established epoch {epoch}"
        elif isinstance(r, Status) and r.up and r.synced and r.state == "LEADING":
            leader, how = r.sid, f"was polled LEADING and synced in epoch {r.epoch}"
        if leader is None or leader < 0:
            continue
        claims += 1
        why = _why_ineligible(ctx, leader)
        if why is not None:
            return Finding.invalid(f"node {leader}, {why}, {how} (seq {r.seq})", (r.seq,), r.seq)
    if not claims:
        return Finding.valid("no established leader to judge")
    barred = sorted(n.sid for n in ctx.journal.nodes if _why_ineligible(ctx, n.sid))
    tail = f"; never led: {', '.join(map(str, barred))} (observer or weight 0)" if barred else ""
    return Finding.valid(f"every established leader was a voter of weight > 0{tail}")
