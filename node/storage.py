"""Durable state of a peer: the two epoch files and a checksummed txn log.

Why these rules (spec §4): Zab's safety rests on a peer never forgetting an
epoch it promised (`acceptedEpoch`), the epoch it last joined
(`currentEpoch`), or a transaction it acknowledged. So every write that
precedes an acknowledgement is fsync'ed before this module returns, and
startup refuses states ZooKeeper refuses instead of "repairing" them.

Layout
------
The format (file names, header, record layout, what ends the trusted prefix)
is defined once in `zkrules.txnlog`, which the judge also reads it with; this
module owns the writing side. Epoch files are replaced atomically
(``<name>.tmp``, flush, fsync, rename, fsync of the directory). A transaction
is appended and fsync'ed before anyone acks it; a commit mark is written
without its own fsync (losing one only makes a restarted peer more
conservative, the leader re-sends the commit point).

At open the log is scanned; where the trusted prefix ends the file is cut
and ``emit("log_truncated", {reason, offset})`` says so — a torn tail is the
expected result of SIGKILL during an append and is never replayed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from zkrules import txnlog
from zkrules.txnlog import LOG_HEADER, MAX_PAYLOAD
from zkrules.vote import make_zxid
from zkrules.vote import zxid_counter as counter_of
from zkrules.vote import zxid_epoch as epoch_of

__all__ = [
    "LOG_HEADER",
    "MAX_PAYLOAD",
    "Storage",
    "StorageError",
    "epoch_of",
    "counter_of",
    "make_zxid",
]

_ACCEPTED = txnlog.ACCEPTED_EPOCH_FILE
_CURRENT = txnlog.CURRENT_EPOCH_FILE

Emit = Callable[[str, dict], None]


class StorageError(Exception):
    """The on-disk state cannot be trusted or written.

    The peer must not take part in elections with it: the process shell should
    report the message (it names the file and the reason) and exit.
    """


@dataclass(frozen=True, slots=True)
class _Entry:
    zxid: int
    payload: bytes
    end: int  # file offset just past this record


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_long(path: Path) -> int:
    try:
        return txnlog.parse_epoch(path.read_bytes())
    except OSError as e:
        raise StorageError(f"{path}: cannot read ({e.strerror})") from None
    except ValueError as e:
        raise StorageError(f"{path}: {e}") from None


def _write_long_atomic(path: Path, value: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(str(value).encode("ascii"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        raise StorageError(f"{path}: cannot write epoch ({e.strerror})") from None


class Storage:
    """Epoch files plus txn log of one peer; every mutating call is durable on return."""

    def __init__(self, data_dir: Path, data_log_dir: Path | None = None,
                 emit: Emit | None = None) -> None:
        self._emit: Emit = emit if emit is not None else (lambda event, fields: None)
        self.snap_dir = txnlog.epoch_dir(data_dir)
        self.log_path = txnlog.log_path(data_dir, data_log_dir)
        self.log_dir = self.log_path.parent
        try:
            self.snap_dir.mkdir(parents=True, exist_ok=True)
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"{e.filename}: cannot create directory ({e.strerror})") from None
        self._entries: list[_Entry] = []
        self.last_committed_zxid = 0
        self._file = None
        self._open_log()
        self._load_epochs()

    # ---- epochs -----------------------------------------------------------
    def _load_epochs(self) -> None:
        """Spec §4 startup rules, in ZooKeeper's order."""
        epoch_of_zxid = epoch_of(self.last_zxid)
        cur_path = self.snap_dir / _CURRENT
        if cur_path.exists():
            current = _read_long(cur_path)
        else:
            current = epoch_of_zxid
            _write_long_atomic(cur_path, current)
        if epoch_of_zxid > current:
            # ZK-4269: a crash between writing currentEpoch.tmp and renaming it
            # leaves the new epoch only in the .tmp file.
            tmp = self.snap_dir / (_CURRENT + ".tmp")
            if tmp.exists():
                current = _read_long(tmp)
                _write_long_atomic(cur_path, current)
            if epoch_of_zxid > current:
                raise StorageError(
                    f"{cur_path}: current epoch {current} is older than the epoch "
                    f"{epoch_of_zxid} of the last logged zxid {self.last_zxid:#x}")
        acc_path = self.snap_dir / _ACCEPTED
        if acc_path.exists():
            accepted = _read_long(acc_path)
        else:
            accepted = epoch_of_zxid
            _write_long_atomic(acc_path, accepted)
        if accepted < current:
            raise StorageError(
                f"{acc_path}: accepted epoch {accepted} is less than current epoch {current}")
        self.accepted_epoch = accepted
        self.current_epoch = current

    def set_accepted_epoch(self, e: int) -> None:
        _write_long_atomic(self.snap_dir / _ACCEPTED, e)
        self.accepted_epoch = e

    def set_current_epoch(self, e: int) -> None:
        _write_long_atomic(self.snap_dir / _CURRENT, e)
        self.current_epoch = e

    # ---- log --------------------------------------------------------------
    @property
    def last_zxid(self) -> int:
        return self._entries[-1].zxid if self._entries else 0

    def _open_log(self) -> None:
        path = self.log_path
        try:
            fresh = not path.exists() or path.stat().st_size == 0
            self._file = open(path, "r+b" if path.exists() else "w+b")
        except OSError as e:
            raise StorageError(f"{path}: cannot open txn log ({e.strerror})") from None
        if fresh:
            self._file.seek(0)
            self._file.truncate()
            self._file.write(LOG_HEADER)
            self._file.flush()
            os.fsync(self._file.fileno())
            _fsync_dir(self.log_dir)
            return
        data = self._file.read()
        try:
            scan = txnlog.scan_log(data)
        except txnlog.LogFormatError as e:
            self._file.close()
            raise StorageError(f"{path}: {e}") from None
        self._entries = [_Entry(r.zxid, r.payload, r.end) for r in scan.txns]
        self.last_committed_zxid = scan.last_committed_zxid
        if scan.reason is not None:
            self._cut(scan.end, scan.reason)
            if scan.end == 0:
                # torn while writing the header of a new log: nothing was logged
                self._file.write(LOG_HEADER)
                self._file.flush()
                os.fsync(self._file.fileno())
                return
        self._file.seek(0, os.SEEK_END)

    def _cut(self, offset: int, reason: str) -> None:
        self._file.truncate(offset)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.seek(offset)
        self._emit("log_truncated", {"reason": reason, "offset": offset})

    def _write_record(self, kind: int, zxid: int, payload: bytes) -> int:
        self._file.seek(0, os.SEEK_END)
        self._file.write(txnlog.encode_record(kind, zxid, payload))
        return self._file.tell()

    def append(self, zxid: int, payload: bytes) -> None:
        """Log a transaction durably; the caller may ack it once this returns."""
        if zxid <= self.last_zxid:
            raise StorageError(f"{self.log_path}: append of zxid {zxid:#x} not after "
                               f"last zxid {self.last_zxid:#x}")
        if len(payload) > MAX_PAYLOAD:
            raise StorageError(f"{self.log_path}: payload of {len(payload)} bytes over {MAX_PAYLOAD}")
        try:
            end = self._write_record(txnlog.KIND_TXN, zxid, bytes(payload))
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            raise StorageError(f"{self.log_path}: append failed ({e.strerror})") from None
        self._entries.append(_Entry(zxid, bytes(payload), end))

    def mark_committed(self, zxid: int) -> None:
        """Advance the commit point (never beyond what is logged, never backwards)."""
        zxid = min(zxid, self.last_zxid)
        if zxid <= self.last_committed_zxid:
            return
        self.last_committed_zxid = zxid
        try:
            self._write_record(txnlog.KIND_COMMIT, zxid, b"")
            self._file.flush()
        except OSError as e:
            raise StorageError(f"{self.log_path}: commit mark failed ({e.strerror})") from None

    def truncate_after(self, zxid: int) -> None:
        """Drop every logged txn with a zxid above `zxid` (Zab TRUNC)."""
        keep = [e for e in self._entries if e.zxid <= zxid]
        if len(keep) == len(self._entries):
            return
        offset = keep[-1].end if keep else len(LOG_HEADER)
        try:
            self._file.truncate(offset)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            raise StorageError(f"{self.log_path}: truncate failed ({e.strerror})") from None
        self._entries = keep
        committed = min(self.last_committed_zxid, self.last_zxid)
        self.last_committed_zxid = 0
        self.mark_committed(committed)  # its mark may have been cut with the tail

    def entries_after(self, zxid: int) -> list[tuple[int, bytes]]:
        return [(e.zxid, e.payload) for e in self._entries if e.zxid > zxid]

    def zxids(self) -> list[int]:
        return [e.zxid for e in self._entries]

    def has_zxid(self, zxid: int) -> bool:
        lo, hi = 0, len(self._entries)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._entries[mid].zxid < zxid:
                lo = mid + 1
            else:
                hi = mid
        return lo < len(self._entries) and self._entries[lo].zxid == zxid

    def summary(self) -> list[tuple[int, int, int]]:
        """Runs of consecutive counters per epoch (`zkrules.txnlog.zxid_runs`)."""
        return txnlog.zxid_runs(e.zxid for e in self._entries)

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                pass
            self._file.close()
