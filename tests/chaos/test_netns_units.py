"""The pure parts of --links netns and --target zookeeper: names, rules, log lines, read-back verdicts."""
from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.invariants import check_all
from chaos.netns import SLOTS, layout, nft_ruleset
from chaos.records import Journal, NodeInfo, RunInfo, Status, TargetInfo, WorkloadReadback
from chaos.targets.zookeeper import parse_log_line, parse_mntr
from chaos.workload import readback_fields

ROOT = Path(__file__).resolve().parents[2]


def test_layout_names_fit_linux_limits_and_addresses_stay_in_the_benchmark_block():
    net = layout("0123abcd", SLOTS - 1, range(1, 10))
    block = ipaddress.ip_network("198.18.0.0/15")
    assert ipaddress.ip_address(net.host) in block
    for sid, n in net.nodes.items():
        assert len(n.host_if) <= 15 and len(n.node_if) <= 15   # IFNAMSIZ - 1
        assert n.netns.startswith("fc-0123abcd-")
        assert ipaddress.ip_address(n.address) in ipaddress.ip_network(net.subnet)
    assert len({n.address for n in net.nodes.values()} | {net.host}) == 10


def test_slots_are_disjoint_subnets():
    a, b = layout("0123abcd", 0, [1, 2, 3]), layout("0123abcd", 1, [1, 2, 3])
    assert not ipaddress.ip_network(a.subnet).overlaps(ipaddress.ip_network(b.subnet))


@pytest.mark.parametrize("bad", [dict(run_id="xyz", slot=0), dict(run_id="0123abcd", slot=SLOTS)])
def test_layout_refuses_bad_input(bad):
    with pytest.raises(ValueError):
        layout(bad["run_id"], bad["slot"], [1])


def test_one_dnat_rule_per_directed_link_to_its_own_proxy():
    net = layout("0123abcd", 3, [1, 2, 3])
    real = {s: {"election": 5000 + 10 * s, "quorum": 5001 + 10 * s} for s in (1, 2, 3)}
    listen = {(a, b, p): 6000 + 100 * a + 10 * b + (p == "quorum")
              for a in (1, 2, 3) for b in (1, 2, 3) if a != b for p in ("election", "quorum")}
    text = nft_ruleset(net, real, listen)
    dnat = [line for line in text.splitlines() if " dnat to " in line]
    assert len(dnat) == len(listen) == 12
    for (a, b, p), lp in listen.items():
        want = (f'iifname "{net.nodes[a].host_if}" ip saddr {net.address(a)} ip daddr {net.address(b)} '
                f'tcp dport {real[b][p]} counter dnat to {net.host}:{lp} comment "{a}to{b}_{p}"')
        assert sum(want in line for line in dnat) == 1, want
    assert "counter drop" in text           # what no rule rewrote is never forwarded
    assert text.count("not_from_host_to_") == 3


ZK_LINES = """\
2026-11-29 04:13:00,796 INFO [QuorumPeer[myid=1](plain=198.18.242.2:20696)(secure=disabled)] FastLeaderElection - New election. My id = 1, proposed zxid=0x0
2026-11-29 04:13:00,797 DEBUG [QuorumPeer[myid=1](plain=198.18.242.2:20696)(secure=disabled)] FastLeaderElection - Sending Notification: 1 (n.leader), 0x0 (n.zxid), 0x1 (n.round), 2 (recipient), 1 (myid), 0x0 (n.peerEpoch) 
2026-11-29 04:13:00,917 INFO [WorkerReceiver[myid=1]] FastLeaderElection - Notification: my state:LOOKING; n.sid:3, n.state:FOLLOWING, n.leader:3, n.round:0x2, n.peerEpoch:0x1, n.zxid:0x100000004, message format version:0x2, n.config version:0x0
2026-11-29 04:13:01,245 INFO [QuorumPeer[myid=1](plain=198.18.242.2:20696)(secure=disabled)] QuorumPeer - Peer state changed: following - broadcast
2026-11-29 04:13:01,271 INFO [QuorumPeer[myid=1](plain=198.18.242.2:20696)(secure=disabled)] Learner - FOLLOWING - LEADER ELECTION TOOK - 475 MS
2026-11-29 04:13:01,300 INFO [main] QuorumPeerConfig - Reading configuration from: /x/zoo.cfg
not a log line at all
"""


def test_zookeeper_log_lines_become_node_events():
    evs = [parse_log_line(1, line, mono_offset=1_000.0) for line in ZK_LINES.splitlines()]
    started, sent, received, peer, finished, other, junk = evs
    assert other is None and junk is None
    assert started["event"] == "election_started" and started["last_zxid"] == 0
    assert sent == {**sent, "event": "notification_sent", "to": 2, "leader": 1, "round": 1, "peer_epoch": 0}
    assert received["event"] == "notification_received"
    assert (received["from"], received["state"], received["leader"], received["round"], received["peer_epoch"],
            received["zxid"], received["version"]) == (3, "FOLLOWING", 3, 2, 1, 0x100000004, 2)
    assert peer == {**peer, "event": "peer_state_changed", "peer_state": "following - broadcast"}
    assert finished["event"] == "election_finished" and finished["duration_ms"] == 475
    assert finished["state"] == "FOLLOWING" and finished["leader"] is None   # the log does not say whom
    # the log's wall clock (UTC) is put on the orchestrator's monotonic clock
    assert received["mono_ms"] - sent["mono_ms"] == pytest.approx(120.0)
    assert sent["mono_ms"] == pytest.approx((sent["ts"] - 1_000.0) * 1000.0)


def test_an_observers_long_min_vote_reads_negative_as_java_holds_it():
    line = ("2026-11-29 07:13:05,120 DEBUG [QuorumPeer[myid=4](plain=198.18.242.5:20696)(secure=disabled)] "
            "FastLeaderElection - Sending Notification: -9223372036854775808 (n.leader), 0x8000000000000000 "
            "(n.zxid), 0x1 (n.round), 1 (recipient), 4 (myid), 0x8000000000000000 (n.peerEpoch) ")
    ev = parse_log_line(4, line, mono_offset=0.0)
    assert ev is not None and ev["event"] == "notification_sent"
    assert ev["leader"] == ev["zxid"] == ev["peer_epoch"] == -(1 << 63) and ev["round"] == 1


def test_mntr_parses_tab_separated_lines():
    m = parse_mntr("zk_version\t3.8.0-x, built on ...\nzk_server_state\tfollower\nzk_peer_state\tfollowing - broadcast\n")
    assert m["zk_server_state"] == "follower" and m["zk_peer_state"].endswith("broadcast")


def _zk_journal(*readbacks: dict) -> Journal:
    formed = tuple(Status(seq=s, t=0.1 * s, sid=s, up=True, state="LEADING" if s == 1 else "FOLLOWING", leader=1,
                          epoch=1, accepted_epoch=1, synced=True) for s in (1, 2, 3))
    recs = formed + tuple(WorkloadReadback(seq=i + 4, t=1.0 + i, **rb) for i, rb in enumerate(readbacks))
    return Journal(run=RunInfo(target=TargetInfo("zookeeper", "3.8.0")), records=recs,
                   nodes=tuple(NodeInfo(sid=s, name=f"n{s}") for s in (1, 2, 3)))


def _verdicts(j: Journal) -> dict[str, tuple[str, str]]:
    return {r.name: (str(r.verdict), r.message)
            for r in check_all(j, {"no_committed_txn_lost": {}, "log_agreement": {}, "leader_validity": {}})}


def test_all_acknowledged_creates_on_every_server_is_valid():
    acked = {f"/fle-chaos/w-{i:010d}" for i in range(50)}
    j = _zk_journal(*({"sid": s, **readback_fields(acked, sorted(acked))} for s in (1, 2, 3)))
    v = _verdicts(j)
    assert v["no_committed_txn_lost"][0] == "valid" and v["log_agreement"][0] == "valid"
    assert v["leader_validity"] == ("valid", "no decision for a proposal the log shows")   # zk_votes: no log, no claim


def test_a_server_missing_an_acknowledged_create_is_a_lost_write():
    acked = {f"/fle-chaos/w-{i:010d}" for i in range(50)}
    lost = sorted(acked)[:49]
    j = _zk_journal({"sid": 1, **readback_fields(acked, sorted(acked))},
                    {"sid": 2, **readback_fields(acked, lost)},
                    {"sid": 3, **readback_fields(acked, sorted(acked))})
    v = _verdicts(j)
    assert v["no_committed_txn_lost"][0] == "invalid"
    assert "server 2 lacks 1 of 50" in v["no_committed_txn_lost"][1]
    assert "w-0000000049" in v["no_committed_txn_lost"][1]
    assert v["log_agreement"][0] == "invalid"


def test_an_unreadable_running_server_is_unknown_and_a_stopped_one_is_left_out():
    acked = {"/fle-chaos/w-0000000001"}
    j = _zk_journal({"sid": 1, **readback_fields(acked, sorted(acked))},
                    {"sid": 2, **readback_fields(acked, None, "ConnectionLoss")},
                    {"sid": 3, **readback_fields(acked, sorted(acked))})
    assert _verdicts(j)["no_committed_txn_lost"][0] == "unknown"
    j = _zk_journal({"sid": 1, **readback_fields(acked, sorted(acked))},
                    {"sid": 2, **readback_fields(acked, None, "not running at the end")},
                    {"sid": 3, **readback_fields(acked, sorted(acked))})
    assert _verdicts(j)["no_committed_txn_lost"][0] == "valid"


def test_unacknowledged_creates_a_server_holds_are_not_a_loss_but_must_agree():
    acked = {"/fle-chaos/w-0000000001"}
    both = sorted(acked | {"/fle-chaos/w-0000000002"})
    j = _zk_journal({"sid": 1, **readback_fields(acked, both)}, {"sid": 2, **readback_fields(acked, both)})
    v = _verdicts(j)
    assert v["no_committed_txn_lost"][0] == "valid" and v["log_agreement"][0] == "valid"


def test_our_node_keeps_every_invariant():
    j = Journal(run=RunInfo(target=TargetInfo("fle", None)), records=())
    assert all("no evidence" not in msg for _, msg in _verdicts(j).values())


def _run_cli(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)


def test_without_nft_the_run_exits_3_with_one_line_saying_so(tmp_path):
    bindir = tmp_path / "bin"          # a PATH with everything but nft
    bindir.mkdir()
    for tool in ("ip", "nsenter", "java"):
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    env = {**os.environ, "PATH": str(bindir)}
    r = _run_cli([sys.executable, "-m", "chaos", "run", "plans/leader_kill.yaml", "--links", "netns",
                  "--out", str(tmp_path / "run")], env)
    assert r.returncode == 3
    assert r.stderr.strip().splitlines() == ["leader_kill: netns links need `nft` (package nftables)"]
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("capsh"), reason="needs root and capsh to drop a capability")
def test_without_cap_net_admin_the_run_exits_3_with_one_line_saying_so(tmp_path):
    cmd = f"{sys.executable} -m chaos run plans/leader_kill.yaml --links netns --out {tmp_path / 'run'}"
    r = _run_cli(["capsh", "--drop=cap_net_admin", "--", "-c", cmd])
    if "nft" in r.stderr and "package" in r.stderr:
        pytest.skip("nft missing here")
    assert r.returncode == 3
    assert r.stderr.strip().splitlines() == [
        "leader_kill: netns links need root or CAP_NET_ADMIN (to make namespaces, veths and an nft table)"]


FOLD_LINES = """\
2026-11-29 04:13:02,900 INFO [QuorumPeer[myid=1](plain=x)(secure=disabled)] FastLeaderElection - New election. My id = 1, proposed zxid=0x100000020
2026-11-29 04:13:02,901 DEBUG [QuorumPeer[myid=1](plain=x)(secure=disabled)] FastLeaderElection - Sending Notification: 1 (n.leader), 0x100000020 (n.zxid), 0x2 (n.round), 1 (recipient), 1 (myid), 0x1 (n.peerEpoch) 
2026-11-29 04:13:02,902 DEBUG [QuorumPeer[myid=1](plain=x)(secure=disabled)] FastLeaderElection - Sending Notification: 1 (n.leader), 0x100000020 (n.zxid), 0x2 (n.round), 2 (recipient), 1 (myid), 0x1 (n.peerEpoch) 
2026-11-29 04:13:03,117 DEBUG [QuorumPeer[myid=1](plain=x)(secure=disabled)] FastLeaderElection - About to leave FLE instance: leader=2, zxid=0x100000020, my id=1, my state=FOLLOWING
2026-11-29 04:13:03,118 INFO [QuorumPeer[myid=1](plain=x)(secure=disabled)] Learner - FOLLOWING - LEADER ELECTION TOOK - 219 MS
"""


def test_an_election_logged_on_several_lines_becomes_one_started_and_one_finished_event():
    from chaos.targets.zookeeper import ElectionFold
    fold = ElectionFold()
    evs = [e for line in FOLD_LINES.splitlines() for e in fold.feed(parse_log_line(1, line, 0.0))]
    assert [e["event"] for e in evs] == ["election_started", "notification_sent", "notification_sent",
                                        "election_finished"]
    started, finished = evs[0], evs[-1]
    # round and peerEpoch come from the broadcast that follows "New election"
    assert (started["logical_clock"], started["current_epoch"], started["last_zxid"]) == (2, 1, 0x100000020)
    assert started["vote"] == {"leader": 1, "zxid": 0x100000020, "peer_epoch": 1}
    assert started["mono_ms"] < evs[1]["mono_ms"]        # keeps the time of "New election"
    # the leader decided comes from "About to leave FLE instance"
    assert (finished["leader"], finished["zxid"], finished["duration_ms"]) == (2, 0x100000020, 219)
    assert "path" not in finished                        # the log never says which path decided
    assert (finished["notifications_sent"], finished["notifications_received"], finished["rounds"]) == (2, 0, 1)


def test_the_fold_counts_an_elections_notifications_with_the_replies_zookeeper_does_not_log():
    from chaos.targets.zookeeper import ElectionFold
    recv = ("2026-11-29 04:13:02,95{i} INFO [WorkerReceiver[myid=1]] FastLeaderElection - Notification: my state:"
            "{me}; n.sid:{frm}, n.state:{st}, n.leader:{ld}, n.round:0x{rnd}, n.peerEpoch:0x1, n.zxid:0x100000020, "
            "message format version:0x2, n.config version:0x0")
    lines = FOLD_LINES.splitlines()
    extra = [recv.format(i=0, me="LOOKING", frm=1, st="LOOKING", ld=1, rnd=2),
             recv.format(i=1, me="LOOKING", frm=3, st="LOOKING", ld=3, rnd=1),    # behind: answered, unlogged
             recv.format(i=2, me="LOOKING", frm=2, st="LEADING", ld=2, rnd=2),
             recv.format(i=3, me="FOLLOWING", frm=3, st="LOOKING", ld=3, rnd=1)]  # not this election's
    fold = ElectionFold()
    evs = [e for line in lines[:3] + extra[:3] + lines[3:] + extra[3:]
           for e in fold.feed(parse_log_line(1, line, 0.0))]
    finished = next(e for e in evs if e["event"] == "election_finished")
    assert (finished["notifications_sent"], finished["notifications_received"]) == (3, 3)


def test_an_observers_answers_to_a_voter_a_round_behind_are_echoes_not_election_work():
    """A voter answers the observer at once from its older round; the observer,
    LOOKING in a newer one, answers back, unlogged. Those pairs go out as
    ``nonvoter_echoes`` (which election_cost leaves out), as on our node; a
    voter's answers to a voter stay counted as work."""
    from chaos.targets.zookeeper import ElectionFold
    recv = ("2026-11-29 04:13:02,95{i} INFO [WorkerReceiver[myid=1]] FastLeaderElection - Notification: my state:"
            "LOOKING; n.sid:3, n.state:LOOKING, n.leader:3, n.round:0x1, n.peerEpoch:0x1, n.zxid:0x100000020, "
            "message format version:0x2, n.config version:0x0")
    lines = FOLD_LINES.splitlines()
    for nonvoters, echoes in ((frozenset({1}), 4), (frozenset({4}), 0)):
        fold = ElectionFold(nonvoters)
        evs = [e for line in lines[:3] + [recv.format(i=i) for i in range(4)] + lines[3:]
               for e in fold.feed(parse_log_line(1, line, 0.0))]
        finished = next(e for e in evs if e["event"] == "election_finished")
        assert (finished["notifications_sent"], finished["notifications_received"]) == (2 + 4, 4)
        assert finished["nonvoter_echoes"] == echoes
