"""zkrules.txnlog: reads what node.storage writes, and never writes itself."""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from node.storage import Storage
from zkrules import txnlog
from zkrules.txnlog import Epochs, LogSummary, read_epochs, summarize_log
from zkrules.vote import make_zxid, total_order_predicate


def _fingerprint(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under `root` with its mtime and content hash."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def _write_history(data_dir: Path, data_log_dir: Path | None = None) -> Storage:
    st = Storage(data_dir, data_log_dir)
    st.set_accepted_epoch(2)
    st.set_current_epoch(2)
    for z in (make_zxid(1, 1), make_zxid(1, 2), make_zxid(1, 3), make_zxid(2, 1), make_zxid(2, 2)):
        st.append(z, b"txn-%x" % z)
    st.mark_committed(make_zxid(2, 1))
    return st


def test_round_trip_with_what_node_storage_writes(tmp_path):
    st = _write_history(tmp_path)
    try:
        summary = summarize_log(tmp_path)  # the writer still has the file open
        assert summary == LogSummary(runs=[(1, 1, 3), (2, 1, 2)], last_committed_zxid=make_zxid(2, 1),
                                     last_zxid=make_zxid(2, 2), tail=None, error=None)
        assert summary.runs == st.summary()
        assert summary.last_committed_zxid == st.last_committed_zxid
        assert read_epochs(tmp_path) == Epochs(accepted=2, current=2, error=None)
    finally:
        st.close()


def test_a_gap_in_counters_starts_a_new_run(tmp_path):
    st = Storage(tmp_path)
    for z in (make_zxid(3, 1), make_zxid(3, 2), make_zxid(3, 5)):
        st.append(z, b"")
    st.close()
    assert summarize_log(tmp_path).runs == [(3, 1, 2), (3, 5, 5)]


def test_data_log_dir_holds_the_log(tmp_path):
    data, logs = tmp_path / "data", tmp_path / "logs"
    _write_history(data, logs).close()
    assert summarize_log(data).runs == []  # nothing logged under dataDir
    assert summarize_log(data, logs).runs == [(1, 1, 3), (2, 1, 2)]
    assert read_epochs(data).current == 2


@pytest.mark.parametrize("cut", [1, 5, txnlog.RECORD.size, txnlog.RECORD.size + 3])
def test_torn_tail_is_reported_not_an_error_and_never_cut(tmp_path, cut):
    _write_history(tmp_path).close()
    path = txnlog.log_path(tmp_path)
    intact = path.read_bytes()
    torn = intact + txnlog.encode_record(txnlog.KIND_TXN, make_zxid(2, 3), b"payload")[:cut]
    path.write_bytes(torn)
    before = _fingerprint(tmp_path)
    s = summarize_log(tmp_path)
    assert s.runs == [(1, 1, 3), (2, 1, 2)] and s.error is None
    assert s.tail is not None and "short record" in s.tail
    assert _fingerprint(tmp_path) == before  # read-only: the torn bytes are still there
    # node.storage agrees on the trusted prefix (and, unlike the reader, cuts the tail)
    st = Storage(tmp_path)
    try:
        assert st.summary() == s.runs and st.last_committed_zxid == s.last_committed_zxid
    finally:
        st.close()
    assert path.read_bytes() == intact


def test_crc_mismatch_ends_the_trusted_prefix(tmp_path):
    _write_history(tmp_path).close()
    path = txnlog.log_path(tmp_path)
    data = bytearray(path.read_bytes())
    first_payload = len(txnlog.LOG_HEADER) + txnlog.RECORD.size
    rec2 = first_payload + len(b"txn-%x" % make_zxid(1, 1))
    data[rec2 + txnlog.RECORD.size] ^= 0xFF  # first payload byte of the second txn
    path.write_bytes(bytes(data))
    s = summarize_log(tmp_path)
    assert s.runs == [(1, 1, 1)] and s.tail == "crc mismatch" and s.last_committed_zxid == 0


def test_missing_files_read_as_nothing_logged(tmp_path):
    assert summarize_log(tmp_path) == LogSummary()
    assert summarize_log(tmp_path / "no-such-dir") == LogSummary()
    assert read_epochs(tmp_path) == Epochs(None, None, None)
    assert list(tmp_path.iterdir()) == []  # reading created nothing


def test_torn_header_and_empty_log_hold_nothing(tmp_path):
    path = txnlog.log_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert summarize_log(tmp_path) == LogSummary()
    path.write_bytes(txnlog.LOG_HEADER[:3])
    assert summarize_log(tmp_path) == LogSummary(tail="torn header")


def test_not_a_txn_log_is_an_error(tmp_path):
    path = txnlog.log_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"ZKLG\x00\x00\x00\x02garbage")
    s = summarize_log(tmp_path)
    assert s.runs == [] and s.error is not None and "not a txn log" in s.error


def test_garbled_epoch_file_is_named_other_value_still_read(tmp_path):
    d = txnlog.epoch_dir(tmp_path)
    d.mkdir(parents=True)
    (d / txnlog.ACCEPTED_EPOCH_FILE).write_bytes(b"seven")
    (d / txnlog.CURRENT_EPOCH_FILE).write_bytes(b"4")
    e = read_epochs(tmp_path)
    assert e.accepted is None and e.current == 4
    assert e.error is not None and "acceptedEpoch: expected a decimal epoch, found 'seven'" in e.error


def test_reading_while_a_writer_appends_sees_a_growing_prefix(tmp_path):
    st = Storage(tmp_path)
    n = 400
    done = threading.Event()

    def writer() -> None:
        try:
            for c in range(1, n + 1):
                st.append(make_zxid(1, c), os.urandom(64))
                if c % 7 == 0:
                    st.mark_committed(make_zxid(1, c))
        finally:
            done.set()

    t = threading.Thread(target=writer)
    t.start()
    seen = []
    try:
        while not done.is_set():
            s = summarize_log(tmp_path)
            assert s.error is None, s.error
            assert s.runs == [] or (len(s.runs) == 1 and s.runs[0][:2] == (1, 1)), s.runs
            seen.append(s.runs[0][2] if s.runs else 0)
    finally:
        t.join()
        st.close()
    assert seen == sorted(seen)  # never goes backwards
    final = summarize_log(tmp_path)
    assert final.runs == [(1, 1, n)] and final.tail is None
    assert final.last_committed_zxid == make_zxid(1, n - n % 7)


@pytest.mark.parametrize("new,cur,weight,wins", [
    ((1, 0, 2), (2, 9, 1), 1, True),    # higher peer epoch wins whatever the zxid
    ((1, 5, 1), (2, 4, 1), 1, True),    # same epoch: higher zxid
    ((3, 5, 1), (2, 5, 1), 1, True),    # same epoch and zxid: higher sid
    ((2, 5, 1), (3, 5, 1), 1, False),
    ((9, 9, 9), (1, 0, 0), 0, False),   # zero weight is never adopted (ZK-491)
])
def test_total_order_predicate_is_a_pure_rule(new, cur, weight, wins):
    assert total_order_predicate(*new, *cur, new_weight=weight) is wins
