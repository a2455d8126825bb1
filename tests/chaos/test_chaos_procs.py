"""Process handling: PDEATHSIG, trees, the janitor. Stand-in children only here
(unit level); the real node is exercised by the run tests."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from chaos import procs

from chaoshelp import ROOT, chaos_env

STANDIN = str(Path(__file__).with_name("standin_child.py"))


def _gone(pid: int, timeout: float = 10.0) -> bool:
    return not procs.wait_gone([pid], timeout)


def test_spawn_sets_own_session_and_terminate_ends_it(tmp_path):
    log = tmp_path / "c.log"
    p = procs.spawn([sys.executable, STANDIN, "sleep"], log_path=log)
    try:
        assert os.getsid(p.pid) == p.pid  # its own session: a terminal ^C reaches only us
        assert procs.alive(p.pid)
    finally:
        code = procs.terminate(p, timeout=5)
    assert code == -signal.SIGTERM
    assert not procs.alive(p.pid)


def test_terminate_ends_a_stopped_process(tmp_path):
    p = procs.spawn([sys.executable, STANDIN, "sleep"])
    os.kill(p.pid, signal.SIGSTOP)
    assert procs.terminate(p, timeout=5) is not None
    assert not procs.alive(p.pid)


def test_grandchild_dies_with_its_sigkilled_parent(tmp_path):
    """PR_SET_PDEATHSIG: no Python runs in a SIGKILLed parent, yet its child dies."""
    parent = subprocess.Popen([sys.executable, STANDIN, "spawn-grandchild", "marker"],
                              stdout=subprocess.PIPE, text=True, env=chaos_env(), cwd=ROOT)
    try:
        gpid = int(parent.stdout.readline())
        assert procs.alive(gpid)
        parent.kill()
        parent.wait(5)
        assert _gone(gpid), "grandchild outlived its SIGKILLed parent"
    finally:
        parent.kill()
        parent.wait(5)


def test_spawn_refuses_other_threads():
    import threading
    errors = []

    def go():
        try:
            procs.spawn([sys.executable, STANDIN, "sleep"])
        except RuntimeError as e:
            errors.append(e)

    t = threading.Thread(target=go)
    t.start()
    t.join()
    assert errors and "main thread" in str(errors[0])


def test_kill_tree_kills_descendants():
    p = procs.spawn([sys.executable, "-c",
                     "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); time.sleep(60)"])
    deadline = time.time() + 10
    kids = []
    while time.time() < deadline and not kids:
        kids = psutil.Process(p.pid).children(recursive=True)
        time.sleep(0.05)
    assert kids
    procs.kill_tree(p.pid)
    assert _gone(p.pid) and all(_gone(k.pid) for k in kids)


def _fake_dead_run(directory: Path, run_dir: Path, children: list[psutil.Process]) -> Path:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    data = {"run_id": "deadbeef", "run_dir": str(run_dir), "pid": dead.pid, "create_time": 1.0,
            "children": [{"pid": c.pid, "create_time": c.create_time(), "name": "x"} for c in children]}
    f = directory / "deadbeef.json"
    f.write_text(json.dumps(data))
    return f


def test_janitor_kills_children_of_dead_runs_only_when_cmdline_matches(tmp_path):
    registry = tmp_path / "registry"
    registry.mkdir()
    run_dir = tmp_path / "deadrun"
    run_dir.mkdir()
    ours = procs.spawn([sys.executable, STANDIN, "sleep", str(run_dir)])
    stranger = procs.spawn([sys.executable, STANDIN, "sleep", "somebody-else"])
    try:
        f = _fake_dead_run(registry, run_dir, [ours, stranger])
        done = procs.janitor(directory=registry)
        assert done["killed"] == [ours.pid]
        assert _gone(ours.pid)
        assert procs.alive(stranger.pid)  # pid reuse guard: cmdline no longer ours
        assert not f.exists()
    finally:
        procs.terminate(ours)
        procs.terminate(stranger)


def test_janitor_leaves_live_runs_alone(tmp_path):
    registry = tmp_path / "registry"
    child = procs.spawn([sys.executable, STANDIN, "sleep", str(tmp_path)])
    try:
        reg = procs.RunRegistry("live0001", tmp_path, directory=registry)
        reg.add(child.pid, "x")
        done = procs.janitor(directory=registry)
        assert done["killed"] == [] and procs.alive(child.pid)
        reg.close()
        assert not reg.path.exists()
    finally:
        procs.terminate(child)


class _FakeProxyList:
    """Only the listing/deleting surface; real Toxiproxy is used in test_links."""

    def __init__(self, names):
        self.names = list(names)

    def list_proxies(self):
        return [type("P", (), {"name": n})() for n in self.names]

    def delete_proxy(self, name):
        self.names.remove(name)


def test_janitor_deletes_stale_prefixed_proxies_but_not_live_or_foreign(tmp_path):
    registry = tmp_path / "registry"
    reg = procs.RunRegistry("live0002", tmp_path, directory=registry)
    try:
        client = _FakeProxyList(["fle_dead0001_1to2_election", "fle_live0002_1to2_election", "redis"])
        done = procs.janitor(directory=registry, toxiproxy_client=client)
        assert done["proxies_deleted"] == ["fle_dead0001_1to2_election"]
        assert client.names == ["fle_live0002_1to2_election", "redis"]
    finally:
        reg.close()


def test_python_env_caches_byte_code_outside_the_tree():
    base = {"PYTHONPATH": "/elsewhere", "PYTHONDONTWRITEBYTECODE": "1", "KEEP": "x"}
    env = procs.python_env("/project", base)
    assert env["PYTHONPATH"] == os.pathsep.join(["/project", "/elsewhere"])
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert env["PYTHONPYCACHEPREFIX"] == str(procs.PYCACHE_DIR)
    assert env["KEEP"] == "x" and base["PYTHONDONTWRITEBYTECODE"] == "1"
    # A prefix the caller chose is kept.
    assert procs.python_env("/p", {"PYTHONPYCACHEPREFIX": "/mine"})["PYTHONPYCACHEPREFIX"] == "/mine"
    assert procs.python_env("/p", {})["PYTHONPATH"] == "/p"


def test_preexec_moves_the_child_and_its_autogroup_on_the_priority_scale():
    base = os.getpriority(os.PRIO_PROCESS, 0)
    for nice in (3, -2):
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             preexec_fn=procs.pdeathsig_preexec(os.getpid(), nice))
        try:
            got = os.getpriority(os.PRIO_PROCESS, p.pid)
            group = Path(f"/proc/{p.pid}/autogroup")
            if nice > 0 or os.geteuid() == 0:   # raising needs CAP_SYS_NICE; else left alone
                assert got == base + nice
                if group.exists():
                    assert group.read_text().split()[-1] == str(nice)
            else:
                assert got == base
        finally:
            p.kill()
            p.wait()


def test_a_node_spawned_without_preexec_arms_its_own_death_signal(tmp_path):
    """FleTarget spawns nodes with child_sets_pdeathsig: `--parent-pid` of the real
    parent makes the node arm PR_SET_PDEATHSIG itself, so a SIGKILLed parent
    takes it down at once (no node_stopping: the watchdog never ran)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "myid").write_text("1\n")
    from chaos.ports import reserve_ports
    with reserve_ports(3) as res:
        c, q, e = res.ports
        cfg = tmp_path / "zoo.cfg"
        cfg.write_text(f"tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={data}\nclientPort={c}\n"
                       f"clientPortAddress=127.0.0.1\nserver.1=127.0.0.1:{q}:{e}\n")
        parent = subprocess.Popen(
            [sys.executable, "-c",
             "import sys, time; from chaos import procs; "
             "p = procs.spawn([sys.executable, '-m', 'node', '--config', sys.argv[1], '--parent-pid', "
             "str(__import__('os').getpid())], child_sets_pdeathsig=True); print(p.pid, flush=True); time.sleep(60)",
             str(cfg)], stdout=subprocess.PIPE, text=True, env=chaos_env(), cwd=ROOT)
        try:
            node = int(parent.stdout.readline())
            deadline = time.monotonic() + 20
            events = data / "events.jsonl"
            while time.monotonic() < deadline and "node_started" not in (events.read_text() if events.exists() else ""):
                time.sleep(0.05)
            assert "node_started" in events.read_text()
            parent.kill()
            parent.wait(5)
            assert _gone(node, 5)
            assert "node_stopping" not in events.read_text()   # SIGKILLed by the kernel, not the watchdog
        finally:
            if parent.poll() is None:
                parent.kill()
                parent.wait(5)
