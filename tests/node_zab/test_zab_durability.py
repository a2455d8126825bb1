"""Nothing acknowledged is lost: SIGKILL a real writer process, and restart an ensemble."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from node.storage import Storage, make_zxid
from zab_harness import Cluster, run, until

_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from node.storage import Storage, make_zxid
    s = Storage(Path(sys.argv[1]))
    s.set_accepted_epoch(1); s.set_current_epoch(1)
    c = s.last_zxid & 0xffffffff
    while True:
        c += 1
        z = make_zxid(1, c)
        s.append(z, b"p" * (c % 300))
        if c % 7 == 0:
            s.mark_committed(z)
        print(z, flush=True)   # the "ack": only after append returned (fsync)
""")


def test_sigkill_during_appends_loses_no_acknowledged_txn(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    acked: list[int] = []
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], cwd=repo,
                                stdout=subprocess.PIPE, text=True)
        try:
            for _ in range(40 + 25 * round_):
                line = proc.stdout.readline()
                assert line, "writer died early"
                acked.append(int(line))
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            proc.stdout.close()
        events: list = []
        s = Storage(tmp_path, emit=lambda e, f: events.append((e, f)))
        try:
            logged = [z for z, _ in s.entries_after(0)]
            assert set(acked) <= set(logged), f"round {round_}: acknowledged txns missing"
            assert logged == sorted(logged)
            assert s.last_committed_zxid <= s.last_zxid
            assert all(e == "log_truncated" for e, _ in events)  # a torn tail is the only repair
        finally:
            s.close()


def test_restarted_ensemble_resumes_from_disk_with_a_higher_epoch(tmp_path):
    async def first():
        c = Cluster(tmp_path, voters=3, txn_interval_ms=20)
        try:
            await c.start()
            c.lead(1)
            c.follow(2, 1)
            c.follow(3, 1)
            await until(lambda: all(c.peers[s].storage.last_committed_zxid >= make_zxid(1, 4)
                                    for s in (1, 2, 3)), 20, "four commits")
        finally:
            await c.close()
        return {sid: p.storage.last_committed_zxid for sid, p in c.peers.items()}

    committed = run(first())

    async def second():
        c = Cluster(tmp_path, voters=3, txn_interval_ms=20)
        try:
            for sid in (1, 2, 3):  # reopened from the same dirs
                st = c.storage(sid)
                assert (st.accepted_epoch, st.current_epoch) == (1, 1)
                assert st.last_committed_zxid == committed[sid]
            # as FLE would: the peer with the highest last zxid leads
            leader = max((1, 2, 3), key=lambda sid: (c.storage(sid).last_zxid, sid))
            await c.start()
            c.lead(leader)
            for sid in {1, 2, 3} - {leader}:
                c.follow(sid, leader)
            await until(lambda: all(c.peers[s].storage.last_committed_zxid >= make_zxid(2, 2)
                                    for s in (1, 2, 3)), 20, "two commits in epoch 2")
            top = max(committed.values())
            for sid in (1, 2, 3):
                st = c.peers[sid].storage
                logged = [z for z, _ in st.entries_after(0)]
                assert all(z in logged for z in range(make_zxid(1, 1), top + 1))
                assert st.current_epoch == 2
                assert make_zxid(2, 1) in logged  # the counter restarts at 1 in a new epoch
        finally:
            await c.close()

    run(second())
