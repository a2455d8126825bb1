"""Journal → what a report draws: swim lanes, fault bands, step marks,
elections and their message exchanges. Pure; no HTML here.

Theory of operation. Records are read in time order (``t``, then ``seq``:
node events are tailed and arrive late, but every ``t`` is on one clock).
Lanes come from three sources: ``Status`` polls, the node's own
``state_changed``/``epoch_established`` events, and ``Process`` records
(down/paused). A fault band runs from its first ``requested``/``effective``
record to its ``undone`` record (a restart ends a kill or stop; a fault never
undone runs to the end). An election is a cluster of overlapping per-node
windows (``election_started`` → ``election_finished``); its messages pair each
``notification_sent`` with the matching ``notification_received`` in FIFO
order, unmatched sends being drawn as lost. At most :data:`MAX_MESSAGES` per
election are kept; the rest are counted.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Mapping

from chaos.records import (Fault, Journal, Link, NodeEvent, Process, Status, StepFinished, StepStarted,
                           WorkloadTick)

__all__ = ["Interval", "Lane", "FaultBand", "StepMark", "Message", "Mark", "Election", "WritesTick", "Timeline", "build",
           "MAX_MESSAGES", "links_text"]

MAX_MESSAGES = 400  # per election drawn; the rest are counted, not drawn
_STATES = ("LOOKING", "FOLLOWING", "LEADING", "OBSERVING")


@dataclass(frozen=True, slots=True)
class Interval:
    start: float
    end: float
    state: str  # LOOKING | FOLLOWING | LEADING | OBSERVING | down | paused | unknown
    epoch: int | None
    leader: int | None
    seq: int


@dataclass(frozen=True, slots=True)
class Lane:
    sid: int
    name: str
    role: str
    intervals: tuple[Interval, ...]


@dataclass(frozen=True, slots=True)
class FaultBand:
    fault_id: str
    kind: str
    start: float
    end: float
    undone: bool
    sids: tuple[int, ...]
    links: tuple[Link, ...]  # directed (from, to, port) links the fault cut or slowed
    label: str
    seq: int
    target: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepMark:
    t: float
    end: float
    step: str
    kind: str
    label: str
    ok: bool | None  # None: never finished
    seq: int
    resolved: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def text(self) -> str:
        """The step as the plan says it (``kill leader``), whole."""
        return self.label if self.kind in self.label else f"{self.kind} {self.label}".strip()


@dataclass(frozen=True, slots=True)
class Message:
    src: int
    dst: int | None
    t_sent: float
    t_received: float | None  # None: no matching receive in the journal
    leader: Any
    round: Any
    zxid: Any
    state: Any
    seq: int


@dataclass(frozen=True, slots=True)
class Mark:
    """A node entering or leaving the election, drawn among the messages."""

    t: float
    sid: int
    what: str  # started | finished
    text: str
    seq: int


@dataclass(frozen=True, slots=True)
class Election:
    index: int
    start: float
    end: float
    winner: int | None
    epoch: int | None
    rounds: int
    notifications: int
    path: str
    sids: tuple[int, ...]
    seq: int  # first record of the election
    finished_seqs: tuple[int, ...]
    messages: tuple[Message, ...] = field(default=())
    messages_dropped: int = 0
    marks: tuple[Mark, ...] = field(default=())

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class WritesTick:
    """One second of the client workload (``workload_tick``), ending at ``t``."""

    t: float
    acks: int
    errors: int
    seq: int


@dataclass(frozen=True, slots=True)
class Timeline:
    t_end: float
    lanes: tuple[Lane, ...]
    faults: tuple[FaultBand, ...]
    steps: tuple[StepMark, ...]
    elections: tuple[Election, ...]
    writes: tuple[WritesTick, ...] = ()


def _num(x: Any, default: float = 0.0) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else default


def _int(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def _hashable(x: Any) -> Any:
    return x if isinstance(x, (int, float, str, type(None))) else repr(x)


def _sid_list(v: Any) -> list[int]:
    if _int(v) is not None:
        return [v]
    if isinstance(v, (list, tuple)):
        return [x for x in v if _int(x) is not None]
    return []


def _fault_label(f: Fault) -> str:
    """``kill n3``, ``partition cut``, ``toxic latency slow``: what the fault did, short."""
    t = f.target
    bits = [f.kind or "fault"]
    if f.kind == "toxic":
        bits += [str(t[k]) for k in ("type", "name") if t.get(k)]
    elif f.kind == "partition":
        bits += [str(t["name"])] if t.get("name") else []
        if t.get("isolate") is not None:
            bits.append(f"isolate={t['isolate']}")
    else:
        bits += [f"n{s}" for k in ("sid", "node") for s in _sid_list(t.get(k))]
    return " ".join(bits)


def _fault_sids(f: Fault) -> set[int]:
    sids = {s for link in f.links for s in link[:2]}
    for k in ("node", "sid", "nodes", "sids", "isolate", "from", "to"):
        sids.update(_sid_list(f.target.get(k)))
    return sids


def links_text(links: tuple[Link, ...] | list[Link]) -> str:
    """``n1⇄n3, n2→n3 election+quorum``: directed links folded into pairs
    (⇄ when both directions are cut) and grouped by the ports they share."""
    ports_of: dict[tuple[int, int], set[str]] = defaultdict(set)
    for a, b, port in links:
        ports_of[(a, b)].add(port)
    seen: set[tuple[int, int]] = set()
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for (a, b) in sorted(ports_of):
        if (a, b) in seen:
            continue
        fwd = ports_of[(a, b)]
        back = ports_of.get((b, a), set())
        both = fwd & back
        if both:
            groups[tuple(sorted(both))].append(f"n{min(a, b)}⇄n{max(a, b)}")
        for x, y, only in ((a, b, fwd - both), (b, a, back - both)):
            if only:
                groups[tuple(sorted(only))].append(f"n{x}→n{y}")
        seen |= {(a, b), (b, a)}
    return "; ".join(f"{', '.join(pairs)} {'+'.join(ports)}" for ports, pairs in groups.items())


@dataclass(slots=True)
class _OpenFault:
    fault_id: str
    kind: str
    start: float
    seq: int
    label: str
    target: Mapping[str, Any]
    sids: set[int] = field(default_factory=set)
    links: tuple[Link, ...] = ()

    def band(self, end: float, undone: bool) -> FaultBand:
        return FaultBand(self.fault_id, self.kind, self.start, end, undone, tuple(sorted(self.sids)),
                         self.links, self.label, self.seq, self.target)


def build(journal: Journal) -> Timeline:
    records = journal.in_time_order()
    t_end = max((r.t for r in records), default=0.0)
    node_meta = {n.sid: n for n in journal.nodes}
    sids = sorted(set(node_meta) | {r.sid for r in records
                                    if isinstance(r, (Status, Process, NodeEvent)) and _int(r.sid) is not None})

    # ---------------------------------------------------------------- lanes
    cur: dict[int, tuple[float, str, int | None, int | None, int]] = {}
    done: dict[int, list[Interval]] = defaultdict(list)
    before_pause: dict[int, tuple[str, int | None, int | None]] = {}

    def move(sid: int, t: float, state: str, epoch: int | None, leader: int | None, seq: int) -> None:
        prev = cur.get(sid)
        if prev is not None:
            if prev[1:4] == (state, epoch, leader):
                return
            done[sid].append(Interval(prev[0], max(t, prev[0]), prev[1], prev[2], prev[3], prev[4]))
        cur[sid] = (t, state, epoch, leader, seq)

    def paused(sid: int) -> bool:
        prev = cur.get(sid)
        return prev is not None and prev[1] == "paused"

    open_faults: dict[str, _OpenFault] = {}
    faults: list[FaultBand] = []
    open_steps: dict[str, StepStarted] = {}
    steps: list[StepMark] = []
    open_window: dict[int, dict[str, Any]] = {}
    windows: list[dict[str, Any]] = []
    sends: list[NodeEvent] = []
    recvs: list[NodeEvent] = []
    established: list[NodeEvent] = []

    for r in records:
        t, seq = r.t, r.seq
        if isinstance(r, Status) and r.sid is not None:
            if paused(r.sid):
                pass  # a stopped process cannot answer: polls while paused say nothing new
            elif not r.up:
                move(r.sid, t, "down", None, None, seq)
            else:
                state = r.state if r.state in _STATES else "unknown"
                leader = r.leader if r.leader is not None and r.leader >= 0 else None
                move(r.sid, t, state, r.epoch, leader, seq)
        elif isinstance(r, Process) and r.sid is not None:
            sid, prev = r.sid, cur.get(r.sid)
            if r.action == "paused":
                if prev:
                    before_pause[sid] = prev[1:4]
                move(sid, t, "paused", prev[2] if prev else None, prev[3] if prev else None, seq)
            elif r.action == "resumed":
                st = before_pause.pop(sid, ("unknown", None, None))
                move(sid, t, st[0], st[1], st[2], seq)
            elif r.action in ("killed", "stopped", "exited"):
                move(sid, t, "down", None, None, seq)
                open_window.pop(sid, None)
            elif r.action == "started":
                move(sid, t, "LOOKING", None, None, seq)
                # a restart ends a kill/stop of this node (the plan restarts; no "undone" record)
                for fid, f in list(open_faults.items()):
                    if f.kind in ("kill", "stop", "power_loss") and sid in f.sids:
                        faults.append(open_faults.pop(fid).band(t, True))
        elif isinstance(r, NodeEvent) and r.sid is not None:
            sid, ev, prev = r.sid, r.event, cur.get(r.sid)
            if ev == "state_changed" and r.get("to") in _STATES and not paused(sid):
                to = r.get("to")
                move(sid, t, to, prev[2] if prev else None, None if to == "LOOKING" else (prev[3] if prev else None),
                     seq)
            elif ev == "epoch_established":
                if r.get("role") == "leader":
                    established.append(r)
                if not paused(sid):
                    role = r.get("role")
                    state = {"leader": "LEADING", "follower": "FOLLOWING", "observer": "OBSERVING"}.get(
                        role, prev[1] if prev else "unknown")
                    move(sid, t, state, _int(r.get("epoch")), sid if role == "leader" else _int(r.get("leader")), seq)
            elif ev == "election_started":
                if sid not in open_window:
                    open_window[sid] = {"sid": sid, "start": t, "seq": seq, "begin": r}
            elif ev == "election_finished":
                w = open_window.pop(sid, None)
                if w is None:
                    dur = _num(r.get("duration_ms")) / 1000.0
                    w = {"sid": sid, "start": max(0.0, t - dur), "seq": seq, "begin": None}
                w.update(end=t, fin=r)
                windows.append(w)
            elif ev == "notification_sent":
                sends.append(r)
            elif ev == "notification_received":
                recvs.append(r)
        elif isinstance(r, Fault):
            fid = r.fault_id or str(seq)
            if r.phase in ("requested", "effective"):
                f = open_faults.get(fid)
                if f is None:
                    f = open_faults[fid] = _OpenFault(fid, r.kind or "fault", t, seq, _fault_label(r), r.target)
                f.sids |= _fault_sids(r)
                f.links = f.links or r.links
            elif r.phase == "undone":
                f = open_faults.pop(fid, None) or _OpenFault(fid, r.kind or "fault", t, seq, _fault_label(r), r.target)
                f.sids |= _fault_sids(r)
                f.links = f.links or r.links
                faults.append(f.band(t, True))
        elif isinstance(r, StepStarted):
            open_steps[r.step or str(seq)] = r
        elif isinstance(r, StepFinished):
            s0 = open_steps.pop(r.step or str(seq), None)
            steps.append(StepMark(s0.t if s0 else t, t, r.step, r.kind, r.label, r.ok, s0.seq if s0 else seq,
                                  r.resolved, r.error))

    faults += [f.band(t_end, False) for f in open_faults.values()]
    steps += [StepMark(s0.t, t_end, s0.step, s0.kind, s0.label, None, s0.seq, s0.resolved)
              for s0 in open_steps.values()]
    faults.sort(key=lambda f: (f.start, f.seq))
    steps.sort(key=lambda s: s.seq)

    lanes = []
    for sid in sids:
        ivs = list(done.get(sid, ()))
        if sid in cur:
            c = cur[sid]
            ivs.append(Interval(c[0], max(t_end, c[0]), c[1], c[2], c[3], c[4]))
        meta = node_meta.get(sid)
        lanes.append(Lane(sid, (meta.name if meta else "") or f"n{sid}", (meta.role if meta else "") or "participant",
                          tuple(iv for k, iv in enumerate(ivs) if iv.end > iv.start or k == len(ivs) - 1)))
    elections = _elections(windows, sends, recvs, established)
    writes = tuple(WritesTick(r.t, r.acks, r.errors, r.seq) for r in records if isinstance(r, WorkloadTick))
    return Timeline(t_end, tuple(lanes), tuple(faults), tuple(steps), tuple(elections), writes)


def _vote_text(v: Any) -> str:
    if isinstance(v, Mapping) and v.get("leader") is not None:
        return f"votes n{v.get('leader')}"
    return ""


def _elections(windows: list[dict[str, Any]], sends: list[NodeEvent], recvs: list[NodeEvent],
               established: list[NodeEvent]) -> list[Election]:
    windows.sort(key=lambda w: (w["start"], w["seq"]))
    clusters: list[list[dict[str, Any]]] = []
    for w in windows:
        if clusters and w["start"] <= max(x["end"] for x in clusters[-1]):
            clusters[-1].append(w)
        else:
            clusters.append([w])

    # A receive pairs with the oldest unpaired identical send not later than
    # itself (TCP is FIFO; CLOCK_MONOTONIC is machine-wide, so times compare).
    pending: dict[tuple, deque[NodeEvent]] = defaultdict(deque)
    matched: dict[int, NodeEvent] = {}
    for s in sends:  # already in time order
        pending[(s.sid, *(_hashable(s.get(k)) for k in ("to", "round", "leader", "zxid")))].append(s)
    for rv in recvs:
        q = pending.get((_hashable(rv.get("from")), rv.sid, *(_hashable(rv.get(k)) for k in ("round", "leader", "zxid"))))
        if q and q[0].t <= rv.t + 0.002:
            matched[q.popleft().seq] = rv

    elections = []
    for i, cl in enumerate(clusters, 1):
        start, end = min(w["start"] for w in cl), max(w["end"] for w in cl)
        fins: list[NodeEvent] = [w["fin"] for w in cl]
        members = {w["sid"] for w in cl}
        votes = Counter(_int(f.get("leader")) for f in fins if _int(f.get("leader")) is not None)
        leading = [f.sid for f in fins if f.get("state") == "LEADING"]
        winner = leading[0] if leading else (votes.most_common(1)[0][0] if votes else None)
        epoch = None
        horizon = min(x["start"] for x in clusters[i]) if i < len(clusters) else float("inf")
        for e in established:
            if e.sid == winner and start <= e.t <= horizon:
                epoch = _int(e.get("epoch"))
                break
        if epoch is None:
            pe = [f.get("peer_epoch") for f in fins if f.get("leader") == winner]
            epoch = _int(pe[0]) if pe else None
        paths = sorted({str(f.get("path")) for f in fins if f.get("path")})
        path = paths[0] if len(paths) == 1 else ("+".join(paths) if paths else "—")
        in_window = [s for s in sends if s.sid in members and start <= s.t <= end]
        rounds = len({_hashable(s.get("round")) for s in in_window}
                     | {_hashable(f.get("round")) for f in fins if f.get("round") is not None})
        counted = sum(_num(f.get("notifications_sent")) for f in fins)
        msgs = []
        for s in in_window[:MAX_MESSAGES]:
            rv = matched.get(s.seq)
            msgs.append(Message(s.sid, _int(s.get("to")), s.t, rv.t if rv else None,
                                s.get("leader"), s.get("round"), s.get("zxid"), s.get("state"), s.seq))
        marks = []
        for w in cl:
            b: NodeEvent | None = w["begin"]
            marks.append(Mark(w["start"], w["sid"], "started",
                              " ".join(x for x in ("looking", _vote_text(b.get("vote")) if b else "") if x),
                              b.seq if b else w["seq"]))
            f = w["fin"]
            state = str(f.get("state") or "?")
            text = state if f.get("leader") is None or state == "LEADING" else f"{state} n{f.get('leader')}"
            marks.append(Mark(w["end"], w["sid"], "finished", text, f.seq))
        marks.sort(key=lambda m: (m.t, m.seq))
        elections.append(Election(
            i, start, end, winner, epoch, rounds, max(len(in_window), int(counted)), path, tuple(sorted(members)),
            min(w["seq"] for w in cl), tuple(sorted(f.seq for f in fins)),
            tuple(msgs), max(0, len(in_window) - MAX_MESSAGES), tuple(marks)))
    return elections
