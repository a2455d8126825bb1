"""QuorumCnxManager over real loopback sockets.

Real managers talk to each other, and hand-written raw sockets play the
misbehaving or legacy peers (CnxManagerTest cases of spec §7). Everything a
test opens it closes; each test ends by checking that stop() left no task
and no socket behind.
"""
from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Callable

import psutil
import pytest

from chaos.ports import reserve_ports
from node.codec import encode_frame, encode_handshake
from node.qcm import OBSERVER_ID, QuorumCnxManager

HOST = "127.0.0.1"
pytestmark = pytest.mark.timeout(90)


# --------------------------------------------------------------------------- harness


class Peer:
    """A manager plus what it delivered and emitted."""

    def __init__(self, sid: int, peers: dict[int, tuple[str, int]], **kw) -> None:
        self.messages: list[tuple[int, bytes]] = []
        self.events: list[tuple[str, dict]] = []
        kw.setdefault("handshake_timeout_ms", 2000)
        kw.setdefault("cnx_timeout_ms", 2000)
        self.qcm = QuorumCnxManager(
            sid, peers, on_message=lambda s, p: self.messages.append((s, p)),
            emit=lambda e, f: self.events.append((e, f)), **kw)
        self.port = peers[sid][1]

    def named(self, name: str) -> list[dict]:
        return [f for e, f in self.events if e == name]

    def got(self, sid: int, payload: bytes) -> bool:
        return (sid, payload) in self.messages


def run(coro, timeout: float = 60):
    async def bounded():
        async with asyncio.timeout(timeout):  # not wait_for: that adds a task
            return await coro
    return asyncio.run(bounded())


async def wait_until(pred: Callable[[], bool], timeout: float = 15, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}")
        await asyncio.sleep(0.01)


def my_sockets_on(ports: set[int]) -> list:
    """Sockets this process holds whose local or remote port is one of `ports`."""
    out = []
    for c in psutil.Process(os.getpid()).net_connections(kind="tcp"):
        if (c.laddr and c.laddr.port in ports) or (c.raddr and c.raddr.port in ports):
            out.append(c)
    return out


async def assert_clean_stop(peers: list[Peer]) -> None:
    for p in peers:
        await p.qcm.stop()
    await asyncio.sleep(0.05)
    me = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not me]
    assert left == [], f"tasks left after stop(): {left}"
    ports = {p.port for p in peers}
    assert my_sockets_on(ports) == []


class RawSocket:
    """A blocking-free raw client for misbehaving-peer tests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> "RawSocket":
        return cls(*await asyncio.open_connection(HOST, port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def closed_by_peer(self, timeout: float = 10) -> bool:
        """True once the remote end closed (EOF or reset) within `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self.reader.read(4096)
                    if not data:
                        return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.writer.transport.abort()


def addrs(ports: list[int], sids: list[int]) -> dict[int, tuple[str, int]]:
    return {sid: (HOST, port) for sid, port in zip(sids, ports)}


# --------------------------------------------------------------------------- managers talking


@pytest.mark.parametrize("first", ["smaller", "larger", "both"])
def test_two_managers_exchange_and_larger_sid_dials(first):
    with reserve_ports(2) as res:
        peers = addrs(res.ports, [1, 2])

        async def main():
            a, b = Peer(1, peers), Peer(2, peers)
            await a.qcm.start()
            await b.qcm.start()
            try:
                if first in ("smaller", "both"):
                    a.qcm.to_send(2, b"from-1")
                if first in ("larger", "both"):
                    b.qcm.to_send(1, b"from-2")
                if first == "smaller":
                    await wait_until(lambda: b.got(1, b"from-1"), what="1->2")
                    b.qcm.to_send(1, b"from-2")
                else:
                    await wait_until(lambda: a.got(2, b"from-2"), what="2->1")
                    a.qcm.to_send(2, b"from-1")
                await wait_until(lambda: b.got(1, b"from-1") and a.got(2, b"from-2"), what="both ways")
                # Simultaneous dials churn once (2 hangs up its fresh link when 1's
                # dial arrives, as ZooKeeper does, then dials back); then it is stable.
                linked = lambda: a.qcm.connected_peers() == {2} and b.qcm.connected_peers() == {1}
                await wait_until(linked, what="one link")
                await asyncio.sleep(0.3)
                assert linked()
                # The surviving link: 2 dialled it ("out"), 1 accepted it ("in").
                opened_in = dict(a.named("connection_opened")[-1])
                assert opened_in.pop("remote").startswith("127.0.0.1:")   # 2's ephemeral port
                assert opened_in == {"peer": 2, "port": "election", "direction": "in", "reason": "accepted"}
                opened_out = b.named("connection_opened")[-1]
                assert opened_out["direction"] == "out"
                assert opened_out["remote"] == f"127.0.0.1:{res.ports[0]}"  # the address it dialled: 1's
                # On the wire: exactly one established connection, to 1's listen port.
                est = [c for c in my_sockets_on({res.ports[0], res.ports[1]})
                       if c.status == psutil.CONN_ESTABLISHED and c.raddr]
                to_1 = [c for c in est if c.raddr.port == res.ports[0]]
                to_2 = [c for c in est if c.raddr.port == res.ports[1]]
                assert len(to_1) == 1 and to_2 == [], est
            finally:
                await assert_clean_stop([a, b])

        run(main())


def test_three_managers_all_to_all():
    with reserve_ports(3) as res:
        peers = addrs(res.ports, [1, 2, 3])

        async def main():
            ps = [Peer(s, peers) for s in (1, 2, 3)]
            for p in ps:
                await p.qcm.start()
            try:
                for p in ps:
                    for q in (1, 2, 3):
                        p.qcm.to_send(q, f"{p.qcm.sid}->{q}".encode())
                await wait_until(lambda: all(
                    p.got(q, f"{q}->{p.qcm.sid}".encode()) for p in ps for q in (1, 2, 3)),
                    what="all nine messages (incl. loopback)")
                for p in ps:
                    assert p.qcm.connected_peers() == {1, 2, 3} - {p.qcm.sid}
                # Self-sends never touch a socket or a queue.
                assert all(p.got(p.qcm.sid, f"{p.qcm.sid}->{p.qcm.sid}".encode()) for p in ps)
            finally:
                await assert_clean_stop(ps)

        run(main())


def test_protocol_34_managers_exchange():
    with reserve_ports(2) as res:
        peers = addrs(res.ports, [1, 2])

        async def main():
            a, b = Peer(1, peers, protocol="3.4"), Peer(2, peers, protocol="3.4")
            await a.qcm.start()
            await b.qcm.start()
            try:
                a.qcm.to_send(2, b"x" * 40)
                await wait_until(lambda: b.got(1, b"x" * 40))
                b.qcm.to_send(1, b"y" * 40)
                await wait_until(lambda: a.got(2, b"y" * 40))
            finally:
                await assert_clean_stop([a, b])

        run(main())


async def relay(listen_port: int, target_port: int, log: list[str]):
    """A TCP relay: a stand-in for the orchestrator's proxy."""
    async def pipe(r, w):
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.transport.abort()

    pipes: set[asyncio.Task] = set()

    async def handle(r, w):
        log.append("connection")
        ur, uw = await asyncio.open_connection(HOST, target_port)
        t1, t2 = asyncio.create_task(pipe(r, uw)), asyncio.create_task(pipe(ur, w))
        pipes.update((t1, t2))
        try:
            await asyncio.gather(t1, t2)
        except asyncio.CancelledError:
            t1.cancel(), t2.cancel()
            await asyncio.gather(t1, t2, return_exceptions=True)
            w.transport.abort()
            uw.transport.abort()
            raise

    server = await asyncio.start_server(handle, HOST, listen_port, reuse_address=True)
    return server, pipes


def test_dial_back_uses_configured_address_not_handshake():
    """Sid 2 knows sid 1 only as a relay; 1's handshake names its real port."""
    with reserve_ports(3) as res:
        p1, p2, p_relay = res.ports

        async def main():
            log: list[str] = []
            server, pipes = await relay(p_relay, p1, log)
            a = Peer(1, {1: (HOST, p1), 2: (HOST, p2)})
            b = Peer(2, {1: (HOST, p_relay), 2: (HOST, p2)})
            await a.qcm.start()
            await b.qcm.start()
            try:
                a.qcm.to_send(2, b"hello-2")  # 1 dials 2, 2 hangs up and dials back
                await wait_until(lambda: b.got(1, b"hello-2"), what="message over the dial-back")
                assert log == ["connection"]
                assert b.named("connection_opened")[-1]["reason"] == "dial_back"
                b.qcm.to_send(1, b"hello-1")
                await wait_until(lambda: a.got(2, b"hello-1"))
                # The only established link to 1's real port is the relay's.
                est = [c for c in my_sockets_on({p1}) if c.status == psutil.CONN_ESTABLISHED
                       and c.raddr and c.raddr.port == p1]
                assert len(est) == 1
                assert len(log) == 1
            finally:
                await a.qcm.stop()
                await b.qcm.stop()
                server.close()
                for t in pipes:
                    t.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
                await server.wait_closed()

        run(main())


def test_queue_capacity_one_newest_wins_and_last_message_resent():
    """A fake sid 1 listens; manager 2 dials it and must send only the newest message,
    then re-send it on a new connection when nothing newer is queued."""
    with reserve_ports(2) as res:
        p1, p2 = res.ports

        async def main():
            conns: asyncio.Queue = asyncio.Queue()

            async def fake(r, w):
                await conns.put((r, w))

            fake_server = await asyncio.start_server(fake, HOST, p1, reuse_address=True)
            b = Peer(2, {1: (HOST, p1), 2: (HOST, p2)})
            await b.qcm.start()
            try:
                assert b.qcm.have_delivered() is False  # no queues at all
                b.qcm.to_send(1, b"old")
                b.qcm.to_send(1, b"new")
                r, w = await asyncio.wait_for(conns.get(), 10)
                hs = await asyncio.wait_for(r.readexactly(20), 10)
                version, sid, n = struct.unpack(">qqi", hs)
                assert (version, sid) == (-65536, 2)
                assert await r.readexactly(n) == f"{HOST}:{p2}".encode()
                assert await asyncio.wait_for(r.readexactly(7), 10) == encode_frame(b"new")
                await wait_until(b.qcm.have_delivered, what="queue drained")
                # Drop the link; the next connection must replay b"new".
                w.transport.abort()
                await wait_until(lambda: b.qcm.connected_peers() == set(), what="link closed")
                assert b.named("connection_closed")[-1]["peer"] == 1
                b.qcm.connect_all()
                r, w = await asyncio.wait_for(conns.get(), 10)
                await asyncio.wait_for(r.readexactly(20 + n), 10)
                assert await asyncio.wait_for(r.readexactly(7), 10) == encode_frame(b"new")
                w.transport.abort()
            finally:
                await b.qcm.stop()
                fake_server.close()
                await fake_server.wait_closed()

        run(main())


def test_send_to_unreachable_peer_keeps_queue_and_does_not_block():
    with reserve_ports(2) as res:
        p1, p2 = res.ports  # nothing listens on p1

        async def main():
            b = Peer(2, {1: (HOST, p1), 2: (HOST, p2)})
            await b.qcm.start()
            try:
                t0 = time.monotonic()
                b.qcm.to_send(1, b"lost")
                assert time.monotonic() - t0 < 0.5  # to_send never waits for the dial
                await asyncio.sleep(0.3)
                assert b.qcm.have_delivered() is False
                assert b.qcm.connected_peers() == set()
                b.qcm.to_send(2, b"me")
                await wait_until(lambda: b.got(2, b"me"))
            finally:
                await assert_clean_stop([b])

        run(main())


def test_34_manager_sends_bare_sid_handshake():
    with reserve_ports(2) as res:
        p1, p2 = res.ports

        async def main():
            got: asyncio.Queue = asyncio.Queue()

            async def fake(r, w):
                await got.put(await r.readexactly(8 + 4 + 3))
                w.transport.abort()

            fake_server = await asyncio.start_server(fake, HOST, p1, reuse_address=True)
            b = Peer(2, {1: (HOST, p1), 2: (HOST, p2)}, protocol="3.4")
            await b.qcm.start()
            try:
                b.qcm.to_send(1, b"abc")
                data = await asyncio.wait_for(got.get(), 10)
                assert data == struct.pack(">q", 2) + encode_frame(b"abc")
            finally:
                await b.qcm.stop()
                fake_server.close()
                await fake_server.wait_closed()

        run(main())


# --------------------------------------------------------------------------- misbehaving peers


def solo(fn, **kw):
    """Run fn(peer, port) against a single started manager with sid 5."""
    with reserve_ports(1) as res:
        async def main():
            p = Peer(5, {5: (HOST, res.ports[0])}, **kw)
            await p.qcm.start()
            try:
                await fn(p, res.ports[0])
            except BaseException:
                await p.qcm.stop()  # do not mask the failure with cleanup checks
                raise
            await assert_clean_stop([p])
        run(main())


def test_v1_handshake_then_negative_length_closes_socket():
    async def body(p, port):
        s = await RawSocket.connect(port)
        await s.send(encode_handshake(9, (HOST, 1)) + struct.pack(">i", -20))
        assert await s.closed_by_peer()
        await wait_until(lambda: p.named("malformed_frame"))
        assert p.named("malformed_frame") == [
            {"peer": 9, "port": "election", "reason": p.named("malformed_frame")[0]["reason"],
             "length": -20}]
        assert "-20" in p.named("malformed_frame")[0]["reason"]
        assert p.named("connection_closed")[-1]["reason"] == "malformed_frame"
        s.close()
    solo(body)


def test_34_bare_sid_handshake_then_frame_is_delivered():
    async def body(p, port):
        s = await RawSocket.connect(port)
        await s.send(struct.pack(">q", 6) + encode_frame(b"\x01\x02\x03\x04"))
        await wait_until(lambda: p.got(6, b"\x01\x02\x03\x04"))
        assert p.qcm.connected_peers() == {6}  # unknown sid accepted
        # and messages flow back over the accepted link
        p.qcm.to_send(6, b"back")
        assert await asyncio.wait_for(s.reader.readexactly(8), 10) == encode_frame(b"back")
        s.close()
    solo(body)


def test_silent_connector_is_dropped_without_stalling_other_accepts():
    async def body(p, port):
        silent = await RawSocket.connect(port)
        await silent.send(struct.pack(">q", -65536)[:3])  # a partial handshake, then silence
        t0 = time.monotonic()
        good = await RawSocket.connect(port)
        await good.send(encode_handshake(7, (HOST, 1)) + encode_frame(b"ping"))
        await wait_until(lambda: p.got(7, b"ping"), timeout=10)
        waited_for_good = time.monotonic() - t0
        assert waited_for_good < 2.5, "an accept waited behind the silent connector"
        assert await silent.closed_by_peer(timeout=15)
        dropped_after = time.monotonic() - t0
        assert dropped_after > 2.5  # not before the 4 s handshake timeout (generous margin)
        assert "no complete handshake" in p.named("handshake_rejected")[0]["reason"]
        assert p.qcm.connected_peers() == {7}
        good.close()
        silent.close()
    solo(body, handshake_timeout_ms=4000)


@pytest.mark.parametrize("name,data,why", [
    ("bad-version", struct.pack(">qqi", -65534, 7, 3) + b"a:1", "version"),
    ("1mib-length", struct.pack(">qqi", -65536, 7, 1 << 20), "1048576"),
    ("garbage", b"\xde\xad\xbe\xef" * 7, "version"),
    ("bad-address", struct.pack(">qqi", -65536, 7, 4) + b"nope", "host:port"),
    ("own-sid", encode_handshake(5, (HOST, 1)), "my own sid"),
    ("eof-midway", struct.pack(">q", -65536) + b"\x00\x00", "closed after 10 bytes"),
])
def test_bad_handshakes_are_rejected_and_manager_keeps_working(name, data, why):
    async def body(p, port):
        s = await RawSocket.connect(port)
        await s.send(data)
        if name == "eof-midway":
            s.writer.write_eof()
        assert await s.closed_by_peer()
        await wait_until(lambda: p.named("handshake_rejected"))
        rejected = p.named("handshake_rejected")[0]
        assert why in rejected["reason"]
        assert rejected["remote"].startswith(f"{HOST}:")
        assert p.named("connection_opened") == []
        s.close()
        # still alive: a good V2 handshake from another peer works
        good = await RawSocket.connect(port)
        await good.send(struct.pack(">qqi", -65535, 8, 7) + b"a:1|b:2" + encode_frame(b"ok"))
        await wait_until(lambda: p.got(8, b"ok"))
        good.close()
    solo(body)


def test_http_request_reads_as_bare_sid_then_fails_framing():
    """'GET / HT' is a positive int64, so like ZooKeeper we take it for a 3.4 sid;
    the next four bytes are then an absurd frame length and the link is dropped."""
    async def body(p, port):
        s = await RawSocket.connect(port)
        await s.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await s.closed_by_peer()
        await wait_until(lambda: p.named("malformed_frame"))
        bad = p.named("malformed_frame")[0]
        assert bad["peer"] == struct.unpack(">q", b"GET / HT")[0]
        assert bad["length"] == struct.unpack(">i", b"TP/1")[0]
        assert p.messages == []
        s.close()
    solo(body)


def test_oversize_frame_on_live_link_drops_only_that_link():
    async def body(p, port):
        a = await RawSocket.connect(port)
        b = await RawSocket.connect(port)
        await a.send(encode_handshake(7, (HOST, 1)) + encode_frame(b"first"))
        await b.send(encode_handshake(8, (HOST, 1)))
        await wait_until(lambda: p.got(7, b"first") and p.qcm.connected_peers() == {7, 8})
        await a.send(struct.pack(">i", 524289) + b"x" * 100)
        assert await a.closed_by_peer()
        await wait_until(lambda: p.named("malformed_frame"))
        assert p.named("malformed_frame")[0]["length"] == 524289
        await b.send(encode_frame(b"still here"))
        await wait_until(lambda: p.got(8, b"still here"))
        assert p.qcm.connected_peers() == {8}
        a.close()
        b.close()
    solo(body)


def test_smaller_sid_is_hung_up_on_and_dialled_back():
    """A raw 'sid 1' dials manager 5: 5 hangs up and dials 1's configured address."""
    with reserve_ports(2) as res:
        p1, p5 = res.ports

        async def main():
            got: asyncio.Queue = asyncio.Queue()

            async def fake(r, w):
                await got.put(await r.readexactly(20))
                w.transport.abort()

            fake_server = await asyncio.start_server(fake, HOST, p1, reuse_address=True)
            p = Peer(5, {1: (HOST, p1), 5: (HOST, p5)})
            await p.qcm.start()
            try:
                s = await RawSocket.connect(p5)
                # the handshake names a different address, which must be ignored
                await s.send(encode_handshake(1, (HOST, 9)) + encode_frame(b"dropped"))
                assert await s.closed_by_peer()
                hs = await asyncio.wait_for(got.get(), 10)
                assert struct.unpack(">qqi", hs)[:2] == (-65536, 5)
                assert not p.got(1, b"dropped")
                s.close()
            finally:
                await p.qcm.stop()
                fake_server.close()
                await fake_server.wait_closed()

        run(main())


def test_legacy_observer_id_gets_negative_sid():
    async def body(p, port):
        s = await RawSocket.connect(port)
        await s.send(struct.pack(">q", OBSERVER_ID) + encode_frame(b"obs"))
        assert await s.closed_by_peer()  # -1 < 5: hung up, no dial-back possible
        assert not any(sid == OBSERVER_ID for sid, _ in p.messages)
        s.close()
    solo(body)


def test_start_on_busy_port_raises_oserror():
    with reserve_ports(1) as res:
        async def main():
            blocker = socket.socket()
            # SO_REUSEADDR so a TIME_WAIT left by another test cannot fail our bind;
            # a LISTENing socket still blocks the manager's (also SO_REUSEADDR) bind.
            blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            blocker.bind((HOST, res.ports[0]))
            blocker.listen()
            try:
                p = Peer(1, {1: (HOST, res.ports[0])})
                with pytest.raises(OSError):
                    await p.qcm.start()
                await p.qcm.stop()
            finally:
                blocker.close()
        run(main())


# --------------------------------------------------------------------------- dialling


def test_one_dial_in_progress_per_sid():
    with reserve_ports(2) as res:
        p1, p2 = res.ports

        async def main():
            accepted: list[asyncio.StreamWriter] = []

            async def fake(r, w):
                accepted.append(w)

            fake_server = await asyncio.start_server(fake, HOST, p1, reuse_address=True)
            b = Peer(2, {1: (HOST, p1), 2: (HOST, p2)})
            await b.qcm.start()
            try:
                for i in range(50):
                    b.qcm.to_send(1, f"m{i}".encode())
                    b.qcm.connect_all()
                await wait_until(lambda: accepted, what="the dial")
                await asyncio.sleep(0.5)
                assert len(accepted) == 1
            finally:
                await b.qcm.stop()
                for w in accepted:
                    w.transport.abort()
                fake_server.close()
                await fake_server.wait_closed()

        run(main())


def _full_listener(port: int) -> tuple[socket.socket, socket.socket]:
    """A listener whose accept queue is full, so further connects hang (SYNs dropped)."""
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((HOST, port))
    lsock.listen(0)
    filler = socket.create_connection((HOST, port), timeout=5)
    return lsock, filler


def test_connect_timeout_gives_up_and_stop_cancels_hanging_dial(caplog):
    caplog.set_level("DEBUG", logger="node.qcm")
    with reserve_ports(2) as res:
        p1, p2 = res.ports

        async def main():
            lsock, filler = _full_listener(p1)
            b = Peer(2, {1: (HOST, p1), 2: (HOST, p2)}, cnx_timeout_ms=400)
            await b.qcm.start()
            try:
                b.qcm.to_send(1, b"x")
                await wait_until(lambda: "cannot connect to sid 1" in caplog.text, timeout=10,
                                 what="the dial to time out")
                assert "TimeoutError" in caplog.text
                assert b.qcm.connected_peers() == set()
                # A second hanging dial, then stop() while it hangs: nothing may be left.
                caplog.clear()
                b.qcm.to_send(1, b"y")
                await asyncio.sleep(0.1)
                assert "cannot connect" not in caplog.text
                hanging = [c for c in my_sockets_on({p1}) if c.status == psutil.CONN_SYN_SENT]
                assert len(hanging) == 1, hanging
            finally:
                await assert_clean_stop([b])
                filler_port = filler.getsockname()[1]
                dials = [c for c in my_sockets_on({p1}) if c.raddr and c.raddr.port == p1
                         and c.laddr.port != filler_port]
                filler.close()
                lsock.close()
                assert dials == [], "stop() left the hanging dial's socket open"

        run(main())


def test_stop_during_handshake_is_clean(caplog):
    """stop() with a connector mid-handshake: its socket closed, nothing logged as an error."""
    caplog.set_level("DEBUG")
    silent_box: list[RawSocket] = []

    async def body(p, port):
        silent = await RawSocket.connect(port)
        silent_box.append(silent)
        await silent.send(b"\xff\xff")
        await asyncio.sleep(0.2)  # the manager is now waiting for the rest
        await p.qcm.stop()
        assert await silent.closed_by_peer(timeout=5)
        silent.close()

    solo(body, handshake_timeout_ms=30000)
    errors = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert errors == [], [r.getMessage() for r in errors]


def test_larger_sid_reconnecting_replaces_old_link():
    async def body(p, port):
        old = await RawSocket.connect(port)
        await old.send(encode_handshake(7, (HOST, 1)))
        await wait_until(lambda: p.qcm.connected_peers() == {7})
        new = await RawSocket.connect(port)
        await new.send(encode_handshake(7, (HOST, 1)) + encode_frame(b"again"))
        await wait_until(lambda: p.got(7, b"again"))
        assert await old.closed_by_peer()
        assert p.named("connection_closed") == [
            {"peer": 7, "port": "election", "direction": "in", "reason": "replaced"}]
        p.qcm.to_send(7, b"to-new")
        assert await asyncio.wait_for(new.reader.readexactly(10), 10) == encode_frame(b"to-new")
        old.close()
        new.close()
    solo(body)


@pytest.mark.parametrize("restarted", [1, 2])
def test_peer_restart_relinks_on_next_send(restarted):
    """A peer's manager is stopped and a new one started on the same port (a process
    restart): the survivor notices EOF, and its next to_send builds a new link."""
    with reserve_ports(2) as res:
        peers = addrs(res.ports, [1, 2])

        async def main():
            ps = {1: Peer(1, peers), 2: Peer(2, peers)}
            for q in ps.values():
                await q.qcm.start()
            other = 3 - restarted
            try:
                ps[other].qcm.to_send(restarted, b"before")
                await wait_until(lambda: ps[restarted].got(other, b"before"))
                await ps[restarted].qcm.stop()
                await wait_until(lambda: ps[other].qcm.connected_peers() == set(), what="EOF seen")
                ps[restarted] = Peer(restarted, peers)
                await ps[restarted].qcm.start()
                ps[other].qcm.to_send(restarted, b"after")
                await wait_until(lambda: ps[restarted].got(other, b"after"), what="relinked")
                ps[restarted].qcm.to_send(other, b"reply")
                await wait_until(lambda: ps[other].got(restarted, b"reply"))
            finally:
                await assert_clean_stop(list(ps.values()))

        run(main())


def test_have_delivered_is_any_queue_empty_not_all():
    """ZooKeeper 3.8's quirk (its comment says 'all'): one drained queue suffices."""
    with reserve_ports(3) as res:
        p1, p2, p3 = res.ports  # nothing listens on p1; a fake sid 3 on p3

        async def main():
            frames: asyncio.Queue = asyncio.Queue()
            writers: list[asyncio.StreamWriter] = []

            async def fake(r, w):
                writers.append(w)
                await r.readexactly(20 + len(f"{HOST}:{p2}"))
                await frames.put(await r.readexactly(8))

            fake_server = await asyncio.start_server(fake, HOST, p3, reuse_address=True)
            b = Peer(5, {1: (HOST, p1), 5: (HOST, p2), 3: (HOST, p3)})  # 5 > 3: 5 keeps its dial
            await b.qcm.start()
            try:
                b.qcm.to_send(1, b"stuck")
                await asyncio.sleep(0.2)
                assert b.qcm.have_delivered() is False
                b.qcm.to_send(3, b"sent")
                assert await asyncio.wait_for(frames.get(), 10) == encode_frame(b"sent")
                await wait_until(b.qcm.have_delivered, what="sid 3's queue drained")
                b.qcm.to_send(3, b"again")  # both queues non-empty for a moment
                assert b.qcm.have_delivered() is False
            finally:
                await b.qcm.stop()
                for w in writers:
                    w.transport.abort()
                fake_server.close()
                await fake_server.wait_closed()

        run(main())


def test_smaller_sid_asks_once_then_waits_for_the_call_back():
    """Sid 2 asks larger sid 5 to call back, then sends more: it does not ask
    again while the call may be on its way (ZooKeeper would, dropping the link
    5 just dialled each time); after callback_wait without a call it asks again,
    and the call back carries only the newest message."""
    with reserve_ports(2) as res:
        p2, p5 = res.ports

        async def main():
            asks: list[float] = []

            async def fake5(r, w):   # larger sid: reads the ask, hangs up, calls back later
                await r.readexactly(20 + len(f"{HOST}:{p2}"))
                asks.append(time.monotonic())
                w.transport.abort()

            fake = await asyncio.start_server(fake5, HOST, p5, reuse_address=True)
            b = Peer(2, {2: (HOST, p2), 5: (HOST, p5)}, handshake_timeout_ms=600)
            await b.qcm.start()
            try:
                assert b.qcm.callback_wait == pytest.approx(0.6)
                b.qcm.to_send(5, b"v1")
                await wait_until(lambda: len(asks) == 1, what="the first ask")
                for k in range(2, 6):
                    b.qcm.to_send(5, f"v{k}".encode())
                    b.qcm.connect_all()
                    await asyncio.sleep(0.05)
                assert len(asks) == 1
                await asyncio.sleep(0.6)
                b.qcm.to_send(5, b"v6")
                await wait_until(lambda: len(asks) == 2, what="the ask after the wait")
                # The call back: only the newest message is waiting.
                r, w = await asyncio.open_connection(HOST, p2)
                w.write(encode_handshake(5, (HOST, p5)))
                assert await asyncio.wait_for(r.readexactly(6), 10) == encode_frame(b"v6")
                w.transport.abort()
            finally:
                await b.qcm.stop()
                fake.close()
                await fake.wait_closed()

        run(main())
