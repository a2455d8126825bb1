"""Directed link faults against a real embedded Toxiproxy and real sockets.

Three fake peers (plain TCP servers that greet every connection with
b"hi from <sid>") stand behind the same proxy mesh the orchestrator builds;
a fault on i→j must stop the bytes i sends to j whichever side dialled, and
leave j→i alone.
"""
from __future__ import annotations

import random
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.links import LinkFaults, proxy_name, streams_for
from chaos.plan.model import PartitionKind, PartitionSpec, Selector
from chaos.plan.partitions import compile_partition
from chaos.ports import reserve_ports

from chaoshelp import needs_toxiproxy

pytestmark = needs_toxiproxy

SIDS = (1, 2, 3)


class Peer:
    """Accepts on its real ports; greets; keeps what every connection sent."""

    def __init__(self, sid: int, ports: dict[str, int]) -> None:
        self.sid = sid
        self.received: dict[str, bytearray] = {p: bytearray() for p in ports}
        self.socks = []
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        for port_name, port in ports.items():
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(16)
            s.settimeout(0.2)
            self.socks.append(s)
            threading.Thread(target=self._accept, args=(s, port_name), daemon=True).start()

    def _accept(self, s: socket.socket, port_name: str) -> None:
        while not self._stop.is_set():
            try:
                c, _ = s.accept()
            except OSError:
                continue
            self.conns.append(c)
            try:
                c.sendall(f"hi from {self.sid}".encode())
            except OSError:
                continue
            threading.Thread(target=self._read, args=(c, port_name), daemon=True).start()

    def _read(self, c: socket.socket, port_name: str) -> None:
        c.settimeout(0.2)
        while not self._stop.is_set():
            try:
                b = c.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if not b:
                return
            self.received[port_name] += b

    def close(self) -> None:
        self._stop.set()
        for s in self.socks + self.conns:
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def mesh(tmp_path):
    yield from _mesh(tmp_path)


@pytest.fixture(scope="module")
def shared_mesh(tmp_path_factory):
    yield from _mesh(tmp_path_factory.mktemp("mesh"))


def _mesh(tmp_path):
    from chaos.toxiproxy.client import ToxiproxyClient
    from chaos.toxiproxy.process import ToxiproxyServer
    links = LinkFaults.all_links(SIDS)
    res = reserve_ports(2 * len(SIDS) + len(links))
    ports = list(res.ports)
    real = {sid: {"election": ports[2 * k], "quorum": ports[2 * k + 1]} for k, sid in enumerate(SIDS)}
    listen = {l: ports[2 * len(SIDS) + k] for k, l in enumerate(links)}
    peers = {sid: Peer(sid, real[sid]) for sid in SIDS}
    server = ToxiproxyServer.embedded(host="127.0.0.1", seed=1, log_path=tmp_path / "tp.log")
    try:
        client = ToxiproxyClient(server.url)
        lf = LinkFaults(client, "t" + str(random.randrange(10**6)), real, listen)
        lf.create_proxies()
        yield lf, peers, client
        lf.delete_proxies()
    finally:
        server.stop()
        for p in peers.values():
            p.close()
        res.release()


def dial(lf: LinkFaults, a: int, b: int, port: str = "election") -> socket.socket:
    """Node a opens a connection to node b the way its zoo.cfg says: via proxy a→b."""
    s = socket.create_connection(("127.0.0.1", lf.listen_ports[(a, b, port)]), timeout=5)
    s.settimeout(0.2)
    return s


def recv_for(s: socket.socket, seconds: float) -> bytes:
    out = bytearray()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            b = s.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            break
        if not b:
            break
        out += b
    return bytes(out)


def wait_received(peer: Peer, port: str, needle: bytes, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if needle in peer.received[port]:
            return True
        time.sleep(0.02)
    return needle in peer.received[port]


def test_streams_for_a_directed_link():
    assert streams_for("r1", (1, 2, "election")) == [
        ("fle_r1_1to2_election", "upstream"), ("fle_r1_2to1_election", "downstream")]


def test_header_lists_every_directed_link_through_its_proxy(mesh):
    lf, _, client = mesh
    names = {p.name for p in (client.list_proxies().values() if isinstance(client.list_proxies(), dict)
                              else client.list_proxies())}
    assert {proxy_name(lf.run_id, a, b, p) for a, b, p in LinkFaults.all_links(SIDS)} <= names
    h = lf.header()
    assert len(h) == 12
    one = next(x for x in h if (x["from"], x["to"], x["port"]) == (1, 2, "quorum"))
    assert one["upstream"] == f"127.0.0.1:{lf.real_ports[2]['quorum']}"


def test_traffic_flows_both_ways_without_faults(mesh):
    lf, peers, _ = mesh
    s = dial(lf, 1, 2)
    try:
        assert b"hi from 2" in recv_for(s, 1.0)
        s.sendall(b"ping-1-2")
        assert wait_received(peers[2], "election", b"ping-1-2", 3.0)
    finally:
        s.close()


def test_toxic_on_directed_link_lands_on_upstream_and_reverse_downstream(mesh):
    lf, _, client = mesh
    lf.add_toxic("f1", "toxic", [(1, 2, "quorum")], "latency", {"latency": 50})

    def toxics(proxy):
        return {(t.name, t.stream) for t in client.list_toxics(proxy)}

    assert toxics(proxy_name(lf.run_id, 1, 2, "quorum")) == {("f1_1to2", "upstream")}
    assert toxics(proxy_name(lf.run_id, 2, 1, "quorum")) == {("f1_1to2", "downstream")}
    for a, b, p in LinkFaults.all_links(SIDS):
        if (a, b, p) not in ((1, 2, "quorum"), (2, 1, "quorum")):
            assert toxics(proxy_name(lf.run_id, a, b, p)) == set(), (a, b, p)
    assert lf.undo("f1") == [(1, 2, "quorum")]
    assert toxics(proxy_name(lf.run_id, 1, 2, "quorum")) == set()
    assert toxics(proxy_name(lf.run_id, 2, 1, "quorum")) == set()


def test_one_way_block_stops_i_to_j_whoever_dialled_and_lets_j_to_i_flow(mesh):
    lf, peers, _ = mesh
    lf.block("p1", [(1, 2)], ports=["election"])
    assert lf.blocked_pairs() == {(1, 2)}
    c12 = dial(lf, 1, 2)   # 1 dialled: 1's bytes go upstream of 1→2
    c21 = dial(lf, 2, 1)   # 2 dialled: 1's bytes go downstream of 2→1
    try:
        # j → i flows on both connections
        assert b"hi from 2" in recv_for(c12, 1.5)
        c21.sendall(b"from-2-dialled")
        assert wait_received(peers[1], "election", b"from-2-dialled", 3.0)
        # i → j is black-holed on both
        c12.sendall(b"from-1-dialled")
        assert not wait_received(peers[2], "election", b"from-1-dialled", 1.5)
        assert b"hi from 1" not in recv_for(c21, 1.5)
        # the quorum port was not part of this fault
        q = dial(lf, 1, 2, "quorum")
        q.sendall(b"quorum-1-2")
        assert wait_received(peers[2], "quorum", b"quorum-1-2", 3.0)
        q.close()
        # heal: removing a timeout toxic closes the held connections
        lf.undo("p1")
        assert recv_for(c12, 3.0) == b""
    finally:
        c12.close()
        c21.close()
    c = dial(lf, 1, 2)
    try:
        assert b"hi from 2" in recv_for(c, 1.5)
        c.sendall(b"after-heal")
        assert wait_received(peers[2], "election", b"after-heal", 3.0)
    finally:
        c.close()


def test_compiled_isolation_blocks_both_directions_for_the_target_only(mesh):
    lf, peers, _ = mesh
    spec = PartitionSpec(PartitionKind.ISOLATE, target=Selector.sid(3))
    cp = compile_partition(spec, SIDS, 1, random.Random(1))
    links = lf.block("p2", cp.blocked, ports=["election"])
    assert {(a, b) for a, b, _ in links} == {(1, 3), (3, 1), (2, 3), (3, 2)}
    s13, s12 = dial(lf, 1, 3), dial(lf, 1, 2)
    try:
        s13.sendall(b"one-to-three")
        s12.sendall(b"one-to-two")
        assert wait_received(peers[2], "election", b"one-to-two", 3.0)
        assert not wait_received(peers[3], "election", b"one-to-three", 1.0)
        assert b"hi from 3" not in recv_for(s13, 0.5)
    finally:
        s13.close()
        s12.close()
    lf.undo("p2")
    assert lf.faults == {}


pairs = st.sets(st.tuples(st.sampled_from(SIDS), st.sampled_from(SIDS)).filter(lambda p: p[0] != p[1]),
                min_size=1)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocked=pairs, ports=st.sampled_from([("election",), ("quorum",), ("election", "quorum")]))
def test_any_matrix_lands_on_exactly_the_streams_carrying_each_blocked_direction(shared_mesh, blocked, ports):
    lf, _, client = shared_mesh
    fid = f"h{len(lf.faults)}{random.randrange(10**9)}"
    lf.block(fid, blocked, ports)
    try:
        expected = set()
        for a, b in blocked:
            for p in ports:
                expected |= {(proxy, stream, f"{fid}_{a}to{b}") for proxy, stream in streams_for(lf.run_id, (a, b, p))}
        found = set()
        for a, b, p in LinkFaults.all_links(SIDS):
            name = proxy_name(lf.run_id, a, b, p)
            found |= {(name, t.stream, t.name) for t in client.list_toxics(name)}
        assert found == expected
        assert lf.blocked_pairs() == set(blocked)
    finally:
        lf.undo(fid)
    assert all(not client.list_toxics(proxy_name(lf.run_id, a, b, p)) for a, b, p in LinkFaults.all_links(SIDS))


def test_down_disables_the_links_proxies_closes_their_connections_and_counts_overlaps(mesh):
    """The plan-level `down` fault: Toxiproxy's enabled=false on the proxy of
    each directed link; a proxy two faults hold down comes back after both."""
    lf, _, client = mesh
    c12 = dial(lf, 1, 2)
    try:
        assert b"hi from 2" in recv_for(c12, 1.0)
        lf.down("d1", [(1, 2, "election")])
        lf.down("d2", [(1, 2, "election"), (1, 3, "election")])
        name12, name13 = proxy_name(lf.run_id, 1, 2, "election"), proxy_name(lf.run_id, 1, 3, "election")
        assert not client.get_proxy(name12).enabled and not client.get_proxy(name13).enabled
        assert client.get_proxy(proxy_name(lf.run_id, 2, 1, "election")).enabled
        assert recv_for(c12, 1.0) == b""  # the live connection was closed
        with pytest.raises(OSError):
            s = dial(lf, 1, 2)
            try:
                if s.recv(16) == b"":
                    raise ConnectionResetError("closed at once")
            finally:
                s.close()
        assert lf.undo("d1") == [(1, 2, "election")]
        assert not client.get_proxy(name12).enabled  # d2 still holds it
        lf.undo("d2")
        assert client.get_proxy(name12).enabled and client.get_proxy(name13).enabled
        again = dial(lf, 1, 2)
        try:
            assert b"hi from 2" in recv_for(again, 1.0)
        finally:
            again.close()
    finally:
        c12.close()
