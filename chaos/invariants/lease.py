"""leader_lease: a leader that can no longer reach a quorum gives up leadership
within the time ZooKeeper's liveness check allows.

Theory of operation. A Zab leader counts the voters it has *heard from*
within syncLimit ticks, every half tick, and goes back to LOOKING when they
and it are not a quorum (Leader.lead; ZK-1294 made observers not count). A
leader that trusts open TCP connections, or counts observers, keeps leading a
minority for as long as the connections stay open, while the majority elects
someone else: two leaders serve. Election checks do not see this, because no
election is wrong.

From the journal: a voter is *reachable* from leader L when its process runs
unpaused and no active cut lies on the quorum-port link either way. Cuts are
the faults that hold a link shut for their whole life: partitions and silent
deaths (a black hole that keeps connections open), ``down`` (proxy disabled),
and ``timeout`` toxics. Latency, resets and byte-level toxics are not cuts:
the leader may keep its quorum through them. When L and its reachable voters
are not a quorum (the ensemble's own rule) from time t0, L must leave LEADING
by t0 + (initLimit + syncLimit + 2) ticks + a grace for a loaded machine; the
time L itself is paused does not count, since a frozen process cannot act.
Only sustained cuts are judged, so the check errs toward silence, never
toward a false alarm; what the orchestrator does once teardown began is not
judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from chaos.records import Fault, NodeEvent, Process, Teardown

from .core import Context, Finding, invariant

__all__ = ["leader_lease", "GRACE_S"]

GRACE_S = 2.0
"""Slack on top of ZooKeeper's own limits: scheduling on a loaded machine."""

_CUT_KINDS = frozenset({"partition", "silent_death"})
_CUT_TOXICS = frozenset({"down", "timeout"})


@dataclass(slots=True)
class _Lease:
    since: float            # when L stopped reaching a quorum (or began leading without one)
    since_seq: int
    paused_s: float = 0.0
    paused_at: float | None = None

    def held(self, t: float) -> float:
        """Seconds L could act since it lost its quorum."""
        paused = self.paused_s + (t - self.paused_at if self.paused_at is not None else 0.0)
        return t - self.since - paused


@dataclass(slots=True)
class _Cuts:
    by_fault: dict[str, set[tuple[int, int]]] = field(default_factory=dict)

    def apply(self, r: Fault) -> None:
        if r.phase == "undone":
            self.by_fault.pop(r.fault_id, None)
            return
        if r.phase != "effective":
            return
        toxic = (r.target or {}).get("type") if isinstance(r.target, Mapping) else None
        if r.kind in _CUT_KINDS or (r.kind == "toxic" and toxic in _CUT_TOXICS):
            pairs = {(int(a), int(b)) for a, b, port in r.links if port == "quorum"}
            if pairs:
                self.by_fault[r.fault_id] = pairs

    def cut(self, a: int, b: int) -> bool:
        return any((a, b) in p or (b, a) in p for p in self.by_fault.values())


def _bound_s(ctx: Context) -> float:
    raw = ctx.journal.plan.raw if ctx.journal.plan is not None else {}
    ens = raw.get("ensemble") if isinstance(raw, Mapping) else None
    ens = ens if isinstance(ens, Mapping) else {}
    tick = float(ens.get("tick_time_ms") or 2000) / 1000.0
    init, sync = int(ens.get("init_limit") or 10), int(ens.get("sync_limit") or 5)
    return (init + sync + 2) * tick + GRACE_S


@invariant("leader_lease")
def leader_lease(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """A leader that cannot reach a quorum of voters steps down within its
    limits (initLimit + syncLimit ticks, plus a grace)."""
    bound = _bound_s(ctx)
    cuts = _Cuts()
    leases: dict[int, _Lease] = {}
    lost = 0
    for i, r in enumerate(ctx.records):
        if isinstance(r, Teardown):
            break
        t = r.t
        for sid, lease in leases.items():
            if lease.held(t) > bound:
                lead = _leading_seq(ctx, i, sid)
                return Finding.invalid(
                    f"node {sid} kept leading {lease.held(t):.1f} s (unpaused) after it could reach no quorum of "
                    f"voters (from t={lease.since:.2f} s), over its bound of {bound:.1f} s "
                    f"((initLimit + syncLimit + 2) ticks + {GRACE_S:g} s): a leader must count only voters it "
                    "heard from within syncLimit, so it gives way to the majority's leader",
                    tuple(s for s in (lead, lease.since_seq, r.seq) if s is not None), r.seq)
        if isinstance(r, Fault):
            cuts.apply(r)
        nodes = ctx.states[i]
        for sid, n in nodes.items():
            leading = n.state == "LEADING" and n.running
            if not leading:
                leases.pop(sid, None)
                continue
            reach = [sid] + [v for v, m in nodes.items()
                             if v != sid and v in ctx.voters and m.live and not cuts.cut(sid, v)]
            if ctx.voters.is_quorum(reach):
                leases.pop(sid, None)
                continue
            lease = leases.get(sid)
            if lease is None:
                lease = leases[sid] = _Lease(t, r.seq)
                lost += 1
            if n.paused and lease.paused_at is None:
                lease.paused_at = t
            elif not n.paused and lease.paused_at is not None:
                lease.paused_s += t - lease.paused_at
                lease.paused_at = None
    return Finding.valid(f"{lost} time(s) a leader could reach no quorum; each gave way within {bound:.1f} s"
                         if lost else "no leader was ever cut off from its quorum")


def _leading_seq(ctx: Context, upto: int, sid: int) -> int | None:
    """The seq of the record that made ``sid`` LEADING, for the evidence."""
    for r in reversed(ctx.records[:upto]):
        if isinstance(r, NodeEvent) and r.sid == sid and r.event == "state_changed" and r.get("to") == "LEADING":
            return r.seq
        if isinstance(r, Process) and r.sid == sid and r.action == "started":
            return None
    return None
