"""election_cost: what each election cost, against the plan's bounds.

Theory of operation. A node's election runs from its ``election_started`` to
its ``election_finished`` (a restart or a new ``election_started`` abandons an
open one). Its cost, per node and election:

  rounds         the logical-clock values the node voted in: the node's own
                 ``rounds`` field when it reports one, else the distinct
                 ``round`` values of the LOOKING notifications it sent (every
                 one carries its logical clock). Catching up with a running
                 ensemble's round counts as a round.
  notifications  ``notifications_sent + notifications_received`` as the node
                 counted them in ``election_finished``, less the echoes with
                 non-voters (``nonvoter_echoes``, one of each): a voter answers
                 every observer notification at once, as ZooKeeper's
                 WorkerReceiver does, so a LOOKING voter and an OBSERVING
                 observer trade them at machine speed until the voter decides;
                 their number measures the CPU, not the election.
  duration       ``duration_ms`` of ``election_finished``.

Judged are the elections that start once the ensemble first formed (a leader
with a following quorum) and finish before the harness tears the run down
(one still open at teardown on a node that ran unpaused is judged on what it
cost until then, so a runaway election that never finishes goes over a bound):
before that the cost measures how fast the harness starts processes, after it
how it stops them. Bugs that make elections slower but not wrong (an extra
round, a re-send storm, a lost finalize wait) show here and nowhere else.

Parameters (all optional): ``max_rounds``, ``max_notifications`` (per node and
election, sent + received) and ``max_ms``. Over a bound is ``invalid``; with
no bound the verdict is ``valid`` with the counts. When notification events
were capped (a ``notifications_capped`` record, or fewer events than the
node counted) or not written, the rounds of that election are only a lower
bound: over the bound is still ``invalid``, within it ``unknown``.
Plans take bounds from clean runs with ``election_cost: baseline``
(``chaos.baselines``; the parser turns it into the three numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from chaos.records import Journal, NodeEvent, NotificationsCapped, Process, Teardown

from .core import Context, Finding, as_int, invariant

__all__ = ["election_cost", "ElectionCost", "election_costs", "unfinished_elections", "judged_costs", "p99",
           "BOUND_KEYS"]

BOUND_KEYS = ("max_rounds", "max_notifications", "max_ms")


@dataclass(frozen=True, slots=True)
class ElectionCost:
    sid: int
    start_seq: int
    finish_seq: int
    t: float
    path: str
    rounds: int
    rounds_complete: bool
    notifications: int
    duration_ms: float
    judged: bool
    why_not: str = ""

    def describe(self) -> str:
        return (f"node {self.sid} (seq {self.finish_seq}, {self.path}): {self.rounds} round(s)"
                f"{'' if self.rounds_complete else '+'}, {self.notifications} notifications, "
                f"{self.duration_ms:.0f} ms")


def _formed_at(ctx: Context) -> float | None:
    for i, r in enumerate(ctx.records):
        if ctx.leading_quorum(ctx.states[i]):
            return r.t
    return None


_Open = dict[int, tuple[NodeEvent, set[int], int]]  # sid -> (election_started, LOOKING rounds sent, sends)


def _count_sent(open_: _Open, r: NodeEvent) -> None:
    """One more notification sent in ``r.sid``'s open election; a LOOKING one names its round."""
    start, rounds, n = open_[r.sid]
    rnd = as_int(r.get("round"))
    if r.get("state") == "LOOKING" and rnd is not None:
        rounds.add(rnd)
    open_[r.sid] = (start, rounds, n + 1)


def election_costs(ctx: Context) -> list[ElectionCost]:
    """Every finished election in the journal, in time order."""
    formed = _formed_at(ctx)
    teardown = next((r.t for r in ctx.records if isinstance(r, Teardown)), None)
    capped = {r.election_seq for r in ctx.records if isinstance(r, NotificationsCapped)}
    open_: dict[int, tuple[NodeEvent, set[int], int]] = {}  # sid -> (start, LOOKING rounds sent, sent events)
    out: list[ElectionCost] = []
    for r in ctx.records:
        if isinstance(r, Process) and r.action == "started" and r.sid is not None:
            open_.pop(r.sid, None)
            continue
        if not isinstance(r, NodeEvent) or r.sid is None:
            continue
        if r.event in ("node_started", "election_started"):
            open_.pop(r.sid, None)
            if r.event == "election_started":
                open_[r.sid] = (r, set(), 0)
        elif r.event == "notification_sent" and r.sid in open_ and as_int(r.get("to")) in ctx.voters:
            _count_sent(open_, r)  # echoes to non-voters are neither logged in full nor counted
        elif r.event == "election_finished" and r.sid in open_:
            start, rounds, n_sent = open_.pop(r.sid)
            echoes = as_int(r.get("nonvoter_echoes")) or 0
            sent = max(0, (as_int(r.get("notifications_sent")) or 0) - echoes)
            received = max(0, (as_int(r.get("notifications_received")) or 0) - echoes)
            duration = r.get("duration_ms")
            duration = float(duration) if isinstance(duration, (int, float)) and not isinstance(duration, bool) \
                else 1000.0 * max(0.0, r.t - start.t)
            reported = as_int(r.get("rounds"))
            if reported is not None:
                n_rounds, complete = reported, True
            else:
                n_rounds, complete = max(1, len(rounds)), n_sent >= sent and start.seq not in capped
            why = ""
            if formed is None or start.t < formed:
                why = "before the ensemble formed"
            elif teardown is not None and r.t >= teardown:
                why = "during teardown"
            out.append(ElectionCost(r.sid, start.seq, r.seq, start.t, str(r.get("path") or "?"), n_rounds,
                                    complete, sent + received, duration, not why, why))
    return out


def unfinished_elections(ctx: Context) -> list[ElectionCost]:
    """Elections still open when the harness tore the run down, started after
    the ensemble formed, on a node that ran unpaused throughout: a runaway
    election never writes ``election_finished``. Every figure is a lower bound
    (time until teardown, notifications sent so far), so only going over a
    bound means anything."""
    formed = _formed_at(ctx)
    teardown = next((r.t for r in ctx.records if isinstance(r, Teardown)), None)
    if formed is None or teardown is None:
        return []
    open_: dict[int, tuple[NodeEvent, set[int], int]] = {}
    for r in ctx.records:
        if r.t >= teardown:
            break
        if isinstance(r, Process) and r.sid is not None:
            open_.pop(r.sid, None)  # started, killed, stopped, paused: not the node's own slowness
            continue
        if not isinstance(r, NodeEvent) or r.sid is None:
            continue
        if r.event in ("node_started", "election_finished"):
            open_.pop(r.sid, None)
        elif r.event == "election_started":
            open_[r.sid] = (r, set(), 0)
        elif r.event == "notification_sent" and r.sid in open_ and as_int(r.get("to")) in ctx.voters:
            _count_sent(open_, r)  # echoes to non-voters are neither logged in full nor counted
    return [ElectionCost(sid, start.seq, start.seq, start.t, "unfinished", max(1, len(rounds)), False, n,
                         1000.0 * (teardown - start.t), False, "unfinished at teardown")
            for sid, (start, rounds, n) in sorted(open_.items()) if start.t >= formed]


def judged_costs(journal: Journal) -> list[ElectionCost]:
    """The elections ``election_cost`` judges (what ``chaos baseline`` records)."""
    return [c for c in election_costs(Context.of(journal)) if c.judged]


def p99(values: Iterable[float]) -> float:
    """Nearest-rank 99th percentile (the maximum below 100 values)."""
    v = sorted(values)
    return v[max(0, math.ceil(0.99 * len(v)) - 1)] if v else 0.0


def _bound(spec: Mapping[str, Any], key: str) -> float | None:
    v = spec.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else None


@invariant("election_cost")
def election_cost(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """Each election's rounds, notifications and duration stay within the
    plan's bounds (``max_rounds``, ``max_notifications``, ``max_ms``)."""
    if isinstance(spec.get("missing"), str):
        return Finding.unknown(f"no bounds to judge by: {spec['missing']}")
    costs = election_costs(ctx)
    judged = [c for c in costs if c.judged]
    skipped = len(costs) - len(judged)
    bounds = {k: _bound(spec, k) for k in BOUND_KEYS}
    source = spec.get("source")
    over: list[tuple[ElectionCost, str]] = []
    unsure: list[ElectionCost] = []
    for c in judged:
        why = []
        if bounds["max_rounds"] is not None and c.rounds > bounds["max_rounds"]:
            why.append(f"{c.rounds} rounds > {bounds['max_rounds']:g}")
        elif bounds["max_rounds"] is not None and not c.rounds_complete:
            unsure.append(c)
        if bounds["max_notifications"] is not None and c.notifications > bounds["max_notifications"]:
            why.append(f"{c.notifications} notifications > {bounds['max_notifications']:g}")
        if bounds["max_ms"] is not None and c.duration_ms > bounds["max_ms"]:
            why.append(f"{c.duration_ms:.0f} ms > {bounds['max_ms']:g} ms")
        if why:
            over.append((c, ", ".join(why)))
    for c in unfinished_elections(ctx):  # lower bounds: only over a bound counts
        why = [f"at least {v:g} {what} > {bounds[key]:g}" for key, v, what in (
            ("max_rounds", c.rounds, "rounds"), ("max_notifications", c.notifications, "notifications sent"),
            ("max_ms", round(c.duration_ms), "ms")) if bounds[key] is not None and v > bounds[key]]
        if why:
            over.append((c, "never finished: " + ", ".join(why)))
    set_bounds = ", ".join(f"{k} {v:g}" for k, v in bounds.items() if v is not None)
    of = f" ({source})" if isinstance(source, str) and source else ""
    if over:
        shown = "; ".join(f"node {c.sid} election at seq {c.finish_seq} ({c.path}): {why}" for c, why in over[:3])
        more = f"; and {len(over) - 3} more" if len(over) > 3 else ""
        evidence = sorted({s for c, _ in over for s in (c.start_seq, c.finish_seq)})
        return Finding.invalid(f"{len(over)} election(s) over the bounds{of} [{set_bounds}]: "
                               f"{shown}{more}", evidence, over[0][0].finish_seq)
    if not judged:
        return Finding.valid(f"no election to judge ({skipped} at formation or teardown)")
    worst_r = max(judged, key=lambda c: c.rounds)
    worst_n = max(judged, key=lambda c: c.notifications)
    summary = (f"{len(judged)} election(s): rounds max {worst_r.rounds} (node {worst_r.sid}, seq "
               f"{worst_r.finish_seq}), notifications max {worst_n.notifications} (node {worst_n.sid}, seq "
               f"{worst_n.finish_seq}), duration max {max(c.duration_ms for c in judged):.0f} ms, "
               f"p99 {p99(c.duration_ms for c in judged):.0f} ms"
               + (f"; {skipped} at formation or teardown not judged" if skipped else ""))
    if unsure:
        return Finding.unknown(f"{len(unsure)} election(s) have capped or missing notification events, so "
                               f"their rounds are unknown (capped), e.g. {unsure[0].describe()}; {summary}")
    if not set_bounds:
        return Finding.valid(f"no bounds set; {summary}")
    return Finding.valid(f"within [{set_bounds}]{of}; {summary}")
