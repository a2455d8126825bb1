"""Data-path conformance over real sockets: each toxic, live edits, disable, reset (spec §3).

Timing assertions use lower bounds (a toxic must delay at least its delay)
and generous upper bounds, since the CPUs are shared.
"""
from __future__ import annotations

import select
import socket
import threading
import time

import pytest

from toxihelp import connect, recv_exact, recv_until_eof


def add(target, proxy, **body):
    r = target.req("POST", f"/proxies/{proxy['name']}/toxics", body)
    assert r.status_code == 200, r.text
    return r.json()


def rtt(s: socket.socket, payload: bytes = b"x" * 64) -> float:
    t0 = time.monotonic()
    s.sendall(payload)
    assert recv_exact(s, len(payload)) == payload
    return time.monotonic() - t0


def test_passthrough_echoes_and_counts_each_connection(target, make_proxy, echo):
    p = make_proxy()
    for _ in range(3):
        s = connect(p["port"])
        assert rtt(s, b"hello" * 1000) >= 0
        s.close()
    big = bytes(range(256)) * 4096  # 1 MiB
    s = connect(p["port"])
    s.sendall(big)
    assert recv_exact(s, len(big)) == big
    s.close()


def test_latency_adds_at_least_its_delay(target, make_proxy):
    p = make_proxy()
    s = connect(p["port"])
    base = rtt(s)
    add(target, p, type="latency", attributes={"latency": 150})
    assert rtt(s) >= 0.150, "added to a live connection, it delays that connection"
    s2 = connect(p["port"])
    assert rtt(s2) >= 0.150
    assert base < 0.150
    add(target, p, type="latency", stream="upstream", attributes={"latency": 100})
    assert rtt(s2) >= 0.250
    s.close()
    s2.close()


def test_latency_is_not_cumulative_for_pipelined_writes(target, make_proxy):
    p = make_proxy()
    add(target, p, type="latency", attributes={"latency": 300})
    s = connect(p["port"])
    t0 = time.monotonic()
    for i in range(5):
        s.sendall(b"%d" % i)
        time.sleep(0.02)
    assert recv_exact(s, 5) == b"01234"
    elapsed = time.monotonic() - t0
    assert 0.3 <= elapsed < 0.3 + 5 * 0.3 - 0.2, elapsed
    s.close()


def test_removing_latency_delivers_held_data(target, make_proxy):
    p = make_proxy()
    add(target, p, type="latency", name="slow", attributes={"latency": 5000})
    s = connect(p["port"])
    s.sendall(b"held")
    time.sleep(0.2)
    t0 = time.monotonic()
    assert target.req("DELETE", f"/proxies/{p['name']}/toxics/slow").status_code == 204
    assert recv_exact(s, 4) == b"held"
    assert time.monotonic() - t0 < 3.0
    assert rtt(s) < 1.0
    s.close()


def test_bandwidth_caps_throughput(target, make_proxy):
    p = make_proxy()
    add(target, p, type="bandwidth", attributes={"rate": 100})  # 100 KB/s downstream
    s = connect(p["port"], timeout=10)
    data = b"b" * 50_000
    t0 = time.monotonic()
    s.sendall(data)
    assert recv_exact(s, len(data)) == data
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.4, elapsed
    assert elapsed < 5.0
    s.close()


@pytest.mark.deliberate
def test_bandwidth_rate_zero_holds_data_until_removed(target, make_proxy):
    p = make_proxy()
    add(target, p, type="bandwidth", name="zero", attributes={"rate": 0})
    s = connect(p["port"])
    s.sendall(b"stuck")
    s.settimeout(0.5)
    with pytest.raises(socket.timeout):
        s.recv(10)
    target.req("DELETE", f"/proxies/{p['name']}/toxics/zero")
    s.settimeout(5)
    assert recv_exact(s, 5) == b"stuck"
    s.close()


def test_timeout_drops_data_and_closes_after_its_delay(target, make_proxy):
    p = make_proxy()
    add(target, p, type="timeout", attributes={"timeout": 500})
    s = connect(p["port"])
    t0 = time.monotonic()
    s.sendall(b"lost")
    assert recv_until_eof(s) == b""
    assert 0.45 <= time.monotonic() - t0 < 4.0
    s.close()


def test_timeout_zero_holds_forever_and_removal_closes(target, make_proxy):
    p = make_proxy()
    add(target, p, type="timeout", name="t0", attributes={"timeout": 0})
    s = connect(p["port"])
    s.sendall(b"lost")
    s.settimeout(0.6)
    with pytest.raises(socket.timeout):
        s.recv(10)
    target.req("DELETE", f"/proxies/{p['name']}/toxics/t0")
    s.settimeout(5)
    assert recv_until_eof(s) == b"", "removing a timeout toxic closes the connection"
    s.close()


def test_reset_peer_gives_econnreset(target, make_proxy):
    p = make_proxy()
    add(target, p, type="reset_peer", stream="upstream", attributes={"timeout": 100})
    s = connect(p["port"])
    s.sendall(b"x")
    with pytest.raises(ConnectionResetError):
        for _ in range(10):
            if not s.recv(10):
                break
            time.sleep(0.05)
    s.close()


def test_reset_peer_removed_while_it_waits_still_resets_and_leaves_no_hole(target, make_proxy, echo):
    """The chunk it took is gone: the stream must not go on without it."""
    p = make_proxy()
    s = connect(p["port"])
    assert rtt(s) < 2
    add(target, p, type="reset_peer", name="r", stream="upstream", attributes={"timeout": 1000})
    s.sendall(b"first")
    time.sleep(0.2)
    s.sendall(b"second")
    time.sleep(0.1)
    r = target.req("DELETE", f"/proxies/{p['name']}/toxics/r")
    assert r.status_code == 204, r.text
    s.settimeout(5)
    got = b""
    with pytest.raises(ConnectionResetError):
        for _ in range(20):
            s.sendall(b"third")
            b = s.recv(100)
            if not b:
                break
            got += b
            time.sleep(0.05)
    assert b"second" not in got and b"third" not in got
    s.close()


@pytest.mark.deliberate
def test_reset_peer_with_toxicity_zero_closes_normally(target, make_proxy):
    """Issue #603: the real server RSTs even when the toxic never applies."""
    p = make_proxy()
    add(target, p, type="reset_peer", toxicity=0, attributes={"timeout": 0})
    s = connect(p["port"])
    s.sendall(b"bye")
    assert recv_exact(s, 3) == b"bye"
    s.shutdown(socket.SHUT_WR)
    assert recv_until_eof(s) == b""
    s.close()


@pytest.mark.deliberate
def test_reset_peer_added_to_a_live_connection_resets(target, make_proxy):
    p = make_proxy()
    s = connect(p["port"])
    assert rtt(s) < 2
    add(target, p, type="reset_peer", stream="upstream", attributes={"timeout": 0})
    s.sendall(b"x")
    with pytest.raises(ConnectionResetError):
        s.recv(10)
    s.close()


def test_limit_data_closes_after_n_bytes(target, make_proxy):
    p = make_proxy()
    add(target, p, type="limit_data", attributes={"bytes": 100})
    s = connect(p["port"])
    s.sendall(b"z" * 300)
    assert recv_until_eof(s) == b"z" * 100
    s.close()


def test_slicer_delivers_small_pieces(target, make_proxy):
    p = make_proxy()
    add(target, p, type="slicer", attributes={"average_size": 10, "size_variation": 0, "delay": 20000})
    s = connect(p["port"])
    s.sendall(bytes(range(100)))
    pieces = []
    got = b""
    while len(got) < 100:
        piece = s.recv(1000)
        assert piece
        pieces.append(len(piece))
        got += piece
    assert got == bytes(range(100))
    assert len(pieces) >= 5 and max(pieces) <= 20, pieces
    s.close()


def test_slow_close_delays_the_end_of_stream(target, make_proxy):
    p = make_proxy()
    add(target, p, type="slow_close", attributes={"delay": 500})
    s = connect(p["port"])
    assert rtt(s) < 1.0
    t0 = time.monotonic()
    s.shutdown(socket.SHUT_WR)
    assert recv_until_eof(s) == b""
    assert time.monotonic() - t0 >= 0.45
    s.close()


def test_disable_closes_live_and_refuses_new_then_enable_reuses_port(target, make_proxy):
    p = make_proxy()
    s = connect(p["port"])
    assert rtt(s) < 2
    r = target.req("PATCH", f"/proxies/{p['name']}", {"enabled": False})
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert recv_until_eof(s) == b""
    s.close()
    with pytest.raises(ConnectionRefusedError):
        connect(p["port"])
    r = target.req("POST", f"/proxies/{p['name']}", {"enabled": True})
    assert r.status_code == 200 and r.json()["listen"] == p["listen"]
    s = connect(p["port"])
    assert rtt(s) < 2
    s.close()


def test_delete_closes_live_connections(target, make_proxy):
    p = make_proxy()
    s = connect(p["port"])
    assert rtt(s) < 2
    assert target.req("DELETE", f"/proxies/{p['name']}").status_code == 204
    assert recv_until_eof(s) == b""
    s.close()
    with pytest.raises(ConnectionRefusedError):
        connect(p["port"])


def test_upstream_down_gives_connect_then_eof(target, make_proxy):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    p = make_proxy(upstream=f"127.0.0.1:{dead}")
    s = connect(p["port"])
    assert recv_until_eof(s) == b""
    s.close()


def test_toxicity_zero_never_and_one_always(target, make_proxy):
    p = make_proxy()
    add(target, p, type="latency", name="never", toxicity=0, attributes={"latency": 400})
    add(target, p, type="latency", name="always", stream="upstream", toxicity=1, attributes={"latency": 150})
    for _ in range(3):
        s = connect(p["port"])
        t = rtt(s)
        assert 0.150 <= t < 0.400 + 0.1
        s.close()


def test_reset_restores_everything(target, make_proxy):
    a = make_proxy()
    b = make_proxy()
    add(target, a, type="latency", attributes={"latency": 1000})
    add(target, b, type="timeout", name="to", attributes={"timeout": 0})
    held = connect(b["port"])
    held.sendall(b"x")
    target.req("PATCH", f"/proxies/{a['name']}", {"enabled": False})
    assert target.req("POST", "/reset").status_code == 204
    for p in (a, b):
        got = target.req("GET", f"/proxies/{p['name']}").json()
        assert got["enabled"] is True and got["toxics"] == []
        s = connect(p["port"])
        assert rtt(s) < 0.5
        s.close()
    assert recv_until_eof(held) == b"", "reset removes the timeout toxic, which closes"
    held.close()


@pytest.mark.deliberate
def test_half_close_forwards_and_replies_still_flow(target, make_proxy):
    """The real server turns a client's SHUT_WR into a full close and loses replies."""
    p = make_proxy()
    s = connect(p["port"], timeout=10)
    data = bytes(range(256)) * 400  # ~100 KB
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    assert recv_until_eof(s) == data
    s.close()


@pytest.mark.deliberate
def test_half_close_through_a_latency_toxic(target, make_proxy):
    p = make_proxy()
    add(target, p, type="latency", attributes={"latency": 100})
    s = connect(p["port"], timeout=10)
    s.sendall(b"abc" * 1000)
    s.shutdown(socket.SHUT_WR)
    assert recv_until_eof(s) == b"abc" * 1000
    s.close()


def test_update_with_a_new_upstream_drops_live_connections_and_redirects(target, make_proxy):
    from toxihelp import EchoServer
    p = make_proxy()
    other = EchoServer()
    try:
        s = connect(p["port"])
        assert rtt(s) < 2
        same = target.req("PATCH", f"/proxies/{p['name']}", {"listen": p["listen"]})
        assert same.status_code == 200
        assert rtt(s) < 2, "an update that changes nothing keeps connections"
        r = target.req("PATCH", f"/proxies/{p['name']}", {"upstream": other.addr})
        assert r.status_code == 200 and r.json()["upstream"] == other.addr
        assert r.json()["listen"] == p["listen"]
        assert recv_until_eof(s) == b""
        s.close()
        s = connect(p["port"])
        assert rtt(s) < 2
        s.close()
        assert other.accepted == 1
    finally:
        other.close()


class _SlowToAcceptUpstream:
    """A listener whose accept queue is full, so a dial to it hangs in SYN
    retransmission (the kernel drops the SYN) until `open()` starts
    accepting; then it echoes."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.fillers: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        for _ in range(16):  # connect until one stays pending: the queue is full
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(self.sock.getsockname())
            self.fillers.append(c)
            if not select.select([], [c], [], 0.3)[1]:
                return
        raise RuntimeError("could not fill the accept queue")

    def open(self) -> None:
        t = threading.Thread(target=self._serve, daemon=True)
        t.start()
        self._threads.append(t)

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(5)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        for c in self.fillers:
            c.close()
        self.sock.close()


@pytest.mark.deliberate
def test_a_hanging_upstream_dial_does_not_stall_the_next_client(target, make_proxy):
    """The real server dials upstream inside its accept loop, so one client whose
    dial hangs holds back every later client of that proxy; here each dials alone.

    An attempt shows it only if `first` is still without an upstream when
    `second` has its echo. When the kernel lets `first` through early (its SYN
    or SYN-ACK retry lands while a loaded machine is slow to echo `second`)
    the attempt proves nothing and is repeated; a proxy that serialises its
    dials can never show it, so all attempts failing is the failure."""
    for _ in range(4):
        if _second_overtakes_a_hanging_first(make_proxy):
            return
    pytest.fail("`second` never got its echo while `first`'s upstream dial was still hanging")


def _second_overtakes_a_hanging_first(make_proxy) -> bool:
    up = _SlowToAcceptUpstream()
    try:
        p = make_proxy(upstream=up.addr)
        first = connect(p["port"])
        dialled = time.monotonic()
        first.sendall(b"first")
        # The proxy's dial for `first` now waits on a dropped SYN, retried 1 s
        # and 3 s after it was sent; open the upstream after the second retry.
        time.sleep(max(0.0, dialled + 3.5 - time.monotonic()))
        up.open()        # later dials succeed at once
        second = connect(p["port"])
        second.sendall(b"second")
        second.settimeout(10)
        assert recv_exact(second, 6) == b"second"
        first.setblocking(False)
        try:
            early = first.recv(5)
        except BlockingIOError:
            early = None
        first.settimeout(10)
        rest = recv_exact(first, 5 - len(early or b""))
        assert (early or b"") + rest == b"first"   # `first` is served too, in the end
        first.close()
        second.close()
        return early is None
    finally:
        up.close()
