"""The FUSE shell of the lazy filesystem: a pass-through mount whose writes wait for fsync.

Theory of operation. The daemon opens the directory it is about to cover,
then mounts over it; every operation works on that open descriptor
(``dir_fd``), so the covered directory is the *disk* and nothing else sees
it while mounted. After the unmount the directory shows the disk again.

What waits and what does not (the model a power cut is judged against):

* file contents and sizes — ``write``, ``truncate``, ``open(O_TRUNC)`` —
  live in :class:`~chaos.lazyfs.cache.PageCache` until the file is
  ``fsync``/``fdatasync``'ed (both flush data and size here) or the control
  socket says ``sync``; close (FUSE ``flush``/``release``) is not durability;
* names — create, mkdir, rename, unlink, rmdir — reach the disk at once, as
  if every directory were fsync'ed straight after the change. A renamed file
  carries its unsynced contents along; a file created and never fsync'ed
  survives a cut with size 0. Losing directory entries too would need a
  journal of name changes; no storage here relies on a missing dir fsync.

``lose`` (control socket) drops the page cache: the disk is then exactly
what a power cut leaves. The mounted files are served with ``direct_io`` and
zero attribute and entry timeouts, so the kernel keeps no copy that would
outlive a loss. Hard links and fallocate are refused (EOPNOTSUPP): a
path-keyed cache cannot give two names one inode, and neither our node nor
ZooKeeper uses them.

Control: one JSON line per connection on an abstract unix socket —
``{"op": "lose"|"sync"|"stats"}`` → ``{"ok": true, ...}``.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import subprocess
import threading
import time
from typing import Any

import mfusepy as fuse

from chaos.lazyfs.cache import Flush, PageCache

__all__ = ["LazyOps", "ControlServer", "serve"]

log = logging.getLogger("chaos.lazyfs")


def _rel(path: str) -> str:
    rel = path.lstrip("/")
    return rel or "."


class LazyOps(fuse.Operations):
    use_ns = True

    def __init__(self, root_fd: int, cache: PageCache) -> None:
        self.root = root_fd
        self.cache = cache
        self._mutex = threading.Lock()
        self.syncs = 0
        self.mounted = False

    def init(self, path: str) -> None:
        self.mounted = True

    # ---- the disk
    def _apply(self, flush: Flush, fd: int | None = None) -> None:
        own = fd is None
        if own:
            fd = os.open(_rel(flush.path), os.O_WRONLY, dir_fd=self.root)
        try:
            os.ftruncate(fd, flush.cut)
            for offset, data in flush.writes:
                os.pwrite(fd, data, offset)
            os.ftruncate(fd, flush.size)
        finally:
            if own:
                os.close(fd)

    def sync_all(self) -> int:
        with self._mutex:
            flushes = self.cache.flush_all()
            for f in flushes:
                try:
                    self._apply(f)
                except FileNotFoundError:
                    pass
            return len(flushes)

    def lose(self) -> list[dict]:
        with self._mutex:
            return [loss.to_json() for loss in self.cache.lose()]

    # ---- attributes and names
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        with self._mutex:
            st = os.stat(_rel(path), dir_fd=self.root, follow_symlinks=False)
            out = {k: getattr(st, k) for k in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size",
                                               "st_blocks", "st_ino")}
            out.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
            size = self.cache.size(path)
            if size is not None:
                out["st_size"] = size
                out["st_blocks"] = (size + 511) // 512
            return out

    def access(self, path: str, amode: int) -> int:
        if not os.access(_rel(path), amode, dir_fd=self.root):
            raise fuse.FuseOSError(errno.EACCES)
        return 0

    def readdir(self, path: str, fh: int) -> list[str]:
        fd = os.open(_rel(path), os.O_RDONLY | os.O_DIRECTORY, dir_fd=self.root)
        try:
            return [".", "..", *os.listdir(fd)]
        finally:
            os.close(fd)

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(_rel(path), mode, dir_fd=self.root)
        return 0

    def rmdir(self, path: str) -> int:
        with self._mutex:
            os.rmdir(_rel(path), dir_fd=self.root)
            self.cache.forget(path)
        return 0

    def unlink(self, path: str) -> int:
        with self._mutex:
            os.unlink(_rel(path), dir_fd=self.root)
            self.cache.forget(path)
        return 0

    def rename(self, old: str, new: str) -> int:
        with self._mutex:
            os.rename(_rel(old), _rel(new), src_dir_fd=self.root, dst_dir_fd=self.root)
            self.cache.rename(old, new)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(_rel(path), mode, dir_fd=self.root)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(_rel(path), uid, gid, dir_fd=self.root, follow_symlinks=False)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if times is None:
            os.utime(_rel(path), dir_fd=self.root, follow_symlinks=False)
        else:
            os.utime(_rel(path), ns=(int(times[0]), int(times[1])), dir_fd=self.root, follow_symlinks=False)
        return 0

    def symlink(self, target: str, source: str) -> int:
        os.symlink(source, _rel(target), dir_fd=self.root)
        return 0

    def readlink(self, path: str) -> str:
        return os.readlink(_rel(path), dir_fd=self.root)

    def link(self, target: str, source: str) -> int:
        raise fuse.FuseOSError(errno.EOPNOTSUPP)

    def fallocate(self, path: str, mode: int, offset: int, size: int, fh: int) -> int:
        raise fuse.FuseOSError(errno.EOPNOTSUPP)

    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self.root)
        return {k: getattr(sv, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                                            "f_files", "f_ffree", "f_favail", "f_flag", "f_namemax")}

    # ---- contents
    def _open_disk(self, path: str, extra: int = 0, mode: int = 0o644) -> int:
        return os.open(_rel(path), os.O_RDWR | extra, mode, dir_fd=self.root)

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        with self._mutex:
            fd = self._open_disk(path, os.O_CREAT | (flags & os.O_EXCL), mode)
            if flags & os.O_TRUNC:
                self.cache.truncate(path, 0, os.fstat(fd).st_size)
            return fd

    def open(self, path: str, flags: int) -> int:
        with self._mutex:
            fd = self._open_disk(path)
            if flags & os.O_TRUNC:
                self.cache.truncate(path, 0, os.fstat(fd).st_size)
            return fd

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._mutex:
            data = self.cache.read(path, offset, size, lambda o, n: os.pread(fh, n, o))
            return os.pread(fh, size, offset) if data is None else data

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._mutex:
            flush = self.cache.write(path, offset, data, os.fstat(fh).st_size, lambda o, n: os.pread(fh, n, o))
            if flush is not None:
                self._apply(flush, fh)
            return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        with self._mutex:
            st = os.stat(_rel(path), dir_fd=self.root)
            self.cache.truncate(path, length, st.st_size)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._mutex:
            self.syncs += 1
            flush = self.cache.flush(path)
            if flush is not None:
                self._apply(flush, fh)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        return 0   # names are on the disk already

    def flush(self, path: str, fh: int) -> int:
        return 0   # close() is not durability

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0

    def destroy(self, path: str) -> None:
        """A clean unmount: what the page cache holds is written back, as a clean shutdown does."""
        self.sync_all()


class ControlServer(threading.Thread):
    """One JSON request line per connection on an abstract unix socket."""

    def __init__(self, address: str, ops: LazyOps) -> None:
        super().__init__(name="lazyfs-control", daemon=True)
        self.ops = ops
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind("\0" + address)
        self.sock.listen(4)

    def answer(self, request: dict) -> dict:
        op = request.get("op")
        if op == "lose":
            files = self.ops.lose()
            return {"ok": True, "files": files, "dropped_bytes": sum(f["dropped_bytes"] for f in files)}
        if op == "sync":
            return {"ok": True, "files": self.ops.sync_all()}
        if op == "stats":
            with self.ops._mutex:
                return {"ok": True, **self.ops.cache.stats(), "fsyncs": self.ops.syncs}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def run(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            with conn:
                try:
                    line = conn.makefile("rb").readline()
                    reply = self.answer(json.loads(line or b"{}"))
                except Exception as e:   # a bad request must not end the filesystem
                    reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                try:
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                except OSError:
                    pass


def _orphan_watchdog(parent_pid: int, mountpoint: str, grace: float = 5.0, poll: float = 0.2) -> None:
    """Once the parent is gone, allow libfuse ``grace`` seconds to end on
    its PDEATHSIG (SIGTERM), then detach the mount and leave regardless:
    a daemon must never outlive its run, even when its loop is wedged."""
    while os.getppid() == parent_pid:
        time.sleep(poll)
    time.sleep(grace)
    subprocess.run(["fusermount3", "-u", "-z", mountpoint], capture_output=True)
    os._exit(1)


def serve(mountpoint: str, control: str, fsname: str, max_dirty: int, parent_pid: int | None = None) -> int:
    """Cover ``mountpoint`` with the lazy filesystem until unmounted or
    signalled (libfuse ends its loop on SIGTERM/SIGINT/SIGHUP and unmounts).
    Returns the exit code: 0 once it has served, 1 if it never mounted."""
    if parent_pid is not None:
        if os.getppid() != parent_pid:
            return 1      # the parent died before PDEATHSIG was armed
        threading.Thread(target=_orphan_watchdog, args=(parent_pid, mountpoint),
                         name="lazyfs-orphan-watchdog", daemon=True).start()
    root = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    ops = LazyOps(root, PageCache(max_dirty))
    ControlServer(control, ops).start()
    try:
        fuse.FUSE(ops, mountpoint, foreground=True, nothreads=True, fsname=fsname, subtype="chaos-lazyfs",
                  auto_unmount=True, direct_io=True, attr_timeout=0, entry_timeout=0, negative_timeout=0)
    except RuntimeError as e:
        # libfuse reports a loop ended by a signal as a nonzero code; after
        # a mount that is a normal end, before one it is a failed start
        if not ops.mounted:
            raise
        log.info("lazy filesystem on %s ended by a signal (libfuse %s)", mountpoint, e)
    return 0 if ops.mounted else 1
