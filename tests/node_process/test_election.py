"""Real node processes on loopback elect the leader ZooKeeper's rules pick.

Each test starts its own ensemble (sids 1..n) through the `make_ensemble`
fixture, which kills every process it started when the test ends. Timeouts
are generous: the machine is shared and loaded; speed lives in bench/.
"""
from __future__ import annotations

import os
import signal
import socket
import struct

from node.codec import encode_handshake, encode_notification
from node.storage import Storage, make_zxid
from zkrules.vote import ServerState
from harness import wait_until

ELECT_TIMEOUT = 40


def prepare(ens, sid: int, epoch: int, counters: int) -> int:
    """Give node `sid` a log of `counters` committed txns in `epoch`; returns its last zxid."""
    st = Storage(ens.nodes[sid].dir, None)
    st.set_accepted_epoch(epoch)
    st.set_current_epoch(epoch)
    last = 0
    for c in range(1, counters + 1):
        last = make_zxid(epoch, c)
        st.append(last, b"seed-%d" % c)
    st.mark_committed(last)
    st.close()
    return last


def events(ens, sid: int, name: str) -> list[dict]:
    return [e for e in ens.nodes[sid].events() if e["event"] == name]


def test_three_nodes_elect_highest_sid_and_sigterm_exits_0(make_ensemble):
    ens = make_ensemble(3)
    ens.start_first(3)
    assert ens.wait_leader(timeout=ELECT_TIMEOUT) == 3
    for sid in (1, 2, 3):
        fin = events(ens, sid, "election_finished")
        assert fin, f"node {sid} logged no election_finished"
        assert fin[-1]["leader"] == 3
        assert fin[-1]["state"] == ("LEADING" if sid == 3 else "FOLLOWING")
        assert fin[-1]["path"] in ("quorum", "out_of_election")
        assert fin[-1]["duration_ms"] >= 0 and fin[-1]["notifications_sent"] >= 1
        started = events(ens, sid, "node_started")[0]
        assert started["pid"] == ens.nodes[sid].proc.pid and started["protocol"] == "3.8"
        changes = [(e["from"], e["to"]) for e in events(ens, sid, "state_changed")]
        assert changes[-1] == ("LOOKING", "LEADING" if sid == 3 else "FOLLOWING")
        for e in ens.nodes[sid].events():
            assert {"ts", "mono_ms", "sid", "event"} <= e.keys() and e["sid"] == sid
    received = events(ens, 1, "notification_received")
    assert any(e["from"] == 3 and e["version"] == 2 for e in received)
    assert events(ens, 1, "notification_sent")
    # SIGTERM: clean stop, exit 0, node_stopping logged
    assert ens.stop(1) == 0
    stopping = events(ens, 1, "node_stopping")
    assert stopping and "SIGTERM" in stopping[-1]["reason"]
    # the remaining two still form a quorum under the same leader
    assert ens.wait_leader([2, 3], timeout=ELECT_TIMEOUT) == 3


def test_higher_epoch_beats_higher_zxid_beats_higher_sid(make_ensemble):
    ens = make_ensemble(5)
    prepare(ens, 1, epoch=3, counters=1)   # highest epoch: wins though its zxid counter is low
    prepare(ens, 2, epoch=2, counters=9)   # highest counter in an older epoch
    prepare(ens, 4, epoch=2, counters=2)
    ens.start_first(1)
    leader = ens.wait_leader(timeout=ELECT_TIMEOUT)
    assert leader == 1
    st = ens.fles(1)
    assert int(st["fle_current_epoch"]) == 4  # max accepted epoch + 1
    assert int(st["fle_vote_zxid"]) == make_zxid(3, 1)


def test_higher_zxid_in_same_epoch_wins(make_ensemble):
    ens = make_ensemble(3)
    prepare(ens, 1, epoch=1, counters=5)
    prepare(ens, 2, epoch=1, counters=3)
    prepare(ens, 3, epoch=1, counters=3)
    ens.start_first(1)
    assert ens.wait_leader(timeout=ELECT_TIMEOUT) == 1
    # the followers were synced up to the leader's history
    wait_until(lambda: all(int(ens.fles(s)["fle_last_zxid"]) >= make_zxid(1, 5) for s in (2, 3)),
               ELECT_TIMEOUT, what="followers synced to the leader's zxid")


def test_leader_kill_reelects_and_old_leader_rejoins_out_of_election(make_ensemble):
    ens = make_ensemble(3)
    ens.start_first(3)
    assert ens.wait_leader(timeout=ELECT_TIMEOUT) == 3
    first_epoch = int(ens.fles(3)["fle_current_epoch"])
    # let the leader commit a few txns, then remember what it had committed
    wait_until(lambda: int(ens.fles(3)["fle_last_committed_zxid"]) > make_zxid(first_epoch, 2),
               ELECT_TIMEOUT, what="leader committing txns")
    committed = int(ens.fles(3)["fle_last_committed_zxid"])
    ens.kill(3)
    new_leader = ens.wait_leader([1, 2], timeout=ELECT_TIMEOUT)
    assert new_leader == 2
    second_epoch = int(ens.fles(2)["fle_current_epoch"])
    assert second_epoch > first_epoch
    # restart the old leader: it must join the running ensemble, not disrupt it
    ens.start(3)
    wait_until(lambda: (ens.fles(3) or {}).get("fle_state") == "FOLLOWING"
               and ens.fles(3).get("fle_synced") == "1", ELECT_TIMEOUT, what="old leader FOLLOWING")
    fin = events(ens, 3, "election_finished")[-1]
    assert fin["leader"] == 2 and fin["path"] == "out_of_election" and fin["state"] == "FOLLOWING"
    started = events(ens, 3, "node_started")[-1]
    assert started["last_zxid"] >= committed, "SIGKILL lost a committed txn of the old leader"
    assert ens.agreed_leader() == 2
    assert all(int(ens.fles(s)["fle_current_epoch"]) == second_epoch for s in (1, 2, 3))
    # every committed txn of the first epoch survives everywhere; stop all cleanly and read the logs
    for sid in (1, 2, 3):
        assert ens.stop(sid) == 0
    for sid in (1, 2, 3):
        st = Storage(ens.nodes[sid].dir, None)
        try:
            assert st.has_zxid(committed), f"node {sid} lost committed zxid {committed:#x}"
            assert st.current_epoch == second_epoch
        finally:
            st.close()


def test_observer_observes_and_zero_weight_node_never_leads(make_ensemble):
    # sids 1..3 in one group, sid 3 has weight 0; sid 4 is an observer
    ens = make_ensemble(3, observers=1, groups=[[1, 2, 3]], weights={3: 0})
    ens.start_first(3)  # the zero-weight node up first must still not win
    leader = ens.wait_leader(timeout=ELECT_TIMEOUT)
    assert leader == 2
    assert ens.fles(4)["fle_state"] == "OBSERVING"
    assert ens.fles(3)["fle_state"] == "FOLLOWING"
    assert not any(e["to"] == "LEADING" for e in events(ens, 3, "state_changed"))
    # the observer proposes Long.MIN_VALUE and never counts
    obs_start = events(ens, 4, "election_started")[0]
    assert obs_start["vote"]["leader"] == -(2**63)
    assert events(ens, 4, "election_finished")[-1]["state"] == "OBSERVING"


def _send_raw(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        s.settimeout(3)
        try:
            s.recv(10)  # wait for the node to close us (or time out)
        except OSError:
            pass


def test_garbage_short_and_oversize_frames_are_dropped(make_ensemble):
    ens = make_ensemble(3)
    ens.start(1)
    port = ens.nodes[1].election_port
    wait_until(lambda: ens.fles(1), 20, what="node 1 up")
    # 1. garbage instead of a handshake: a negative "protocol version" is
    # rejected; a positive first int64 reads as a 3.4 bare sid (as ZooKeeper
    # reads it), and then its "frame length" is out of range
    _send_raw(port, b"\xff\x13garbage-garbage-garbage\x00\xff" * 3)
    _send_raw(port, b"\x13\x37garbage-garbage-garbage\x00\xff" * 3)
    # 2. a valid handshake from an unknown high sid, then a 12-byte notification (too short)
    hs = encode_handshake(99, ("127.0.0.1", 1), protocol="3.8")
    _send_raw(port, hs + struct.pack(">i", 12) + b"\x00" * 12)
    # 3. a handshake, then a length prefix far above PACKETMAXSIZE
    _send_raw(port, hs + struct.pack(">i", 0x7FFFFFF0) + b"\x00" * 16)
    # 4. a bad config length inside a v2 notification
    bad = bytearray(encode_notification(ServerState.LOOKING, 99, 0, 1, 0, protocol="3.8"))
    bad[40:44] = struct.pack(">i", 10000)
    _send_raw(port, hs + struct.pack(">i", len(bad)) + bytes(bad))
    ens.start(2, 3)
    leader = ens.wait_leader(timeout=ELECT_TIMEOUT)  # all three agree
    assert leader in (2, 3)  # 2 and 3 race to start; node 1 never wins against either
    assert ens.nodes[1].alive()
    mal = events(ens, 1, "malformed_frame")
    reasons = " | ".join(e["reason"] for e in mal)
    assert any(e["port"] == "election" and e["length"] == 12 for e in mal), reasons
    assert any("configLength" in e["reason"] for e in mal), reasons
    assert len(mal) >= 3, reasons
    assert events(ens, 1, "handshake_rejected"), "garbage handshake not reported"


def test_parent_pid_gone_stops_node(make_ensemble, tmp_path):
    """`--parent-pid`: a node whose parent is gone stops by itself (exit 0)."""
    import subprocess
    import sys
    from harness import REPO

    ens = make_ensemble(1)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        nd = ens.nodes[1]
        proc = subprocess.Popen([sys.executable, "-m", "node", "--config", str(nd.cfg_path),
                                 "--parent-pid", str(sleeper.pid)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        nd.history.append(proc)
        nd.proc = proc
        wait_until(lambda: ens.fles(1), 20, what="node up")
        os.kill(sleeper.pid, signal.SIGKILL)
        sleeper.wait(5)
        assert proc.wait(15) == 0
        assert "parent" in events(ens, 1, "node_stopping")[-1]["reason"]
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait(5)


def test_protocol_34_ensemble_elects_with_40_byte_notifications(make_ensemble):
    ens = make_ensemble(3, extra={"fle.protocol": "3.4"})
    ens.start_first(3)
    assert ens.wait_leader(timeout=ELECT_TIMEOUT) == 3
    started = events(ens, 1, "node_started")[0]
    assert started["protocol"] == "3.4"
    received = [e for e in events(ens, 1, "notification_received") if e["from"] != 1]
    assert received and all(e["version"] == 1 for e in received)


def test_leader_losing_its_quorum_goes_looking_and_stops_serving(make_ensemble):
    from harness import four_letter

    ens = make_ensemble(3, extra={"fle.logNotifications": "false"})
    ens.start_first(3)
    assert ens.wait_leader(timeout=ELECT_TIMEOUT) == 3
    ens.kill(1)
    ens.kill(2)
    # abdication after about syncLimit ticks (5 x 200 ms); generous bound for a loaded machine
    wait_until(lambda: (ens.fles(3) or {}).get("fle_state") == "LOOKING", 20, what="leader to abdicate")
    assert four_letter(ens.nodes[3].client_port, "srvr") == \
        "This ZooKeeper instance is not currently serving requests\n"
    ended = events(ens, 3, "role_ended")
    assert ended and ended[-1]["state"] == "LEADING"
    assert events(ens, 3, "quorum_lost")
    changes = [(e["from"], e["to"]) for e in events(ens, 3, "state_changed")]
    assert changes[-1] == ("LEADING", "LOOKING")
    # and a new election started with a higher logical clock
    starts = events(ens, 3, "election_started")
    assert len(starts) >= 2 and starts[-1]["logical_clock"] > starts[0]["logical_clock"]
    # fle.logNotifications=false: no per-notification events at all
    assert not [e for e in ens.nodes[3].events()
                if e["event"] in ("notification_sent", "notification_received", "notification_ignored")]
