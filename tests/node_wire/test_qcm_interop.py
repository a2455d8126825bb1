"""Our QuorumCnxManager and codec against a real ZooKeeper 3.8 peer (Debian package).

Two managers play sids 1 and 3 around a real sid 2: ZooKeeper dials sid 1
(V1 handshake, version-2 notifications), and sid 3's dial-back reaches
ZooKeeper with our handshake (V1 or the 3.4 bare sid). We then vote for
ZooKeeper and check it became LEADING on our votes and answers us as a leader.
Skipped when the zookeeper package or java is missing.
"""
from __future__ import annotations

import asyncio
import importlib.util
import time
from pathlib import Path

import pytest

from chaos.ports import reserve_ports
from node.codec import decode_notification, encode_notification
from node.qcm import QuorumCnxManager
from zkrules.vote import ServerState

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

_spec = importlib.util.spec_from_file_location(
    "_zk_interop_helpers", Path(__file__).resolve().parents[1] / "interop" / "conftest.py")
zkh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(zkh)

HOST = "127.0.0.1"
JVM_TIMEOUT = 90


@pytest.mark.parametrize("our_protocol", ["3.8", "3.4"])
def test_real_zookeeper_elected_on_our_votes(tmp_path, our_protocol):
    if not zkh.zookeeper_available():
        pytest.skip("zookeeper.jar or java missing (Debian package zookeeper)")
    with reserve_ports(9) as res:
        client = {s: res.ports[3 * (s - 1)] for s in (1, 2, 3)}
        quorum = {s: res.ports[3 * (s - 1) + 1] for s in (1, 2, 3)}
        election = {s: res.ports[3 * (s - 1) + 2] for s in (1, 2, 3)}
        cfg = "\n".join([
            "tickTime=200", "initLimit=10", "syncLimit=5", f"dataDir={tmp_path / 'zk'}",
            f"clientPort={client[2]}", f"clientPortAddress={HOST}", "admin.enableServer=false",
            *(f"server.{s}={HOST}:{quorum[s]}:{election[s]}" for s in (1, 2, 3)), ""])
        zk = zkh.RealZooKeeper(tmp_path / "zk", cfg, 2)
        peers = {s: (HOST, election[s]) for s in (1, 2, 3)}
        got: dict[int, list] = {1: [], 3: []}
        events: dict[int, list] = {1: [], 3: []}
        protocols = {1: "3.8", 3: our_protocol}

        def manager(sid: int) -> QuorumCnxManager:
            def on_message(frm: int, payload: bytes) -> None:
                got[sid].append(decode_notification(payload, frm, protocol=protocols[sid]))
            return QuorumCnxManager(sid, peers, protocol=protocols[sid], handshake_timeout_ms=2000,
                                    on_message=on_message,
                                    emit=lambda e, f, sid=sid: events[sid].append((e, f)))

        async def until(pred, timeout, what):
            deadline = time.monotonic() + timeout
            while not pred():
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out waiting for {what}; zk.log tail:\n"
                                         + zk_log()[-3000:])
                await asyncio.sleep(0.05)

        def zk_log() -> str:
            return zk.log.read_text(errors="replace") if zk.log.exists() else ""

        async def main():
            ours = {1: manager(1), 3: manager(3)}
            for m in ours.values():
                await m.start()
            zk.start()
            try:
                await until(lambda: any(n.sid == 2 for n in got[1]) and any(n.sid == 2 for n in got[3]),
                            JVM_TIMEOUT, "ZooKeeper's first notifications")
                first = next(n for n in got[1] if n.sid == 2)
                assert (first.state, first.leader, first.version) == (ServerState.LOOKING, 2, 2)
                assert f"server.2={HOST}:{quorum[2]}:{election[2]}:participant" in first.config
                assert first.config.rstrip().endswith("version=0")
                if our_protocol == "3.4":  # a 3.4.6 receiver reads the v2 message, config ignored
                    n3 = next(n for n in got[3] if n.sid == 2)
                    assert (n3.version, n3.config) == (2, None)
                # ZooKeeper dialled 1 (2 > 1); 3 hung up on ZooKeeper's dial and dialled back.
                assert [f["direction"] for e, f in events[1] if e == "connection_opened"][:1] == ["in"]
                assert ("connection_opened", {"peer": 2, "port": "election", "direction": "out",
                                              "reason": "dial_back"}) in [
                    (e, {k: v for k, v in f.items() if k != "remote"}) for e, f in events[3]]
                # Vote for ZooKeeper in its round: a quorum of {1, 2, 3} for leader 2.
                rnd, epoch = first.round, first.peer_epoch
                for sid, m in ours.items():
                    m.to_send(2, encode_notification(ServerState.LOOKING, 2, first.zxid, rnd, epoch,
                                                     protocol=protocols[sid]))
                await until(lambda: "Peer state changed: leading" in zk_log(), 30,
                            "ZooKeeper to lead on our votes")
                # A LOOKING message to a leader is answered with its LEADING vote.
                n_before = len(got[3])
                ours[3].to_send(2, encode_notification(ServerState.LOOKING, 3, 0, rnd, 0,
                                                       protocol=our_protocol))
                await until(lambda: any(n.sid == 2 and n.state == ServerState.LEADING
                                        for n in got[3][n_before:]) or any(
                                            n.sid == 2 and n.state == ServerState.LEADING for n in got[1]),
                            15, "a LEADING reply")
                # ZooKeeper's own log shows it parsed our frames in the expected format:
                # v2 from sid 1; from sid 3 v2, or a 40-byte 3.4.6 message read as version 0.
                log = zk_log()
                assert "n.sid:1, n.state:LOOKING, n.leader:2" in log
                fmt3 = "0x2" if our_protocol == "3.8" else "0x0"
                assert any("n.sid:3, n.state:LOOKING" in line
                           and f"message format version:{fmt3}," in line for line in log.splitlines())
                assert "InitialMessageException" not in log and "short response" not in log
                assert not [e for sid in (1, 3) for e, _ in events[sid] if e == "malformed_frame"]
            finally:
                zk.stop()
                for m in ours.values():
                    await m.stop()

        asyncio.run(main())
