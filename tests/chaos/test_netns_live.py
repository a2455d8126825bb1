"""`--links netns` with our own node, and the namespaces' life cycle (needs root/CAP_NET_ADMIN, ip, nft)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from chaos import netns, procs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def netns_here():
    problem = netns.missing_requirements()
    if problem:
        pytest.skip(problem)


@pytest.fixture
def live_run(tmp_path):
    """Registers a run id as live (as a run does), so that a concurrent run's
    janitor leaves this test's namespaces alone."""
    made = []

    def register(run_id: str) -> procs.RunRegistry:
        reg = procs.RunRegistry(run_id, tmp_path)
        made.append(reg)
        return reg

    yield register
    for reg in made:
        reg.close()


def test_a_node_reaches_a_peer_only_through_the_rule_of_that_directed_link(live_run):
    live_run("f00dfeed")
    slot = netns.reserve_slot()
    net = netns.layout("f00dfeed", slot.slot, [1, 2])
    links = netns.NetnsLinks(net)
    real = {1: {"election": 5001, "quorum": 5002}, 2: {"election": 5003, "quorum": 5004}}
    with socket.socket() as proxy:
        try:
            links.up(real, {})
            proxy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            proxy.bind((net.host, 0))
            proxy.listen()
            lp = proxy.getsockname()[1]
            subprocess.run(["nft", "delete", "table", "ip", net.table], check=True)
            subprocess.run(["nft", "-f", "-"], input=netns.nft_ruleset(net, real, {(1, 2, "election"): lp}),
                           text=True, check=True)
            got: list[bytes] = []

            def accept() -> None:
                proxy.settimeout(10)
                c, _ = proxy.accept()
                with c:
                    got.append(c.recv(16))

            t = threading.Thread(target=accept)
            t.start()
            dial = ("import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2); "
                    "s.sendall(b'hello'); s.close()")
            ok = subprocess.run([*links.exec_prefix(1), sys.executable, "-c", dial, net.address(2), "5003"],
                                capture_output=True, text=True, timeout=15)
            t.join(10)
            assert ok.returncode == 0, ok.stderr
            assert got == [b"hello"]          # node 1 -> node 2's election port landed at the proxy 1->2
            # a port no rule names is not forwarded to the peer
            miss = subprocess.run([*links.exec_prefix(1), sys.executable, "-c", dial, net.address(2), "5004"],
                                  capture_output=True, text=True, timeout=15)
            assert miss.returncode != 0
            counters = links.counters()
            assert counters["1to2_election"] == 1 and counters["not_from_host_to_2"] == 0
        finally:
            failed = links.down()
            slot.release()
    assert not failed
    assert "f00dfeed" not in netns.leftovers()


def test_janitor_leaves_a_live_runs_namespaces_alone(live_run):
    live_run("feedf00d")
    slot = netns.reserve_slot()
    net = netns.layout("feedf00d", slot.slot, [1])
    links = netns.NetnsLinks(net)
    try:
        links.up({1: {"election": 1, "quorum": 2}}, {})
        assert "feedf00d" not in netns.janitor(procs.live_run_ids())
        assert "feedf00d" in netns.leftovers()
        # a janitor that sees the run dead removes them (asked while the registry
        # still holds it, so that no concurrent run's janitor takes them first)
        assert "feedf00d" in netns.janitor(procs.live_run_ids() - {"feedf00d"})
        assert "feedf00d" not in netns.leftovers()
    finally:
        links.down()
        slot.release()


def test_our_node_runs_a_plan_with_netns_links(tmp_path):
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "chaos", "run", "plans/leader_kill.yaml", "--links", "netns",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    j = json.loads((out / "journal.json").read_text())
    assert p.returncode == 0, p.stdout + p.stderr
    assert j["run"]["links"]["mode"] == "netns"
    counters = j["run"]["links"]["counters"]
    assert all(v == 0 for k, v in counters.items() if k.startswith("not_from_host_to_")), counters
    assert sum(v for k, v in counters.items() if k.endswith("_election")) > 0
    assert j["run"]["id"] not in netns.leftovers()


def test_garbage_frames_reach_a_node_in_its_namespace(tmp_path):
    """`inject` dials each node where it listens, its own namespace address,
    not the host side of its link (which refused: nothing listens there)."""
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "chaos", "run", "plans/garbage_notifications.yaml", "--links", "netns",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    j = json.loads((out / "journal.json").read_text())
    injected = [r for r in j["records"] if r["type"] == "step_finished" and r["kind"] == "inject"]
    assert injected and all(r["ok"] for r in injected), p.stdout + p.stderr
    assert p.returncode == 0, p.stdout + p.stderr
