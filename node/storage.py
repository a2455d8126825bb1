"""Durable state of a peer: the two epoch files and a checksummed txn log.

Why these rules (spec §4): Zab's safety rests on a peer never forgetting an
epoch it promised (`acceptedEpoch`), the epoch it last joined
(`currentEpoch`), or a transaction it acknowledged. So every write that
precedes an acknowledgement is fsync'ed before this module returns, and
startup refuses states ZooKeeper refuses instead of "repairing" them.

Layout
------
``dataDir/version-2/acceptedEpoch`` and ``currentEpoch``: decimal ASCII, no
newline, replaced atomically (``<name>.tmp``, flush, fsync, rename, fsync of
the directory).

``dataLogDir/version-2/txnlog`` (``dataDir`` when no ``dataLogDir``): an
8-byte header ``b"FLETXN01"`` then records::

    [len u32][crc32 u32][kind u8][zxid i64][payload: len bytes]

big-endian; ``crc32`` covers ``kind``, ``zxid`` and ``payload``. ``kind`` 1 is a
transaction (appended and fsync'ed before anyone acks it), kind 2 marks
``zxid`` committed (written without its own fsync: losing one only makes a
restarted peer more conservative, the leader re-sends the commit point).

At open the log is scanned; the first short record, oversized length, bad
kind or bad crc ends the trusted prefix. The file is cut there and
``emit("log_truncated", {reason, offset})`` says so — a torn tail is the
expected result of SIGKILL during an append and is never replayed.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from node.vote import make_zxid
from node.vote import zxid_counter as counter_of
from node.vote import zxid_epoch as epoch_of

__all__ = [
    "LOG_HEADER",
    "MAX_PAYLOAD",
    "Storage",
    "StorageError",
    "epoch_of",
    "counter_of",
    "make_zxid",
]

LOG_HEADER = b"FLETXN01"
MAX_PAYLOAD = 1 << 20
_REC = struct.Struct(">IIBq")  # len, crc, kind, zxid
_KIND_TXN = 1
_KIND_COMMIT = 2
_ACCEPTED = "acceptedEpoch"
_CURRENT = "currentEpoch"
_LOG_NAME = "txnlog"

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
        text = path.read_bytes().decode("ascii")
    except UnicodeDecodeError as e:
        raise StorageError(f"{path}: not ASCII text ({e})") from None
    except OSError as e:
        raise StorageError(f"{path}: cannot read ({e.strerror})") from None
    first = text.splitlines()[0] if text else ""
    try:
        return int(first.strip(), 10)
    except ValueError:
        raise StorageError(f"{path}: expected a decimal epoch, found {first[:40]!r}") from None


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
        self.snap_dir = Path(data_dir) / "version-2"
        self.log_dir = Path(data_log_dir or data_dir) / "version-2"
        try:
            self.snap_dir.mkdir(parents=True, exist_ok=True)
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"{e.filename}: cannot create directory ({e.strerror})") from None
        self.log_path = self.log_dir / _LOG_NAME
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
        if len(data) < len(LOG_HEADER) or data[:len(LOG_HEADER)] != LOG_HEADER:
            if LOG_HEADER.startswith(data):
                # torn while writing the header of a new log: nothing was logged
                self._cut(0, "torn header")
                self._file.write(LOG_HEADER)
                self._file.flush()
                os.fsync(self._file.fileno())
                return
            self._file.close()
            raise StorageError(f"{path}: not a txn log (bad header {data[:8]!r})")
        off = len(LOG_HEADER)
        prev = 0
        while off < len(data):
            reason = None
            if len(data) - off < _REC.size:
                reason = f"short record header ({len(data) - off} of {_REC.size} bytes)"
            else:
                length, crc, kind, zxid = _REC.unpack_from(data, off)
                body_end = off + _REC.size + length
                if kind not in (_KIND_TXN, _KIND_COMMIT):
                    reason = f"bad record kind {kind}"
                elif length > MAX_PAYLOAD:
                    reason = f"record length {length} over {MAX_PAYLOAD}"
                elif body_end > len(data):
                    reason = f"short record ({len(data) - off} of {_REC.size + length} bytes)"
                elif zlib.crc32(data[off + 8:body_end]) != crc:
                    reason = "crc mismatch"
                elif kind == _KIND_TXN and zxid <= prev:
                    reason = f"zxid {zxid:#x} not after {prev:#x}"
            if reason is not None:
                self._cut(off, reason)
                break
            if kind == _KIND_TXN:
                self._entries.append(_Entry(zxid, bytes(data[off + _REC.size:body_end]), body_end))
                prev = zxid
            else:
                self.last_committed_zxid = max(self.last_committed_zxid, min(zxid, prev))
            off = body_end
        self._file.seek(0, os.SEEK_END)

    def _cut(self, offset: int, reason: str) -> None:
        self._file.truncate(offset)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.seek(offset)
        self._emit("log_truncated", {"reason": reason, "offset": offset})

    def _write_record(self, kind: int, zxid: int, payload: bytes) -> int:
        body = struct.pack(">Bq", kind, zxid) + payload
        rec = struct.pack(">II", len(payload), zlib.crc32(body)) + body
        self._file.seek(0, os.SEEK_END)
        self._file.write(rec)
        return self._file.tell()

    def append(self, zxid: int, payload: bytes) -> None:
        """Log a transaction durably; the caller may ack it once this returns."""
        if zxid <= self.last_zxid:
            raise StorageError(f"{self.log_path}: append of zxid {zxid:#x} not after "
                               f"last zxid {self.last_zxid:#x}")
        if len(payload) > MAX_PAYLOAD:
            raise StorageError(f"{self.log_path}: payload of {len(payload)} bytes over {MAX_PAYLOAD}")
        try:
            end = self._write_record(_KIND_TXN, zxid, bytes(payload))
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
            self._write_record(_KIND_COMMIT, zxid, b"")
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
        """Runs of consecutive counters per epoch, for the journal's `log_summary`."""
        runs: list[list[int]] = []
        for e in self._entries:
            ep, c = epoch_of(e.zxid), counter_of(e.zxid)
            if runs and runs[-1][0] == ep and runs[-1][2] + 1 == c:
                runs[-1][2] = c
            else:
                runs.append([ep, c, c])
        return [tuple(r) for r in runs]  # type: ignore[misc]

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                pass
            self._file.close()
