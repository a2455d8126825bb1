"""log_agreement: the nodes' txn logs are one history.

Theory of operation. Zab keeps histories prefix-ordered: a learner that
established epoch E with leader L holds exactly L's history as it was when L
established E (plus proposals of E itself); a learner's log can only differ
from a later leader's in a tail that was never committed, and only until it
syncs again (TRUNC cuts that tail). Two moments are checked:

* **at every established epoch** (``epoch_established`` events): a learner's
  last zxid of an epoch before E must be the leader's own last zxid at its
  establishment of E. The leader appends nothing older than E after that, so
  any other value means the learner skipped part of the DIFF (below) or kept
  a tail the leader never had (above: a TRUNC not applied). A zxid of a
  later epoch than E is a txn from the future.
* **at the end** (``log_summary`` records): the reference is the log of the
  final leader F (the leader of the highest established epoch). A node whose
  last establishment was F's epoch under F ("synced with the final leader")
  must hold a prefix of F's log: no txn F lacks below F's last zxid, no hole,
  and nothing of an older epoch beyond it. A node started again after its
  last sync and never synced since (its dataDir may be an older copy) is not
  judged for its log. Every other node (dead, or left behind in a partition)
  is judged only on what it cannot have legally: a divergence at or below its own commit mark, or a
  divergence below a txn of a later epoch that both logs hold (both then
  synced with that epoch's one leader, so both copied its history).

The message names the first divergent zxid of each node, hex and epoch:counter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from chaos.records import LogSummary, NodeEvent, Process, Status

from .core import Context, Finding, as_int, invariant

__all__ = ["log_agreement", "first_divergence", "Divergence"]

Z = tuple[int, int]  # (epoch, counter): orders as zxids do, and never overflows on hostile input
Runs = tuple[tuple[int, int, int], ...]


def _z(zxid: int) -> Z:
    return (zxid >> 32, zxid & 0xFFFFFFFF)


def _fmt(z: Z) -> str:
    e, c = z
    hexed = f"{(e << 32) | c:#x}" if e >= 0 else "-"
    return f"{hexed} ({e}:{c})"


def _norm(runs: Iterable[tuple[int, int, int]]) -> list[list[int]]:
    return [[e, f, last] for e, f, last in sorted(runs) if f <= last]


@dataclass(frozen=True, slots=True)
class Divergence:
    """Where two logs part. ``at`` is the first zxid held by one and not the
    other; ``holder`` says which (``"a"`` or ``"b"``); ``other_goes_on`` is
    true when the log lacking ``at`` holds a later zxid (a real fork or hole)
    rather than simply ending before it."""

    at: Z
    holder: str
    other_goes_on: bool


def first_divergence(a: Runs, b: Runs) -> Divergence | None:
    """None when the logs are equal; when one is a prefix of the other, the
    first zxid only the longer one holds (``other_goes_on`` false)."""
    ra, rb = _norm(a), _norm(b)
    i = j = 0
    ca = ra[0][1] if ra else 0
    cb = rb[0][1] if rb else 0
    while True:
        if i >= len(ra) or j >= len(rb):
            if i >= len(ra) and j >= len(rb):
                return None
            if i >= len(ra):
                return Divergence((rb[j][0], cb), "b", False)
            return Divergence((ra[i][0], ca), "a", False)
        za, zb = (ra[i][0], ca), (rb[j][0], cb)
        if za != zb:
            return Divergence(za, "a", True) if za < zb else Divergence(zb, "b", True)
        step = min(ra[i][2] - ca, rb[j][2] - cb) + 1  # skip the shared stretch of both runs at once
        ca, cb = ca + step, cb + step
        if ca > ra[i][2]:
            i += 1
            ca = ra[i][1] if i < len(ra) else 0
        if cb > rb[j][2]:
            j += 1
            cb = rb[j][1] if j < len(rb) else 0


def _epochs(runs: Runs) -> set[int]:
    return {e for e, f, last in runs if f <= last}


def _last(runs: Runs) -> Z | None:
    norm = _norm(runs)
    return (norm[-1][0], norm[-1][2]) if norm else None


@dataclass(frozen=True, slots=True)
class _Established:
    sid: int
    role: str
    epoch: int
    leader: int
    last_zxid: int | None
    seq: int


def _establishments(ctx: Context) -> list[_Established]:
    out = []
    for r in ctx.records:
        if isinstance(r, NodeEvent) and r.event == "epoch_established" and r.sid is not None:
            epoch, role = as_int(r.get("epoch")), r.get("role")
            leader = r.sid if role == "leader" else as_int(r.get("leader"))
            if epoch is None or leader is None or role not in ("leader", "follower", "observer"):
                continue
            out.append(_Established(r.sid, role, epoch, leader, as_int(r.get("last_zxid")), r.seq))
        elif (isinstance(r, Status) and r.up and r.synced and r.sid is not None and r.epoch is not None
              and r.state in ("LEADING", "FOLLOWING", "OBSERVING")):
            leader = r.sid if r.state == "LEADING" else r.leader
            if leader is not None and leader >= 0:
                role = {"LEADING": "leader", "FOLLOWING": "follower", "OBSERVING": "observer"}[r.state]
                out.append(_Established(r.sid, role, r.epoch, leader, None, r.seq))
    return out


def _check_epochs(ests: list[_Established]) -> Finding | None:
    """Each learner's history at establishment against its leader's."""
    leaders = {(e.epoch, e.sid): e for e in ests if e.role == "leader" and e.last_zxid is not None}
    for e in ests:
        if e.role == "leader" or e.last_zxid is None:
            continue
        lead = leaders.get((e.epoch, e.leader))
        z = _z(e.last_zxid)
        if z[0] > e.epoch:
            return Finding.invalid(
                f"node {e.sid} established epoch {e.epoch} following {e.leader} with last zxid {_fmt(z)}, "
                f"a txn of a later epoch", (e.seq,), e.seq)
        if lead is None or z[0] == e.epoch:
            continue
        zl = _z(lead.last_zxid)
        if z != zl:
            what = (f"keeps txns above the leader's last, up to {_fmt(z)} (a TRUNC not applied)" if z > zl
                    else f"stops at {_fmt(z)}, short of the leader's history (a DIFF not applied)")
            return Finding.invalid(
                f"node {e.sid} established epoch {e.epoch} following {e.leader} with last zxid {_fmt(z)}, "
                f"but the leader established it with last zxid {_fmt(zl)} (seq {lead.seq}): node {e.sid} "
                f"{what}", (lead.seq, e.seq), e.seq)
    return None


def _summaries(ctx: Context) -> dict[int, LogSummary]:
    out: dict[int, LogSummary] = {}
    for r in ctx.records:
        if isinstance(r, LogSummary) and r.sid is not None:
            out[r.sid] = r  # the last one: the log at the end
    return out


def _judge_end(ctx: Context, ests: list[_Established], logs: dict[int, LogSummary]) -> Finding:
    leads = [e for e in ests if e.role == "leader"]
    if not leads:
        return Finding.valid("no established epoch; nothing to compare the logs against")
    final = max(leads, key=lambda e: (e.epoch, e.seq))
    ref = logs.get(final.sid)
    if ref is None or ref.runs is None:
        why = "has no log summary" if ref is None else f"could not be read ({ref.error or 'no runs'})"
        return Finding.unknown(f"the final leader {final.sid}'s log (epoch {final.epoch}) {why}; "
                               "the logs cannot be compared")
    last_est: dict[int, _Established] = {}
    for e in ests:
        last_est[e.sid] = e  # records are in time order
    order = {r.seq: i for i, r in enumerate(ctx.records)}
    restarted: dict[int, int] = {}  # sid -> seq of its last process start
    for r in ctx.records:
        if isinstance(r, Process) and r.action == "started" and r.sid is not None:
            restarted[r.sid] = r.seq
    again = restarted.get(final.sid)
    if again is not None and order.get(again, -1) > order.get(final.seq, -1):
        return Finding.valid(f"the final leader {final.sid} (epoch {final.epoch}) was started again at seq {again} "
                             "and never led since; its log is no reference, so the final logs were not compared")
    ref_last = _last(ref.runs)
    judged, spared, bad = [], [], []
    for sid in sorted(logs):
        if sid == final.sid:
            continue
        summary = logs[sid]
        if summary.runs is None:
            spared.append(f"{sid} (log unreadable)")
            continue
        est = last_est.get(sid)
        again = restarted.get(sid)
        if est is not None and again is not None and order.get(again, -1) > order.get(est.seq, -1):
            # started again after its last sync (perhaps from an older copy of its dataDir)
            # and never synced since: what it holds is not what it synced
            spared.append(f"{sid} (restarted at seq {again} after its last sync, never re-synced)")
            continue
        synced = est is not None and est.epoch == final.epoch and est.leader == final.sid
        d = first_divergence(summary.runs, ref.runs)
        if d is not None and d.holder == "b" and not d.other_goes_on:
            d = None  # a prefix of the final leader's log: behind, not apart
        evidence = tuple(s for s in (summary.seq, ref.seq, est.seq if est else None) if s is not None)
        if synced:
            judged.append(sid)
            if d is None:
                continue
            if d.holder == "a" and (d.other_goes_on or d.at[0] < final.epoch):
                bad.append((f"node {sid} (synced with {final.sid} in epoch {final.epoch}) keeps {_fmt(d.at)}, "
                            f"which the final leader's log lacks"
                            + (f" (its last is {_fmt(ref_last)})" if ref_last else ""), evidence))
            elif d.holder == "b" and d.other_goes_on:
                bad.append((f"node {sid} (synced with {final.sid} in epoch {final.epoch}) lacks {_fmt(d.at)} "
                            f"of the final leader's log but holds later txns", evidence))
            continue
        why = ("never synced" if est is None else
               f"last synced with {est.leader} in epoch {est.epoch}")
        if d is None:
            spared.append(f"{sid} ({why})")
            continue
        mine = summary.runs if d.holder == "a" else ref.runs
        other = ref.runs if d.holder == "a" else summary.runs
        later = {e for e in _epochs(mine) & _epochs(other) if e > d.at[0]} if d.other_goes_on else set()
        committed = _z(summary.last_committed_zxid) if summary.last_committed_zxid else None
        if later:
            bad.append((f"node {sid} and the final leader {final.sid} both hold txns of epoch {min(later)}, "
                        f"yet part at {_fmt(d.at)} ({'only node ' + str(sid) if d.holder == 'a' else 'only the leader'}"
                        " holds it)", evidence))
        elif committed is not None and d.at <= committed and d.at[0] < final.epoch:
            bad.append((f"node {sid} marked its log committed up to {_fmt(committed)}, but it parts from the "
                        f"final leader {final.sid}'s log at {_fmt(d.at)}", evidence))
        else:
            spared.append(f"{sid} ({why}; tail not judged, parts at {_fmt(d.at)})")
    if bad:
        msg = "; ".join(m for m, _ in bad)
        ev = tuple(sorted({s for _, e in bad for s in e}))
        return Finding.invalid(f"txn logs disagree: {msg}", ev, max(bad[0][1]))
    head = (f"logs of node(s) {', '.join(map(str, judged))} are prefixes of the final leader {final.sid}'s "
            f"(epoch {final.epoch}, last {_fmt(ref_last) if ref_last else 'none'})" if judged else
            f"no other node ended synced with the final leader {final.sid} (epoch {final.epoch})")
    return Finding.valid(head + (f"; not judged for their tail: {', '.join(spared)}" if spared else ""))


@invariant("log_agreement")
def log_agreement(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """The txn logs share one history: at each established epoch a learner
    holds its leader's history, and at the end no node synced with the final
    leader keeps a txn that leader's log lacks (or lacks one it has)."""
    ests = _establishments(ctx)
    bad = _check_epochs(ests)
    if bad is not None:
        return bad
    checked = sum(1 for e in ests if e.role != "leader" and e.last_zxid is not None)
    logs = _summaries(ctx)
    if not logs:
        if ctx.ended:
            return Finding.unknown(f"{checked} learner establishment(s) agreed with their leader; "
                                   "no log_summary records, so the final logs were not compared")
        return Finding.valid(f"{checked} learner establishment(s) agreed with their leader so far")
    end = _judge_end(ctx, ests, logs)
    if end.verdict.value == "valid":
        return Finding.valid(f"{checked} learner establishment(s) agreed with their leader; {end.message}")
    return end
