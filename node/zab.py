"""The broadcast phase on the quorum port: a Zab-like protocol of our own.

It is not ZooKeeper's wire format; it keeps ZooKeeper's sequence, names and
timing (spec §4, §6) so chaos runs exercise the same failure detection and
epoch rules. The codec, the bookkeeping and the rules (shared with the simulator,
`node.sim_zab`) live in `node.zab_core`; this module
is the asyncio shell that owns sockets, timers and calls into `node.storage`.

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
from dataclasses import dataclass, field
from typing import Any, Callable

from node.storage import Storage, epoch_of, make_zxid
from node.zab_core import (
    Ack, AckEpoch, Commit, EpochAction, FollowerInfo, FrameDecoder, Inform, LeaderInfo, LearnerSync, LearnerType,
    Message, Ping, Proposal, ProposalTracker, UpToDate, ZabProtocolError, counted_epoch_acks, encode,
    epoch_to_propose, keeps_quorum, leader_read_timeout, learner_ahead, learner_epoch_action, learner_read_timeout,
    newleader_acks, plan_sync, sync_frames, voting_quorum,
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

REASON_NO_EPOCH_QUORUM = "no quorum for new epoch"
REASON_QUORUM_LOST = "quorum lost"
REASON_STOPPED = "stopped"
REASON_FOLLOWER_AHEAD = "follower ahead of leader"
REASON_LEADER_SILENT = "leader silent"
REASON_LEADER_CLOSED = "leader closed connection"
REASON_CANNOT_CONNECT = "cannot connect to leader"
REASON_EPOCH_OLDER = "leader epoch older than accepted epoch"
REASON_MALFORMED = "malformed frame from leader"

_CONNECT_TRIES = 5
_CONNECT_DELAY_S = 0.1
_MAX_SEND_BUFFER = 16 << 20

Emit = Callable[[str, dict], None]


@dataclass(frozen=True, slots=True)
class ZabSettings:
    sid: int
    tick_ms: int
    init_limit: int
    sync_limit: int
    txn_interval_ms: int
    quorum_addrs: dict[int, tuple[str, int]]
    verifier: Any  # zkrules.quorum QuorumVerifier: voting_members, observers, contains_quorum(sids)


class _Closed(Exception):
    """The peer closed or reset the connection."""


class _Conn:
    """One quorum-port connection: framed send, framed receive with a timeout."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder()
        self.closed = False
        self.close_reason = ""
        peer = writer.get_extra_info("peername")
        self.remote = f"{peer[0]}:{peer[1]}" if peer else "?"

    async def recv(self, timeout: float) -> Message:
        """Next message; TimeoutError after `timeout` s without bytes, _Closed on EOF/reset."""
        while True:
            msg = self.decoder.next_message()
            if msg is not None:
                return msg
            if self.closed:
                raise _Closed(self.close_reason or "closed locally")
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                # cancellation that races with data arriving, and stop() would hang
                async with asyncio.timeout(timeout):
                    data = await self.reader.read(65536)
            except TimeoutError:  # a subclass of OSError since 3.11: keep it distinct
                raise
            except (ConnectionError, OSError) as e:
                raise _Closed(f"connection error: {e}") from None
            if not data:
                raise _Closed("eof")
            self.decoder.feed(data)

    def send(self, msg: Message) -> bool:
        if self.closed:
            return False
        try:
            self.writer.write(encode(msg))
        except (ConnectionError, OSError, RuntimeError) as e:
            self.close(f"send failed: {e}")
            return False
        if self.writer.transport.get_write_buffer_size() > _MAX_SEND_BUFFER:
            self.close("send buffer over 16 MiB: peer stopped reading")  # don't eat our memory
            return False
        return True

    def close(self, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            try:
                self.writer.close()
            except (ConnectionError, OSError, RuntimeError):
                pass


@dataclass(eq=False)
class _Learner:
    sid: int
    observer: bool
    conn: _Conn
    accepted_epoch: int
    last_heard: float
    ack_epoch: AckEpoch | None = None
    newleader_acked: bool = False
    forwarding: bool = False
    uptodate_sent: bool = False


@dataclass(eq=False)
class _LeadState:
    tracker: ProposalTracker
    learners: dict[int, _Learner] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    epoch_proposed: asyncio.Event = field(default_factory=asyncio.Event)
    established: asyncio.Event = field(default_factory=asyncio.Event)
    epoch: int = -1
    synced: bool = False
    payloads: dict[int, bytes] = field(default_factory=dict)
    tasks: set[asyncio.Task] = field(default_factory=set)
    proposer: asyncio.Task | None = None


class Broadcast:
    """Leader or learner side of the broadcast phase for one peer."""

    def __init__(self, settings: ZabSettings, storage: Storage, *, emit: Emit,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.storage = storage
        self._emit = emit
        self._clock = clock
        self.on_epoch_established: Callable[[int], None] | None = None
        self.synced = False
        self.leader: int | None = None
        self.role: str | None = None
        self._server: asyncio.base_events.Server | None = None
        self._lead: _LeadState | None = None
        self._main: asyncio.Task | None = None
        self._stopping = False
        self._accepts: set[asyncio.Task] = set()
        self._follow_conn: _Conn | None = None

    # ---- helpers ----------------------------------------------------------
    @property
    def _tick(self) -> float:
        return self.settings.tick_ms / 1000.0

    def _voters(self) -> set[int]:
        return set(self.settings.verifier.voting_members)

    def _quorum(self, sids: set[int]) -> bool:
        return voting_quorum(sids, self.settings.verifier)

    def _established(self, epoch: int) -> None:
        self._emit("epoch_established", {"epoch": epoch, "role": self.role,
                                          "leader": self.leader,
                                          "last_zxid": self.storage.last_zxid})
        if self.on_epoch_established is not None:
            self.on_epoch_established(epoch)

    def _closed_event(self, peer: Any, direction: str, reason: str) -> None:
        self._emit("connection_closed", {"peer": peer, "port": "quorum",
                                          "direction": direction, "reason": reason})

    def _malformed(self, peer: Any, conn: _Conn, err: Exception) -> None:
        self._emit("malformed_frame", {"peer": peer, "port": "quorum", "reason": str(err),
                                        "length": conn.decoder.last_length})

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
        for t in list(self._accepts):
            t.cancel()
        if self._accepts:
            await asyncio.wait(list(self._accepts))
        if self._server is not None:
            try:
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()
            except (TimeoutError, asyncio.TimeoutError):
                pass

    async def _run_role(self, coro_fn, role: str, leader: int) -> str:
        if self._stopping:
            return REASON_STOPPED
        self._main = asyncio.current_task()
        self.role, self.leader, self.synced = role, leader, False
        try:
            return await coro_fn()
        except asyncio.CancelledError:
            if self._stopping:  # our own stop(): a normal end, not the caller's cancellation
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                return REASON_STOPPED
            raise
        finally:
            self.role, self.leader, self.synced = None, None, False
            self._main = None

    # ---- leader -----------------------------------------------------------
    async def lead(self) -> str:
        """Run the leader until it must give up; returns why."""
        ls = _LeadState(tracker=ProposalTracker(self._quorum))

        async def body() -> str:
            self._lead = ls
            try:
                return await self._lead_body(ls)
            finally:
                self._lead = None
                for t in list(ls.tasks):
                    t.cancel()
                for learner in list(ls.learners.values()):
                    learner.conn.close()
                if ls.tasks:
                    await asyncio.wait(list(ls.tasks))

        return await self._run_role(body, "leader", self.settings.sid)

    async def _wait_until(self, ls: _LeadState, pred: Callable[[], bool], deadline: float) -> bool:
        while not pred():
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            ls.changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await ls.changed.wait()
            except (TimeoutError, asyncio.TimeoutError):
                pass
        return True

    def _gave_up(self, reason: str, detail: str) -> str:
        self._emit("quorum_lost", {"reason": detail})
        return reason

    def _live_voters(self, ls: _LeadState) -> list[_Learner]:
        return [l for l in ls.learners.values() if not l.observer and not l.conn.closed]

    async def _lead_body(self, ls: _LeadState) -> str:
        st, me = self.storage, self.settings.sid
        init_s = self.settings.init_limit * self._tick

        # Discovery: epoch = max acceptedEpoch over a voting quorum + 1.
        def connected() -> set[int]:
            return {me} | {l.sid for l in self._live_voters(ls)}
        if not await self._wait_until(ls, lambda: self._quorum(connected()), self._clock() + init_s):
            return self._gave_up(REASON_NO_EPOCH_QUORUM, "no voting quorum sent FOLLOWERINFO within "
                                 f"initLimit; connected voters {sorted(connected())}")
        epoch = epoch_to_propose(st.accepted_epoch, [l.accepted_epoch for l in self._live_voters(ls)])
        st.set_accepted_epoch(epoch)
        ls.epoch = epoch
        ls.epoch_proposed.set()
        ls.changed.set()

        def acked() -> set[int]:
            return counted_epoch_acks(me, self._live_voters(ls))
        if not await self._wait_until(ls, lambda: self._quorum(acked()), self._clock() + init_s):
            return self._gave_up(REASON_NO_EPOCH_QUORUM, "no voting quorum of ACKEPOCH within "
                                 f"initLimit; acked {sorted(acked())}")
        ahead = learner_ahead(self._live_voters(ls), st.current_epoch, st.last_zxid)
        if ahead is not None:
            a = ahead.ack_epoch
            return self._gave_up(REASON_FOLLOWER_AHEAD, f"follower {ahead.sid} is ahead: "
                                 f"epoch {a.current_epoch} zxid {a.last_zxid:#x}")
        st.set_current_epoch(epoch)
        self._established(epoch)
        ls.established.set()

        # Synchronisation: a voting quorum must ACK NEWLEADER.
        def synced_voters() -> set[int]:
            return newleader_acks(me, self._live_voters(ls))
        if not await self._wait_until(ls, lambda: self._quorum(synced_voters()),
                                      self._clock() + init_s):
            return self._gave_up(REASON_NO_EPOCH_QUORUM, "no voting quorum acked NEWLEADER within "
                                 f"initLimit; acked {sorted(synced_voters())}")
        st.mark_committed(st.last_zxid)
        ls.synced = self.synced = True
        now = self._clock()
        for l in list(ls.learners.values()):
            l.last_heard = max(l.last_heard, now)
            if l.newleader_acked and not l.uptodate_sent:
                l.uptodate_sent = True
                l.conn.send(UpToDate(st.last_committed_zxid))

        # Broadcast.
        if self.settings.txn_interval_ms > 0:
            ls.proposer = asyncio.create_task(self._propose_loop(ls))
            ls.tasks.add(ls.proposer)
        return await self._ping_loop(ls)

    async def _ping_loop(self, ls: _LeadState) -> str:
        me = self.settings.sid
        sync_s = self.settings.sync_limit * self._tick
        half = 0
        while True:
            await asyncio.sleep(self._tick / 2)
            for l in list(ls.learners.values()):
                if l.forwarding:
                    l.conn.send(Ping())
            p = ls.proposer
            if p is not None and p.done() and not p.cancelled() and p.exception() is not None:
                raise p.exception()  # e.g. StorageError: a leader that cannot log must not lead
            half += 1
            if half % 2:
                continue
            open_ = [l for l in ls.learners.values() if not l.conn.closed]
            leads, alive = keeps_quorum(me, open_, self._clock(), sync_s, self.settings.verifier)
            if not leads:
                self._emit("quorum_lost", {"reason": "Not sufficient followers synced, only synced with sids: "
                                                     f"{sorted(alive)}"})
                return REASON_QUORUM_LOST

    async def _propose_loop(self, ls: _LeadState) -> None:
        st, me = self.storage, self.settings.sid
        counter = 0
        while True:
            await asyncio.sleep(self.settings.txn_interval_ms / 1000.0)
            counter += 1
            zxid = make_zxid(ls.epoch, counter)
            payload = f"sid={me} epoch={ls.epoch} counter={counter}".encode()
            st.append(zxid, payload)
            ls.tracker.propose(zxid, me)
            ls.payloads[zxid] = payload
            for l in list(ls.learners.values()):
                if l.forwarding and not l.observer:
                    l.conn.send(Proposal(zxid, payload))
            self._commit(ls, ls.tracker.ack(me, zxid))

    def _commit(self, ls: _LeadState, zxids: list[int]) -> None:
        for z in zxids:
            self.storage.mark_committed(z)
            self._emit("txn_committed", {"zxid": z})
            payload = ls.payloads.pop(z, b"")
            for l in list(ls.learners.values()):
                if l.forwarding:
                    l.conn.send(Inform(z, payload) if l.observer else Commit(z))

    async def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._accepts.add(task)
        conn = _Conn(reader, writer)
        try:
            await self._serve_learner(conn)
        except asyncio.CancelledError:
            pass
        finally:
            conn.close()
            self._accepts.discard(task)

    async def _serve_learner(self, conn: _Conn) -> None:
        ls = self._lead
        if ls is None or self._stopping:
            return  # not leading: the learner retries or goes back to LOOKING
        me = asyncio.current_task()
        ls.tasks.add(me)
        try:
            await self._serve_learner_in(ls, conn)
        finally:
            ls.tasks.discard(me)

    async def _serve_learner_in(self, ls: _LeadState, conn: _Conn) -> None:
        init_s = self.settings.init_limit * self._tick
        try:
            first = await conn.recv(init_s)
        except ZabProtocolError as e:
            self._malformed(conn.remote, conn, e)
            return
        except (_Closed, TimeoutError, asyncio.TimeoutError):
            return
        if not isinstance(first, FollowerInfo):
            self._malformed(conn.remote, conn, ZabProtocolError(
                f"expected FOLLOWERINFO first, got {type(first).__name__}"))
            return
        sid = first.sid
        v = self.settings.verifier
        if sid == self.settings.sid or (sid not in v.voting_members and sid not in v.observers):
            self._emit("handshake_rejected", {"remote": conn.remote,
                                              "reason": f"unknown or own sid {sid} on quorum port"})
            return
        observer = first.learner_type is LearnerType.OBSERVER or sid not in v.voting_members
        learner = _Learner(sid, observer, conn, first.accepted_epoch, self._clock())
        old = ls.learners.get(sid)
        if old is not None:
            old.conn.close()
        ls.learners[sid] = learner
        ls.changed.set()
        self._emit("connection_opened", {"peer": sid, "port": "quorum", "direction": "in",
                                          "reason": "observer" if observer else "follower"})
        reason = "closed"
        try:
            reason = await self._learner_session(ls, learner)
        except ZabProtocolError as e:
            self._malformed(sid, conn, e)
            reason = f"malformed frame: {e}"
        except _Closed as e:
            reason = f"learner closed connection ({e})"
        except (TimeoutError, asyncio.TimeoutError):
            reason = "learner silent"
        except asyncio.CancelledError:
            reason = "leader stopped leading"
            raise
        finally:
            learner.forwarding = False
            conn.close()
            if ls.learners.get(sid) is learner:
                del ls.learners[sid]
            ls.changed.set()
            self._closed_event(sid, "in", reason)

    async def _learner_session(self, ls: _LeadState, learner: _Learner) -> str:
        st, conn = self.storage, learner.conn
        init_s = self.settings.init_limit * self._tick
        sync_s = self.settings.sync_limit * self._tick
        await ls.epoch_proposed.wait()
        conn.send(LeaderInfo(ls.epoch))
        msg = await conn.recv(init_s)
        if not isinstance(msg, AckEpoch):
            raise ZabProtocolError(f"expected ACKEPOCH, got {type(msg).__name__}")
        learner.ack_epoch = msg
        learner.last_heard = self._clock()
        ls.changed.set()
        await ls.established.wait()

        # No await between planning, sending the history and joining the
        # forwarding set: proposals made later follow the history in order.
        plan = plan_sync(st.zxids(), msg.last_zxid)
        newleader_zxid = make_zxid(ls.epoch, 0)
        for frame in sync_frames(plan, list(st.entries_after(plan.from_zxid)), newleader_zxid):
            conn.send(frame)
        learner.forwarding = True

        while True:
            msg = await conn.recv(learner_read_timeout(learner.newleader_acked, init_s, sync_s))
            learner.last_heard = self._clock()
            if isinstance(msg, Ack):
                if not learner.newleader_acked and msg.zxid == newleader_zxid:
                    learner.newleader_acked = True
                    ls.changed.set()
                    if ls.synced and not learner.uptodate_sent:
                        learner.uptodate_sent = True
                        conn.send(UpToDate(st.last_committed_zxid))
                elif not learner.observer and learner.newleader_acked:
                    self._commit(ls, ls.tracker.ack(learner.sid, msg.zxid))
            elif isinstance(msg, Ping):
                pass
            else:
                raise ZabProtocolError(f"unexpected {type(msg).__name__} from learner")

    # ---- learner ----------------------------------------------------------
    async def follow(self, leader_sid: int, *, observer: bool = False) -> str:
        """Connect, sync and follow `leader_sid` until it is lost; returns why."""
        async def body() -> str:
            try:
                return await self._follow_body(leader_sid, observer)
            finally:
                if self._follow_conn is not None:
                    self._follow_conn.close()
                    self._follow_conn = None
        return await self._run_role(body, "observer" if observer else "follower", leader_sid)

    def _lost(self, reason: str, detail: str) -> str:
        self._emit("leader_lost", {"reason": detail})
        return reason

    async def _follow_body(self, leader_sid: int, observer: bool) -> str:
        st = self.storage
        init_s = self.settings.init_limit * self._tick
        sync_s = self.settings.sync_limit * self._tick
        addr = self.settings.quorum_addrs.get(leader_sid)
        if addr is None:
            return self._lost(REASON_CANNOT_CONNECT, f"no quorum address for sid {leader_sid}")
        start = self._clock()
        conn: _Conn | None = None
        leader_info: LeaderInfo | None = None
        last_err = "no attempt"
        for attempt in range(_CONNECT_TRIES):
            if attempt:
                await asyncio.sleep(_CONNECT_DELAY_S)
            remaining = start + init_s - self._clock()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    r, w = await asyncio.open_connection(*addr)
            except (OSError, TimeoutError, asyncio.TimeoutError) as e:
                last_err = f"connect to {addr[0]}:{addr[1]}: {e or 'timeout'}"
                continue
            conn = _Conn(r, w)
            self._follow_conn = conn
            kind = LearnerType.OBSERVER if observer else LearnerType.PARTICIPANT
            conn.send(FollowerInfo(self.settings.sid, st.accepted_epoch, kind))
            try:
                msg = await conn.recv(max(start + init_s - self._clock(), 0.001))
            except ZabProtocolError as e:
                self._malformed(leader_sid, conn, e)
                conn.close()
                return self._lost(REASON_MALFORMED, str(e))
            except (_Closed, TimeoutError, asyncio.TimeoutError) as e:
                last_err = f"no LEADERINFO ({type(e).__name__}: {e})"
                conn.close()
                conn = None
                continue
            if not isinstance(msg, LeaderInfo):
                self._malformed(leader_sid, conn, ZabProtocolError(
                    f"expected LEADERINFO, got {type(msg).__name__}"))
                conn.close()
                return self._lost(REASON_MALFORMED, "expected LEADERINFO")
            leader_info = msg
            break
        if conn is None or leader_info is None:
            return self._lost(REASON_CANNOT_CONNECT, last_err)
        self._emit("connection_opened", {"peer": leader_sid, "port": "quorum", "direction": "out",
                                          "reason": self.role, "remote": conn.remote})
        reason = REASON_LEADER_CLOSED
        try:
            reason = await self._learner_run(conn, leader_sid, leader_info, init_s, sync_s)
            return reason
        except ZabProtocolError as e:
            self._malformed(leader_sid, conn, e)
            reason = REASON_MALFORMED
            return self._lost(reason, str(e))
        except _Closed as e:
            reason = REASON_LEADER_CLOSED
            return self._lost(reason, f"leader closed connection ({e})")
        except (TimeoutError, asyncio.TimeoutError):
            reason = REASON_LEADER_SILENT
            return self._lost(reason, "leader silent")
        finally:
            conn.close()
            self._closed_event(leader_sid, "out", reason)

    async def _learner_run(self, conn: _Conn, leader_sid: int, li: LeaderInfo,
                           init_s: float, sync_s: float) -> str:
        st = self.storage
        action = learner_epoch_action(li.epoch, st.accepted_epoch)
        if action is EpochAction.STORE_AND_ACK:
            st.set_accepted_epoch(li.epoch)
            conn.send(AckEpoch(st.current_epoch, st.last_zxid))
        elif action is EpochAction.ACK_ALREADY:
            conn.send(AckEpoch(-1, st.last_zxid))
        else:
            return self._lost(REASON_EPOCH_OLDER,
                              f"leader proposed epoch {li.epoch} < accepted epoch {st.accepted_epoch}")

        sync = LearnerSync(st.last_zxid)
        while not sync.done:
            trunc = sync.feed(await conn.recv(init_s))
            if trunc is not None:
                st.truncate_after(trunc.zxid)
                sync.truncated(st.last_zxid)
        msg = sync.newleader
        epoch = sync.epoch(st.accepted_epoch)
        # currentEpoch first, then the history (ZooKeeper 3.8's order): a crash in
        # between leaves txns of an epoch we have not yet declared nowhere.
        st.set_current_epoch(epoch)
        for t in sync.pending:
            if t.zxid > st.last_zxid:
                st.append(t.zxid, t.payload)
        mode, from_zxid, to_zxid = sync.mode, sync.from_zxid, st.last_zxid
        self._established(epoch)
        conn.send(Ack(msg.zxid))
        if epoch_of(st.last_zxid) == epoch:
            conn.send(Ack(st.last_zxid))

        while True:
            # initLimit until UPTODATE: the leader only starts pinging once a quorum synced
            msg = await conn.recv(leader_read_timeout(self.synced, init_s, sync_s))
            if isinstance(msg, Ping):
                conn.send(Ping())
            elif isinstance(msg, Proposal):
                if msg.zxid > st.last_zxid:
                    st.append(msg.zxid, msg.payload)  # fsync before the ACK
                conn.send(Ack(msg.zxid))
            elif isinstance(msg, Commit):
                st.mark_committed(msg.zxid)
                self._emit("txn_applied", {"zxid": msg.zxid})
            elif isinstance(msg, Inform):
                if msg.zxid > st.last_zxid:
                    st.append(msg.zxid, msg.payload)
                st.mark_committed(msg.zxid)
                self._emit("txn_applied", {"zxid": msg.zxid})
            elif isinstance(msg, UpToDate):
                st.mark_committed(msg.committed_zxid)
                if not self.synced:
                    self.synced = True
                    self._emit("sync_finished", {"leader": leader_sid, "mode": mode.value,
                                                 "from_zxid": from_zxid, "to_zxid": to_zxid})
            else:
                raise ZabProtocolError(f"unexpected {type(msg).__name__} from leader")
