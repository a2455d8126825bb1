"""Seeded rounds of leader changes over the same disks: no committed txn is ever lost.

Each round starts a random voting quorum of the three peers from their dirs,
lets the peer FLE would pick (highest currentEpoch, then last zxid, then
sid) lead, commits for a random while, then stops the peers in a random
order — the leader first leaves followers with uncommitted proposals, which a
later leader without them must TRUNC away. It checks Zab's two promises the
way `chaos.invariants.no_committed_txn_lost` does, plus that logs converge.
"""
from __future__ import annotations

import asyncio
import random

import pytest

from node.storage import epoch_of, make_zxid
from zab_harness import Cluster, run, until


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_leader_changes_never_lose_a_committed_txn(tmp_path, seed):
    rng = random.Random(seed)
    committed: set[int] = set()
    epochs: list[int] = []
    modes: list[str] = []  # sync modes seen; seeds 1 and 3 drive a TRUNC on an idle machine

    async def one_round(members: list[int]) -> None:
        c = Cluster(tmp_path, voters=3, tick_ms=50, sync_limit=5, txn_interval_ms=10)
        try:
            leader = max(members, key=lambda s: (c.storage(s).current_epoch,
                                                 c.storage(s).last_zxid, s))
            await c.start(members)
            c.lead(leader)
            for s in members:
                if s != leader:
                    c.follow(s, leader)
            await until(lambda: all(c.peers[s].bc.synced for s in members), 20, "round synced")
            lead_log = {z for z, _ in c.peers[leader].storage.entries_after(0)}
            missing = committed - lead_log
            assert not missing, f"new leader {leader} lacks committed {sorted(map(hex, missing))}"
            epoch = c.peers[leader].storage.current_epoch
            assert not epochs or epoch > epochs[-1]
            epochs.append(epoch)
            await asyncio.sleep(rng.uniform(0.05, 0.4))
            order = list(members)
            rng.shuffle(order)
            for s in order:
                await c.peers[s].bc.stop()
            committed.update(f["zxid"] for f in c.peers[leader].events.named("txn_committed"))
            for s in members:
                modes.extend(f["mode"] for f in c.peers[s].events.named("sync_finished"))
            if rng.random() < 0.6:
                # the leader crashed right after logging a proposal nobody else saw
                st = c.peers[leader].storage
                st.append(max(st.last_zxid, make_zxid(epoch, 0)) + 1, b"never acked")
            for s in members:  # what a peer applied was committed by this leader
                applied = {f["zxid"] for f in c.peers[s].events.named("txn_applied")}
                assert applied <= committed
                assert all(epoch_of(z) == epoch for z in applied)
        finally:
            await c.close()

    for _ in range(7):
        run(one_round(sorted(rng.sample([1, 2, 3], rng.choice([2, 3])))))
    before_last = set(committed)
    run(one_round([1, 2, 3]))  # everyone syncs, so everyone gets every earlier commit

    async def final_logs() -> dict[int, list[int]]:
        c = Cluster(tmp_path, voters=3)
        try:
            return {s: [z for z, _ in c.storage(s).entries_after(0)] for s in (1, 2, 3)}
        finally:
            await c.close()

    logs = run(final_logs())
    assert committed, "no txn was committed at all"
    for s in (1, 2, 3):
        assert before_last <= set(logs[s]), f"peer {s} lost committed txns"
        assert logs[s] == sorted(logs[s])
    for z in committed - before_last:  # the last round's commits: on a quorum, at least
        assert sum(z in logs[s] for s in (1, 2, 3)) >= 2, f"{z:#x} committed without a quorum"
    # after the last all-member round every log is a prefix of the longest one
    longest = max(logs.values(), key=len)
    for s in (1, 2, 3):
        assert logs[s] == longest[:len(logs[s])]
