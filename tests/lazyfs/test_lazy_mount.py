"""The lazy filesystem mounted for real (FUSE): what survives a power cut, and no mount outlives its owner."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from chaos import lazyfs, procs

ROOT = Path(__file__).resolve().parents[2]
MISSING = lazyfs.missing_requirements()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


@pytest.fixture
def disk(tmp_path):
    """A lazy mount over tmp/data/version-2, owned by a registered (live) run id."""
    run_id = uuid.uuid4().hex[:8]
    registry = procs.RunRegistry(run_id, tmp_path)
    d = lazyfs.LazyDisk(tmp_path / "data" / "version-2", run_id, "t", log_path=tmp_path / "lazyfs.log",
                        registry=registry)
    d.mount()
    try:
        yield d
    finally:
        d.unmount()
        registry.close()
        assert not lazyfs.is_mounted(d.directory)


def _in_child(code: str, data_dir: Path) -> None:
    """Run ``code`` (with ``st = Storage(data_dir)``) in a process that is then SIGKILLed:
    whatever it did not fsync is in the lazy page cache only."""
    script = textwrap.dedent("""\
        import sys, time
        from pathlib import Path
        from node.storage import Storage
        st = Storage(Path(sys.argv[1]))
    """) + textwrap.dedent(code) + "\nprint('done', flush=True)\ntime.sleep(60)\n"
    p = subprocess.Popen([sys.executable, "-c", script, str(data_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                         env=procs.python_env(ROOT), text=True)
    try:
        assert p.stdout.readline().strip() == "done"
    finally:
        p.kill()
        p.wait()


def test_write_without_fsync_is_lost_with_fsync_kept(disk):
    d = disk.directory
    with open(d / "lost", "wb") as f:
        f.write(b"acked but only flushed")
        f.flush()
    with open(d / "kept", "wb") as f:
        f.write(b"fsynced")
        f.flush()
        os.fsync(f.fileno())
        f.write(b" then more")
    assert (d / "lost").read_bytes() == b"acked but only flushed"   # the page cache serves it
    reply = disk.lose()
    assert {f["path"] for f in reply["files"]} == {"/lost", "/kept"}
    assert (d / "lost").read_bytes() == b""          # created (names are durable), contents gone
    assert (d / "kept").read_bytes() == b"fsynced"


def test_fdatasync_and_sync_of_the_whole_disk_count(disk):
    d = disk.directory
    with open(d / "a", "wb") as f:
        f.write(b"data")
        f.flush()
        os.fdatasync(f.fileno())
    (d / "b").write_bytes(b"bee")
    disk.sync()                                       # the whole filesystem's sync
    assert disk.lose()["files"] == []
    assert (d / "a").read_bytes() == b"data" and (d / "b").read_bytes() == b"bee"


def test_node_storage_keeps_every_acked_txn(disk):
    data = disk.directory.parent
    _in_child("""\
        st.set_accepted_epoch(1); st.set_current_epoch(1)
        for c in range(1, 6):
            st.append((1 << 32) | c, b"p%d" % c)
        st.mark_committed((1 << 32) | 5)
    """, data)
    lost = disk.lose()
    assert [f["path"] for f in lost["files"]] == ["/txnlog"]   # only the commit mark was unsynced
    from node.storage import Storage
    st = Storage(data)
    assert st.zxids() == [(1 << 32) | c for c in range(1, 6)]
    assert (st.accepted_epoch, st.current_epoch) == (1, 1)
    assert st.last_committed_zxid == 0                        # the mark went with the power
    st.close()


def test_storage_truncate_survives_and_an_unsynced_tail_does_not(disk):
    data = disk.directory.parent
    _in_child("""\
        st.set_accepted_epoch(1); st.set_current_epoch(1)
        for c in range(1, 6):
            st.append((1 << 32) | c, b"x")
        st.truncate_after((1 << 32) | 3)
        st._file.write(b"torn tail, flushed, never fsync'ed")
        st._file.flush()
    """, data)
    (log,) = disk.lose()["files"]
    assert log["path"] == "/txnlog" and log["durable_size"] < log["size"]
    assert (disk.directory / "txnlog").stat().st_size == log["durable_size"]   # the tail is gone
    from node.storage import Storage
    st = Storage(data)
    assert st.zxids() == [(1 << 32) | c for c in range(1, 4)]
    st.close()


def test_an_unsynced_truncate_is_undone(disk):
    d = disk.directory
    with open(d / "log", "wb") as f:
        f.write(b"0123456789")
        f.flush()
        os.fsync(f.fileno())
        f.truncate(4)
    assert (d / "log").stat().st_size == 4
    disk.lose()
    assert (d / "log").read_bytes() == b"0123456789"


def test_rename_of_an_fsynced_file_survives(disk):
    d = disk.directory
    with open(d / "currentEpoch.tmp", "wb") as f:
        f.write(b"7")
        f.flush()
        os.fsync(f.fileno())
    os.replace(d / "currentEpoch.tmp", d / "currentEpoch")
    disk.lose()
    assert (d / "currentEpoch").read_bytes() == b"7" and not (d / "currentEpoch.tmp").exists()


def test_clean_unmount_writes_the_cache_back(tmp_path):
    run_id = uuid.uuid4().hex[:8]
    registry = procs.RunRegistry(run_id, tmp_path)
    d = lazyfs.LazyDisk(tmp_path / "v2", run_id, "t", registry=registry)
    d.mount()
    try:
        (tmp_path / "v2" / "f").write_bytes(b"never fsync'ed")
    finally:
        d.unmount()
        registry.close()
    assert not lazyfs.is_mounted(tmp_path / "v2")
    assert (tmp_path / "v2" / "f").read_bytes() == b"never fsync'ed"   # the disk itself, unmounted


def test_mount_goes_with_its_daemon(tmp_path):
    run_id = uuid.uuid4().hex[:8]
    registry = procs.RunRegistry(run_id, tmp_path)
    d = lazyfs.LazyDisk(tmp_path / "v2", run_id, "t", registry=registry)
    d.mount()
    try:
        os.kill(d.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while lazyfs.is_mounted(tmp_path / "v2") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not lazyfs.is_mounted(tmp_path / "v2")
    finally:
        d.unmount(sync=False)
        registry.close()


ORCHESTRATOR = """\
import subprocess, sys, time
from chaos import lazyfs
d = lazyfs.LazyDisk(sys.argv[1], sys.argv[2], "t", log_path=sys.argv[4])
d.mount()
w = subprocess.Popen([sys.executable, "-c", sys.argv[3], sys.argv[1]])
print(d.proc.pid, w.pid, flush=True)
time.sleep(120)
"""

WRITER = """\
import os, sys
f = open(os.path.join(sys.argv[1], "log"), "wb")
while True:
    f.write(b"x" * 512); f.flush(); os.fsync(f.fileno())
"""


def _clean_up(pids: list[int | None], mountpoint: Path, registry: procs.RunRegistry) -> None:
    """Whatever a failed assertion left: the processes, the mount, the run's registration."""
    for pid in pids:
        if pid is not None and procs.alive(pid):
            procs.kill_tree(pid)
    if lazyfs.is_mounted(mountpoint):
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)])
    registry.close()


def _wait_unmounted(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while lazyfs.is_mounted(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not lazyfs.is_mounted(path)


def test_a_killed_orchestrator_takes_the_mount_along_while_a_node_writes(tmp_path):
    """SIGKILL of the run with a node fsyncing into the mount: a daemon SIGKILLed by
    PDEATHSIG left the mount behind now and then (auto_unmount wants ENOTCONN, the
    in-flight fsync got ECONNABORTED, about once in twenty here); on SIGTERM libfuse
    unmounts itself, and says so in the daemon's log, whether or not the race came up."""
    run_id = uuid.uuid4().hex[:8]
    registry = procs.RunRegistry(run_id, tmp_path)     # live: no concurrent janitor unmounts it first
    log = tmp_path / "lazyfs.log"
    orch = subprocess.Popen([sys.executable, "-c", ORCHESTRATOR, str(tmp_path / "v2"), run_id, WRITER, str(log)],
                            cwd=ROOT, env=procs.python_env(ROOT), stdout=subprocess.PIPE, text=True)
    daemon = writer = None
    try:
        daemon, writer = (int(x) for x in orch.stdout.readline().split())
        time.sleep(0.3)                        # the node is mid-fsync most of the time
        orch.kill()
        orch.wait()
        assert _wait_unmounted(tmp_path / "v2", 15)
        assert procs.wait_gone([daemon], 15) == []
        assert "ended by a signal" in log.read_text()      # libfuse's own unmount, not the helper's
    finally:
        _clean_up([writer, daemon], tmp_path / "v2", registry)


def test_a_daemon_whose_parent_dies_unnoticed_still_ends_and_unmounts(tmp_path):
    """No PDEATHSIG at all (the parent died before it was armed, or another
    spawner): the daemon's own watchdog sees the parent gone and leaves."""
    (tmp_path / "v2").mkdir()
    control = uuid.uuid4().hex[:8]
    registry = procs.RunRegistry(control, tmp_path)
    middle = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         "p = subprocess.Popen([sys.executable, '-m', 'chaos.lazyfs', sys.argv[1], '--control', sys.argv[2],"
         " '--fsname', 'chaos-lazyfs:' + sys.argv[2], '--parent-pid', str(__import__('os').getpid())])\n"
         "print(p.pid, flush=True); time.sleep(120)\n",
         str(tmp_path / "v2"), control],
        cwd=ROOT, env=procs.python_env(ROOT), stdout=subprocess.PIPE, text=True)
    daemon = None
    try:
        daemon = int(middle.stdout.readline())
        deadline = time.monotonic() + 10
        while not lazyfs.is_mounted(tmp_path / "v2") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lazyfs.is_mounted(tmp_path / "v2")
        middle.kill()
        middle.wait()
        assert procs.wait_gone([daemon], 20) == []
        assert _wait_unmounted(tmp_path / "v2", 5)
    finally:
        _clean_up([daemon], tmp_path / "v2", registry)


def test_janitor_unmounts_a_dead_runs_mount_only(tmp_path):
    live_id, dead_id = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    registry = procs.RunRegistry(live_id, tmp_path)
    live = lazyfs.LazyDisk(tmp_path / "live", live_id, "a", registry=registry)
    dead = lazyfs.LazyDisk(tmp_path / "dead", dead_id, "b", registry=registry)
    live.mount()
    dead.mount()
    try:
        gone = lazyfs.janitor(procs.live_run_ids())
        # (a concurrent run's janitor may have taken the dead one first: both are fine)
        assert str(tmp_path / "live") not in gone
        assert lazyfs.is_mounted(tmp_path / "live") and not lazyfs.is_mounted(tmp_path / "dead")
    finally:
        dead.unmount(sync=False)
        live.unmount()
        registry.close()


def test_mountinfo_parsing_finds_ours_with_escapes():
    info = ("36 35 98:0 / / rw - ext4 /dev/vda rw\n"
            "43 27 0:39 / /tmp/a\\040b/version-2 rw,nosuid - fuse.chaos-lazyfs chaos-lazyfs:1a2b3c4d rw\n"
            "44 27 0:40 / /mnt/other rw - fuse.sshfs host:/x rw\n")
    assert lazyfs.mounts(info) == [("/tmp/a b/version-2", "chaos-lazyfs:1a2b3c4d")]
