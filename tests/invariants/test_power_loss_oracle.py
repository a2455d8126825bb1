"""no_committed_txn_lost after power cuts (``unsynced_lost``): it flags a committed
txn a quorum lost with its page cache, names the cut nodes, and lets an
uncommitted txn go."""
from __future__ import annotations

from chaos.invariants import no_committed_txn_lost
from chaos.records import Journal
from chaos.report.synth import JournalBuilder


def journal(b: JournalBuilder) -> Journal:
    return b.journal(finished=True, invariants=())


def formed() -> JournalBuilder:
    b = JournalBuilder(3)
    b.rec("run_started", seed=7, command="chaos run plans/power_loss_quorum.yaml")
    b.start()
    b.election(3, b.voters)
    return b


def cut(b: JournalBuilder, sids: list[int], keep: dict[int, int]) -> list[int]:
    """Power loss of ``sids`` (killed, then their caches dropped); ``keep``: the
    zxid each node's disk still holds (0: nothing of the epoch's txns)."""
    b.advance(0.5)
    for s in sids:
        b.fault("requested", f"w{s}", "power_loss", {"sid": s, "at_once": sids})
        b.kill(s)
        b.fault("effective", f"w{s}", "power_loss", {"sid": s, "at_once": sids})
    seqs = [b.rec("unsynced_lost", sid=s, files=[{"path": "/txnlog", "size": 900, "durable_size": 8,
                                                  "dropped_bytes": 900}], dropped_bytes=900) for s in sids]
    for s in sids:
        b.zxid[s] = keep[s]
        b.log[s] = {} if keep[s] == 0 else {keep[s] >> 32: [1, keep[s] & 0xFFFFFFFF]}
    for s in sids:
        b.process(s, "started")
    b.advance(0.5)
    return seqs


def test_a_committed_txn_lost_by_the_whole_ensemble_is_invalid_naming_the_cut():
    b = formed()
    b.commit(3, [1, 2])
    z, seq = b.commit(3, [1, 2])                  # acked by a quorum, so promised to be on disk
    lost = cut(b, [1, 2, 3], {1: 0, 2: 0, 3: 0})  # nobody had fsync'ed it
    e = b.election(3, [1, 2, 3])
    r = no_committed_txn_lost(journal(b))
    assert r.verdict == "invalid"
    assert f"behind committed txn {z:#x}" in r.message and "node(s) 1, 2, 3" in r.message
    assert r.evidence == (seq, *lost, e["established"][3])


def test_the_final_log_check_names_the_cut_too():
    b = formed()
    z1, s1 = b.commit(3, [1, 2])
    b.commit(3, [1, 2])
    e = b.election(3, [1, 2, 3])                  # a leader change after both commits
    lost = cut(b, [1, 2], {1: 0, 2: 0})           # then the followers lose their logs
    b.log[3] = {}                                 # and the leader's log is gone at the end
    sums = b.log_summaries()
    r = no_committed_txn_lost(journal(b))
    assert r.verdict == "invalid" and "missing from its txn log" in r.message
    assert "node(s) 1, 2" in r.message
    assert r.evidence == (s1, *lost, e["established"][3], sums[3])


def test_an_uncommitted_txn_may_be_lost():
    b = formed()
    z, _ = b.commit(3, [1, 2])
    b.zxid[3] = z + 1                             # proposed, logged by the leader, never committed
    cut(b, [1, 2, 3], {1: z, 2: z, 3: z})         # the disks keep what was acked
    b.election(3, [1, 2, 3])
    b.log_summaries()
    r = no_committed_txn_lost(journal(b))
    assert r.verdict == "valid", r.message


def test_a_cut_that_keeps_every_acked_txn_is_valid():
    b = formed()
    b.commit(3, [1, 2])
    z, _ = b.commit(3, [1, 2])
    cut(b, [1, 2, 3], {1: z, 2: z, 3: z})
    b.election(2, [1, 2, 3])
    b.log_summaries()
    assert no_committed_txn_lost(journal(b)).verdict == "valid"
