"""interposition: every connection a node dials goes to its directed link's proxy."""

from __future__ import annotations

import dataclasses

from chaos.invariants import interposition
from chaos.report.synth import JournalBuilder


def formed() -> JournalBuilder:
    b = JournalBuilder(3)
    b.rec("run_started", seed=7, command="chaos run plans/leader_kill.yaml")
    b.start()
    b.election(3, b.voters)
    return b


def listen(b: JournalBuilder, a: int, c: int, port: str) -> str:
    return next(lk.listen for lk in b.links if (lk.src, lk.dst, lk.port) == (a, c, port))


def dial(b: JournalBuilder, sid: int, peer: int, port: str, remote: str, reason: str = "dialled") -> int:
    return b.ev(sid, "connection_opened", peer=peer, port=port, direction="out", reason=reason, remote=remote)


def judge(b: JournalBuilder):
    return interposition(b.journal(finished=False, invariants=()))


def test_dials_to_the_proxies_are_valid():
    b = formed()
    dial(b, 3, 1, "election", listen(b, 3, 1, "election"))
    dial(b, 1, 3, "quorum", listen(b, 1, 3, "quorum"), reason="follower")
    b.ev(1, "connection_opened", peer=3, port="election", direction="in", reason="accepted", remote="127.0.0.1:5")
    r = judge(b)
    assert r.verdict == "valid" and r.message == "5 outgoing connection(s), each to its link's proxy"  # 3 at start


def test_a_dial_around_the_proxy_is_invalid():
    b = formed()
    dial(b, 3, 1, "election", listen(b, 3, 1, "election"))
    real = next(lk.upstream for lk in b.links if (lk.src, lk.dst, lk.port) == (3, 1, "election"))
    s = dial(b, 3, 1, "election", real, reason="dial_back")   # the address node 1 announced
    r = judge(b)
    assert r.verdict == "invalid" and r.evidence == (s,)
    assert f"node 3 dialled node 1's election port at {real}, not at the proxy of link 3→1" in r.message


def test_a_dial_to_another_links_proxy_is_invalid():
    b = formed()
    dial(b, 3, 1, "quorum", listen(b, 3, 2, "quorum"))
    assert judge(b).verdict == "invalid"


def test_without_remote_addresses_there_is_nothing_to_judge():
    b = formed()
    b.records = [r for r in b.records if getattr(r, "event", None) != "connection_opened"]
    b.ev(3, "connection_opened", peer=1, port="election", direction="out", reason="dialled")
    assert judge(b).verdict == "unknown"


def test_netns_interposition_is_not_judged_here():
    b = formed()
    b.run = dataclasses.replace(b.run, extra={"links": {"mode": "netns", "subnet": "198.18.3.0/24"}})
    dial(b, 3, 1, "election", "198.18.0.1:2888")
    r = judge(b)
    assert r.verdict == "valid" and "not applicable" in r.message


def test_a_simulated_run_has_no_proxies_to_bypass():
    b = formed()
    b.run = dataclasses.replace(b.run, simulated=True)
    b.records = [r for r in b.records if getattr(r, "event", None) != "connection_opened"]
    r = judge(b)
    assert r.verdict == "valid" and "not applicable" in r.message
