"""The FLE core under a virtual clock and a seeded in-memory network.

Why: the pure core (`node.fle`) can be run here thousands of times per second
with every schedule reproducible from a seed, so safety and liveness can be
explored (by hypothesis) before real processes and real TCP are involved.

What is modelled, and how little
--------------------------------
Network (a tiny QuorumCnxManager): each directed pair has a send queue of
capacity 1 (only the newest notification waits) and a remembered last message.
A link between two live peers on the same side of a partition connects on the
first send or `ConnectAll`; on connecting, each side sends its pending message,
or re-sends its last one (QCM's SendWorker does). Messages travel with a
seeded delay in [min_delay_ms, max_delay_ms]; `reorder=False` keeps each link
FIFO. `drop_rate` loses a message in flight. A partition or a crash breaks
links and loses what is in flight on them. `have_delivered` is QCM's "some
queue is empty". Loopback (a send to oneself) is delivered at once.

After a decision (a minimal Zab, enough to give decisions consequences):
- a LEADING peer waits for a quorum of voters (itself included) to FOLLOW it
  and reach it; then it *establishes* epoch = max(acceptedEpoch of that set)+1,
  and every member sets acceptedEpoch = currentEpoch = epoch, takes the
  leader's last zxid (diff/trunc sync) and calls `update_election_vote`.
  No quorum within `init_limit_ms` of the decision: back to LOOKING;
- a follower (or observer) that cannot reach a LEADING peer it voted for
  within `init_limit_ms` goes back to LOOKING; joining an established leader
  syncs at once, unless the leader's epoch is below its acceptedEpoch (abort);
- once synced: a crashed leader, or one that stopped leading, is noticed at
  once (TCP reset); an unreachable one after `sync_limit_ms`;
- an established leader that cannot reach a quorum of synced followers for
  `sync_limit_ms` goes back to LOOKING;
- with `txn_interval_ms` > 0 an established leader that reaches a quorum
  commits one txn that often; the reachable synced followers apply it. That
  gives peers different zxids after faults, as in a real ensemble.
These checks run on a global tick every `tick_ms`.

Directed link faults (what a plan's partitions and toxics mean here, so
both worlds agree): every fault is a :class:`LinkFault` on directed links
(a, b, port) — the bytes a sends to b on that port, whichever side dialled.
``hold`` keeps those bytes (a partition, a silent death, the timeout toxic);
removing it closes the connections it held, so the peers reconnect and QCM
re-sends its last message. ``down`` is a disabled proxy: connections through
it close and new ones are refused; an election connection is dialled by the
larger sid (QCM's rule), through proxy max->min, and a smaller sid that wants
one first asks through min->max. ``latency``/``jitter`` delay each message,
FIFO per link. ``reset_ms`` resets a connection that long after it opened
(reset_peer; a timeout toxic with a timeout both holds and resets).
``toxicity`` is drawn once per connection, as Toxiproxy draws it. A paused
node runs nothing: what is delivered to it and its timers wait for resume.

A restart is a fresh core (logical clock 0) with the same persisted last
zxid and epochs. `SimNode.decisions` and `Simulator.established` record
what happened, and `check_safety()` tests the invariants after any step.
"""
from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .fle import (
    CancelTimer,
    ConnectAll,
    Decided,
    Effect,
    EventOut,
    FastLeaderElection,
    PATH_QUORUM,
    Send,
    SetTimer,
    StateChanged,
)
from zkrules.quorum import QuorumVerifier
from zkrules.vote import Notification, ServerState, make_zxid, zxid_counter, zxid_epoch

__all__ = ["Decision", "Established", "LinkFault", "SimNode", "Simulator", "SafetyViolation"]

LinkKey = tuple[int, int, str]  # (from sid, to sid, port)


class SafetyViolation(AssertionError):
    """An invariant failed; the message names it and the evidence."""


@dataclass(frozen=True, slots=True)
class Decision:
    t_ms: float
    sid: int
    leader: int
    round: int
    path: str
    zxid: int
    peer_epoch: int
    acked: frozenset[int]  # for a quorum-path leader: the voters whose votes formed its quorum


@dataclass(frozen=True, slots=True)
class Established:
    t_ms: float
    leader: int
    epoch: int
    quorum: frozenset[int]
    leader_zxid: int


@dataclass(frozen=True, slots=True)
class LinkFault:
    """What one fault does to the bytes `a` sends to `b` on one port."""

    hold: bool = False
    down: bool = False
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    reset_ms: float | None = None
    toxicity: float = 1.0


@dataclass
class SimNode:
    sid: int
    last_zxid: int
    current_epoch: int
    accepted_epoch: int
    core: FastLeaderElection
    alive: bool = True
    incarnation: int = 0
    queues: dict[int, Notification | None] = field(default_factory=dict)
    last_sent: dict[int, Notification] = field(default_factory=dict)
    timers: dict[str, int] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    election_init: tuple[int, int, int] = (0, 0, 0)  # (epoch, zxid, sid) at the last election start
    # minimal Zab
    decided_at: float = 0.0
    lead_instance: int = 0  # leader: id of this leadership; follower: the one it joined
    joined: bool = False
    synced: bool = False
    established_epoch: int | None = None
    contact_ok_at: float = 0.0
    paused: bool = False
    deferred: list[tuple[str, tuple]] = field(default_factory=list)  # what waits for resume

    @property
    def state(self) -> ServerState:
        return self.core.state


class Simulator:
    def __init__(
        self,
        verifier: QuorumVerifier,
        peers: dict[int, tuple[int, ...]],
        *,
        seed: int = 0,
        protocol: str = "3.8",
        min_delay_ms: float = 1.0,
        max_delay_ms: float = 20.0,
        drop_rate: float = 0.0,
        reorder: bool = True,
        init_limit_ms: float = 2000.0,
        sync_limit_ms: float = 1000.0,
        tick_ms: float = 100.0,
        txn_interval_ms: float = 0.0,
        min_notification_interval: int = 200,
        max_notification_interval: int = 60000,
        finalize_wait: int = 200,
    ) -> None:
        """`peers` maps every sid (voters and observers) to (last_zxid, current_epoch[, accepted_epoch]).

        Give states a real ensemble could have: a quorum holds the highest
        acceptedEpoch. A peer whose acceptedEpoch no quorum ever accepted can
        never join a leader with a lower epoch (LEADERINFO below acceptedEpoch
        aborts, as in ZooKeeper) until the ensemble re-elects.
        """
        self.verifier = verifier
        self.rng = random.Random(seed)
        self.protocol = protocol
        self.min_delay_ms, self.max_delay_ms = min_delay_ms, max_delay_ms
        self.drop_rate = drop_rate
        self.reorder = reorder
        self.init_limit_ms, self.sync_limit_ms, self.tick_ms = init_limit_ms, sync_limit_ms, tick_ms
        self.txn_interval_ms = txn_interval_ms
        self._core_args = dict(
            protocol=protocol,
            min_notification_interval=min_notification_interval,
            max_notification_interval=max_notification_interval,
            finalize_wait=finalize_wait,
        )
        self.now_ms = 0.0
        self._heap: list[tuple[float, int, str, tuple]] = []
        self._seq = 0
        self._side: dict[int, int] = {}  # sid -> partition side; empty = healed
        self._links: dict[frozenset[int], int] = {}  # connected links -> generation
        self._link_gen = 0
        self._fifo_tail: dict[tuple[int, int], float] = {}
        self._lead_counter = 0
        self._next_txn_ms = 0.0
        self.nodes: dict[int, SimNode] = {}
        for sid, state in sorted(peers.items()):
            zxid, epoch = state[0], state[1]
            accepted = state[2] if len(state) > 2 else epoch
            if accepted < epoch:
                raise ValueError(f"peer {sid}: acceptedEpoch {accepted} < currentEpoch {epoch}")
            self.nodes[sid] = SimNode(sid, zxid, epoch, accepted, self._new_core(sid))
        self.established: list[Established] = []
        self.committed: list[int] = []  # zxids committed by a quorum
        self.trace: list[tuple[float, int, str, dict]] = []
        self.messages_delivered = 0
        self.messages_lost = 0
        self._init_at: dict[tuple[int, int, float], tuple[int, int, int]] = {}
        self._faults: dict[str, tuple[LinkFault, tuple[LinkKey, ...]]] = {}
        self._on_link: dict[LinkKey, list[str]] = {}
        self._draws: dict[tuple[str, frozenset[int], int], bool] = {}  # toxicity, per connection
        self._push(tick_ms, "tick", ())

    # -- controls ------------------------------------------------------------
    def start(self, sids: Iterable[int] | None = None) -> None:
        for sid in sorted(self.nodes if sids is None else sids):
            self._start_election(self.nodes[sid], "start")

    def crash(self, sid: int) -> None:
        node = self.nodes[sid]
        if not node.alive:
            return
        node.alive = False
        node.paused = False
        node.deferred.clear()
        node.incarnation += 1
        node.timers.clear()
        node.queues.clear()
        node.last_sent.clear()
        for link in [l for l in self._links if sid in l]:
            del self._links[link]
        self._note(sid, "crashed", {})

    def restart(self, sid: int) -> None:
        """A fresh process: logical clock 0, same persisted zxid and epochs."""
        node = self.nodes[sid]
        if node.alive:
            self.crash(sid)
        node.alive = True
        node.incarnation += 1
        node.core = self._new_core(sid)
        self._reset_zab(node)
        self._note(sid, "restarted", {})
        self._start_election(node, "restart")

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Cut every link between different groups; unlisted peers form one more group."""
        self._side = {}
        for i, g in enumerate(groups):
            for sid in g:
                self._side[sid] = i
        rest = -1
        for sid in self.nodes:
            self._side.setdefault(sid, rest)
        for link in list(self._links):
            a, b = tuple(link)
            if not self.reachable(a, b):
                del self._links[link]
        self._note(0, "partitioned", {"groups": [sorted(g) for g in groups]})

    def heal(self) -> None:
        self._side = {}
        self._note(0, "healed", {})

    def pause(self, sid: int) -> None:
        """SIGSTOP: the node runs nothing; deliveries and timers wait for `resume`."""
        node = self.nodes[sid]
        if node.alive:
            node.paused = True

    def resume(self, sid: int) -> None:
        node = self.nodes[sid]
        if not node.paused:
            return
        node.paused = False
        waiting, node.deferred = node.deferred, []
        for kind, data in waiting:
            getattr(self, "_on_" + kind)(*data)

    # -- directed link faults ------------------------------------------------------
    def add_fault(self, fid: str, fault: LinkFault, links: Iterable[LinkKey]) -> None:
        links = tuple(dict.fromkeys(links))
        if fid in self._faults:
            raise ValueError(f"fault {fid} already applied")
        self._faults[fid] = (fault, links)
        for lk in links:
            self._on_link.setdefault(lk, []).append(fid)
        for pair in sorted({frozenset(lk[:2]) for lk in links if lk[2] == "election"}, key=sorted):
            gen = self._links.get(pair)
            if gen is None:
                continue
            a, b = sorted(pair)
            if not self._dial_ok(b, a, initiator=b):
                del self._links[pair]  # the proxy carrying it was disabled
            elif fault.reset_ms is not None and self._applies(fid, pair, gen):
                self._push(self.now_ms + fault.reset_ms, "reset", (pair, gen, fid))
        self._fault_changed(fid, fault, links, added=True)

    def remove_fault(self, fid: str) -> None:
        entry = self._faults.pop(fid, None)
        if entry is None:
            return
        fault, links = entry
        for lk in links:
            fids = self._on_link.get(lk)
            if fids is not None and fid in fids:
                fids.remove(fid)
                if not fids:
                    del self._on_link[lk]
        if fault.hold:  # what was held goes with the connections that held it
            for pair in {frozenset(lk[:2]) for lk in links if lk[2] == "election"}:
                self._links.pop(pair, None)
        self._fault_changed(fid, fault, links, added=False)

    def _fault_changed(self, fid: str, fault: LinkFault, links: tuple[LinkKey, ...], added: bool) -> None:
        """Hook: a subclass carrying quorum-port traffic reacts here."""

    def _applies(self, fid: str, pair: frozenset[int], gen: int | None) -> bool:
        fault = self._faults[fid][0]
        if fault.toxicity >= 1.0:
            return True
        if fault.toxicity <= 0.0:
            return False
        key = (fid, pair, gen or 0)
        if key not in self._draws:
            self._draws[key] = self.rng.random() < fault.toxicity
        return self._draws[key]

    def link_faults(self, a: int, b: int, port: str = "election", gen: int | None = None) -> list[LinkFault]:
        fids = self._on_link.get((a, b, port))
        if not fids:
            return []
        pair = frozenset((a, b))
        return [self._faults[f][0] for f in fids if self._applies(f, pair, gen)]

    def link_held(self, a: int, b: int, port: str = "election", gen: int | None = None) -> bool:
        return any(f.hold for f in self.link_faults(a, b, port, gen))

    def link_down(self, a: int, b: int, port: str = "election") -> bool:
        return any(f.down for f in self.link_faults(a, b, port))

    def link_delay(self, a: int, b: int, port: str = "election", gen: int | None = None) -> float:
        """Extra delay of one message from a to b (latency plus a seeded jitter draw)."""
        extra = 0.0
        for f in self.link_faults(a, b, port, gen):
            if f.latency_ms or f.jitter_ms:
                extra += f.latency_ms + (self.rng.uniform(-f.jitter_ms, f.jitter_ms) if f.jitter_ms else 0.0)
        return max(0.0, extra)

    def _dial_ok(self, a: int, b: int, initiator: int) -> bool:
        """Can an election connection between a and b open (or stay open)?
        It lasts through proxy max->min; a smaller initiator first asks through min->max."""
        hi, lo = max(a, b), min(a, b)
        if not self._on_link:
            return True
        if self.link_down(hi, lo):
            return False
        if initiator == lo and (self.link_down(lo, hi) or self.link_held(lo, hi)):
            return False
        return True

    def reachable(self, a: int, b: int) -> bool:
        na, nb = self.nodes[a], self.nodes[b]
        if not (na.alive and nb.alive):
            return False
        return self._side.get(a, 0) == self._side.get(b, 0)

    # -- running -------------------------------------------------------------
    def step(self) -> bool:
        """Process the next event; False when nothing is scheduled."""
        if not self._heap:
            return False
        t, _, kind, data = heapq.heappop(self._heap)
        self.now_ms = max(self.now_ms, t)
        getattr(self, "_on_" + kind)(*data)
        return True

    def run_for(self, ms: float, check: Callable[["Simulator"], None] | None = None) -> None:
        self.run_until(self.now_ms + ms, check=check)

    def run_until(self, t_ms: float, stop: Callable[["Simulator"], bool] | None = None,
                  check: Callable[["Simulator"], None] | None = None) -> bool:
        """Run events up to virtual time `t_ms`; True as soon as `stop` holds."""
        while self._heap and self._heap[0][0] <= t_ms:
            self.step()
            if check is not None:
                check(self)
            if stop is not None and stop(self):
                return True
        self.now_ms = max(self.now_ms, t_ms)
        return stop is not None and stop(self)

    def run_until_stable(self, timeout_ms: float, check: Callable[["Simulator"], None] | None = None) -> bool:
        return self.run_until(self.now_ms + timeout_ms, stop=lambda s: s.stable() is not None, check=check)

    # -- observations ----------------------------------------------------------
    def leaders(self) -> list[int]:
        return [n.sid for n in self.nodes.values() if n.alive and n.state == ServerState.LEADING]

    def stable(self) -> int | None:
        """The leader if exactly one live peer leads, it is established, and every
        live peer reachable from it follows (or observes) it, synced."""
        leaders = self.leaders()
        if len(leaders) != 1:
            return None
        lead = self.nodes[leaders[0]]
        if lead.established_epoch is None:
            return None
        for n in self.nodes.values():
            if n is lead or not n.alive or not self.reachable(lead.sid, n.sid):
                continue
            if n.state not in (ServerState.FOLLOWING, ServerState.OBSERVING) or not n.synced:
                return None
            if n.core.current_vote.leader != lead.sid or n.lead_instance != lead.lead_instance:
                return None
        return lead.sid

    def check_safety(self, *, same_round_agreement: bool = False) -> None:
        """Raise SafetyViolation if an invariant is broken.

        Always: no two leaders establish the same epoch; an established
        leader's epoch exceeds every earlier one; no committed zxid is ahead
        of a later established leader's last zxid; a quorum-path leader holds
        the max (epoch, zxid, sid) among the voters that elected it.
        `same_round_agreement`: all quorum-path decisions of one round name
        the same leader. FLE alone does not promise that (a message slower
        than finalizeWait lets two peers finish one round differently; Zab's
        epoch step is what keeps that safe), so callers ask for it only on
        schedules where every message arrives within finalizeWait.
        """
        by_epoch: dict[int, Established] = {}
        prev = None
        for e in self.established:
            other = by_epoch.get(e.epoch)
            if other is not None and other.leader != e.leader:
                raise SafetyViolation(f"epoch {e.epoch} established by {other.leader} and {e.leader}")
            by_epoch[e.epoch] = e
            if prev is not None and e.epoch <= prev.epoch:
                raise SafetyViolation(f"epoch went from {prev.epoch} to {e.epoch} ({prev.leader}->{e.leader})")
            prev = e
        for node in self.nodes.values():
            for d in node.decisions:
                if d.path != PATH_QUORUM or d.leader != node.sid:
                    continue
                mine = (d.peer_epoch, d.zxid, d.leader)
                for sid in d.acked:
                    if self.verifier.weight(sid) == 0:
                        continue  # a weightless voter may sit ahead of the leader (ZK-491)
                    other = self._init_at.get((sid, d.round, d.t_ms))
                    if other is not None and other > mine:
                        raise SafetyViolation(
                            f"leader {d.leader} (round {d.round}) elected with voter {sid} ahead: {other} > {mine}")
        if same_round_agreement:
            seen: dict[int, tuple[int, int]] = {}
            for node in self.nodes.values():
                for d in node.decisions:
                    if d.path != PATH_QUORUM:
                        continue
                    if d.round in seen and seen[d.round][0] != d.leader:
                        raise SafetyViolation(
                            f"round {d.round}: {seen[d.round][1]} decided {seen[d.round][0]}, {d.sid} decided {d.leader}")
                    seen.setdefault(d.round, (d.leader, d.sid))

    # -- internals: cores and effects -------------------------------------------
    def _new_core(self, sid: int) -> FastLeaderElection:
        return FastLeaderElection(sid, self.verifier, **self._core_args)

    def _start_election(self, node: SimNode, reason: str) -> None:
        node.election_init = (node.current_epoch, node.last_zxid, node.sid)
        self._reset_zab(node)
        self._apply(node, node.core.start_election(self.now_ms, node.last_zxid, node.current_epoch))
        self._note(node.sid, "election_started", {"reason": reason, "round": node.core.logical_clock})

    def _reset_zab(self, node: SimNode) -> None:
        node.joined = node.synced = False
        node.established_epoch = None

    def _apply(self, node: SimNode, effects: list[Effect]) -> None:
        for fx in effects:
            if isinstance(fx, Send):
                version = 2 if self.protocol == "3.8" else 1
                n = Notification(node.sid, fx.state, fx.leader, fx.zxid, fx.round, fx.peer_epoch, version)
                if fx.to == node.sid:
                    self._push(self.now_ms, "deliver", (node.sid, node.sid, n, node.incarnation, None))
                elif fx.to in self.nodes:
                    node.queues[fx.to] = n
                    self._connect_one(node.sid, fx.to)
            elif isinstance(fx, SetTimer):
                self._seq += 1
                node.timers[fx.name] = self._seq
                self._push(self.now_ms + fx.delay_ms, "timer", (node.sid, node.incarnation, fx.name, self._seq))
            elif isinstance(fx, CancelTimer):
                node.timers.pop(fx.name, None)
            elif isinstance(fx, ConnectAll):
                for peer in sorted(node.queues):
                    self._connect_one(node.sid, peer)
            elif isinstance(fx, Decided):
                self._on_decided(node, fx)
            elif isinstance(fx, StateChanged):
                self._note(node.sid, "state_changed", {"from": fx.old.name, "to": fx.new.name})
            elif isinstance(fx, EventOut):
                pass

    def _have_delivered(self, node: SimNode) -> bool:
        return any(q is None for q in node.queues.values())

    def _connect_one(self, a: int, b: int) -> None:
        if not self.reachable(a, b):
            return
        link = frozenset((a, b))
        if link not in self._links:
            if self._on_link and not self._dial_ok(a, b, initiator=a):
                return
            self._link_gen += 1
            self._links[link] = self._link_gen
            if self._on_link:
                for x, y in ((a, b), (b, a)):
                    for fid in self._on_link.get((x, y, "election"), ()):
                        f = self._faults[fid][0]
                        if f.reset_ms is not None and self._applies(fid, link, self._link_gen):
                            self._push(self.now_ms + f.reset_ms, "reset", (link, self._link_gen, fid))
            for x, y in ((a, b), (b, a)):
                nx = self.nodes[x]
                pending = nx.queues.get(y)
                if pending is not None:
                    self._transmit(x, y, pending)
                elif y in nx.last_sent:
                    self._transmit(x, y, nx.last_sent[y])
        else:
            pending = self.nodes[a].queues.get(b)
            if pending is not None:
                self._transmit(a, b, pending)

    def _transmit(self, a: int, b: int, n: Notification) -> None:
        node = self.nodes[a]
        node.queues[b] = None
        node.last_sent[b] = n
        if self.drop_rate and self.rng.random() < self.drop_rate:
            self.messages_lost += 1
            return
        gen = self._links[frozenset((a, b))]
        t = self.now_ms + self.rng.uniform(self.min_delay_ms, self.max_delay_ms)
        if self._on_link:
            if self.link_held(a, b, "election", gen):
                self.messages_lost += 1  # held until the hold goes, which closes the connection
                return
            t += self.link_delay(a, b, "election", gen)
        if not self.reorder:
            t = max(t, self._fifo_tail.get((a, b), 0.0))
            self._fifo_tail[(a, b)] = t
        self._push(t, "deliver", (a, b, n, node.incarnation, self._links[frozenset((a, b))]))

    def _push(self, t: float, kind: str, data: tuple) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, data))

    def _note(self, sid: int, what: str, fields: dict) -> None:
        self.trace.append((self.now_ms, sid, what, fields))

    # -- event handlers ---------------------------------------------------------
    def _on_reset(self, pair: frozenset[int], gen: int, fid: str | None = None) -> None:
        """A reset_peer toxic's timer ran out; a toxic removed before then resets nothing."""
        if fid is not None and fid not in self._faults:
            return
        if self._links.get(pair) == gen:
            del self._links[pair]

    def _on_deliver(self, src: int, dst: int, n: Notification, src_inc: int, link_gen: int | None) -> None:
        a, b = self.nodes[src], self.nodes[dst]
        if b.paused:
            b.deferred.append(("deliver", (src, dst, n, src_inc, link_gen)))
            return
        if src != dst and self._links.get(frozenset((src, dst))) != link_gen:
            self.messages_lost += 1  # the connection broke while it was in flight
            return
        if not b.alive or a.incarnation != src_inc:
            self.messages_lost += 1
            return
        self.messages_delivered += 1
        self._apply(b, b.core.on_notification(self.now_ms, n))

    def _on_timer(self, sid: int, inc: int, name: str, token: int) -> None:
        node = self.nodes[sid]
        if not node.alive or node.incarnation != inc or node.timers.get(name) != token:
            return
        if node.paused:
            node.deferred.append(("timer", (sid, inc, name, token)))
            return
        del node.timers[name]
        self._apply(node, node.core.on_timer(self.now_ms, name, have_delivered=self._have_delivered(node)))

    def _on_decided(self, node: SimNode, d: Decided) -> None:
        acked: frozenset[int] = frozenset()
        if d.path == PATH_QUORUM and d.vote.leader == node.sid:
            target = node.core.proposal
            acked = frozenset(s for s, v in node.core.recvset.items() if target.matches(v))
            for s in acked:  # remember each elector's initial vote for check_safety
                if self.nodes[s].core.logical_clock == d.round:
                    self._init_at[(s, d.round, self.now_ms)] = self.nodes[s].election_init
        node.decisions.append(Decision(self.now_ms, node.sid, d.vote.leader, d.round, d.path, d.vote.zxid,
                                       d.vote.peer_epoch, acked))
        node.decided_at = self.now_ms
        node.contact_ok_at = self.now_ms
        self._reset_zab(node)
        if node.state == ServerState.LEADING:
            self._lead_counter += 1
            node.lead_instance = self._lead_counter
        self._note(node.sid, "election_finished", {"leader": d.vote.leader, "round": d.round, "path": d.path})

    def _on_tick(self) -> None:
        self._push(self.now_ms + self.tick_ms, "tick", ())
        for node in list(self.nodes.values()):
            if not node.alive:
                continue
            if node.state == ServerState.LEADING:
                self._tick_leader(node)
            elif node.state in (ServerState.FOLLOWING, ServerState.OBSERVING):
                self._tick_learner(node)

    def _followers_of(self, lead: SimNode, synced: bool) -> set[int]:
        out = {lead.sid}
        for n in self.nodes.values():
            if (n is not lead and n.alive and n.joined and n.lead_instance == lead.lead_instance
                    and n.state in (ServerState.FOLLOWING, ServerState.OBSERVING)
                    and n.core.current_vote.leader == lead.sid
                    and (n.synced or not synced) and self.reachable(lead.sid, n.sid)):
                out.add(n.sid)
        return out

    def _tick_leader(self, lead: SimNode) -> None:
        if lead.established_epoch is None:
            members = self._followers_of(lead, synced=False)
            if self.verifier.contains_quorum(members):
                epoch = max(self.nodes[s].accepted_epoch for s in members) + 1
                for s in sorted(members):
                    n = self.nodes[s]
                    n.accepted_epoch = n.current_epoch = epoch
                    n.last_zxid = lead.last_zxid
                    n.synced = True
                    n.contact_ok_at = self.now_ms
                    n.core.update_election_vote(epoch)
                lead.established_epoch = epoch
                lead.contact_ok_at = self.now_ms
                self.established.append(Established(self.now_ms, lead.sid, epoch, frozenset(members),
                                                    lead.last_zxid))
                self._next_txn_ms = self.now_ms + self.txn_interval_ms
                self._note(lead.sid, "epoch_established", {"epoch": epoch, "quorum": sorted(members)})
            elif self.now_ms - lead.decided_at > self.init_limit_ms:
                self._start_election(lead, "no quorum followed within initLimit")
            return
        synced = self._followers_of(lead, synced=True)
        if self.verifier.contains_quorum(synced):
            lead.contact_ok_at = self.now_ms
            if self.txn_interval_ms > 0 and self.now_ms >= self._next_txn_ms:
                self._next_txn_ms = self.now_ms + self.txn_interval_ms
                epoch = lead.established_epoch
                counter = zxid_counter(lead.last_zxid) + 1 if zxid_epoch(lead.last_zxid) == epoch else 1
                z = make_zxid(epoch, counter)
                for s in synced:
                    self.nodes[s].last_zxid = z
                self.committed.append(z)
        elif self.now_ms - lead.contact_ok_at > self.sync_limit_ms:
            self._start_election(lead, "quorum lost")

    def _tick_learner(self, node: SimNode) -> None:
        leader_sid = node.core.current_vote.leader
        lead = self.nodes.get(leader_sid)
        leading = (lead is not None and lead.alive and lead.state == ServerState.LEADING)
        if not node.synced:
            if node.joined and (not leading or lead.lead_instance != node.lead_instance):
                self._start_election(node, "leader gave up before establishing")
            elif leading and self.reachable(node.sid, leader_sid):
                if lead.established_epoch is not None:
                    if lead.established_epoch < node.accepted_epoch:
                        self._start_election(node, "leader epoch below my acceptedEpoch")
                        return
                    node.accepted_epoch = node.current_epoch = lead.established_epoch
                    node.last_zxid = lead.last_zxid
                    node.synced = True
                    node.core.update_election_vote(lead.established_epoch)
                node.joined = True
                node.lead_instance = lead.lead_instance
                node.contact_ok_at = self.now_ms
            elif self.now_ms - node.decided_at > self.init_limit_ms:
                self._start_election(node, "leader not reachable within initLimit")
            return
        if not leading or lead.lead_instance != node.lead_instance:
            self._start_election(node, "leader connection closed")
        elif self.reachable(node.sid, leader_sid):
            node.contact_ok_at = self.now_ms
        elif self.now_ms - node.contact_ok_at > self.sync_limit_ms:
            self._start_election(node, "leader silent for syncLimit")
