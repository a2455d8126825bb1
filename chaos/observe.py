"""Watching the nodes: `fles` polls and events.jsonl tails, turned into journal records.

One thread per node polls its client port (``fles``): a paused node accepts
the TCP connection (the kernel's backlog does) and then never answers, so one
slow node must not delay the others. A ``status`` record is written only when
a watched field changes. One more thread tails every node's ``events.jsonl``
and writes each line as a ``node_event`` keeping the node's own ``mono_ms``
(CLOCK_MONOTONIC is machine-wide, so the events line up with the
orchestrator's records).

Polls are fast (every ``interval``, 50 ms) while a node's status moves, and
slow (``idle_interval``) once it answered the same ``quiet_polls`` times in a
row. Whatever moves a status also writes an event (``WAKE_EVENTS``); the tail
wakes that node's poller, and the poller of the leader the event names (a
leader's own ``synced`` has no event, its followers' ``sync_finished`` does),
so a change is seen as soon as before. A status that moves without an event
(a LOOKING node's logical clock) is seen within ``idle_interval``. A missed
poll, a process started or ended by the orchestrator, keep a poller fast. At
25 nodes, 50 ms everywhere was 500 connections a second, each an accept and an
answer in a node, while the ensemble formed on two cores.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from chaos.records import NodeEvent, NotificationsCapped, Status

__all__ = ["NodeStatus", "Observer", "NotificationBudget", "query_fles", "parse_fles", "STATUS_KEYS",
           "CAP_PER_ELECTION", "CAP_PER_RUN", "WAKE_EVENTS"]

STATUS_KEYS = ("up", "state", "leader", "epoch", "accepted_epoch", "zxid", "logical_clock", "synced")
NOTIFICATION_EVENTS = frozenset({"notification_sent", "notification_received"})
# Counted against the same budget: the election core's per-message events (node/events.py).
CAPPED_EVENTS = NOTIFICATION_EVENTS | frozenset({"notification_ignored", "quorum_reached", "finalize_abandoned",
                                                 "notification_timeout"})
_DRAIN_CHUNK = 4 << 20   # bytes of one node's events read under the lock at a time
STOP_DRAIN_S = 10.0      # the most the last read of the events may take when the run ends
WAKE_EVENTS = frozenset({
    "node_started", "node_stopping", "state_changed", "election_started", "election_finished",
    "epoch_established", "sync_finished", "role_ended", "leader_lost", "quorum_lost", "log_truncated",
    "peer_state_changed",   # a real ZooKeeper's "Peer state changed" (chaos.targets.zookeeper)
})
"""Node events that come with a status change: the node is polled at once."""
CAP_PER_ELECTION = 5_000
"""Notification events kept per node per election; past it only counts."""
CAP_PER_RUN = 100_000
"""Notification events kept per run, all nodes together."""
_RESERVED = {"seq", "t", "type", "sid", "event", "mono_ms", "ts"}


@dataclass(frozen=True, slots=True)
class NodeStatus:
    sid: int
    up: bool = False
    state: str | None = None
    leader: int | None = None
    epoch: int | None = None
    accepted_epoch: int | None = None
    zxid: int | None = None
    logical_clock: int | None = None
    synced: bool = False
    elections: int | None = None
    last_election_path: str | None = None
    pid: int | None = None
    mono: float = 0.0

    def key(self) -> tuple:
        return tuple(getattr(self, k) for k in STATUS_KEYS)

    def journal_key(self) -> tuple:
        """What makes a status worth a journal record: the zxid moves with every
        committed txn (ten times a second) and is carried, not a trigger."""
        return tuple(getattr(self, k) for k in STATUS_KEYS if k != "zxid")

    def record_fields(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in STATUS_KEYS}


def parse_fles(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if "\t" not in line:
            continue
        k, v = line.split("\t", 1)
        v = v.strip()
        try:
            out[k.strip()] = int(v)
        except ValueError:
            out[k.strip()] = v
    return out


def four_letter(host: str, port: int, word: str, timeout: float) -> str | None:
    """One four-letter-word exchange (the server answers, then closes); None
    when it does not answer in time."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(word.encode())
            chunks = []
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                s.settimeout(left)
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
    except OSError:
        return None
    return b"".join(chunks).decode("utf-8", "replace")


def query_fles(port: int, timeout: float = 0.5, host: str = "127.0.0.1") -> dict[str, Any] | None:
    """One `fles` exchange; None when the node does not answer in time."""
    text = four_letter(host, port, "fles", timeout)
    if text is None:
        return None
    data = parse_fles(text)
    return data if "fle_state" in data else None


def _status_from(sid: int, d: Mapping[str, Any]) -> NodeStatus:
    leader = d.get("fle_leader")
    return NodeStatus(
        sid=sid, up=True, state=str(d.get("fle_state", "")).upper() or None,
        leader=None if leader in (None, -1) else leader,
        epoch=d.get("fle_current_epoch"), accepted_epoch=d.get("fle_accepted_epoch"),
        zxid=d.get("fle_last_zxid"), logical_clock=d.get("fle_logical_clock"),
        synced=bool(d.get("fle_synced", 0)), elections=d.get("fle_elections"),
        last_election_path=d.get("fle_last_election_path"), pid=d.get("fle_pid"),
        mono=time.monotonic())


class NotificationBudget:
    """Bounds the notification events a run journals: a runaway election (a node
    voting at full rate for minutes) would otherwise write gigabytes.

    Each node's election runs from its ``election_started`` to its
    ``election_finished``; up to ``per_election`` notification events of it
    are kept, and ``per_run`` over all nodes. Past a cap an event is counted,
    not kept, and the election's counts are journaled as one
    ``notifications_capped`` record when it ends (or when the run does)."""

    def __init__(self, per_election: int = CAP_PER_ELECTION, per_run: int = CAP_PER_RUN) -> None:
        self.per_election = per_election
        self.per_run = per_run
        self.kept_in_run = 0
        self._open: dict[int, dict[str, Any]] = {}   # sid -> the node's current election

    def election_started(self, sid: int, seq: int | None, logical_clock: Any) -> dict | None:
        """A new election of ``sid``; returns the previous one's cap record, if capped."""
        done = self.election_finished(sid)
        self._open[sid] = {"seq": seq, "lc": logical_clock if isinstance(logical_clock, int) else None,
                           "kept": 0, "sent": 0, "received": 0, "other": 0, "cap": ""}
        return done

    def election_finished(self, sid: int) -> dict | None:
        e = self._open.pop(sid, None)
        if e is None or not (e["sent"] or e["received"] or e["other"]):
            return None
        return {"sid": sid, "election_seq": e["seq"], "logical_clock": e["lc"], "kept": e["kept"],
                "dropped_sent": e["sent"], "dropped_received": e["received"], "dropped_other": e["other"],
                "cap": e["cap"]}

    def keep(self, sid: int, event: str) -> bool:
        e = self._open.setdefault(sid, {"seq": None, "lc": None, "kept": 0, "sent": 0, "received": 0, "other": 0,
                                        "cap": ""})
        if e["kept"] >= self.per_election or self.kept_in_run >= self.per_run:
            e["cap"] = e["cap"] or ("election" if e["kept"] >= self.per_election else "run")
            e[{"notification_sent": "sent", "notification_received": "received"}.get(event, "other")] += 1
            return False
        e["kept"] += 1
        self.kept_in_run += 1
        return True

    def flush(self) -> list[dict]:
        """Every open election's cap record (the run is ending)."""
        return [r for r in (self.election_finished(sid) for sid in list(self._open)) if r]


class Observer:
    """Keeps a live view of every node and journals its changes.

    ``nodes`` maps sid -> (client_port, events_path); ``running(sid)`` says
    whether the orchestrator believes the process runs (an unanswered poll
    of a running node is only believed after a few misses, so a node busy for
    one poll under CPU contention does not flap to down).
    """

    def __init__(self, journal: Any, nodes: Mapping[int, tuple[int, Path]],
                 running: Callable[[int], bool], *, interval: float = 0.05,
                 idle_interval: float = 0.25, quiet_polls: int = 5,
                 misses_before_down: int = 3,
                 on_change: Callable[[NodeStatus, NodeStatus], None] | None = None,
                 on_event: Callable[[dict], None] | None = None,
                 budget: NotificationBudget | None = None,
                 hosts: Mapping[int, str] | None = None,
                 poll: Callable[[int], NodeStatus | None] | None = None,
                 parse_line: Callable[[int, bytes], dict | list[dict] | None] | None = None) -> None:
        """``hosts``: where each node answers (default loopback); ``poll``:
        a target's own status query (a real ZooKeeper has no ``fles``);
        ``parse_line``: turns a line of the node's log into an event dict
        (default: the line is JSON, events.jsonl)."""
        self.journal = journal
        self.hosts = dict(hosts or {})
        self.poll = poll
        self.parse_line = parse_line
        self.nodes = dict(nodes)
        self.running = running
        self.interval = interval
        self.idle_interval = max(interval, idle_interval)
        self.quiet_polls = quiet_polls
        self.misses_before_down = misses_before_down
        self.on_change = on_change
        self.on_event = on_event
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._publish = threading.RLock()   # journal-then-publish, one status at a time
        self._view: dict[int, NodeStatus] = {sid: NodeStatus(sid) for sid in self.nodes}
        # Bumped whenever the orchestrator starts or ends a node: a poll that
        # was in flight across that moment describes the old process and is
        # dropped, so the journal never shows a killed node answering.
        self._gen: dict[int, int] = {sid: 0 for sid in self.nodes}
        self._stop = threading.Event()
        self._wake: dict[int, threading.Event] = {sid: threading.Event() for sid in self.nodes}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._offsets: dict[int, int] = {sid: 0 for sid in self.nodes}
        self._partial: dict[int, bytes] = {sid: b"" for sid in self.nodes}
        self._tail_lock = threading.RLock()
        self.budget = budget if budget is not None else NotificationBudget()
        self.version = 0

    # ------------------------------------------------------------------ view
    def view(self) -> dict[int, NodeStatus]:
        with self._lock:
            return dict(self._view)

    def wait_change(self, timeout: float) -> None:
        """Block until some status changes (or ``timeout``)."""
        with self._cond:
            v = self.version
            self._cond.wait_for(lambda: self.version != v or self._stop.is_set(), timeout)

    def _set(self, new: NodeStatus, gen: int | None = None) -> None:
        """Journal a change, then publish it. In that order: a waiter that sees
        the new view (``wait: stable``) and acts on it (a fault) must find the
        status that justified it already in the journal, or the invariants
        would judge the fault against an older picture."""
        with self._publish:
            with self._cond:
                if gen is not None and gen != self._gen[new.sid]:
                    return
                old = self._view[new.sid]
            if old.journal_key() != new.journal_key():
                # Whatever the node logged before it answered the poll goes into
                # the journal first, so record order follows causality (a
                # restarted node's node_started precedes its first status).
                self.drain_events()
                self.journal.record(Status, sid=new.sid, **new.record_fields())
            with self._cond:
                self._view[new.sid] = new
                if old.key() != new.key():
                    self.version += 1
                    self._cond.notify_all()
        if old.journal_key() != new.journal_key() and self.on_change:
            self.on_change(old, new)

    def confirm(self, sids: Iterable[int]) -> dict[int, NodeStatus]:
        """Poll ``sids`` now and journal what they answer even if nothing
        changed: a wait that is about to succeed needs an observation in the
        journal taken after the last fault, not a view the journal already had.
        The polls run side by side (one after the other, 25 of them took 130-200 ms
        on a loaded machine, on the path of every wait); they are journaled in
        the order given."""
        sids = list(sids)
        with self._cond:
            gens = {sid: self._gen[sid] for sid in sids}
        polls = self._poll_all(sids)
        for sid in sids:
            gen, st = gens[sid], polls[sid]
            with self._publish:
                with self._cond:
                    if gen != self._gen[sid]:
                        continue
                    old = self._view[sid]
                self.drain_events()
                self.journal.record(Status, sid=sid, **st.record_fields())
                with self._cond:
                    self._view[sid] = st
                    if old.key() != st.key():
                        self.version += 1
                        self._cond.notify_all()
            if old.journal_key() != st.journal_key() and self.on_change:
                self.on_change(old, st)
        return self.view()

    def _poll_all(self, sids: list[int]) -> dict[int, NodeStatus]:
        if len(sids) <= 1:
            return {sid: self.poll_once(sid) for sid in sids}
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=min(32, len(self.nodes)),
                                                thread_name_prefix="confirm")
            pool = self._pool
        futures = {sid: pool.submit(self.poll_once, sid) for sid in sids}
        return {sid: f.result() for sid, f in futures.items()}

    def wake(self, sid: int) -> None:
        """Poll ``sid`` now and keep polling it fast until it is quiet again."""
        ev = self._wake.get(sid)
        if ev is not None:
            ev.set()

    def mark_down(self, sid: int) -> None:
        """The orchestrator just ended the node: show it at once."""
        self.bump(sid)
        self._set(NodeStatus(sid, mono=time.monotonic()))

    def bump(self, sid: int) -> None:
        """A process of ``sid`` starts or ends now: polls in flight describe the
        old one and are dropped. Waits for a poll being journaled, so no status
        of the old process lands after the caller's process record."""
        with self._publish, self._cond:
            self._gen[sid] += 1
        self.wake(sid)

    # ------------------------------------------------------------------ threads
    def start(self) -> None:
        for sid in self.nodes:
            t = threading.Thread(target=self._poll_loop, args=(sid,), name=f"poll-n{sid}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._tail_loop, name="tail-events", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for ev in self._wake.values():
            ev.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=3.0)
        self._threads.clear()
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None
        # Read what the nodes wrote, in bites, but not for ever: a node that still
        # writes at full rate (its own caps should stop it) must not hold the run.
        deadline = time.monotonic() + STOP_DRAIN_S
        while self.drain_events() and time.monotonic() < deadline:
            pass

    def close_elections(self) -> None:
        """The run ends: journal the counts of every election still capped."""
        with self._tail_lock:
            for fields in self.budget.flush():
                self._capped(fields)

    def poll_once(self, sid: int) -> NodeStatus:
        if self.poll is not None:
            st = self.poll(sid)
            return st if st is not None else NodeStatus(sid, mono=time.monotonic())
        port, _ = self.nodes[sid]
        d = query_fles(port, timeout=max(0.5, self.interval * 10), host=self.hosts.get(sid, "127.0.0.1"))
        return _status_from(sid, d) if d is not None else NodeStatus(sid, mono=time.monotonic())

    def _poll_loop(self, sid: int) -> None:
        misses = 0
        same = 0            # answers in a row that showed the same status
        last: tuple | None = None
        wake = self._wake[sid]
        while not self._stop.is_set():
            wake.clear()    # a wake-up that arrives while polling asks for one more poll
            t0 = time.monotonic()
            with self._cond:
                gen = self._gen[sid]
            st = self.poll_once(sid)
            if st.up:
                misses = 0
                self._set(st, gen)
            else:
                misses += 1
                if not self.running(sid) or misses >= self.misses_before_down:
                    self._set(st, gen)
            key = st.journal_key()
            quiet = key == last and (st.up or not self.running(sid))
            same = same + 1 if quiet else 0
            last = key
            pause = self.interval if same < self.quiet_polls else self.idle_interval
            if wake.wait(max(0.0, pause - (time.monotonic() - t0))):
                same = 0    # woken by an event: fast until quiet again

    def _tail_loop(self) -> None:
        while not self._stop.is_set():
            self.drain_events()
            self._stop.wait(self.interval)

    def drain_events(self) -> int:
        """Journal every complete new line of every events.jsonl."""
        n = 0
        with self._tail_lock:
            for sid, (_, path) in self.nodes.items():
                if path is None:
                    continue
                try:
                    size = path.stat().st_size
                except OSError:
                    continue
                if size < self._offsets[sid]:  # truncated or replaced
                    self._offsets[sid], self._partial[sid] = 0, b""
                if size == self._offsets[sid]:
                    continue
                try:
                    with open(path, "rb") as fh:
                        fh.seek(self._offsets[sid])
                        # a bounded bite: a node writing faster than we journal must not
                        # hold the lock (and a stopping run) for ever
                        data = fh.read(min(size - self._offsets[sid], _DRAIN_CHUNK))
                except OSError:
                    continue
                self._offsets[sid] += len(data)
                data = self._partial[sid] + data
                *lines, self._partial[sid] = data.split(b"\n")
                for line in lines:
                    if line.strip():
                        n += self._journal_event(sid, line)
        return n

    def _capped(self, fields: dict | None) -> None:
        if fields is not None:
            self.journal.record(NotificationsCapped, **fields)

    def _journal_event(self, sid: int, line: bytes) -> int:
        if self.parse_line is not None:
            # a target's log line may stand for no event, one, or several
            evs = self.parse_line(sid, line)
            evs = [] if evs is None else [evs] if isinstance(evs, dict) else list(evs)
            return sum(self._journal_one(sid, ev) for ev in evs)
        try:
            ev = json.loads(line)
        except ValueError:
            self.journal.record(NodeEvent, sid=sid, event="unparsable_line",
                                data={"text": line[:200].decode("utf-8", "replace")})
            return 1
        return self._journal_one(sid, ev)

    def _journal_one(self, sid: int, ev: Any) -> int:
        if not isinstance(ev, dict):
            return 0
        fields = {}
        for k, v in ev.items():
            if k in ("sid", "event", "mono_ms", "ts"):
                continue
            fields[f"node_{k}" if k in _RESERVED else k] = v
        kw: dict[str, Any] = {}
        if isinstance(ev.get("mono_ms"), (int, float)):
            kw["mono_ms"] = float(ev["mono_ms"])
        event = ev.get("event", "?")
        if event in CAPPED_EVENTS and not self.budget.keep(sid, event):
            return 0
        rec = self.journal.record(NodeEvent, sid=ev.get("sid", sid), event=event,
                                  node_ts=ev.get("ts"), data=fields, **kw)
        if event in WAKE_EVENTS:
            self.wake(sid)
            if isinstance(ev.get("leader"), int):
                self.wake(ev["leader"])
        if event == "election_started":
            self._capped(self.budget.election_started(sid, rec.seq, ev.get("logical_clock")))
        elif event in ("election_finished", "node_stopping"):
            self._capped(self.budget.election_finished(sid))
        if self.on_event:
            self.on_event({"sid": ev.get("sid", sid), **ev})
        return 1
