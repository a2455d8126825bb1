"""Broadcast phase over real loopback sockets with real temp dirs (one asyncio loop).

Timing assertions have wide margins: the machine is shared and loaded.
"""
from __future__ import annotations

import asyncio
import socket
import struct
import time

from node.storage import make_zxid
from node.zab import (REASON_LEADER_CLOSED, REASON_LEADER_SILENT, REASON_NO_EPOCH_QUORUM,
                      REASON_QUORUM_LOST, REASON_STOPPED)
from zab_harness import Cluster, run, until


def seed(c: Cluster, sid: int, accepted: int, current: int, zxids=()) -> None:
    st = c.storage(sid)
    st.set_accepted_epoch(accepted)
    st.set_current_epoch(current)
    for z in zxids:
        st.append(z, b"seed %x" % z)


def committed_everywhere(c: Cluster, sids, zxid: int) -> bool:
    return all(c.peers[s].storage.last_committed_zxid >= zxid for s in sids)


def test_three_voters_establish_max_accepted_plus_one_and_commit(tmp_path):
    async def scenario():
        c = Cluster(tmp_path, voters=3, txn_interval_ms=20)
        seed(c, 1, accepted=3, current=3)
        seed(c, 2, accepted=5, current=2)
        seed(c, 3, accepted=1, current=1)
        try:
            await c.start()
            lead = c.lead(1)
            c.follow(2, 1)
            c.follow(3, 1)
            await until(lambda: committed_everywhere(c, [1, 2, 3], make_zxid(6, 5)), 20,
                        "five txns of epoch 6 committed on all three")
            for sid in (1, 2, 3):
                p = c.peers[sid]
                assert (p.storage.accepted_epoch, p.storage.current_epoch) == (6, 6)
                assert p.established == [6]
                (ev,) = p.events.named("epoch_established")
                assert ev["epoch"] == 6 and ev["leader"] == 1
                assert ev["role"] == ("leader" if sid == 1 else "follower")
            assert c.peers[1].bc.synced and c.peers[2].bc.synced
            assert c.peers[2].bc.role == "follower" and c.peers[2].bc.leader == 1
            leader_committed = [f["zxid"] for f in c.peers[1].events.named("txn_committed")]
            assert leader_committed[:5] == [make_zxid(6, n) for n in range(1, 6)]
            for sid in (2, 3):
                applied = [f["zxid"] for f in c.peers[sid].events.named("txn_applied")]
                assert applied[:5] == leader_committed[:5]
                logged = [z for z, _ in c.peers[sid].storage.entries_after(0)]
                assert logged[:5] == leader_committed[:5]
                assert c.peers[sid].storage.summary()[0][:2] == (6, 1)
            assert not lead.done()
        finally:
            await c.close()
        assert lead.result() == REASON_STOPPED
        # resumed from disk: the logs and epochs survive a reopen
        st = c.open_storage(2)
        try:
            assert st.current_epoch == 6 and st.last_zxid >= make_zxid(6, 5)
        finally:
            st.close()
    run(scenario())


def test_behind_follower_gets_diff(tmp_path):
    async def scenario():
        c = Cluster(tmp_path, voters=3, txn_interval_ms=0)
        history = [make_zxid(1, n) for n in range(1, 6)]
        seed(c, 1, 1, 1, history)
        seed(c, 2, 1, 1, history[:2])
        try:
            await c.start()
            c.lead(1)
            c.follow(2, 1)
            c.follow(3, 1)
            await until(lambda: all(c.peers[s].bc.synced for s in (1, 2, 3)), 20, "all synced")
            for sid in (2, 3):
                st = c.peers[sid].storage
                assert st.entries_after(0) == c.peers[1].storage.entries_after(0)
                assert st.last_committed_zxid == history[-1]
                assert st.current_epoch == 2
            (s2,) = c.peers[2].events.named("sync_finished")
            assert s2 == {"leader": 1, "mode": "diff", "from_zxid": history[1], "to_zxid": history[-1]}
            (s3,) = c.peers[3].events.named("sync_finished")
            assert s3["mode"] == "diff" and s3["from_zxid"] == 0
            assert c.peers[1].storage.last_committed_zxid == history[-1]
        finally:
            await c.close()
    run(scenario())


def test_follower_with_uncommitted_tail_gets_trunc(tmp_path):
    async def scenario():
        c = Cluster(tmp_path, voters=3, txn_interval_ms=0)
        common = [make_zxid(1, n) for n in (1, 2, 3)]
        seed(c, 1, 2, 2, common + [make_zxid(2, 1), make_zxid(2, 2)])
        seed(c, 2, 1, 1, common + [make_zxid(1, 4), make_zxid(1, 5)])  # never committed
        try:
            await c.start()
            c.lead(1)
            c.follow(2, 1)
            c.follow(3, 1)
            await until(lambda: all(c.peers[s].bc.synced for s in (1, 2, 3)), 20, "all synced")
            st2 = c.peers[2].storage
            assert [z for z, _ in st2.entries_after(0)] == common + [make_zxid(2, 1), make_zxid(2, 2)]
            (s2,) = c.peers[2].events.named("sync_finished")
            assert s2["mode"] == "trunc" and s2["from_zxid"] == common[-1]
            assert (st2.accepted_epoch, st2.current_epoch) == (3, 3)
        finally:
            await c.close()
        st = c.open_storage(2)  # the cut is on disk, not just in memory
        try:
            assert make_zxid(1, 4) not in [z for z, _ in st.entries_after(0)]
        finally:
            st.close()
    run(scenario())


def test_no_epoch_without_quorum_within_init_limit(tmp_path):
    async def scenario():
        c = Cluster(tmp_path, voters=3, tick_ms=50, init_limit=10)
        seed(c, 1, 4, 4)
        try:
            await c.start([1])
            t0 = time.monotonic()
            reason = await c.lead(1)
            elapsed = time.monotonic() - t0
            assert reason == REASON_NO_EPOCH_QUORUM
            assert 0.45 <= elapsed < 3.0  # initLimit x tickTime = 0.5 s
            st = c.peers[1].storage
            assert (st.accepted_epoch, st.current_epoch) == (4, 4)
            assert not c.peers[1].events.named("epoch_established")
            (ev,) = c.peers[1].events.named("quorum_lost")
            assert "FOLLOWERINFO" in ev["reason"]
            assert c.peers[1].bc.role is None
        finally:
            await c.close()
    run(scenario())


def test_leader_loses_quorum_when_both_followers_stop(tmp_path):
    async def scenario():
        c = Cluster(tmp_path, voters=3, tick_ms=50, sync_limit=5)
        try:
            lead = await c.start_synced(1)
            t0 = time.monotonic()
            await c.peers[2].bc.stop()
            await c.peers[3].bc.stop()
            reason = await asyncio.wait_for(lead, 5)
            assert reason == REASON_QUORUM_LOST
            assert time.monotonic() - t0 < 0.25 + 2.0  # syncLimit ticks + margin
            assert c.peers[1].events.named("quorum_lost")
            assert c.tasks[2].result() == REASON_STOPPED
        finally:
            await c.close()
    run(scenario())


def test_leader_abdicates_about_sync_limit_ticks_after_followers_go_silent(tmp_path):
    async def scenario():
        c = Cluster(tmp_path, voters=3, tick_ms=50, sync_limit=10, relays=(2, 3))
        try:
            await c.start()
            lead = c.lead(1)
            c.follow(2, 1)
            c.follow(3, 1)
            await until(lambda: c.peers[1].bc.synced and c.peers[2].bc.synced
                        and c.peers[3].bc.synced, 20, "all synced")
            await asyncio.sleep(0.2)
            t0 = time.monotonic()
            c.relays[2].pause("upstream")
            c.relays[3].pause("upstream")
            reason = await asyncio.wait_for(lead, 10)
            elapsed = time.monotonic() - t0
            assert reason == REASON_QUORUM_LOST
            assert 0.4 <= elapsed < 0.5 + 3.0  # syncLimit x tickTime = 0.5 s
            # the leader closed its sockets: the followers notice at once
            for sid in (2, 3):
                assert await asyncio.wait_for(c.tasks[sid], 5) in (REASON_LEADER_CLOSED,
                                                                   REASON_LEADER_SILENT)
        finally:
            await c.close()
    run(scenario())


def test_follower_detects_silent_leader_after_sync_limit(tmp_path):
    async def scenario():
        c = Cluster(tmp_path, voters=3, tick_ms=50, sync_limit=10, relays=(2,))
        try:
            await c.start()
            c.lead(1)
            f2 = c.follow(2, 1)
            c.follow(3, 1)
            await until(lambda: c.peers[2].bc.synced, 20, "follower 2 synced")
            t0 = time.monotonic()
            c.relays[2].pause("downstream")
            reason = await asyncio.wait_for(f2, 10)
            elapsed = time.monotonic() - t0
            assert reason == REASON_LEADER_SILENT, (elapsed, c.peers[2].events.named("leader_lost"))
            assert 0.45 <= elapsed < 0.5 + 3.0  # syncLimit x tickTime = 0.5 s
            assert c.peers[2].events.named("leader_lost")
            assert c.peers[2].bc.role is None and not c.peers[2].bc.synced
            assert not c.tasks[1].done()  # 1 and 3 still form a quorum
        finally:
            await c.close()
    run(scenario())


def test_follower_detects_closed_leader_at_once(tmp_path):
    async def scenario():
        c = Cluster(tmp_path, voters=3, tick_ms=50, sync_limit=60)  # silence would take 3 s
        try:
            await c.start()
            c.lead(1)
            c.follow(2, 1)
            c.follow(3, 1)
            await until(lambda: c.peers[2].bc.synced and c.peers[3].bc.synced, 20, "synced")
            t0 = time.monotonic()
            await c.peers[1].bc.stop()
            r2 = await asyncio.wait_for(c.tasks[2], 5)
            r3 = await asyncio.wait_for(c.tasks[3], 5)
            assert (r2, r3) == (REASON_LEADER_CLOSED, REASON_LEADER_CLOSED)
            assert time.monotonic() - t0 < 1.5
            assert c.tasks[1].result() == REASON_STOPPED
        finally:
            await c.close()
    run(scenario())


def test_observer_syncs_and_applies_but_never_counts(tmp_path):
    async def scenario():
        c = Cluster(tmp_path, voters=3, observers=1, tick_ms=50, sync_limit=5, txn_interval_ms=20)
        try:
            await c.start([1, 4])
            # leader + observer only: no voting quorum, so no epoch
            assert await c.lead(1) == REASON_NO_EPOCH_QUORUM
            assert c.peers[1].storage.current_epoch == 0
            obs = c.follow(4, 1, observer=True)
            assert await asyncio.wait_for(obs, 5) in (REASON_LEADER_CLOSED, "cannot connect to leader")

            await c.start([2])
            lead = c.lead(1)
            c.follow(2, 1)
            obs = c.follow(4, 1, observer=True)
            await until(lambda: c.peers[4].bc.synced
                        and c.peers[4].storage.last_committed_zxid >= make_zxid(1, 3),
                        20, "observer applied three txns")
            p4 = c.peers[4]
            (ev,) = p4.events.named("epoch_established")
            # epoch 1: the failed attempt proposed nothing (acceptedEpoch untouched)
            assert ev["role"] == "observer" and ev["epoch"] == p4.storage.current_epoch == 1
            assert [e for _, e, _ in p4.events].count("connection_opened") == 1
            assert p4.events.named("txn_applied")
            # the follower goes away: the observer alone cannot keep the leader
            await c.peers[2].bc.stop()
            assert await asyncio.wait_for(lead, 5) == REASON_QUORUM_LOST
            assert await asyncio.wait_for(obs, 5) == REASON_LEADER_CLOSED
        finally:
            await c.close()
    run(scenario())


def _garbage_exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        s.settimeout(5)
        try:
            return s.recv(100)
        except ConnectionResetError:
            return b""


def test_garbage_on_quorum_port_is_dropped_and_leader_keeps_serving(tmp_path):
    async def scenario():
        c = Cluster(tmp_path, voters=3, txn_interval_ms=20)
        try:
            lead = await c.start_synced(1)
            port = c.addrs[1][1]
            for junk in (b"GET / HTTP/1.1\r\n\r\n",
                         struct.pack(">i", 2) + b"\x63\x00",          # unknown type
                         struct.pack(">i", -5),                       # bad length
                         struct.pack(">i", 3) + b"\x01\x00\x00"):     # short FOLLOWERINFO
                reply = await asyncio.to_thread(_garbage_exchange, port, junk)
                assert reply == b""  # closed on us, nothing sent back
            await until(lambda: len(c.peers[1].events.named("malformed_frame")) >= 4, 5,
                        "four malformed_frame events")
            for ev in c.peers[1].events.named("malformed_frame"):
                assert ev["port"] == "quorum" and ev["reason"]
            before = c.peers[1].storage.last_committed_zxid
            await until(lambda: committed_everywhere(c, [1, 2, 3], before + 3), 10,
                        "commits continue after the garbage")
            assert not lead.done()
        finally:
            await c.close()
    run(scenario())


def test_late_learner_with_higher_accepted_epoch_aborts(tmp_path):
    async def scenario():
        c = Cluster(tmp_path, voters=3, txn_interval_ms=0)
        seed(c, 1, 4, 4)
        seed(c, 3, 9, 2)  # promised epoch 9 to someone else
        try:
            await c.start()
            c.lead(1)
            c.follow(2, 1)
            await until(lambda: c.peers[1].bc.synced, 20, "leader synced with 2")
            assert c.peers[1].storage.current_epoch == 5
            reason = await asyncio.wait_for(c.follow(3, 1), 10)
            assert reason == "leader epoch older than accepted epoch"
            st3 = c.peers[3].storage
            assert (st3.accepted_epoch, st3.current_epoch) == (9, 2)  # untouched
            assert not c.tasks[1].done()
        finally:
            await c.close()
    run(scenario())


def test_leader_gives_up_when_a_follower_is_ahead(tmp_path):
    async def scenario():
        c = Cluster(tmp_path, voters=3, txn_interval_ms=0)
        seed(c, 1, 1, 1, [make_zxid(1, 1), make_zxid(1, 2)])
        seed(c, 2, 1, 1, [make_zxid(1, n) for n in range(1, 6)])
        try:
            await c.start([1, 2])
            lead = c.lead(1)
            c.follow(2, 1)
            assert await asyncio.wait_for(lead, 10) == "follower ahead of leader"
            assert c.peers[1].storage.current_epoch == 1  # never established
            assert not c.peers[1].events.named("epoch_established")
        finally:
            await c.close()
    run(scenario())


def test_garbage_from_the_leader_ends_following_with_an_event(tmp_path):
    async def scenario():
        c = Cluster(tmp_path, voters=3)
        sent = asyncio.Event()

        async def fake_leader(r, w):
            await r.read(100)              # the FOLLOWERINFO
            w.write(b"\x00\x00\x00\x05\x63junk")
            sent.set()
            await r.read(100)
            w.close()

        server = await asyncio.start_server(fake_leader, *c.addrs[1])
        try:
            await c.start([2])
            reason = await asyncio.wait_for(c.follow(2, 1), 10)
            assert sent.is_set()
            assert reason == "malformed frame from leader"
            (ev,) = c.peers[2].events.named("malformed_frame")
            assert ev["port"] == "quorum" and ev["peer"] == 1 and "unknown message type 99" in ev["reason"]
            assert c.peers[2].storage.accepted_epoch == 0
        finally:
            server.close()
            await c.close()
    run(scenario())


def test_unknown_sid_on_quorum_port_is_rejected(tmp_path):
    async def scenario():
        c = Cluster(tmp_path, voters=3)
        try:
            await c.start([1, 2])
            lead = c.lead(1)
            r, w = await asyncio.open_connection(*c.addrs[1])
            from node.zab_core import FollowerInfo, encode
            w.write(encode(FollowerInfo(77, 100)))
            assert await asyncio.wait_for(r.read(100), 5) == b""  # closed, nothing said
            w.close()
            (ev,) = c.peers[1].events.named("handshake_rejected")
            assert "77" in ev["reason"]
            c.follow(2, 1)
            await until(lambda: c.peers[2].bc.synced, 20, "the real follower still syncs")
            assert c.peers[1].storage.accepted_epoch == 1  # sid 77's epoch 100 was not counted
            assert not lead.done()
        finally:
            await c.close()
    run(scenario())


def test_leader_that_cannot_log_stops_leading(tmp_path):
    import pytest
    from node.storage import StorageError

    async def scenario():
        c = Cluster(tmp_path, voters=3, txn_interval_ms=20)
        try:
            lead = await c.start_synced(1)

            def disk_full(zxid, payload):  # fault injection: the next fsync fails
                raise StorageError("txnlog: append failed (No space left on device)")
            c.peers[1].storage.append = disk_full
            with pytest.raises(StorageError, match="No space left"):
                await asyncio.wait_for(lead, 5)
            # its sockets closed with it: the followers notice at once
            assert await asyncio.wait_for(c.tasks[2], 5) == REASON_LEADER_CLOSED
        finally:
            await c.close()
    run(scenario())
