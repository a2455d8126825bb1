"""QuorumCnxManager: the election port's connections, as a thin asyncio shell.

Theory of operation
-------------------
Between any two servers at most one TCP connection carries notifications,
and it is always the one *dialled by the larger sid*:

* a dialler whose target has a larger sid sends its handshake and hangs up,
  which tells the target "please call me";
* an acceptor that hears from a smaller sid hangs up, drops any link it
  already had to that sid (the smaller side evidently thinks it is dead) and
  dials back;
* everything else is kept, replacing any older link to the same sid.

The dial-back goes to the *configured* address of the sid, never to the one
in the handshake: the orchestrator routes every directed link through its own
proxy, and only the configured address goes through it.

One deliberate difference from ZooKeeper 3.8, which asks again on every
message sent while no link is up: a smaller sid that has asked a larger one
to call back does not ask again for ``callback_wait`` (the handshake timeout,
at most 1 s) while that call is on its way; its newest message waits in the
queue and goes out on the link the call brings. Every extra ask made the
larger sid drop the link it had just dialled, votes in flight included, and
dial again: when 25 nodes start on two cores a call back takes hundreds of
milliseconds, and the asks, drops and re-dials fed on each other. A link
from that sid, or the end of one, ends the wait; so does its timing out.

Each link has a send task and a receive task. Sending is ZooKeeper's
capacity-1 queue: a newer notification replaces one not yet written, because
only a peer's latest vote matters. A fresh link first re-sends the last
message that peer was sent if nothing newer is waiting (duplicates are
harmless, a lost last vote can stall an election). Any error closes both
directions; the next ``to_send`` redials. Every accepted socket runs its
handshake in its own task under a timeout, so a silent connector cannot stall
other accepts (ZooKeeper 3.8 does stall: CnxManagerTest.testSocketTimeout).

Parsing lives in ``node.codec``; this module only moves bytes, keeps the
connection table and reports what happened through ``emit``.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from node.codec import (
    PACKET_MAX_SIZE,
    PROTOCOLS,
    FrameDecoder,
    HandshakeDecoder,
    ProtocolError,
    encode_frame,
    encode_handshake,
)

__all__ = ["OBSERVER_ID", "QuorumCnxManager"]

log = logging.getLogger(__name__)

OBSERVER_ID = 2**63 - 1
"""Long.MAX_VALUE: legacy observers' sid; each such connection gets -1, -2, ..."""

_PORT = "election"
_READ_SIZE = 65536
_MAX_CALLBACK_WAIT_S = 1.0


@dataclass(eq=False, slots=True)
class _Link:
    """One live, handshaken connection to a peer (a SendWorker/RecvWorker pair)."""

    sid: int
    direction: str  # "in" (accepted) or "out" (dialled)
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed: bool = False


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def _remote(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


class QuorumCnxManager:
    """Election-port connections to every peer, with ZooKeeper 3.8's rules.

    ``peers`` holds the *configured* election address of every server,
    ourselves included; we listen on ours and dial only these. Frames are
    handed to ``on_message(sid, payload)`` undecoded: deciding what a
    malformed notification means is the shell's job, not the transport's.

    Events (``emit(name, fields)``, DESIGN.md §1): ``connection_opened`` /
    ``connection_closed`` {peer, port, direction, reason}; opened reasons are
    ``accepted``, ``dialled``, ``dial_back``; closed reasons are ``eof``,
    ``replaced`` (a newer link to the same sid), ``peer_redialled`` (a smaller
    sid dialled in again), ``malformed_frame``, ``stopped``, and
    ``send_error: ...`` / ``recv_error: ...``. ``handshake_rejected``
    {remote, reason} and ``malformed_frame`` {peer, port, reason, length}.
    Dial failures are not events (every unanswered notification retries
    them); they are logged at debug level on the ``node.qcm`` logger.
    """

    def __init__(
        self,
        sid: int,
        peers: dict[int, tuple[str, int]],
        *,
        protocol: str = "3.8",
        cnx_timeout_ms: int = 5000,
        handshake_timeout_ms: int,
        on_message: Callable[[int, bytes], None],
        emit: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown election protocol {protocol!r}; expected one of {PROTOCOLS}")
        if sid not in peers:
            raise ValueError(f"own sid {sid} has no election address in peers")
        if cnx_timeout_ms <= 0 or handshake_timeout_ms <= 0:
            raise ValueError("cnx_timeout_ms and handshake_timeout_ms must be positive")
        self.sid = sid
        self.peers = dict(peers)
        self.protocol = protocol
        self._cnx_timeout = cnx_timeout_ms / 1000
        self._handshake_timeout = handshake_timeout_ms / 1000
        self.callback_wait = min(self._handshake_timeout, _MAX_CALLBACK_WAIT_S)
        self._on_message = on_message
        self._emit_cb = emit
        self._handshake = encode_handshake(sid, self.peers[sid], protocol=protocol)
        self._server: asyncio.Server | None = None
        self._stopping = False
        self._links: dict[int, _Link] = {}
        # sid -> pending payload (None = empty); a key exists once a queue exists.
        self._queues: dict[int, bytes | None] = {}
        self._wakeups: dict[int, asyncio.Event] = {}
        self._last_sent: dict[int, bytes] = {}
        self._dialling: dict[int, asyncio.Task[None]] = {}
        self._asked: dict[int, float] = {}  # larger sid -> loop time we asked it to call back
        self._tasks: set[asyncio.Task[Any]] = set()
        self._observer_ids = itertools.count(-1, -1)

    # ------------------------------------------------------------------ public API

    async def start(self) -> None:
        """Listen on our configured election address; OSError if it cannot bind."""
        if self._server is not None or self._stopping:
            raise RuntimeError("QuorumCnxManager.start() called twice")
        host, port = self.peers[self.sid]
        self._server = await asyncio.start_server(
            self._on_accept, host, port, reuse_address=True
        )

    async def stop(self) -> None:
        """Close the listener and every connection; cancel and await every task."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for link in list(self._links.values()):
            self._close_link(link, "stopped")
        me = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not me]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        # Aborted transports close their sockets on the next loop iteration.
        await asyncio.sleep(0)

    def to_send(self, sid: int, payload: bytes) -> None:
        """Queue ``payload`` for ``sid`` (newest wins) and make sure a link is coming."""
        if not 0 < len(payload) <= PACKET_MAX_SIZE:
            raise ValueError(f"payload is {len(payload)} bytes; a frame carries 1..{PACKET_MAX_SIZE}")
        if self._stopping:
            return
        loop = asyncio.get_running_loop()
        if sid == self.sid:
            loop.call_soon(self._deliver, sid, payload)
            return
        self._queues[sid] = payload
        self._wakeup(sid).set()
        self._connect_one(sid)

    def have_delivered(self) -> bool:
        """ZooKeeper 3.8's haveDelivered: true if *any* queue is empty (not all)."""
        return any(p is None for p in self._queues.values())

    def connect_all(self) -> None:
        """Dial every sid that has a send queue and no live link."""
        for sid in list(self._queues):
            self._connect_one(sid)

    def connected_peers(self) -> set[int]:
        return {sid for sid, link in self._links.items() if not link.closed}

    # ------------------------------------------------------------------ internals

    def _emit(self, event: str, **fields: Any) -> None:
        if self._emit_cb is None:
            return
        try:
            self._emit_cb(event, fields)
        except Exception:  # an event sink must never take the transport down
            log.exception("emit(%s) failed", event)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _wakeup(self, sid: int) -> asyncio.Event:
        ev = self._wakeups.get(sid)
        if ev is None:
            ev = self._wakeups[sid] = asyncio.Event()
        return ev

    def _deliver(self, sid: int, payload: bytes) -> None:
        if self._stopping:
            return
        try:
            self._on_message(sid, payload)
        except Exception:  # the shell's bug must not kill the connection
            log.exception("on_message from sid %s failed", sid)

    def _live(self, sid: int) -> bool:
        link = self._links.get(sid)
        return link is not None and not link.closed

    def _connect_one(self, sid: int, reason: str = "dialled") -> None:
        if self._stopping or sid == self.sid or self._live(sid) or sid in self._dialling:
            return
        asked = self._asked.get(sid)
        if asked is not None and asyncio.get_running_loop().time() - asked < self.callback_wait:
            return  # its call back is on the way
        address = self.peers.get(sid)
        if address is None:
            # ZooKeeper: "Invalid server id". An unknown sid can reach us, we cannot reach it.
            return
        self._dialling[sid] = self._spawn(self._dial(sid, address, reason), f"qcm-dial-{sid}")

    async def _dial(self, sid: int, address: tuple[str, int], reason: str) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                async with asyncio.timeout(self._cnx_timeout):
                    reader, writer = await asyncio.open_connection(address[0], address[1])
                _set_nodelay(writer)
                writer.write(self._handshake)  # one write: 3.8 reads the address in one read()
                async with asyncio.timeout(self._cnx_timeout):
                    await writer.drain()
            except (OSError, TimeoutError) as exc:
                log.debug("sid %s: cannot connect to sid %s at %s: %r", self.sid, sid, address, exc)
                if writer is not None:
                    writer.transport.abort()
                return
            if sid > self.sid:
                # The larger sid must dial; our handshake asked it to.
                self._asked[sid] = asyncio.get_running_loop().time()
                writer.close()
                return
            self._start_link(sid, "out", reader, writer, b"", reason)
            writer = None
        except asyncio.CancelledError:
            if writer is not None:
                writer.transport.abort()
            raise
        finally:
            if self._dialling.get(sid) is asyncio.current_task():
                del self._dialling[sid]

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback, not a coroutine: the handshake runs in a task of
        # our own, so stop() can cancel it without asyncio's stream machinery
        # reporting the cancellation as an unhandled error.
        if self._stopping:
            writer.transport.abort()
            return
        self._spawn(self._accept(reader, writer), "qcm-accept")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handed_off = False
        remote = _remote(writer)
        try:
            _set_nodelay(writer)
            decoder = HandshakeDecoder()
            received = 0
            try:
                async with asyncio.timeout(self._handshake_timeout):
                    handshake = None
                    while handshake is None:
                        data = await reader.read(4096)
                        if not data:
                            raise ProtocolError(
                                f"connection closed after {received} bytes of handshake"
                            )
                        received += len(data)
                        handshake = decoder.feed(data)
            except TimeoutError:
                self._emit("handshake_rejected", remote=remote,
                           reason=f"no complete handshake within {self._handshake_timeout * 1000:.0f} ms")
                return
            except ProtocolError as exc:
                self._emit("handshake_rejected", remote=remote, reason=str(exc))
                return
            except OSError as exc:
                self._emit("handshake_rejected", remote=remote, reason=f"read failed: {exc!r}")
                return
            sid = handshake.sid
            if sid == OBSERVER_ID:
                sid = next(self._observer_ids)
            if sid == self.sid:
                self._emit("handshake_rejected", remote=remote,
                           reason=f"handshake carries my own sid {sid}")
                return
            if sid < self.sid:
                # Only the larger sid's dial survives: hang up and call back.
                old = self._links.get(sid)
                if old is not None:
                    self._close_link(old, "peer_redialled")
                self._connect_one(sid, "dial_back")
                return
            self._start_link(sid, "in", reader, writer, decoder.unconsumed, "accepted")
            handed_off = True
        finally:
            if not handed_off:
                writer.transport.abort()

    def _start_link(self, sid: int, direction: str, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, initial: bytes, reason: str) -> None:
        old = self._links.get(sid)
        if old is not None:
            self._close_link(old, "replaced")
        self._asked.pop(sid, None)
        link = _Link(sid, direction, reader, writer)
        self._links[sid] = link
        self._emit("connection_opened", peer=sid, port=_PORT, direction=direction, reason=reason,
                   remote=_remote(writer))
        link.tasks.append(self._spawn(self._send_loop(link), f"qcm-send-{sid}"))
        link.tasks.append(self._spawn(self._recv_loop(link, initial), f"qcm-recv-{sid}"))

    def _close_link(self, link: _Link, reason: str) -> None:
        if link.closed:
            return
        link.closed = True
        if self._links.get(link.sid) is link:
            del self._links[link.sid]
        self._asked.pop(link.sid, None)
        link.writer.transport.abort()
        me = asyncio.current_task()
        for task in link.tasks:
            if task is not me:
                task.cancel()
        self._emit("connection_closed", peer=link.sid, port=_PORT,
                   direction=link.direction, reason=reason)

    async def _send_loop(self, link: _Link) -> None:
        sid = link.sid
        wakeup = self._wakeup(sid)
        try:
            if self._queues.get(sid) is None and sid in self._last_sent:
                await self._write(link, self._last_sent[sid])
            while not link.closed:
                payload = self._queues.get(sid)
                if payload is None:
                    wakeup.clear()
                    await wakeup.wait()
                    continue
                self._queues[sid] = None
                self._last_sent[sid] = payload
                await self._write(link, payload)
        except OSError as exc:
            self._close_link(link, f"send_error: {exc!r}")

    @staticmethod
    async def _write(link: _Link, payload: bytes) -> None:
        if link.writer.transport.is_closing():
            raise ConnectionResetError("transport is closing")
        link.writer.write(encode_frame(payload))
        await link.writer.drain()

    async def _recv_loop(self, link: _Link, initial: bytes) -> None:
        decoder = FrameDecoder()
        data = initial
        try:
            while not link.closed:
                if data:
                    try:
                        frames = decoder.feed(data)
                    except ProtocolError as exc:
                        self._emit("malformed_frame", peer=link.sid, port=_PORT,
                                   reason=exc.reason, length=exc.length)
                        self._close_link(link, "malformed_frame")
                        return
                    for frame in frames:
                        if link.closed:
                            return
                        self._deliver(link.sid, frame)
                    if decoder.error is not None:  # a bad length after good frames
                        self._emit("malformed_frame", peer=link.sid, port=_PORT,
                                   reason=decoder.error.reason, length=decoder.error.length)
                        self._close_link(link, "malformed_frame")
                        return
                data = await link.reader.read(_READ_SIZE)
                if not data:
                    self._close_link(link, "eof")
                    return
        except OSError as exc:
            self._close_link(link, f"recv_error: {exc!r}")
