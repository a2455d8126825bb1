"""The node's on-disk format, defined once, and a read-only reader of it.

`node.storage` writes these files (and owns every rule about writing them:
fsync, atomic replace, cutting a torn tail at startup); the judge in `chaos/`
reads them with `read_epochs` and `summarize_log` while, or after, a node
runs. Reading never writes, never truncates and needs no copy of the
dataDir: a torn tail (SIGKILL during an append) or a record being appended
right now ends the trusted prefix exactly as it would for `node.storage` at
its next start, and is reported in `LogSummary.tail`, not as an error.

Layout
------
``dataDir/version-2/acceptedEpoch`` and ``currentEpoch``: decimal ASCII, no
newline, replaced atomically by rename (so a reader sees the old or the new
value, never half of one).

``dataLogDir/version-2/txnlog`` (``dataDir`` when no ``dataLogDir``): the
8-byte header ``LOG_HEADER`` then records::

    [len u32][crc32 u32][kind u8][zxid i64][payload: len bytes]

big-endian; ``crc32`` covers ``kind``, ``zxid`` and ``payload``. ``kind`` 1
(`KIND_TXN`) is a transaction, kind 2 (`KIND_COMMIT`) marks ``zxid``
committed. The trusted prefix ends at the first short record, oversized
length, bad kind, bad crc, or transaction zxid not above the previous one.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from zkrules.vote import zxid_counter, zxid_epoch

__all__ = [
    "ACCEPTED_EPOCH_FILE",
    "CURRENT_EPOCH_FILE",
    "Epochs",
    "KIND_COMMIT",
    "KIND_TXN",
    "LOG_FILE",
    "LOG_HEADER",
    "LogFormatError",
    "LogScan",
    "LogSummary",
    "MAX_PAYLOAD",
    "RECORD",
    "Record",
    "VERSION_DIR",
    "encode_record",
    "epoch_dir",
    "log_path",
    "parse_epoch",
    "read_epochs",
    "scan_log",
    "summarize_log",
    "zxid_runs",
]

VERSION_DIR = "version-2"
ACCEPTED_EPOCH_FILE = "acceptedEpoch"
CURRENT_EPOCH_FILE = "currentEpoch"
LOG_FILE = "txnlog"
LOG_HEADER = b"FLETXN01"
MAX_PAYLOAD = 1 << 20
RECORD = struct.Struct(">IIBq")  # len, crc, kind, zxid
KIND_TXN = 1
KIND_COMMIT = 2


class LogFormatError(ValueError):
    """The file is not a txn log at all (its header is not ours): nothing in it
    can be trusted. A torn tail is not this error; it ends the trusted prefix."""


def epoch_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / VERSION_DIR


def log_path(data_dir: str | os.PathLike[str], data_log_dir: str | os.PathLike[str] | None = None) -> Path:
    return Path(data_log_dir or data_dir) / VERSION_DIR / LOG_FILE


def parse_epoch(raw: bytes) -> int:
    """The value of an epoch file; ValueError (its reason as the message) if garbled."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise ValueError(f"not ASCII text ({e})") from None
    first = text.splitlines()[0] if text else ""
    try:
        return int(first.strip(), 10)
    except ValueError:
        raise ValueError(f"expected a decimal epoch, found {first[:40]!r}") from None


def encode_record(kind: int, zxid: int, payload: bytes = b"") -> bytes:
    """One record as `node.storage` appends it."""
    body = struct.pack(">Bq", kind, zxid) + payload
    return struct.pack(">II", len(payload), zlib.crc32(body)) + body


@dataclass(frozen=True, slots=True)
class Record:
    kind: int
    zxid: int
    payload: bytes
    end: int  # file offset just past this record


@dataclass(frozen=True, slots=True)
class LogScan:
    """What the trusted prefix of a log holds.

    `end` is where the prefix ends; `reason` says why the bytes after it are
    not trusted (None when the whole file is). `node.storage` cuts the file at
    `end`; a reader just stops there.
    """

    txns: tuple[Record, ...]
    last_committed_zxid: int
    end: int
    reason: str | None


def scan_log(data: bytes) -> LogScan:
    """Parse the bytes of a txn log; LogFormatError if the header is not ours.

    An empty file, or one torn while its header was written, holds nothing
    (`end` 0; `reason` "torn header" unless it is empty).
    """
    n = len(LOG_HEADER)
    if len(data) < n or data[:n] != LOG_HEADER:
        if LOG_HEADER.startswith(bytes(data)):
            return LogScan((), 0, 0, "torn header" if data else None)
        raise LogFormatError(f"not a txn log (bad header {bytes(data[:8])!r})")
    txns: list[Record] = []
    committed = 0
    prev = 0
    off = n
    reason = None
    while off < len(data):
        if len(data) - off < RECORD.size:
            reason = f"short record header ({len(data) - off} of {RECORD.size} bytes)"
            break
        length, crc, kind, zxid = RECORD.unpack_from(data, off)
        body_end = off + RECORD.size + length
        if kind not in (KIND_TXN, KIND_COMMIT):
            reason = f"bad record kind {kind}"
        elif length > MAX_PAYLOAD:
            reason = f"record length {length} over {MAX_PAYLOAD}"
        elif body_end > len(data):
            reason = f"short record ({len(data) - off} of {RECORD.size + length} bytes)"
        elif zlib.crc32(data[off + 8:body_end]) != crc:
            reason = "crc mismatch"
        elif kind == KIND_TXN and zxid <= prev:
            reason = f"zxid {zxid:#x} not after {prev:#x}"
        if reason is not None:
            break
        if kind == KIND_TXN:
            txns.append(Record(kind, zxid, bytes(data[off + RECORD.size:body_end]), body_end))
            prev = zxid
        else:
            # a commit mark never commits more than is logged before it
            committed = max(committed, min(zxid, prev))
        off = body_end
    return LogScan(tuple(txns), committed, off, reason)


def zxid_runs(zxids: Iterable[int]) -> list[tuple[int, int, int]]:
    """Runs of consecutive counters per epoch: [(epoch, first_counter, last_counter), ...]."""
    runs: list[list[int]] = []
    for z in zxids:
        ep, c = zxid_epoch(z), zxid_counter(z)
        if runs and runs[-1][0] == ep and runs[-1][2] + 1 == c:
            runs[-1][2] = c
        else:
            runs.append([ep, c, c])
    return [(r[0], r[1], r[2]) for r in runs]


@dataclass(frozen=True, slots=True)
class LogSummary:
    """A node's txn log as the judge needs it.

    `runs` are the trusted transactions as [(epoch, first_counter,
    last_counter), ...]; `tail` why reading stopped before the end of the file
    (a torn or in-flight record: expected, not an error); `error` why nothing
    could be read (unreadable file, not a txn log); then `runs` is empty. A
    missing log is an empty one: a node that never logged anything.
    """

    runs: list[tuple[int, int, int]] = field(default_factory=list)
    last_committed_zxid: int = 0
    last_zxid: int = 0
    tail: str | None = None
    error: str | None = None


def summarize_log(data_dir: str | os.PathLike[str],
                  data_log_dir: str | os.PathLike[str] | None = None) -> LogSummary:
    """Read (never write) the txn log under `data_log_dir or data_dir`."""
    path = log_path(data_dir, data_log_dir)
    try:
        with open(path, "rb") as f:
            data = f.read()  # one snapshot; a concurrent append shows as a torn tail
    except FileNotFoundError:
        return LogSummary()
    except OSError as e:
        return LogSummary(error=f"{path}: cannot read ({e.strerror or e})")
    try:
        scan = scan_log(data)
    except LogFormatError as e:
        return LogSummary(error=f"{path}: {e}")
    return LogSummary(
        runs=zxid_runs(r.zxid for r in scan.txns),
        last_committed_zxid=scan.last_committed_zxid,
        last_zxid=scan.txns[-1].zxid if scan.txns else 0,
        tail=scan.reason,
    )


@dataclass(frozen=True, slots=True)
class Epochs:
    """The two epoch files as found; None for a file that does not exist (a
    node writes both at its first start) or cannot be parsed (then `error`
    names the file and why)."""

    accepted: int | None = None
    current: int | None = None
    error: str | None = None


def read_epochs(data_dir: str | os.PathLike[str]) -> Epochs:
    """Read (never write) acceptedEpoch and currentEpoch under `data_dir`."""
    values: dict[str, int | None] = {}
    errors: list[str] = []
    for name in (ACCEPTED_EPOCH_FILE, CURRENT_EPOCH_FILE):
        path = epoch_dir(data_dir) / name
        values[name] = None
        try:
            values[name] = parse_epoch(path.read_bytes())
        except FileNotFoundError:
            pass
        except OSError as e:
            errors.append(f"{path}: cannot read ({e.strerror or e})")
        except ValueError as e:
            errors.append(f"{path}: {e}")
    return Epochs(values[ACCEPTED_EPOCH_FILE], values[CURRENT_EPOCH_FILE], "; ".join(errors) or None)
