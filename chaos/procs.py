"""Child processes that cannot outlive the run that started them.

Three layers make sure of it, because each one alone has a hole:

* ``PR_SET_PDEATHSIG`` (set in the child between fork and exec, or by a
  node itself first thing after exec) makes the kernel SIGKILL the child
  when the thread that forked it dies. It fires on a SIGKILL of the
  orchestrator, where no Python code runs. Caveat: it is tied to the
  *thread*, so children are spawned from the main thread only.
* the node's own ``--parent-pid`` watchdog (it polls; covers a child that
  raced the parent's death before prctl ran).
* a run registry under ``$TMPDIR/fle-chaos-runs``: one file per live run
  naming the orchestrator (pid + start time) and every child it spawned. The
  :func:`janitor` of a later run ends children of runs whose orchestrator is
  gone, after checking each child's start time and cmdline, so a recycled pid
  is never killed.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import psutil

__all__ = [
    "PR_SET_PDEATHSIG",
    "pdeathsig_preexec",
    "set_priority",
    "RunRegistry",
    "spawn",
    "signal_tree",
    "kill_tree",
    "terminate",
    "janitor",
    "REGISTRY_DIR",
    "PYCACHE_DIR",
    "python_env",
    "alive",
    "live_run_ids",
]

PR_SET_PDEATHSIG = 1
REGISTRY_DIR = Path(tempfile.gettempdir()) / "fle-chaos-runs"
PYCACHE_DIR = Path(tempfile.gettempdir()) / "fle-chaos-pycache"

_libc = None


def set_priority(nice: int) -> None:
    """Move the calling process ``nice`` steps down (> 0) or, where the
    process may (CAP_SYS_NICE), up (< 0) the CPU priority scale.

    Both knobs, because either may be the one the scheduler uses: the
    process's own nice value, and — after ``setsid()`` the process leads a
    new session, which Linux's autogroup scheduling (sched_autogroup_enabled)
    makes a scheduling group of its own, where the plain nice value only
    ranks threads inside the group — the group's nice in
    ``/proc/self/autogroup``. Missing or refused knobs are skipped."""
    if nice == 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + nice)
    except OSError:
        pass
    try:
        with open("/proc/self/autogroup", "w") as fh:
            fh.write(str(nice))
    except OSError:
        pass


def pdeathsig_preexec(parent_pid: int, nice: int = 0, sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A preexec_fn: own session (a terminal Ctrl-C reaches only the
    orchestrator, which then ends children in order), ``sig`` on the
    spawning thread's death, and ``nice`` (see :func:`set_priority`)."""

    def preexec() -> None:
        os.setsid()
        set_priority(nice)
        global _libc
        if _libc is None:
            _libc = ctypes.CDLL("libc.so.6", use_errno=True)
        _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        # The parent may have died between fork and prctl: then nothing
        # would ever fire, so leave now.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def spawn(argv: Sequence[str], *, cwd: str | os.PathLike[str] | None = None,
          log_path: str | os.PathLike[str] | None = None,
          env: dict[str, str] | None = None,
          registry: "RunRegistry | None" = None, name: str | None = None,
          child_sets_pdeathsig: bool = False, pdeathsig: int = signal.SIGKILL) -> psutil.Popen:
    """Start ``argv`` in its own session with PDEATHSIG=``pdeathsig`` (SIGKILL
    unless the child must end itself in order, as a FUSE daemon must unmount).

    stdout and stderr go (appended) to ``log_path`` or /dev/null. Must be
    called from the thread that lives as long as the child (the main thread).

    ``child_sets_pdeathsig``: the child arms PR_SET_PDEATHSIG itself right
    after exec (a node does, given ``--parent-pid`` of its real parent), so no
    ``preexec_fn`` runs here. That lets CPython vfork: a preexec_fn forces a
    full fork() of this (large, threaded) process and waits for Python code
    to run in the child, 15 ms a spawn idle and 20-100 ms while 25 nodes
    start, one after the other on the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("spawn() must run on the main thread: PDEATHSIG follows the spawning thread")
    if log_path is not None:
        out = open(log_path, "ab", buffering=0)
    else:
        out = open(os.devnull, "wb")
    try:
        if child_sets_pdeathsig:
            proc = psutil.Popen(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True)
        else:
            proc = psutil.Popen(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=pdeathsig_preexec(os.getpid(), sig=pdeathsig), close_fds=True)
    finally:
        out.close()
    if registry is not None:
        registry.add(proc.pid, name or Path(argv[0]).name)
    return proc


def python_env(path: str | os.PathLike[str], base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a Python child that runs this project's code.

    ``path`` goes first on PYTHONPATH. Byte code is cached under
    :data:`PYCACHE_DIR` (PYTHONPYCACHEPREFIX), even where the caller's
    environment says PYTHONDONTWRITEBYTECODE: a run starts every node as a
    fresh interpreter, and compiling ``node/`` from source cost each of them
    about 35 ms of CPU, all at once, at the moment the election starts. The
    cache lives outside the work tree, so the tree stays free of
    ``__pycache__``; a stale entry is detected by the source's mtime as usual.
    """
    env = dict(os.environ if base is None else base)
    pp = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(path) + (os.pathsep + pp if pp else "")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE_DIR))
    return env


def alive(pid: int, create_time: float | None = None) -> bool:
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        if create_time is not None and abs(p.create_time() - create_time) > 0.05:
            return False
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _tree(pid: int | psutil.Process) -> list[psutil.Process]:
    try:
        root = pid if isinstance(pid, psutil.Process) else psutil.Process(pid)
        if not root.is_running():
            return []
    except psutil.NoSuchProcess:
        return []
    try:
        kids = root.children(recursive=True)
    except psutil.NoSuchProcess:
        kids = []
    return [root, *kids]


def signal_tree(pid: int, sig: int) -> bool:
    """Send ``sig`` to ``pid`` and its descendants; False when it is gone."""
    procs = _tree(pid)
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    return bool(procs)


def kill_tree(pid: int | psutil.Process, timeout: float = 5.0) -> None:
    """SIGKILL (and SIGCONT, for a stopped tree) a tree, and reap what we can."""
    procs = _tree(pid)
    for p in procs:
        for s in (signal.SIGKILL, signal.SIGCONT):
            try:
                p.send_signal(s)
            except psutil.NoSuchProcess:
                break
    psutil.wait_procs(procs, timeout=timeout)


def terminate(proc: psutil.Popen | psutil.Process, timeout: float = 5.0) -> int | None:
    """SIGCONT (a stopped process cannot handle SIGTERM), SIGTERM, wait,
    then SIGKILL the tree. Returns the exit code when we are its parent."""
    procs = _tree(proc)
    for p in procs:
        try:
            p.send_signal(signal.SIGCONT)
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, left = psutil.wait_procs(procs, timeout=timeout)
    for p in left:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(left, timeout=timeout)
    code = getattr(proc, "returncode", None)
    if code is None:
        try:
            code = proc.wait(timeout=0.5)
        except (psutil.TimeoutExpired, psutil.NoSuchProcess, ChildProcessError):
            code = None
    return code


class RunRegistry:
    """One JSON file per live run: who the orchestrator is and what it spawned.

    ``key`` names the file when it is not the run's own: a second entry under
    another live process keeps a run live for janitors after its orchestrator
    died (a test inspecting what a SIGKILLed run left)."""

    def __init__(self, run_id: str, run_dir: str | os.PathLike[str], directory: Path = REGISTRY_DIR,
                 key: str | None = None) -> None:
        self.run_id = run_id
        self.run_dir = str(Path(run_dir).resolve())
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{key or run_id}.json"
        me = psutil.Process()
        self._data = {"run_id": run_id, "run_dir": self.run_dir, "pid": me.pid,
                      "create_time": me.create_time(), "children": [], "proxy_prefix": None,
                      "toxiproxy_url": None}
        self._lock = threading.Lock()
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._data))
        os.replace(tmp, self.path)

    def add(self, pid: int, name: str) -> None:
        try:
            ct = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            return
        with self._lock:
            self._data["children"].append({"pid": pid, "create_time": ct, "name": name})
            self._write()

    def set_proxies(self, prefix: str, url: str) -> None:
        with self._lock:
            self._data["proxy_prefix"] = prefix
            self._data["toxiproxy_url"] = url
            self._write()

    def close(self) -> None:
        self.path.unlink(missing_ok=True)


def _live_run_ids(directory: Path = REGISTRY_DIR) -> tuple[set[str], list[dict]]:
    live: set[str] = set()
    dead: list[dict] = []
    if not directory.is_dir():
        return live, dead
    for f in directory.glob("*.json"):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        data["_file"] = str(f)
        if alive(int(data.get("pid", -1)), data.get("create_time")):
            live.add(data.get("run_id", ""))
        else:
            dead.append(data)
    return live, dead


def live_run_ids(directory: Path = REGISTRY_DIR) -> set[str]:
    """Ids of runs whose orchestrator still lives."""
    return _live_run_ids(directory)[0]


def janitor(*, directory: Path = REGISTRY_DIR, toxiproxy_client: object | None = None,
            proxy_prefix: str = "fle_", log: Callable[[str], None] = lambda m: None) -> dict:
    """End what crashed earlier runs left behind; return what was done.

    A child is killed only when its orchestrator is gone, its start time
    matches the registry, and its cmdline still mentions the dead run's dir.
    Proxies named ``fle_<run>_`` on ``toxiproxy_client`` whose run is not
    live are deleted.
    """
    live, dead = _live_run_ids(directory)
    killed: list[int] = []
    for data in dead:
        run_dir = data.get("run_dir", "")
        for child in data.get("children", []):
            pid, ct = int(child.get("pid", -1)), child.get("create_time")
            if not alive(pid, ct):
                continue
            try:
                cmd = " ".join(psutil.Process(pid).cmdline())
            except psutil.Error:
                continue
            if run_dir and run_dir not in cmd and child.get("name") not in cmd:
                log(f"janitor: pid {pid} no longer looks like ours ({cmd[:80]}); left alone")
                continue
            log(f"janitor: killing leftover pid {pid} of dead run {data.get('run_id')}")
            kill_tree(pid, timeout=3.0)
            killed.append(pid)
        if run_dir:
            for pid_file in Path(run_dir, "pids").glob("*.pid"):
                pid_file.unlink(missing_ok=True)
        Path(data["_file"]).unlink(missing_ok=True)
    deleted: list[str] = []
    if toxiproxy_client is not None:
        try:
            proxies = toxiproxy_client.list_proxies()  # type: ignore[attr-defined]
        except Exception as e:  # an unreachable server is the caller's problem
            log(f"janitor: cannot list proxies: {e}")
            proxies = []
        names = [p.name if hasattr(p, "name") else str(p) for p in
                 (proxies.values() if isinstance(proxies, dict) else proxies)]
        for name in names:
            if not name.startswith(proxy_prefix):
                continue
            run_id = name[len(proxy_prefix):].split("_", 1)[0]
            if run_id in live:
                continue
            try:
                toxiproxy_client.delete_proxy(name)  # type: ignore[attr-defined]
                deleted.append(name)
            except Exception as e:
                log(f"janitor: cannot delete proxy {name}: {e}")
    return {"killed": killed, "proxies_deleted": deleted}


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if alive(p)]
        if left:
            time.sleep(0.05)
    return left
