"""The simulated world behind the interfaces the step handlers already use.

Theory of operation. ``chaos sim`` runs the plan's steps with the very
handlers of ``chaos run`` (:mod:`chaos.steps`), on a
:class:`~chaos.context.RunContext` whose target, links and observer are the
three adapters here over one :class:`node.sim_zab.ZabSim`, and whose clock
and sleep are the simulator's virtual time. So a step means the same in both
worlds by construction; what differs is only below these interfaces:

* :class:`SimTarget` — processes: ``start``/``kill``/``stop``/``pause``/
  ``resume``/``restart``, dataDir ``snapshot``/``restore`` (copies of the
  simulated log and epochs), ``log_summary``;
* :class:`SimLinks` — :class:`chaos.links.LinkFaults`'s calls, each toxic
  turned into its message-level :class:`node.sim.LinkFault` (``TOXIC_MEANING``);
* :class:`SimObserver` — the journal's ``node_event`` records (the node's
  events as emitted, notifications capped by the same
  :class:`~chaos.observe.NotificationBudget`) and ``status`` records (written
  when a node's status changes, as a poll would see it); ``wait_change`` and
  ``sleep`` advance virtual time.

Nothing here reads a clock, a global RNG or a file.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from chaos.links import BLACKHOLE, PORTS
from chaos.observe import NOTIFICATION_EVENTS, NodeStatus, NotificationBudget
from chaos.plan.model import Ensemble
from chaos.records import Link, NotificationsCapped
from node.sim import LinkFault
from node.sim_zab import SimLog, ZabSim
from zkrules.vote import ServerState

__all__ = ["TOXIC_MEANING", "SIMULATABLE_TOXICS", "toxic_fault", "SimTarget", "SimLinks", "SimObserver",
           "build_world"]

PID_BASE = 10_000


def _timeout(attrs: Mapping[str, Any], tox: float) -> LinkFault:
    t = float(attrs.get("timeout", 0) or 0)
    return LinkFault(hold=True, reset_ms=t if t > 0 else None, toxicity=tox)


def _latency(attrs: Mapping[str, Any], tox: float) -> LinkFault:
    return LinkFault(latency_ms=float(attrs.get("latency", 0) or 0), jitter_ms=float(attrs.get("jitter", 0) or 0),
                     toxicity=tox)


def _reset(attrs: Mapping[str, Any], tox: float) -> LinkFault:
    return LinkFault(reset_ms=float(attrs.get("timeout", 0) or 0), toxicity=tox)


TOXIC_MEANING: dict[str, Callable[[Mapping[str, Any], float], LinkFault]] = {
    "timeout": _timeout,          # held; with a timeout, closed that long after
    "latency": _latency,          # per-message delay, FIFO per link
    "reset_peer": _reset,         # the connection is reset `timeout` ms after it opened
    "noop": lambda a, t: LinkFault(),
    "down": lambda a, t: LinkFault(down=True),
}
"""Each simulatable toxic type and its message-level meaning; any other type
(the byte-level slicer, limit_data, bandwidth, slow_close) makes a plan not
simulatable (:mod:`chaos.sim.check`)."""

SIMULATABLE_TOXICS = frozenset(TOXIC_MEANING)


def toxic_fault(type: str, attributes: Mapping[str, Any], toxicity: float = 1.0) -> LinkFault:
    try:
        meaning = TOXIC_MEANING[type]
    except KeyError:
        raise ValueError(f"toxic type {type!r} has no message-level meaning") from None
    return meaning(attributes, toxicity)


def build_world(spec: Ensemble, seed: int, emit: Callable[[int, str, dict], None], *,
                txn_interval_ms: float | None = None, core_factory: Callable[..., Any] | None = None) -> ZabSim:
    return ZabSim(spec.quorum(), spec.sids, seed=seed, emit=emit, protocol=spec.protocol,
                  tick_time_ms=spec.tick_time_ms, init_limit=spec.init_limit, sync_limit=spec.sync_limit,
                  txn_interval_ms=spec.txn_interval_ms if txn_interval_ms is None else txn_interval_ms,
                  started=(), core_factory=core_factory, no_txns=spec.no_txns)


class SimTarget:
    """The run's :class:`chaos.targets.Target`, over simulated processes."""

    kind = "fle"

    def __init__(self, world: ZabSim, spec: Ensemble, on_process: Callable[..., None]) -> None:
        self.world = world
        self.spec = spec
        self.on_process = on_process
        self._pids: dict[int, int] = {}
        self._next_pid = PID_BASE
        self._snapshots: dict[str, tuple[int, SimLog]] = {}

    def version(self) -> str | None:
        return "sim"

    def header(self) -> list[dict]:
        return [{"sid": s, "name": f"n{s}", "role": "observer" if self.spec.is_observer(s) else "participant",
                 "weight": self.spec.weight(s), "group": self.spec.group_of(s)} for s in self.spec.sids]

    def endpoints(self) -> dict:
        return {}

    def write_configs(self) -> None:
        pass

    def start_all(self) -> None:
        for sid in self.spec.initial:
            self.start(sid)

    def start(self, sid: int) -> int:
        self._next_pid += 1
        pid = self._pids[sid] = self._next_pid
        self.world.boot(sid, pid)
        self.on_process(sid=sid, action="started", pid=pid, exit_code=None)
        return pid

    def _end(self, sid: int, action: str, graceful: bool, code: int) -> int | None:
        if not self.world.nodes[sid].alive:
            return None
        pid = self._pids.get(sid)
        if self.world.nodes[sid].paused:
            self.world.resume(sid)    # SIGCONT first, as the real target does before SIGTERM
        self.world.halt(sid, graceful=graceful)
        self.on_process(sid=sid, action=action, pid=pid, exit_code=code)
        return code

    def kill(self, sid: int) -> int | None:
        return self._end(sid, "killed", False, -9)

    def stop(self, sid: int, timeout: float = 10.0) -> int | None:
        return self._end(sid, "stopped", True, 0)

    def pause(self, sid: int) -> None:
        self.world.pause(sid)
        self.on_process(sid=sid, action="paused", pid=self._pids.get(sid), exit_code=None)

    def resume(self, sid: int) -> None:
        self.world.resume(sid)
        self.on_process(sid=sid, action="resumed", pid=self._pids.get(sid), exit_code=None)

    def restart(self, sid: int) -> int:
        if self.is_running(sid):
            self.stop(sid)
        return self.start(sid)

    def is_running(self, sid: int) -> bool:
        return self.world.nodes[sid].alive

    def pid(self, sid: int) -> int | None:
        return self._pids.get(sid) if self.is_running(sid) else None

    def poll_exits(self) -> list[tuple[int, int | None]]:
        return []

    def shutdown(self, timeout: float = 5.0) -> None:
        for sid in self.spec.sids:
            if self.is_running(sid):
                self.stop(sid)

    def log_summary(self, sid: int) -> dict:
        log = self.world.logs[sid]
        return {"runs": log.runs(), "last_committed_zxid": log.last_committed_zxid}

    def snapshot(self, sid: int, name: str) -> dict:
        if self.is_running(sid):
            raise RuntimeError(f"node {sid} is running; only a stopped node's dataDir is copied")
        log = self.world.logs[sid].copy()
        self._snapshots[name] = (sid, log)
        return {"accepted_epoch": log.accepted_epoch, "current_epoch": log.current_epoch, "runs": log.runs()}

    def restore(self, sid: int, name: str) -> None:
        if self.is_running(sid):
            raise RuntimeError(f"node {sid} is running; stop it before restoring its dataDir")
        if name not in self._snapshots:
            raise ValueError(f"no snapshot named '{name}' was taken")
        owner, log = self._snapshots[name]
        if owner != sid:
            raise ValueError(f"snapshot '{name}' is node {owner}'s dataDir, not node {sid}'s")
        self.world.logs[sid] = log.copy()


class SimLinks:
    """:class:`chaos.links.LinkFaults`'s interface, on the simulator's directed links."""

    def __init__(self, world: ZabSim, sids: Iterable[int]) -> None:
        self.world = world
        self.sids = tuple(sids)
        self.created: list[str] = []
        self.faults: dict[str, tuple[str, list[Link]]] = {}

    def header(self) -> list[dict]:
        return [{"from": a, "to": b, "port": p, "proxy": f"sim_{a}to{b}_{p}", "listen": "", "upstream": ""}
                for a in self.sids for b in self.sids if a != b for p in PORTS]

    def _add(self, fault_id: str, kind: str, links: Iterable[Link], fault: LinkFault) -> list[Link]:
        if fault_id in self.faults:
            raise ValueError(f"fault {fault_id} already applied")
        links = list(dict.fromkeys(tuple(lk) for lk in links))
        self.faults[fault_id] = (kind, links)
        self.world.add_fault(fault_id, fault, links)
        return links

    def add_toxic(self, fault_id: str, kind: str, links: Iterable[Link], type: str,
                  attributes: Mapping[str, Any], toxicity: float = 1.0) -> list:
        self._add(fault_id, kind, links, toxic_fault(type, attributes, toxicity))
        return []

    def block(self, fault_id: str, pairs: Iterable[tuple[int, int]], ports: Iterable[str] = PORTS) -> list[Link]:
        ports = list(ports)
        links = [(a, b, p) for a, b in sorted(set(pairs)) for p in ports]
        return self._add(fault_id, "partition", links, toxic_fault(BLACKHOLE["type"], BLACKHOLE["attributes"]))

    def down(self, fault_id: str, links: Iterable[Link]) -> list[Link]:
        return self._add(fault_id, "down", links, LinkFault(down=True))

    def undo(self, fault_id: str) -> list[Link]:
        entry = self.faults.pop(fault_id, None)
        if entry is None:
            return []
        self.world.remove_fault(fault_id)
        return entry[1]

    def blocked_pairs(self) -> set[tuple[int, int]]:
        return {(a, b) for kind, links in self.faults.values() if kind == "partition" for a, b, _ in links}

    def delete_proxies(self, log: Callable[[str], None] = lambda m: None) -> None:
        pass


class SimObserver:
    """Journals the simulated nodes' events and status changes; advances virtual time."""

    def __init__(self, world: ZabSim, journal: Any, sids: Iterable[int]) -> None:
        self.world = world
        self.journal = journal
        self.sids = tuple(sids)
        self.budget = NotificationBudget()
        self._view: dict[int, NodeStatus] = {s: NodeStatus(s) for s in self.sids}
        self.version = 0
        self.on_change: Callable[[NodeStatus, NodeStatus], None] | None = None

    # the world's emit callback
    def event(self, sid: int, event: str, fields: dict) -> None:
        if event in NOTIFICATION_EVENTS and not self.budget.keep(sid, event):
            return
        rec = self.journal.node_event(sid, event, fields, self.world.now_ms)
        if event == "election_started":
            self._capped(self.budget.election_started(sid, rec.seq, fields.get("logical_clock")))
        elif event in ("election_finished", "node_stopping"):
            self._capped(self.budget.election_finished(sid))

    def _capped(self, fields: dict | None) -> None:
        if fields is not None:
            self.journal.record(NotificationsCapped, mono_ms=self.world.now_ms, **fields)

    def status_of(self, sid: int) -> NodeStatus:
        w = self.world
        node = w.nodes[sid]
        if not node.alive or node.paused:
            return NodeStatus(sid)
        state = node.core.state
        log = w.logs[sid]
        return NodeStatus(sid=sid, up=True, state=state.name,
                          leader=None if state == ServerState.LOOKING else node.core.current_vote.leader,
                          epoch=log.current_epoch, accepted_epoch=log.accepted_epoch, zxid=log.last_zxid,
                          logical_clock=node.core.logical_clock, synced=w.synced(sid))

    def flush(self) -> None:
        """Journal the status of every node whose status moved."""
        dirty, self.world.dirty = self.world.dirty, set()
        for sid in sorted(dirty):
            new = self.status_of(sid)
            old = self._view[sid]
            if old.journal_key() != new.journal_key():
                self.journal.status(self.world.now_ms, sid=sid, **new.record_fields())
                self._view[sid] = new
                self.version += 1
                if self.on_change is not None:
                    self.on_change(old, new)
            elif old.key() != new.key():
                self._view[sid] = new

    # -- virtual time -----------------------------------------------------------------
    def advance(self, until_ms: float, stop_on_change: bool = False) -> None:
        w = self.world
        v = self.version
        self.flush()
        while w._heap and w._heap[0][0] <= until_ms:
            w.step()
            if w.dirty:
                self.flush()
                if stop_on_change and self.version != v:
                    return
        w.now_ms = max(w.now_ms, until_ms)

    def sleep(self, seconds: float) -> None:
        self.advance(self.world.now_ms + seconds * 1000.0)

    def clock(self) -> float:
        return self.world.now_ms / 1000.0

    # -- the Observer's interface --------------------------------------------------------
    def view(self) -> dict[int, NodeStatus]:
        self.flush()
        return dict(self._view)

    def wait_change(self, timeout: float) -> None:
        self.advance(self.world.now_ms + timeout * 1000.0, stop_on_change=True)

    def confirm(self, sids: Iterable[int]) -> dict[int, NodeStatus]:
        self.flush()
        for sid in sids:
            st = self.status_of(sid)
            self.journal.status(self.world.now_ms, sid=sid, **st.record_fields())
            self._view[sid] = st
        return dict(self._view)

    def bump(self, sid: int) -> None:
        self.world.dirty.add(sid)

    def mark_down(self, sid: int) -> None:
        self.world.dirty.add(sid)
        self.flush()

    def drain_events(self) -> int:
        self.flush()
        return 0

    def close_elections(self) -> None:
        for fields in self.budget.flush():
            self._capped(fields)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.flush()
