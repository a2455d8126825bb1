"""Interop with real ZooKeeper 3.8: the election wire protocol and the 4lw formats.

Our broadcast phase is our own protocol, so a real ZooKeeper cannot follow
our leader nor we theirs; only the election and the client-port output are
compared.
"""
from __future__ import annotations

import pytest

from chaos.ports import reserve_ports
from harness import Ensemble, four_letter, wait_until

pytestmark = pytest.mark.interop

JVM_TIMEOUT = 90  # JVM start-up on a loaded 2-core machine


def _mode(port: int) -> str | None:
    out = four_letter(port, "srvr", timeout=3)
    if not out:
        return None
    for line in out.splitlines():
        if line.startswith("Mode: "):
            return line[len("Mode: "):]
    return None


def test_our_node_elects_with_two_real_zookeepers(tmp_path, real_zk):
    ens = Ensemble(tmp_path / "ens", 3, extra={"admin.enableServer": "false"})
    try:
        zks = {sid: real_zk(ens.nodes[sid].dir, ens.config_text(sid), sid) for sid in (2, 3)}
        for zk in zks.values():
            zk.start()
        ens.start(1)
        def zk_modes():
            m = {sid: _mode(ens.nodes[sid].client_port) for sid in (2, 3)}
            return m if sorted(map(str, m.values())) == ["follower", "leader"] else None

        modes = wait_until(zk_modes, JVM_TIMEOUT, interval=0.5, what="the two real ZooKeepers to elect")
        zk_leader = next(sid for sid, m in modes.items() if m == "leader")
        # our node heard both real peers, parsed their version-2 notifications ...
        received = [e for e in ens.nodes[1].events() if e["event"] == "notification_received"]
        for sid in (2, 3):
            from_sid = [e for e in received if e["from"] == sid]
            assert from_sid, f"no notification from real ZooKeeper {sid}"
            assert all(e["version"] == 2 for e in from_sid)
        assert not [e for e in ens.nodes[1].events() if e["event"] == "malformed_frame"
                    and e["port"] == "election"]
        # ... and decided for their leader. (While the JVMs come up, our node
        # and the first ZooKeeper may elect between them; that leader cannot
        # keep a quorum because we cannot follow a real ZooKeeper's broadcast
        # phase, so only a decision for the final leader is required.)
        def decided_for_leader():
            return [e for e in ens.nodes[1].events()
                    if e["event"] == "election_finished" and e["leader"] == zk_leader]

        finished = wait_until(decided_for_leader, 30, what=f"our node to decide for {zk_leader}")
        assert finished[-1]["path"] in ("quorum", "out_of_election")
        assert finished[-1]["state"] == "FOLLOWING"
        assert ens.nodes[1].alive()
        # the real leader saw our node's vote too (its log names our sid in a notification)
        log = zks[zk_leader].log.read_text(errors="replace")
        assert "n.sid:1," in log, "the real leader never logged a notification from our node"
    finally:
        ens.close()


def _keys(text: str, sep: str) -> list[str]:
    return [line.split(sep, 1)[0] for line in text.splitlines() if line]


def test_srvr_and_mntr_structure_match_zookeeper(tmp_path, real_zk):
    with reserve_ports(3) as res:
        q, e, c = res.ports
        cfg = ("tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={data}\nclientPort={c}\n"
               "clientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\nadmin.enableServer=false\n"
               "standaloneEnabled=false\nserver.1=127.0.0.1:{q}:{e}\n")
        zk = real_zk(tmp_path / "zk", cfg.format(data=tmp_path / "zk", c=c, q=q, e=e), 1)
        zk.start()
        wait_until(lambda: _mode(c) == "leader", JVM_TIMEOUT, interval=0.5, what="real ZooKeeper to lead")
        zk_srvr = four_letter(c, "srvr")
        zk_mntr = four_letter(c, "mntr")
        zk_bad = four_letter(c, "zzzz")  # not a 4lw: ZooKeeper drops the connection
        zk.stop()

        ours = tmp_path / "ours"
        ours.mkdir()
        (ours / "myid").write_text("1\n")
        (ours / "zoo.cfg").write_text(cfg.format(data=ours, c=c, q=q, e=e))
        ens = Ensemble(tmp_path / "unused", 1)  # only for its start/close plumbing
        try:
            nd = ens.nodes[1]
            nd.dir = ours
            nd.client_port = c
            ens.start(1)
            wait_until(lambda: _mode(c) == "leader", 30, interval=0.2, what="our node to lead")
            our_srvr = four_letter(c, "srvr")
            our_mntr = four_letter(c, "mntr")
            our_bad = four_letter(c, "zzzz")
        finally:
            ens.close()

    assert _keys(our_srvr, ":") == _keys(zk_srvr, ":")
    assert our_srvr.splitlines()[0].startswith("Zookeeper version: 3.8.0-")
    zk_rows = [line.split("\t") for line in zk_mntr.splitlines()]
    our_rows = [line.split("\t") for line in our_mntr.splitlines()]
    assert all(len(r) == 2 for r in zk_rows) and all(len(r) == 2 for r in our_rows)
    zk_keys = {r[0] for r in zk_rows}
    our_zk_keys = [r[0] for r in our_rows if r[0].startswith("zk_")]
    assert set(our_zk_keys) <= zk_keys, sorted(set(our_zk_keys) - zk_keys)
    assert [r[0] for r in zk_rows[:3]] == [r[0] for r in our_rows[:3]]
    for k in ("zk_server_state", "zk_peer_state", "zk_learners", "zk_synced_followers", "zk_znode_count",
              "zk_quorum_size", "zk_num_alive_connections", "zk_packets_received", "zk_packets_sent"):
        assert k in our_zk_keys
    assert dict(our_rows)["zk_server_state"] == dict(zk_rows)["zk_server_state"] == "leader"
    # after the zk_* lines only our fle_* extension follows
    tail = [r[0] for r in our_rows[len(our_zk_keys):]]
    assert tail and all(k.startswith("fle_") for k in tail)
    assert zk_bad in ("", None) and our_bad in ("", None)
