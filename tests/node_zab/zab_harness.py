"""Real peers for broadcast tests: Storage in temp dirs, Broadcast on loopback ports.

Everything runs in one asyncio loop per test; the only stand-in is `Relay`, a
plain TCP relay the test can pause per direction, which is how a silent peer
looks on the wire (a SIGSTOPped process or a black-holing proxy).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from chaos.ports import reserve_ports
from node.storage import Storage
from node.zab import Broadcast, ZabSettings
from zkrules.quorum import QuorumMaj


class Events(list):
    def __call__(self, event: str, fields: dict) -> None:
        self.append((time.monotonic(), event, dict(fields)))

    def named(self, name: str) -> list[dict]:
        return [f for _, e, f in self if e == name]


@dataclass
class Peer:
    sid: int
    dir: Path
    storage: Storage
    bc: Broadcast
    events: Events
    established: list[int] = field(default_factory=list)


class Relay:
    """TCP relay 127.0.0.1:port → upstream with a pause gate per direction.

    `upstream` is learner→leader bytes, `downstream` leader→learner. A paused
    direction holds bytes (neither drops nor closes), like a stopped process.
    """

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self.gates = {"upstream": asyncio.Event(), "downstream": asyncio.Event()}
        for g in self.gates.values():
            g.set()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    def pause(self, direction: str) -> None:
        self.gates[direction].clear()

    async def _accept(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(*self.target)
        except OSError:
            w.close()
            return
        self._writers += [w, uw]
        a = asyncio.create_task(self._pump(r, uw, self.gates["upstream"]))
        b = asyncio.create_task(self._pump(ur, w, self.gates["downstream"]))
        self._tasks |= {a, b}

    async def _pump(self, r, w, gate: asyncio.Event) -> None:
        try:
            while True:
                data = await r.read(65536)
                await gate.wait()
                if not data:
                    break
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        # a paused direction holds the end of the stream (FIN or RST) too
        await gate.wait()
        w.close()

    async def close(self) -> None:
        if self._server:
            self._server.close()
        for t in self._tasks:
            t.cancel()
        for w in self._writers:
            w.close()
        if self._tasks:
            await asyncio.wait(self._tasks)


class Cluster:
    """Peers 1..n (voters) plus observers, each with its own dirs and settings."""

    def __init__(self, tmp: Path, voters: int = 3, observers: int = 0, *, tick_ms: int = 50,
                 init_limit: int = 10, sync_limit: int = 5, txn_interval_ms: int = 20,
                 relays: tuple[int, ...] = ()) -> None:
        self.tmp = tmp
        self.sids = list(range(1, voters + observers + 1))
        self.verifier = QuorumMaj(range(1, voters + 1), range(voters + 1, voters + observers + 1))
        self.reservation = reserve_ports(len(self.sids) + len(relays))
        ports = self.reservation.ports
        self.addrs = {sid: ("127.0.0.1", ports[i]) for i, sid in enumerate(self.sids)}
        # learner sid -> Relay in front of every quorum address it dials
        self.relay_ports = {sid: ports[len(self.sids) + i] for i, sid in enumerate(relays)}
        self.relays: dict[int, Relay] = {}
        self.kw = dict(tick_ms=tick_ms, init_limit=init_limit, sync_limit=sync_limit,
                       txn_interval_ms=txn_interval_ms)
        self.peers: dict[int, Peer] = {}
        self.tasks: dict[int, asyncio.Task] = {}
        self._pre: dict[int, Storage] = {}

    def open_storage(self, sid: int) -> Storage:
        d = self.tmp / f"n{sid}"
        return Storage(d / "data", d / "log")

    def storage(self, sid: int) -> Storage:
        """Pre-seed a peer's disk before `start` (closed by the Cluster)."""
        if sid not in self._pre:
            self._pre[sid] = self.open_storage(sid)
        return self._pre[sid]

    async def start(self, sids: list[int] | None = None, leader_for_relay: int = 1) -> None:
        for sid in sids or self.sids:
            addrs = dict(self.addrs)
            if sid in self.relay_ports:
                relay = Relay(self.relay_ports[sid], self.addrs[leader_for_relay])
                await relay.start()
                self.relays[sid] = relay
                addrs[leader_for_relay] = ("127.0.0.1", self.relay_ports[sid])
            ev = Events()
            st = self._pre.pop(sid, None) or self.open_storage(sid)
            st._emit = ev
            bc = Broadcast(ZabSettings(sid=sid, quorum_addrs=addrs, verifier=self.verifier, **self.kw),
                           st, emit=ev)
            peer = Peer(sid, self.tmp / f"n{sid}", st, bc, ev)
            bc.on_epoch_established = peer.established.append
            await bc.start()
            self.peers[sid] = peer

    def lead(self, sid: int) -> asyncio.Task:
        self.tasks[sid] = asyncio.create_task(self.peers[sid].bc.lead())
        return self.tasks[sid]

    def follow(self, sid: int, leader: int, observer: bool = False) -> asyncio.Task:
        self.tasks[sid] = asyncio.create_task(self.peers[sid].bc.follow(leader, observer=observer))
        return self.tasks[sid]

    async def start_synced(self, leader: int = 1) -> asyncio.Task:
        """Start every peer, `leader` leading and the other voters following;
        return the leader's task once it has a synced quorum."""
        await self.start()
        lead = self.lead(leader)
        for sid in sorted(self.verifier.voting_members):
            if sid != leader:
                self.follow(sid, leader)
        await until(lambda: self.peers[leader].bc.synced, 20, "leader synced")
        return lead

    async def close(self) -> None:
        for p in self.peers.values():
            await p.bc.stop()
        for t in self.tasks.values():
            if not t.done():
                t.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=5)
        for r in self.relays.values():
            await r.close()
        for p in self.peers.values():
            p.storage.close()
        for st in self._pre.values():
            st.close()
        self.reservation.release()


async def until(pred, timeout: float, what: str, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(step)


def run(coro, timeout: float = 60.0):
    """Run one scenario in a fresh loop with an overall bound."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
