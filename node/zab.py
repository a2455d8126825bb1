"""The broadcast phase on the quorum port: a Zab-like protocol of our own.

It is not ZooKeeper's wire format; it keeps ZooKeeper's sequence, names and
timing (spec §4, §6) so chaos runs exercise the same failure detection and
epoch rules. The sequence is two sans-I/O state machines, `node.zab_roles`
(LeaderRole, LearnerRole), deciding by the rules in `node.zab_core`; the
simulator (`node.sim_zab`) drives the very same roles. This module is their
asyncio shell: it owns the sockets and the timer, feeds the role what
happens, and carries out the effects it answers with.

Framing
-------
Every message is one frame: int32 length (1..MAX_FRAME, about 1 MiB) and a
body whose first byte is the type. A bad length or body from a peer closes
that connection (event ``malformed_frame``, port ``quorum``); it never ends
the process nor the leader's other connections.

Messages (type byte, fields; integers big-endian, zxids/epochs int64)
--------------------------------------------------------------------
 1 FOLLOWERINFO sid, accepted_epoch, learner_type u8 (0 voter, 1 observer), version i32
 2 LEADERINFO   epoch (proposed), version i32
 3 ACKEPOCH     current_epoch (-1 when the learner already had accepted this epoch), last_zxid
 4 TRUNC        zxid: drop every logged txn above it
 5 DIFF         from_zxid, to_zxid: the TXN frames that follow take the learner there
 6 TXN          zxid, payload (one history entry of a DIFF)
 7 NEWLEADER    make_zxid(epoch, 0)
 8 ACK          zxid (of NEWLEADER, or cumulative: every proposal up to zxid is logged)
 9 UPTODATE     committed_zxid
10 PROPOSAL     zxid, payload (to followers)
11 COMMIT       zxid (to followers)
12 INFORM       zxid, payload (to observers: a committed txn)
13 PING         (leader → learner every tickTime/2; the learner answers PING)

Sequence
--------
Learner                                   Leader (lead())
  dial quorum_addrs[leader] (5 tries, 100 ms apart, within initLimit ticks)
  FOLLOWERINFO(sid, acceptedEpoch)  ──►   waits (initLimit ticks) until itself plus the
                                          connected *voters* form a quorum;
                                          epoch = max(acceptedEpoch of those) + 1,
                                          stored as its acceptedEpoch
                                   ◄──    LEADERINFO(epoch)
  e > accepted: store e, ACKEPOCH(currentEpoch, lastZxid)
  e == accepted: ACKEPOCH(-1, lastZxid)   (does not count, as in ZooKeeper)
  e < accepted: give up
                                   ──►    a quorum of ACKEPOCHs (initLimit ticks; a
                                          follower ahead of the leader aborts) → leader
                                          stores currentEpoch: epoch_established
                                   ◄──    [TRUNC(z)] DIFF(from, to) TXN* NEWLEADER
  TRUNC applied at once; on NEWLEADER:
  store currentEpoch, log the TXNs (fsync),
  epoch_established, ACK(NEWLEADER)  ──►  a voting quorum ACKed NEWLEADER (initLimit
                                          ticks): its whole log is committed
                                   ◄──    UPTODATE(committed)         sync_finished
  Then: every txn_interval_ms the leader logs PROPOSAL(epoch<<32|n) (fsync), sends it
  to followers, which log (fsync) and ACK; a voting quorum of ACKs (leader included)
  commits it in zxid order: COMMIT to followers, INFORM to observers.

Failure detection (spec §6): the leader PINGs every tickTime/2; each tick it
counts itself plus voters that ACKed NEWLEADER, are connected and were heard
from within syncLimit ticks; without a quorum it returns "quorum lost".
A learner hearing nothing for syncLimit×tickTime returns "leader silent"; EOF
or a reset returns "leader closed connection" at once. Observers never count.
Each return of lead()/follow() closes that role's connections, so peers
notice at once. Connections arriving while this peer does not lead are closed.

Return values (the shell goes back to LOOKING on any of them): lead() gives
"no quorum for new epoch" (discovery, ACKEPOCH or NEWLEADER quorum missing
within initLimit ticks), "follower ahead of leader", "quorum lost", "stopped";
follow() gives "cannot connect to leader", "leader epoch older than accepted
epoch", "leader silent", "leader closed connection", "malformed frame from
leader", "stopped".
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable

from node.storage import Storage
from node.zab_core import FrameDecoder, Message, ZabProtocolError, encode
from node.zab_roles import (
    REASON_CANNOT_CONNECT, REASON_EPOCH_OLDER, REASON_FOLLOWER_AHEAD, REASON_LEADER_CLOSED, REASON_LEADER_SILENT,
    REASON_MALFORMED, REASON_NO_EPOCH_QUORUM, REASON_QUORUM_LOST, REASON_STOPPED, Close, Dial, Effect, Emit,
    Ended, Established, LeaderRole, LearnerRole, Role, Send, ZabTiming,
)

__all__ = [
    "Broadcast",
    "ZabSettings",
    "REASON_NO_EPOCH_QUORUM",
    "REASON_QUORUM_LOST",
    "REASON_STOPPED",
    "REASON_LEADER_SILENT",
    "REASON_LEADER_CLOSED",
    "REASON_CANNOT_CONNECT",
    "REASON_FOLLOWER_AHEAD",
    "REASON_EPOCH_OLDER",
    "REASON_MALFORMED",
]

_MAX_SEND_BUFFER = 16 << 20

EmitFn = Callable[[str, dict], None]


@dataclass(frozen=True, slots=True)
class ZabSettings:
    sid: int
    tick_ms: int
    init_limit: int
    sync_limit: int
    txn_interval_ms: int
    quorum_addrs: dict[int, tuple[str, int]]
    verifier: Any  # zkrules.quorum QuorumVerifier: voting_members, observers, contains_quorum(sids)

    def timing(self) -> ZabTiming:
        return ZabTiming(self.tick_ms, self.init_limit, self.sync_limit, self.txn_interval_ms)


class _Conn:
    """One quorum-port connection: framed, bounded sends; the role reads it through `Broadcast._read`."""

    def __init__(self, cid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.cid = cid
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder()
        self.closed = False
        peer = writer.get_extra_info("peername")
        self.remote = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.task: asyncio.Task | None = None

    def send(self, msg: Message) -> None:
        """Queue a frame; a failed or stuck send closes the connection (the reader then reports it)."""
        if self.closed:
            return
        try:
            self.writer.write(encode(msg))
        except (ConnectionError, OSError, RuntimeError):
            self.close()
            return
        if self.writer.transport.get_write_buffer_size() > _MAX_SEND_BUFFER:
            self.close()  # the peer stopped reading: don't eat our memory

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.writer.close()
            except (ConnectionError, OSError, RuntimeError):
                pass


class Broadcast:
    """Leader or learner side of the broadcast phase for one peer: runs one role at a time."""

    def __init__(self, settings: ZabSettings, storage: Storage, *, emit: EmitFn,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.storage = storage
        self._emit = emit
        self._clock = clock
        self.on_epoch_established: Callable[[int], None] | None = None
        self._role: Role | None = None
        self._done: asyncio.Future[str] | None = None
        self._wake: asyncio.Event | None = None
        self._server: asyncio.base_events.Server | None = None
        self._main: asyncio.Task | None = None
        self._stopping = False
        self._conns: dict[int, _Conn] = {}
        self._tasks: set[asyncio.Task] = set()
        self._seq = 0

    # ---- what the node reports --------------------------------------------
    @property
    def role(self) -> str | None:
        return self._role.name if self._role is not None else None

    @property
    def leader(self) -> int | None:
        r = self._role
        if r is None:
            return None
        return self.settings.sid if isinstance(r, LeaderRole) else r.leader

    @property
    def synced(self) -> bool:
        return bool(self._role is not None and self._role.synced)

    def learner_counts(self) -> tuple[int, int, int]:
        """(learners, synced followers, synced observers) while leading, else zeros."""
        r = self._role
        return r.counts() if isinstance(r, LeaderRole) else (0, 0, 0)

    # ---- lifecycle --------------------------------------------------------
    async def start(self) -> None:
        host, port = self.settings.quorum_addrs[self.settings.sid]
        self._server = await asyncio.start_server(self._on_accept, host, port)

    async def stop(self) -> None:
        """End for good: a running lead()/follow() returns "stopped", sockets close.

        The task running lead()/follow() is cancelled; if that is the caller's
        own loop task, cancel it yourself first so it does not carry on.
        """
        self._stopping = True
        if self._server is not None:
            self._server.close()
        main = self._main
        if main is not None and not main.done() and main is not asyncio.current_task():
            main.cancel()
            await asyncio.wait([main])
        await self._end_tasks()
        if self._server is not None:
            try:
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()
            except (TimeoutError, asyncio.TimeoutError):
                pass

    async def lead(self) -> str:
        """Run the leader until it must give up; returns why."""
        s = self.settings
        return await self._run(LeaderRole(s.sid, s.verifier, self.storage, s.timing()))

    async def follow(self, leader_sid: int, *, observer: bool = False) -> str:
        """Connect, sync and follow `leader_sid` until it is lost; returns why."""
        if leader_sid not in self.settings.quorum_addrs:
            self._emit("leader_lost", {"reason": f"no quorum address for sid {leader_sid}"})
            return REASON_CANNOT_CONNECT
        s = self.settings
        return await self._run(LearnerRole(s.sid, leader_sid, self.storage, s.timing(), observer=observer))

    # ---- driving a role ---------------------------------------------------
    def _now(self) -> float:
        return self._clock() * 1000.0

    async def _run(self, role: Role) -> str:
        if self._stopping:
            return REASON_STOPPED
        self._main = asyncio.current_task()
        self._role, self._done, self._wake = role, asyncio.get_running_loop().create_future(), asyncio.Event()
        timer = self._spawn(self._timer(role))
        try:
            self._feed(role, role.start)
            return await self._done
        except asyncio.CancelledError:
            if self._stopping:  # our own stop(): a normal end, not the caller's cancellation
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                self._feed(role, role.stop)
                return REASON_STOPPED
            raise
        finally:
            self._role, self._done = None, None
            timer.cancel()
            await self._end_tasks()
            self._main = None

    def _feed(self, role: Role, method: Callable[..., list[Effect]], *args: Any) -> None:
        """Tell the running role what happened and carry out its answer; an error
        (e.g. a log that cannot be written) ends the role with that error."""
        done = self._done
        if role is not self._role or done is None or done.done():
            return
        try:
            effects = method(self._now(), *args)
        except Exception as e:  # noqa: BLE001 - the role's caller decides (role_failed)
            done.set_exception(e)
            return
        for fx in effects:
            if isinstance(fx, Send):
                conn = self._conns.get(fx.conn)
                if conn is not None:
                    conn.send(fx.msg)
            elif isinstance(fx, Close):
                conn = self._conns.pop(fx.conn, None)
                if conn is not None:
                    conn.close()
                    if conn.task is not None and conn.task is not asyncio.current_task():
                        conn.task.cancel()
            elif isinstance(fx, Emit):
                self._emit(fx.event, fx.fields)
            elif isinstance(fx, Established):
                if self.on_epoch_established is not None:
                    self.on_epoch_established(fx.epoch)
            elif isinstance(fx, Dial):
                self._spawn(self._dial(role, fx.timeout_ms))
            elif isinstance(fx, Ended):
                if not done.done():
                    done.set_result(fx.reason)
        if self._wake is not None:
            self._wake.set()

    async def _timer(self, role: Role) -> None:
        """Wake the role when it has something to do: pings, proposals, timeouts."""
        assert self._wake is not None
        while True:
            wait = role.next_wakeup() - self._now()
            if wait > 0:
                self._wake.clear()
                try:
                    async with asyncio.timeout(None if wait == float("inf") else wait / 1000.0):
                        await self._wake.wait()
                except (TimeoutError, asyncio.TimeoutError):
                    pass
                continue
            self._feed(role, role.on_tick)
            await asyncio.sleep(0.001 if role.next_wakeup() <= self._now() else 0)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _end_tasks(self) -> None:
        for conn in list(self._conns.values()):
            conn.close()
        self._conns.clear()
        me = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not me]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _open(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Conn:
        self._seq += 1
        conn = _Conn(self._seq, reader, writer)
        conn.task = asyncio.current_task()
        self._conns[conn.cid] = conn
        return conn

    async def _read(self, role: Role, conn: _Conn) -> None:
        """Frames in, messages to the role, until EOF, an error, or the role closes it."""
        while conn.cid in self._conns:
            try:
                data = await conn.reader.read(65536)
            except (ConnectionError, OSError) as e:
                self._feed(role, role.on_closed, conn.cid, f"connection error: {e}")
                return
            if not data:
                self._feed(role, role.on_closed, conn.cid, "eof")
                return
            conn.decoder.feed(data)
            while conn.cid in self._conns:
                try:
                    msg = conn.decoder.next_message()
                except ZabProtocolError as e:
                    self._feed(role, role.on_malformed, conn.cid, str(e), conn.decoder.last_length)
                    return
                if msg is None:
                    break
                self._feed(role, role.on_message, conn.cid, msg)

    async def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        role = self._role
        if not isinstance(role, LeaderRole) or self._stopping or role.ended is not None:
            writer.close()  # not leading: the learner retries or goes back to LOOKING
            return
        task = asyncio.current_task()
        self._tasks.add(task)
        conn = self._open(reader, writer)
        try:
            self._feed(role, role.on_accept, conn.cid, conn.remote)
            await self._read(role, conn)
        except asyncio.CancelledError:
            pass
        finally:
            conn.close()
            self._conns.pop(conn.cid, None)
            self._tasks.discard(task)

    async def _dial(self, role: LearnerRole, timeout_ms: float) -> None:
        host, port = self.settings.quorum_addrs[role.leader]
        try:
            async with asyncio.timeout(timeout_ms / 1000.0):
                reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError, asyncio.TimeoutError) as e:
            self._feed(role, role.on_dial_failed, f"connect to {host}:{port}: {e or 'timeout'}")
            return
        conn = self._open(reader, writer)
        try:
            self._feed(role, role.on_connected, conn.cid, conn.remote)
            await self._read(role, conn)
        finally:
            conn.close()
            self._conns.pop(conn.cid, None)
