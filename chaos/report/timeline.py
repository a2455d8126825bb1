"""Journal → what a report draws: swim lanes, fault bands, step marks,
elections and their message exchanges. Pure; no HTML here.

Lanes come from three sources merged in seq order: ``status`` polls, the
node's own ``state_changed``/``epoch_established`` events, and ``process``
records (down/paused). An election is a cluster of overlapping per-node
windows (``election_started`` → ``election_finished``); its messages pair each
``notification_sent`` with the matching ``notification_received`` in FIFO
order, unmatched sends being drawn as lost.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Interval", "Lane", "FaultBand", "StepMark", "Message", "Election", "Timeline", "build", "MAX_MESSAGES"]

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
    links: tuple[tuple[Any, ...], ...]
    label: str
    seq: int


@dataclass(frozen=True, slots=True)
class StepMark:
    t: float
    end: float
    step: str
    kind: str
    label: str
    ok: bool | None
    seq: int


@dataclass(frozen=True, slots=True)
class Message:
    src: int
    dst: int
    t_sent: float | None
    t_received: float | None
    leader: Any
    round: Any
    zxid: Any
    state: Any
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

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class Timeline:
    t_end: float
    lanes: tuple[Lane, ...]
    faults: tuple[FaultBand, ...]
    steps: tuple[StepMark, ...]
    elections: tuple[Election, ...]


def _num(x: Any, default: float = 0.0) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else default


def _fault_label(r: Mapping[str, Any]) -> str:
    target = r.get("target") or {}
    bits = [str(r.get("kind", "fault"))]
    if isinstance(target, Mapping):
        for k in ("type", "node", "isolate", "kind", "name"):
            if k in target:
                bits.append(f"{k}={target[k]}")
    return " ".join(bits)


def _links(r: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    links = r.get("links")
    if not isinstance(links, (list, tuple)):
        return []
    return [tuple(x) for x in links if isinstance(x, (list, tuple))]


def _hashable(x: Any) -> Any:
    return x if isinstance(x, (int, float, str, type(None))) else repr(x)


def _fault_sids(r: Mapping[str, Any]) -> set[int]:
    sids: set[int] = set()
    for link in _links(r):
        if isinstance(link, (list, tuple)):
            sids.update(x for x in link[:2] if isinstance(x, int))
    target = r.get("target")
    if isinstance(target, Mapping):
        for k in ("node", "sid", "nodes", "sids", "isolate", "from", "to"):
            v = target.get(k)
            if isinstance(v, int):
                sids.add(v)
            elif isinstance(v, (list, tuple)):
                sids.update(x for x in v if isinstance(x, int))
    return sids


def build(journal: Mapping[str, Any]) -> Timeline:
    records = [r for r in journal.get("records") or () if isinstance(r, dict) and isinstance(r.get("seq"), int)]
    # arrival order is not time order (node events are tailed); every t is on one clock
    records.sort(key=lambda r: (_num(r.get("t")), r["seq"]))
    t_end = max((_num(r.get("t")) for r in records), default=0.0)
    node_meta = {n["sid"]: n for n in journal.get("nodes") or () if isinstance(n, dict) and isinstance(n.get("sid"), int)}
    sids = sorted(set(node_meta) | {r["sid"] for r in records if isinstance(r.get("sid"), int)})

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

    # ---------------------------------------------------------------- faults, steps
    open_faults: dict[str, dict] = {}
    faults: list[FaultBand] = []
    open_steps: dict[str, dict] = {}
    steps: list[StepMark] = []

    # ---------------------------------------------------------------- elections (per-node windows)
    open_window: dict[int, dict] = {}
    windows: list[dict] = []
    sends: list[dict] = []
    recvs: list[dict] = []

    for r in records:
        kind, t, seq, sid = r.get("type"), _num(r.get("t")), r["seq"], r.get("sid")
        if kind == "status" and isinstance(sid, int):
            prev = cur.get(sid)
            if prev is not None and prev[1] == "paused":
                pass  # a stopped process cannot answer: polls while paused say nothing new
            elif r.get("up") is False:
                move(sid, t, "down", None, None, seq)
            else:
                state = r.get("state") if r.get("state") in _STATES else "unknown"
                leader = r.get("leader") if isinstance(r.get("leader"), int) and r.get("leader") >= 0 else None
                epoch = r.get("epoch") if isinstance(r.get("epoch"), int) else None
                move(sid, t, state, epoch, leader, seq)
        elif kind == "process" and isinstance(sid, int):
            action = r.get("action")
            prev = cur.get(sid)
            if action == "paused":
                if prev:
                    before_pause[sid] = prev[1:4]
                move(sid, t, "paused", prev[2] if prev else None, prev[3] if prev else None, seq)
            elif action == "resumed":
                st = before_pause.pop(sid, ("unknown", None, None))
                move(sid, t, st[0], st[1], st[2], seq)
            elif action in ("killed", "stopped", "exited"):
                move(sid, t, "down", None, None, seq)
                open_window.pop(sid, None)
            elif action == "started":
                move(sid, t, "LOOKING", None, None, seq)
                # a restart ends a kill/stop of this node (the plan restarts; no "undone" record)
                for fid, f in list(open_faults.items()):
                    if f["kind"] in ("kill", "stop") and sid in f["sids"]:
                        del open_faults[fid]
                        faults.append(FaultBand(fid, str(f["kind"]), f["start"], t, True, tuple(sorted(f["sids"])),
                                                tuple(f["links"]), f["label"], f["seq"]))
        elif kind == "node_event" and isinstance(sid, int):
            ev = r.get("event")
            prev = cur.get(sid)
            if ev == "state_changed" and r.get("to") in _STATES and not (prev and prev[1] == "paused"):
                to = r["to"]
                move(sid, t, to, prev[2] if prev else None, None if to == "LOOKING" else (prev[3] if prev else None), seq)
            elif ev == "epoch_established" and not (prev and prev[1] == "paused"):
                role = r.get("role")
                state = {"leader": "LEADING", "follower": "FOLLOWING", "observer": "OBSERVING"}.get(role, prev[1] if prev else "unknown")
                epoch = r.get("epoch") if isinstance(r.get("epoch"), int) else None
                move(sid, t, state, epoch, sid if role == "leader" else r.get("leader"), seq)
            elif ev == "election_started":
                w = open_window.get(sid)
                if w is None:
                    w = {"sid": sid, "start": t, "seq": seq, "end": None}
                    open_window[sid] = w
            elif ev == "election_finished":
                w = open_window.pop(sid, None)
                if w is None:
                    dur = _num(r.get("duration_ms")) / 1000.0
                    w = {"sid": sid, "start": max(0.0, t - dur), "seq": seq}
                w.update(end=t, fin=r)
                windows.append(w)
            elif ev == "notification_sent":
                sends.append(r)
            elif ev == "notification_received":
                recvs.append(r)
        elif kind == "fault":
            fid = str(r.get("fault_id", seq))
            phase = r.get("phase")
            if phase in ("requested", "effective"):
                f = open_faults.setdefault(fid, {"start": t, "seq": seq, "sids": set(), "links": [], "label": _fault_label(r), "kind": r.get("kind", "fault")})
                f["sids"] |= _fault_sids(r)
                f["links"] = f["links"] or _links(r)
            elif phase == "undone":
                f = open_faults.pop(fid, None) or {"start": t, "seq": seq, "sids": set(), "links": [], "label": _fault_label(r), "kind": r.get("kind", "fault")}
                f["sids"] |= _fault_sids(r)
                faults.append(FaultBand(fid, str(f["kind"]), f["start"], t, True, tuple(sorted(f["sids"])), tuple(f["links"]), f["label"], f["seq"]))
        elif kind == "step_started":
            open_steps[str(r.get("step", seq))] = r
        elif kind == "step_finished":
            s0 = open_steps.pop(str(r.get("step", seq)), r)
            steps.append(StepMark(_num(s0.get("t")), t, str(r.get("step", "")), str(r.get("kind", "")), str(r.get("label", "")), r.get("ok"), s0["seq"]))

    for fid, f in open_faults.items():
        faults.append(FaultBand(fid, str(f["kind"]), f["start"], t_end, False, tuple(sorted(f["sids"])), tuple(f["links"]), f["label"], f["seq"]))
    for s0 in open_steps.values():
        steps.append(StepMark(_num(s0.get("t")), t_end, str(s0.get("step", "")), str(s0.get("kind", "")), str(s0.get("label", "")), None, s0["seq"]))
    faults.sort(key=lambda f: (f.start, f.seq))
    steps.sort(key=lambda s: s.seq)

    lanes = []
    for sid in sids:
        ivs = list(done.get(sid, ()))
        if sid in cur:
            c = cur[sid]
            ivs.append(Interval(c[0], max(t_end, c[0]), c[1], c[2], c[3], c[4]))
        meta = node_meta.get(sid, {})
        lanes.append(Lane(sid, str(meta.get("name") or f"n{sid}"), str(meta.get("role") or "participant"),
                          tuple(iv for k, iv in enumerate(ivs) if iv.end > iv.start or k == len(ivs) - 1)))

    # ---------------------------------------------------------------- cluster elections
    windows.sort(key=lambda w: (w["start"], w["seq"]))
    clusters: list[list[dict]] = []
    for w in windows:
        if clusters and w["start"] <= max(x["end"] for x in clusters[-1]):
            clusters[-1].append(w)
        else:
            clusters.append([w])

    # FIFO matching of sends to receives: (from, to, round, leader, zxid) -> queue of sends
    pending: dict[tuple, deque] = defaultdict(deque)
    matched: dict[int, dict] = {}
    # A receive pairs with the oldest unpaired identical send not later than
    # itself (TCP is FIFO; CLOCK_MONOTONIC is machine-wide, so times compare).
    for s in sorted(sends, key=lambda r: (_num(r.get("t")), r["seq"])):
        pending[tuple(_hashable(s.get(k)) for k in ("sid", "to", "round", "leader", "zxid"))].append(s)
    for rv in sorted(recvs, key=lambda r: (_num(r.get("t")), r["seq"])):
        q = pending.get(tuple(_hashable(rv.get(k)) for k in ("from", "sid", "round", "leader", "zxid")))
        if q and _num(q[0].get("t")) <= _num(rv.get("t")) + 0.002:
            matched[q.popleft()["seq"]] = rv

    established = [r for r in records if r.get("type") == "node_event" and r.get("event") == "epoch_established" and r.get("role") == "leader"]
    elections = []
    for i, cl in enumerate(clusters, 1):
        start, end = min(w["start"] for w in cl), max(w["end"] for w in cl)
        fins = [w["fin"] for w in cl]
        members = {w["sid"] for w in cl}
        votes = Counter(f.get("leader") for f in fins if isinstance(f.get("leader"), int))
        members = {m for m in members if isinstance(m, int)}
        leading = [f.get("sid") for f in fins if f.get("state") == "LEADING"]
        winner = leading[0] if leading else (votes.most_common(1)[0][0] if votes else None)
        epoch = None
        horizon = min(x["start"] for x in clusters[i]) if i < len(clusters) else float("inf")
        for e in established:
            if e.get("sid") == winner and start <= _num(e.get("t")) <= horizon:
                epoch = e.get("epoch")
                break
        if epoch is None:
            pe = [f.get("peer_epoch") for f in fins if f.get("leader") == winner]
            epoch = pe[0] if pe and isinstance(pe[0], int) else None
        paths = sorted({str(f.get("path")) for f in fins if f.get("path")})
        path = paths[0] if len(paths) == 1 else ("+".join(paths) if paths else "—")
        in_window = [s for s in sends if s.get("sid") in members and start <= _num(s.get("t")) <= end]
        rounds = len({_hashable(s.get("round")) for s in in_window}
                     | {_hashable(f.get("round")) for f in fins if f.get("round") is not None})
        counted = sum(_num(f.get("notifications_sent")) for f in fins)
        n_notes = max(len(in_window), int(counted))
        msgs = []
        for s in in_window[:MAX_MESSAGES]:
            rv = matched.get(s["seq"])
            msgs.append(Message(s["sid"], s.get("to"), _num(s.get("t")), _num(rv.get("t")) if rv else None,
                                s.get("leader"), s.get("round"), s.get("zxid"), s.get("state"), s["seq"]))
        elections.append(Election(
            i, start, end, winner, epoch, rounds, n_notes, path, tuple(sorted(members)),
            min(w["seq"] for w in cl), tuple(sorted(f["seq"] for f in fins)),
            tuple(msgs), max(0, len(in_window) - MAX_MESSAGES)))
    return Timeline(t_end, tuple(lanes), tuple(faults), tuple(steps), tuple(elections))
