"""Power loss for a node's disk: a lazy FUSE filesystem that loses what was not fsync'ed.

Theory of operation. A process kill keeps the kernel's page cache, so a node
that acknowledges a write it never fsync'ed looks fine after any kill. A
power cut does not keep it. :class:`LazyDisk` covers one directory (a node's
``dataDir/version-2``: epoch files and txn log) with our own pass-through
filesystem (:mod:`chaos.lazyfs.fs`, served by ``python -m chaos.lazyfs``),
which holds every write in its own page cache until the file is fsync'ed
(:mod:`chaos.lazyfs.cache`, pure). :meth:`LazyDisk.lose`, called once the
node's process is dead, drops that cache: the directory then holds exactly
what a power cut would have left, and the node restarts on it.

No orphans. The daemon is spawned like a node (own session, PDEATHSIG,
listed in the run registry), but its PDEATHSIG is SIGTERM, not SIGKILL:
libfuse then leaves its loop and unmounts (lazily, so a node still holding
files in it cannot stop it), and a watchdog thread bounds that by the
parent's death plus a few seconds. SIGKILL would leave the unmount to the
``auto_unmount`` helper alone, and that helper unmounts only when opening
the dead mount fails with ENOTCONN: a node request caught in flight when
the daemon dies fails with ECONNABORTED instead, and the mount stayed (seen
about once in fifteen kills of a daemon under a writing node). The helper
is still there for a daemon killed any other way; :meth:`LazyDisk.unmount`
(the runner's cleanup stack, on every exit path) writes the cache back, as a
clean shutdown would, and unmounts; and :func:`janitor` lazily unmounts any
mount of a run whose orchestrator is gone, found by the run id in the mount's
source (``chaos-lazyfs:<run id>`` in /proc/self/mountinfo).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from chaos import procs

__all__ = ["LazyDisk", "LazyFsError", "FSTYPE", "SOURCE_PREFIX", "missing_requirements", "mounts",
           "is_mounted", "janitor"]

FSTYPE = "fuse.chaos-lazyfs"
SOURCE_PREFIX = "chaos-lazyfs:"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


class LazyFsError(RuntimeError):
    """The lazy mount could not be made, asked or removed; the message says which and why."""


def missing_requirements() -> str | None:
    """None when lazy mounts can be made here; else one line saying what is missing."""
    if not os.path.exists("/dev/fuse"):
        return "power_loss needs /dev/fuse (a FUSE-capable kernel; in a container, --device /dev/fuse)"
    if shutil.which("fusermount3") is None:
        return "power_loss needs `fusermount3` (Debian package fuse3)"
    try:
        import mfusepy  # noqa: F401  (loads libfuse)
    except (ImportError, OSError, EnvironmentError) as e:
        return f"power_loss needs the Python package mfusepy and libfuse3 (Debian libfuse3-3): {e}"
    return None


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts(mountinfo: str | None = None) -> list[tuple[str, str]]:
    """(mount point, source) of every lazy mount in this mount namespace."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return []
    out = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 2 and tail[0] == FSTYPE:
            out.append((_unescape(fields[4]), _unescape(tail[1])))
    return out


def is_mounted(path: str | os.PathLike[str]) -> bool:
    p = str(Path(path).resolve())
    return any(mp == p for mp, _ in mounts())


def _unmount(path: str, lazy: bool = False) -> bool:
    r = subprocess.run(["fusermount3", "-u", *(["-z"] if lazy else []), path],
                       capture_output=True, text=True)
    return r.returncode == 0


def janitor(live_run_ids: Iterable[str], log: Callable[[str], None] = lambda m: None) -> list[str]:
    """Unmount (lazily) the lazy mounts of runs not in ``live_run_ids``."""
    live = set(live_run_ids)
    gone = []
    for mp, source in mounts():
        run_id = source[len(SOURCE_PREFIX):] if source.startswith(SOURCE_PREFIX) else ""
        if run_id in live:
            continue
        log(f"janitor: unmounting lazy disk {mp} of dead run {run_id or '?'}")
        if _unmount(mp, lazy=True):
            gone.append(mp)
    return gone


class LazyDisk:
    """One lazy mount over ``directory``, owned by run ``run_id``."""

    def __init__(self, directory: str | os.PathLike[str], run_id: str, name: str, *,
                 log_path: str | os.PathLike[str] | None = None,
                 registry: procs.RunRegistry | None = None, max_dirty: int | None = None) -> None:
        self.directory = Path(directory).resolve()
        self.run_id = run_id
        self.control = f"chaos-lazyfs-{run_id}-{name}-{os.getpid()}"
        self.log_path = log_path
        self.registry = registry
        self.max_dirty = max_dirty
        self.proc = None

    def mount(self, timeout: float = 15.0) -> None:
        """Start the daemon and wait until the mount answers. Main thread only (PDEATHSIG)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "chaos.lazyfs", str(self.directory), "--control", self.control,
                "--fsname", SOURCE_PREFIX + self.run_id, "--parent-pid", str(os.getpid())]
        if self.max_dirty is not None:
            argv += ["--max-dirty", str(self.max_dirty)]
        self.proc = procs.spawn(argv, cwd=str(self.directory.parent), log_path=self.log_path,
                                env=procs.python_env(_PROJECT_ROOT), registry=self.registry,
                                name=str(self.directory), pdeathsig=signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LazyFsError(f"lazy mount of {self.directory} ended at start (exit {self.proc.returncode}); "
                                  f"see {self.log_path}")
            if is_mounted(self.directory):
                try:
                    self.request("stats", timeout=2.0)
                    return
                except LazyFsError:
                    pass
            time.sleep(0.05)
        self.unmount(sync=False)
        raise LazyFsError(f"lazy mount of {self.directory} not ready within {timeout:g}s")

    def request(self, op: str, timeout: float = 10.0) -> dict:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect("\0" + self.control)
                s.sendall(json.dumps({"op": op}).encode() + b"\n")
                line = s.makefile("rb").readline()
            reply = json.loads(line)
        except (OSError, ValueError) as e:
            raise LazyFsError(f"lazy disk {self.directory}: {op} failed: {e}") from None
        if not reply.get("ok"):
            raise LazyFsError(f"lazy disk {self.directory}: {op}: {reply.get('error')}")
        return reply

    def lose(self) -> dict:
        """Drop every write not fsync'ed: ``{files: [{path, size, durable_size, dropped_bytes}], dropped_bytes}``."""
        return self.request("lose")

    def sync(self) -> None:
        self.request("sync")

    def stats(self) -> dict:
        return self.request("stats")

    def unmount(self, sync: bool = True, timeout: float = 5.0) -> None:
        """Write the cache back (unless ``sync`` is False) and unmount; ends the daemon either way."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if sync and proc.poll() is None:
            try:
                self.request("sync", timeout=timeout)
            except LazyFsError:
                pass
        where = str(self.directory)
        if is_mounted(where) and not _unmount(where):
            _unmount(where, lazy=True)
        try:
            proc.wait(timeout=timeout)
        except Exception:
            procs.kill_tree(proc, timeout=3.0)
        if is_mounted(where):
            _unmount(where, lazy=True)
