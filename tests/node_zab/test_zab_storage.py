"""node.storage against real files: epoch files, startup rules, the checksummed log."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from node.storage import LOG_HEADER, Storage, StorageError, make_zxid


def opened(*args, **kw) -> Storage:
    """A storage whose epochs are above every zxid the test logs."""
    s = Storage(*args, **kw)
    s.set_accepted_epoch(9)
    s.set_current_epoch(9)
    return s


class Events(list):
    def __call__(self, event: str, fields: dict) -> None:
        self.append((event, fields))

    def named(self, name: str) -> list[dict]:
        return [f for e, f in self if e == name]


def snap(d: Path) -> Path:
    return d / "version-2"


def test_fresh_dirs_create_epoch_files_as_decimal_without_newline(tmp_path):
    s = Storage(tmp_path / "data", tmp_path / "log")
    assert (s.accepted_epoch, s.current_epoch, s.last_zxid, s.last_committed_zxid) == (0, 0, 0, 0)
    assert (snap(tmp_path / "data") / "acceptedEpoch").read_bytes() == b"0"
    assert (snap(tmp_path / "data") / "currentEpoch").read_bytes() == b"0"
    assert (tmp_path / "log" / "version-2" / "txnlog").read_bytes() == LOG_HEADER
    s.set_accepted_epoch(12)
    s.set_current_epoch(11)
    s.close()
    assert (snap(tmp_path / "data") / "acceptedEpoch").read_bytes() == b"12"
    assert (snap(tmp_path / "data") / "currentEpoch").read_bytes() == b"11"
    assert not list(snap(tmp_path / "data").glob("*.tmp"))
    s2 = Storage(tmp_path / "data", tmp_path / "log")
    assert (s2.accepted_epoch, s2.current_epoch) == (12, 11)
    s2.close()


def test_epoch_write_is_tmp_then_rename(tmp_path, monkeypatch):
    s = Storage(tmp_path)
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(src).name, Path(dst).name, Path(src).read_bytes()))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    s.set_current_epoch(5)
    assert seen == [("currentEpoch.tmp", "currentEpoch", b"5")]
    s.close()


def test_missing_epoch_files_are_created_from_last_zxid_epoch(tmp_path):
    s = Storage(tmp_path)
    s.set_accepted_epoch(3)
    s.set_current_epoch(3)
    s.append(make_zxid(3, 1), b"a")
    s.close()
    (snap(tmp_path) / "acceptedEpoch").unlink()
    (snap(tmp_path) / "currentEpoch").unlink()
    s = Storage(tmp_path)
    assert (s.accepted_epoch, s.current_epoch) == (3, 3)
    assert (snap(tmp_path) / "currentEpoch").read_bytes() == b"3"
    s.close()


def test_current_epoch_tmp_recovery_zk4269(tmp_path):
    s = Storage(tmp_path)
    s.set_accepted_epoch(4)
    s.set_current_epoch(4)
    s.append(make_zxid(4, 1), b"x")
    s.close()
    # crash after currentEpoch.tmp reached disk but before the rename
    (snap(tmp_path) / "currentEpoch").write_bytes(b"3")
    (snap(tmp_path) / "currentEpoch.tmp").write_bytes(b"4")
    s = Storage(tmp_path)
    assert s.current_epoch == 4
    assert (snap(tmp_path) / "currentEpoch").read_bytes() == b"4"
    s.close()


def test_current_epoch_older_than_log_without_tmp_is_refused(tmp_path):
    s = Storage(tmp_path)
    s.set_accepted_epoch(4)
    s.set_current_epoch(4)
    s.append(make_zxid(4, 1), b"x")
    s.close()
    (snap(tmp_path) / "currentEpoch").write_bytes(b"3")
    with pytest.raises(StorageError, match=r"currentEpoch: current epoch 3 is older than the epoch 4"):
        Storage(tmp_path)


def test_accepted_below_current_is_refused(tmp_path):
    Storage(tmp_path).close()
    (snap(tmp_path) / "acceptedEpoch").write_bytes(b"2")
    (snap(tmp_path) / "currentEpoch").write_bytes(b"5")
    with pytest.raises(StorageError, match=r"acceptedEpoch: accepted epoch 2 is less than current epoch 5"):
        Storage(tmp_path)


def test_garbage_epoch_file_names_file_and_content(tmp_path):
    Storage(tmp_path).close()
    (snap(tmp_path) / "acceptedEpoch").write_bytes(b"seven")
    with pytest.raises(StorageError, match=r"acceptedEpoch: expected a decimal epoch, found 'seven'"):
        Storage(tmp_path)


def test_append_reopen_and_commit_marks_survive(tmp_path):
    s = opened(tmp_path)
    zs = [make_zxid(1, c) for c in (1, 2, 3)] + [make_zxid(2, 1)]
    for i, z in enumerate(zs):
        s.append(z, b"p%d" % i)
    s.mark_committed(zs[2])
    s.close()
    s = Storage(tmp_path)
    assert s.last_zxid == zs[-1]
    assert s.last_committed_zxid == zs[2]
    assert s.entries_after(zs[1]) == [(zs[2], b"p2"), (zs[3], b"p3")]
    assert s.entries_after(0)[0] == (zs[0], b"p0")
    s.close()


def test_append_out_of_order_is_refused(tmp_path):
    s = opened(tmp_path)
    s.append(make_zxid(1, 2), b"")
    with pytest.raises(StorageError, match="not after"):
        s.append(make_zxid(1, 1), b"")
    s.close()


def test_truncate_after_cuts_the_file(tmp_path):
    s = opened(tmp_path)
    for c in range(1, 6):
        s.append(make_zxid(1, c), b"v")
    s.mark_committed(make_zxid(1, 2))
    s.truncate_after(make_zxid(1, 3))
    assert s.last_zxid == make_zxid(1, 3)
    s.append(make_zxid(2, 1), b"new")
    s.close()
    s = Storage(tmp_path)
    assert [z for z, _ in s.entries_after(0)] == [make_zxid(1, 1), make_zxid(1, 2), make_zxid(1, 3),
                                                  make_zxid(2, 1)]
    assert s.last_committed_zxid == make_zxid(1, 2)
    s.close()


def _three_records(tmp_path) -> Path:
    s = opened(tmp_path)
    for c in (1, 2, 3):
        s.append(make_zxid(1, c), b"payload-%d" % c)
    s.close()
    return tmp_path / "version-2" / "txnlog"


def test_torn_tail_mid_record_is_cut_and_reported(tmp_path):
    path = _three_records(tmp_path)
    full = path.read_bytes()
    path.write_bytes(full[:-5])  # SIGKILL in the middle of the last append
    ev = Events()
    s = Storage(tmp_path, emit=ev)
    assert s.last_zxid == make_zxid(1, 2)
    (cut,) = ev.named("log_truncated")
    assert "short record" in cut["reason"]
    assert path.stat().st_size == cut["offset"] < len(full) - 5
    s.append(make_zxid(1, 3), b"again")  # appends land after the cut, not after garbage
    s.close()
    assert [z for z, _ in Storage(tmp_path).entries_after(0)][-1] == make_zxid(1, 3)


def test_flipped_byte_fails_crc_and_drops_the_rest(tmp_path):
    path = _three_records(tmp_path)
    data = bytearray(path.read_bytes())
    second = len(LOG_HEADER) + 17 + len(b"payload-1")
    data[second + 17 + 3] ^= 0xFF  # a payload byte of record 2
    path.write_bytes(bytes(data))
    ev = Events()
    s = Storage(tmp_path, emit=ev)
    assert s.last_zxid == make_zxid(1, 1)
    assert ev.named("log_truncated") == [{"reason": "crc mismatch", "offset": second}]
    assert path.stat().st_size == second
    s.close()


def test_huge_length_field_is_not_trusted(tmp_path):
    path = _three_records(tmp_path)
    with open(path, "ab") as f:
        f.write(struct.pack(">II", 0xFFFFFFF0, 0) + b"\x01" + b"\0" * 8)
    ev = Events()
    s = Storage(tmp_path, emit=ev)
    assert s.last_zxid == make_zxid(1, 3)
    assert "over" in ev.named("log_truncated")[0]["reason"]
    s.close()


def test_foreign_file_is_refused_not_cut(tmp_path):
    (tmp_path / "version-2").mkdir()
    (tmp_path / "version-2" / "txnlog").write_bytes(b"GARBAGE!" * 4)
    with pytest.raises(StorageError, match="not a txn log"):
        Storage(tmp_path)


def test_summary_runs(tmp_path):
    s = opened(tmp_path)
    for z in [make_zxid(1, 1), make_zxid(1, 2), make_zxid(1, 3), make_zxid(1, 5),
              make_zxid(2, 1), make_zxid(2, 2), make_zxid(4, 1)]:
        s.append(z, b"")
    assert s.summary() == [(1, 1, 3), (1, 5, 5), (2, 1, 2), (4, 1, 1)]
    s.close()


def test_data_log_dir_separate(tmp_path):
    s = opened(tmp_path / "d", tmp_path / "l")
    s.append(make_zxid(1, 1), b"x")
    s.close()
    assert (tmp_path / "l" / "version-2" / "txnlog").stat().st_size > len(LOG_HEADER)
    assert not (tmp_path / "d" / "version-2" / "txnlog").exists()


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=12), cut=st.floats(0, 1),
       flip=st.one_of(st.none(), st.floats(0, 1)))
def test_any_cut_or_flip_leaves_a_trusted_prefix(tmp_path_factory, sizes, cut, flip):
    d = tmp_path_factory.mktemp("prop")
    s = opened(d)
    ends = []
    for i, n in enumerate(sizes, start=1):
        s.append(make_zxid(1, i), bytes([i]) * n)
        ends.append(s.log_path.stat().st_size)
    s.close()
    path = d / "version-2" / "txnlog"
    data = bytearray(path.read_bytes())
    at = len(LOG_HEADER) + int(cut * (len(data) - len(LOG_HEADER)))
    data = data[:at]
    if flip is not None and len(data) > len(LOG_HEADER):
        i = len(LOG_HEADER) + int(flip * (len(data) - len(LOG_HEADER) - 1))
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    ev = Events()
    s = Storage(d, emit=ev)
    try:
        got = s.entries_after(0)
        want = [(make_zxid(1, i), bytes([i]) * n) for i, n in enumerate(sizes, start=1)]
        assert got == want[:len(got)]  # a prefix, byte for byte: nothing corrupt is trusted
        if flip is None:
            assert len(got) == sum(1 for e in ends if e <= at)  # nothing intact is dropped
            assert bool(ev.named("log_truncated")) == (at not in ends and at != len(LOG_HEADER))
        assert path.stat().st_size == (ev.named("log_truncated")[-1]["offset"]
                                       if ev.named("log_truncated") else len(data))
    finally:
        s.close()
