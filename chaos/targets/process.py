"""What every target that runs its nodes as local processes does alike.

A target lays its nodes out and starts them its own way (our node, a JVM);
signalling, reaping and journaling them is the same for all: the process
group is signalled (a node may fork), every change is reported through
``on_process`` so the journal has a record of it, and a node that exits on
its own is ``exited``, not ``stopped``. Subclasses keep ``nodes`` (sid ->
:class:`~chaos.targets.fle.NodeInfo`) and ``on_process``, implement
``start``, and may forget per-node files in :meth:`_forget`.
"""
from __future__ import annotations

import enum
import json
import shutil
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import psutil

from chaos import procs

if TYPE_CHECKING:
    from chaos.targets.fle import NodeInfo

__all__ = ["ProcessTarget", "ProcState"]


class ProcState(enum.Enum):
    DOWN = "down"          # never started, killed, stopped or exited
    RUNNING = "running"
    PAUSED = "paused"


class ProcessTarget:
    nodes: dict[int, "NodeInfo"]
    on_process: Callable[..., None]
    run_dir: Path

    def start(self, sid: int) -> int:
        raise NotImplementedError

    def zoo_cfg(self, sid: int) -> str:
        raise NotImplementedError

    def write_configs(self) -> None:
        """Each node's dataDir, myid and zoo.cfg."""
        for sid, n in self.nodes.items():
            n.data_dir.mkdir(parents=True, exist_ok=True)
            (n.data_dir / "myid").write_text(f"{sid}\n")
            n.cfg_path.write_text(self.zoo_cfg(sid))

    # ------------------------------------------------------------------ dataDir copies
    def snapshot(self, sid: int, name: str) -> dict:
        """Copy stopped node ``sid``'s dataDir (not its event log) as ``name``,
        replacing an older copy of that name; returns what the copy holds, for
        the journal (:meth:`_snapshot_holds`)."""
        n = self.nodes[sid]
        if n.state is not ProcState.DOWN:
            raise RuntimeError(f"node {sid} is running; only a stopped node's dataDir is copied")
        dest = self.run_dir / "snapshots" / name
        tmp = dest.with_name(name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        keep_out = shutil.ignore_patterns(n.events_path.name) if n.events_path is not None else None
        shutil.copytree(n.data_dir, tmp / "data", ignore=keep_out)
        (tmp / "snapshot.json").write_text(json.dumps({"sid": sid, "name": name, "taken_at": time.time()}))
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        return self._snapshot_holds(dest / "data")

    def _snapshot_holds(self, data: Path) -> dict[str, Any]:
        """accepted_epoch, current_epoch and runs (None: not read) of a copied dataDir."""
        raise NotImplementedError

    def restore(self, sid: int, name: str) -> None:
        """Replace stopped node ``sid``'s dataDir (but its event log) with copy ``name``."""
        n = self.nodes[sid]
        if n.state is not ProcState.DOWN:
            raise RuntimeError(f"node {sid} is running; stop it before restoring its dataDir")
        src = self.run_dir / "snapshots" / name
        try:
            meta = json.loads((src / "snapshot.json").read_text())
        except (OSError, ValueError):
            raise ValueError(f"no snapshot named '{name}' was taken") from None
        if meta.get("sid") != sid:
            raise ValueError(f"snapshot '{name}' is node {meta.get('sid')}'s dataDir, not node {sid}'s")
        for entry in n.data_dir.iterdir():
            if n.events_path is not None and entry.name == n.events_path.name:
                continue
            if entry.is_mount():   # a lazy disk (power_loss): empty it, the mount stays
                for inner in entry.iterdir():
                    if inner.is_dir() and not inner.is_symlink():
                        shutil.rmtree(inner)
                    else:
                        inner.unlink()
            elif entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        shutil.copytree(src / "data", n.data_dir, dirs_exist_ok=True)
        disk = getattr(self, "disks", {}).get(sid)
        if disk is not None:
            disk.sync()   # the copy is what the disk holds, not writes a power cut would drop

    # ------------------------------------------------------------------ power loss
    # `power_loss` (chaos.lazyfs): each node's dataDir/version-2 — epoch files
    # and txn log, ZooKeeper's layout and ours — is a lazy mount whose unsynced
    # writes a power cut drops. The event log and myid stay outside it: the
    # event log is the orchestrator's record of the node, not the node's state.

    def lazy_dir(self, sid: int) -> Path:
        return self.nodes[sid].data_dir / "version-2"

    def mount_disks(self, run_id: str) -> None:
        """Put every node's ``version-2`` on a lazy disk (after ``write_configs``, before a start)."""
        from chaos.lazyfs import LazyDisk
        self.disks: dict[int, Any] = getattr(self, "disks", {})
        for sid, n in self.nodes.items():
            disk = LazyDisk(self.lazy_dir(sid), run_id, f"n{sid}", log_path=n.dir / "lazyfs.log",
                            registry=getattr(self, "registry", None))
            disk.mount()
            self.disks[sid] = disk

    def unmount_disks(self) -> None:
        """Write every cache back (a clean shutdown) and unmount; after the nodes are down."""
        for disk in getattr(self, "disks", {}).values():
            disk.unmount()

    def power_loss(self, sid: int) -> None:
        """The power goes: SIGKILL if it runs (the page cache survives that);
        :meth:`lose_unsynced` then drops the cache."""
        if sid not in getattr(self, "disks", {}):
            raise RuntimeError(f"node {sid}'s dataDir is not on a lazy disk")
        if self.nodes[sid].state is not ProcState.DOWN:
            self.kill(sid)

    def lose_unsynced(self, sid: int) -> dict:
        """Drop node ``sid``'s writes not fsync'ed; ``UnsyncedLost`` fields."""
        if self.nodes[sid].state is not ProcState.DOWN:
            raise RuntimeError(f"node {sid} is running; its power must go first")
        reply = self.disks[sid].lose()
        return {"files": reply.get("files", []), "dropped_bytes": int(reply.get("dropped_bytes", 0))}

    def _forget(self, sid: int) -> None:
        """The node is down: drop what marks it as running (a pid file)."""

    def _require(self, sid: int) -> "NodeInfo":
        n = self.nodes[sid]
        if n.proc is None or n.state is ProcState.DOWN:
            raise RuntimeError(f"node {sid} is not running")
        return n

    def _reap(self, n: "NodeInfo", timeout: float) -> int | None:
        if n.proc is None:
            return None
        code = getattr(n.proc, "returncode", None)
        if code is not None:
            return code
        try:
            return n.proc.wait(timeout=timeout)
        except (psutil.TimeoutExpired, psutil.NoSuchProcess, ChildProcessError):
            return getattr(n.proc, "returncode", None)

    def kill(self, sid: int) -> int | None:
        """SIGKILL (the process group too, in case the node forked)."""
        n = self._require(sid)
        n.expected_exit = True
        procs.kill_tree(n.proc, timeout=5.0)
        code = self._reap(n, 5.0)
        n.state = ProcState.DOWN
        self._forget(sid)
        self.on_process(sid=sid, action="killed", pid=n.proc.pid, exit_code=code)
        return code

    def pause(self, sid: int) -> None:
        n = self._require(sid)
        procs.signal_tree(n.proc.pid, signal.SIGSTOP)
        n.state = ProcState.PAUSED
        self.on_process(sid=sid, action="paused", pid=n.proc.pid, exit_code=None)

    def resume(self, sid: int) -> None:
        n = self._require(sid)
        procs.signal_tree(n.proc.pid, signal.SIGCONT)
        n.state = ProcState.RUNNING
        self.on_process(sid=sid, action="resumed", pid=n.proc.pid, exit_code=None)

    def stop(self, sid: int, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``)."""
        n = self._require(sid)
        n.expected_exit = True
        code = procs.terminate(n.proc, timeout=timeout)
        n.state = ProcState.DOWN
        self._forget(sid)
        self.on_process(sid=sid, action="stopped", pid=n.proc.pid, exit_code=code)
        return code

    def restart(self, sid: int) -> int:
        n = self.nodes[sid]
        if n.state is not ProcState.DOWN:
            self.stop(sid)
        return self.start(sid)

    def is_running(self, sid: int) -> bool:
        return self.nodes[sid].state is not ProcState.DOWN

    def pid(self, sid: int) -> int | None:
        n = self.nodes[sid]
        return n.proc.pid if n.proc is not None and n.state is not ProcState.DOWN else None

    def poll_exits(self) -> list[tuple[int, int | None]]:
        """Nodes that exited on their own since the last call (recorded as `exited`)."""
        out = []
        for sid, n in self.nodes.items():
            if n.proc is None or n.state is ProcState.DOWN:
                continue
            code = n.proc.poll()
            if code is not None:
                n.state = ProcState.DOWN
                self._forget(sid)
                self.on_process(sid=sid, action="exited", pid=n.proc.pid, exit_code=code)
                out.append((sid, code))
        return out

    def shutdown(self, timeout: float = 5.0) -> None:
        """End every node: SIGCONT the paused, SIGTERM all at once, then SIGKILL."""
        self.poll_exits()  # a node that died on its own is `exited`, not `stopped`
        live = [n for n in self.nodes.values() if n.proc is not None and n.state is not ProcState.DOWN]
        for n in live:
            n.expected_exit = True
            procs.signal_tree(n.proc.pid, signal.SIGCONT)
            procs.signal_tree(n.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for n in live:
            code = self._reap(n, max(0.1, deadline - time.monotonic()))
            if code is None:
                procs.kill_tree(n.proc, timeout=3.0)
                code = self._reap(n, 3.0)
            n.state = ProcState.DOWN
            self._forget(n.sid)
            self.on_process(sid=n.sid, action="stopped", pid=n.proc.pid, exit_code=code)
