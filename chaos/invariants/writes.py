"""Committed writes on a real ZooKeeper, judged from the client workload's read-back.

ZooKeeper's own txn log is not read here; what a client was told is what
matters: every create the workload saw acknowledged (``chaos.workload``)
must be on every server at the end (``no_committed_txn_lost``), and the
servers must hold the same znodes (``log_agreement``). A server that was not
running at the end is left out; one that was running but could not be read
leaves the verdict ``unknown``, never a guess.
"""
from __future__ import annotations

from typing import Any, Mapping

from chaos.records import WorkloadReadback

from .core import Context, Finding, target_invariant

__all__ = ["zk_no_committed_txn_lost", "zk_log_agreement"]

_NOT_RUNNING = "not running at the end"


def _readbacks(ctx: Context) -> tuple[list[WorkloadReadback], list[WorkloadReadback], Finding | None]:
    recs = [r for r in ctx.records if isinstance(r, WorkloadReadback)]
    if not recs:
        return [], [], Finding.unknown("no workload read-back in the journal (the run ended before it)")
    read = [r for r in recs if r.error is None]
    failed = [r for r in recs if r.error is not None and r.error != _NOT_RUNNING]
    return read, failed, None


@target_invariant("zookeeper", "no_committed_txn_lost")
def zk_no_committed_txn_lost(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """Every create the client saw acknowledged is on every server at the end."""
    read, failed, none = _readbacks(ctx)
    if none is not None:
        return none
    lacking = [r for r in read if r.missing_count]
    if lacking:
        r = lacking[0]
        return Finding.invalid(
            f"server {r.sid} lacks {r.missing_count} of {r.acked} acknowledged create(s), first "
            f"{', '.join(r.missing[:3])}" + (f"; {len(lacking) - 1} more server(s) lack some" if len(lacking) > 1 else ""),
            [x.seq for x in lacking])
    if failed:
        return Finding.unknown(f"server(s) {', '.join(str(r.sid) for r in failed)} could not be read back: "
                               f"{failed[0].error}")
    if not read:
        return Finding.unknown("no server could be read back")
    acked = max(r.acked for r in read)
    if acked == 0:
        if (ctx.journal.plan.raw.get("ensemble") or {}).get("txn_interval_ms") == 0:
            return Finding.valid("the plan makes no writes (txn_interval 0); none acknowledged, none lost")
        return Finding.unknown("no create was acknowledged, so none could be lost")
    return Finding.valid(f"all {acked} acknowledged create(s) on each of server(s) "
                         f"{', '.join(str(r.sid) for r in read)}")


@target_invariant("zookeeper", "log_agreement")
def zk_log_agreement(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """The servers hold the same znodes under the workload's root at the end (after a sync)."""
    read, failed, none = _readbacks(ctx)
    if none is not None:
        return none
    digests = {r.digest for r in read}
    if len(digests) > 1:
        desc = "; ".join(f"server {r.sid}: {r.held} znodes ({r.extra_count} unacknowledged)" for r in read)
        return Finding.invalid(f"servers disagree on the znodes they hold: {desc}", [r.seq for r in read])
    if failed:
        return Finding.unknown(f"server(s) {', '.join(str(r.sid) for r in failed)} could not be read back")
    if len(read) < 2:
        return Finding.unknown("fewer than two servers read back: nothing to compare")
    return Finding.valid(f"server(s) {', '.join(str(r.sid) for r in read)} hold the same {read[0].held} znodes")
