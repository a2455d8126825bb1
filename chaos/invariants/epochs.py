"""epoch_promises: a node's acceptedEpoch and currentEpoch never go back.

Why: acceptedEpoch is a promise made in Zab's discovery phase — "I will follow
no leader of an older epoch" — and it is what keeps two leaders from gathering
overlapping quorums; currentEpoch is the epoch the node established. Both live
on disk and only grow (ZooKeeper: acceptEpoch, currentEpoch files). A learner
that takes LEADERINFO of an older epoch, a leader that re-proposes a spent
epoch, or a dataDir that loses a write all show here as a value that went
down, whichever other check they also trip.

Read from the node's own events, in the order it wrote them: ``node_started``
(both, as found on disk), ``epoch_accepted`` (acceptedEpoch, as it stores it),
``epoch_established`` (currentEpoch). Status polls are not used: a poll is
journaled when it returns, so two polls of one node may land out of order. The only
legitimate way back is the plan's own ``restart: {node: X, from: NAME}``, which
replaces the dataDir with an older copy; the node's history starts again there.
"""
from __future__ import annotations

from typing import Any, Mapping

from chaos.records import NodeEvent, StepStarted

from .core import Context, Finding, as_int, invariant

__all__ = ["epoch_promises"]

_FIELDS = (("accepted_epoch", "acceptedEpoch"), ("current_epoch", "currentEpoch"))


def _reported(r: Any) -> dict[str, int]:
    """The epochs a record reports for its node, by field."""
    if not isinstance(r, NodeEvent):
        return {}
    if r.event == "node_started":
        out = {"accepted_epoch": as_int(r.get("accepted_epoch")), "current_epoch": as_int(r.get("current_epoch"))}
    elif r.event == "epoch_accepted":
        out = {"accepted_epoch": as_int(r.get("epoch"))}
    elif r.event == "epoch_established":
        out = {"current_epoch": as_int(r.get("epoch"))}
    else:
        return {}
    return {k: v for k, v in out.items() if v is not None}


@invariant("epoch_promises")
def epoch_promises(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """Each node's acceptedEpoch and currentEpoch never decrease (but across a
    restart from an older copy of its dataDir)."""
    high: dict[int, dict[str, tuple[int, int]]] = {}   # sid -> field -> (highest value, seq that showed it)
    seen = 0
    for r in ctx.records:
        if isinstance(r, StepStarted) and r.kind == "restart" and (r.resolved or {}).get("from") is not None:
            for sid in (r.resolved or {}).get("target") or []:
                high.pop(as_int(sid), None)
            continue
        sid = getattr(r, "sid", None)
        if sid is None:
            continue
        for f, value in _reported(r).items():
            seen += 1
            top = high.setdefault(sid, {}).get(f)
            if top is not None and value < top[0]:
                name = dict(_FIELDS)[f]
                return Finding.invalid(
                    f"node {sid}'s {name} went down from {top[0]} (seq {top[1]}) to {value} (seq {r.seq}): "
                    + ("it promised an epoch-" + str(top[0]) + " leader to follow no older one"
                       if f == "accepted_epoch" else "an established epoch is never given back"),
                    (top[1], r.seq), r.seq)
            if top is None or value > top[0]:
                high[sid][f] = (value, r.seq)
    if not seen:
        return Finding.unknown("no node reported its epochs")
    return Finding.valid(f"{len(high)} node(s): acceptedEpoch and currentEpoch never went down "
                         f"({seen} report(s))")
