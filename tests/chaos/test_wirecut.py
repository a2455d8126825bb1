"""chaos.wirecut: the rules a cut makes (pure), and on this machine's kernel
that a cut connection stays half-open across a "reboot": no FIN gets out,
the cut's lifting closes nothing, and the first write after it is reset."""
from __future__ import annotations

import secrets
import socket
import subprocess
import time

import pytest

from chaos import netns, procs, wirecut
from chaos.wirecut import NodeWire, WireCuts, config_wires, cut_rules, forget_argv


def test_a_netns_wire_is_cut_at_its_veth_both_ways():
    rules = cut_rules(NodeWire(2, host_if="fcabcdef01n2", netns="fc-abcdef01-n2"))
    assert rules == [("cut_out", 'oifname "fcabcdef01n2" drop comment "cut_2"'),
                     ("cut_in", 'iifname "fcabcdef01n2" drop comment "cut_2"')]


def test_a_config_wire_is_cut_by_the_ports_only_its_connections_use():
    real = {1: {"election": 4001, "quorum": 4002}, 2: {"election": 4003, "quorum": 4004}}
    listen = {(1, 2, "election"): 5001, (1, 2, "quorum"): 5002,
              (2, 1, "election"): 5003, (2, 1, "quorum"): 5004}
    wires = config_wires(real, listen)
    assert wires[1].own == (4001, 4002) and wires[1].dialled == (5001, 5002)
    assert wires[2].own == (4003, 4004) and wires[2].dialled == (5003, 5004)
    assert cut_rules(wires[1]) == [
        ("cut_out", 'tcp sport { 4001, 4002, 5001, 5002 } drop comment "cut_1"'),
        ("cut_out", 'tcp dport { 4001, 4002, 5001, 5002 } drop comment "cut_1"')]
    # the node's own ends only: the proxies' ends (dport = its port, sport = a
    # listen port) are the half-open connections a reboot must leave alone
    assert forget_argv(wires[1])[-1] == "( sport = :4001 or sport = :4002 or dport = :5001 or dport = :5002 )"
    with pytest.raises(ValueError, match="node 3"):
        cut_rules(NodeWire(3))


def test_a_netns_node_forgets_every_socket_in_its_namespace():
    argv = forget_argv(NodeWire(2, host_if="fcabcdef01n2", netns="fc-abcdef01-n2"))
    assert argv[:2] == ["nsenter", "--net=/run/netns/fc-abcdef01-n2"] and argv[2:4] == ["ss", "-K"]


MISSING = wirecut.missing_requirements()
needs_nft = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


def _table_exists(table: str) -> bool:
    r = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True)
    return r.returncode == 0


def _recv(sock: socket.socket, timeout: float) -> bytes | None:
    """What arrives within ``timeout`` (b"" is a FIN); None: nothing came."""
    sock.settimeout(timeout)
    try:
        return sock.recv(100)
    except TimeoutError:
        return None


@pytest.fixture
def live_run(tmp_path):
    """A run id in the run registry, as a real run's is before it makes any
    table: another run's janitor (a concurrent test or plan run) leaves it be."""
    run_id = secrets.token_hex(4)
    registry = procs.RunRegistry(run_id, tmp_path)
    yield run_id
    registry.close()


@needs_nft
def test_a_node_killed_behind_a_cut_leaves_its_peer_half_open_until_it_writes(live_run):
    run_id = live_run
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    peer = socket.create_connection(("127.0.0.1", port))      # a proxy's end: dport = the node's port
    node_end, _ = listener.accept()
    cuts = WireCuts(run_id, {1: NodeWire(1, own=(port,))}, own_table=True)
    cuts.open()
    try:
        assert _table_exists(cuts.table)
        node_end.sendall(b"before")
        assert _recv(peer, 2.0) == b"before"
        cuts.cut(1)
        node_end.sendall(b"cut")
        assert _recv(peer, 0.5) is None                      # dropped on the way
        node_end.close()                                      # the process dies: its FIN is dropped too
        listener.close()
        assert _recv(peer, 0.5) is None
        cuts.forget(1)                                        # and its kernel's socket, RST and all
        cuts.lift(1)
        assert cuts.cut_now == set()
        assert _recv(peer, 1.0) is None                       # half-open: the lift closed nothing
        rebooted = socket.create_server(("127.0.0.1", port))  # the node is back on the same port
        peer.sendall(b"hello?")                               # the first write finds no such connection
        with pytest.raises(ConnectionResetError):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if _recv(peer, 0.5) == b"":
                    break
        rebooted.close()
    finally:
        peer.close()
        cuts.close()
    assert not _table_exists(cuts.table)


@needs_nft
def test_forgetting_with_the_wire_up_is_refused(live_run):
    cuts = WireCuts(live_run, {1: NodeWire(1, own=(1,))}, own_table=True)
    with pytest.raises(wirecut.WireCutError, match="wire up"):
        cuts.forget(1)


@needs_nft
def test_the_janitor_removes_the_cuts_of_a_run_that_was_killed(tmp_path):
    """A SIGKILLed orchestrator runs no cleanup: the next run's janitor drops its
    table, and only then: while the run lives, its table is left alone."""
    run_id = secrets.token_hex(4)
    registry = procs.RunRegistry(run_id, tmp_path)
    cuts = WireCuts(run_id, {1: NodeWire(1, own=(9,))}, own_table=True)
    try:
        cuts.open()
        cuts.cut(1)
        assert run_id in netns.leftovers()
        assert run_id not in netns.janitor(procs.live_run_ids()) and _table_exists(cuts.table)
    finally:
        registry.close()        # the orchestrator is gone (its registry file with it)
    netns.janitor(procs.live_run_ids())   # (or a concurrent run's janitor did it first)
    assert run_id not in netns.leftovers() and not _table_exists(cuts.table)
