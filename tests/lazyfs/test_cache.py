"""The page cache alone (pure): what a power cut leaves of each file."""
from __future__ import annotations

from chaos.lazyfs.cache import PAGE, PageCache


class Disk:
    """A dict of path -> bytes standing for the backing files, applying Flush plans."""

    def __init__(self) -> None:
        self.files: dict[str, bytearray] = {}

    def reader(self, path: str):
        return lambda off, n: bytes(self.files.get(path, b"")[off:off + n])

    def size(self, path: str) -> int:
        return len(self.files.get(path, b""))

    def apply(self, flush) -> None:
        if flush is None:
            return
        data = self.files.setdefault(flush.path, bytearray())
        del data[flush.cut:]
        for off, chunk in flush.writes:
            if len(data) < off:
                data.extend(bytes(off - len(data)))
            data[off:off + len(chunk)] = chunk
        if len(data) < flush.size:
            data.extend(bytes(flush.size - len(data)))
        del data[flush.size:]


def write(c: PageCache, d: Disk, path: str, off: int, data: bytes) -> None:
    d.apply(c.write(path, off, data, d.size(path), d.reader(path)))


def read(c: PageCache, d: Disk, path: str) -> bytes:
    got = c.read(path, 0, 1 << 30, d.reader(path))
    return bytes(d.files.get(path, b"")) if got is None else got


def test_unsynced_write_is_lost_and_synced_one_kept():
    c, d = PageCache(), Disk()
    write(c, d, "/a", 0, b"header")
    d.apply(c.flush("/a"))
    write(c, d, "/a", 6, b"-txn1")
    assert read(c, d, "/a") == b"header-txn1"
    lost = c.lose()
    assert [(f.path, f.size, f.durable_size) for f in lost] == [("/a", 11, 6)]
    assert read(c, d, "/a") == b"header"


def test_write_spanning_pages_reads_back_whole():
    c, d = PageCache(), Disk()
    blob = bytes(range(256)) * 40   # 10240 bytes, three pages
    write(c, d, "/a", 100, blob)
    assert read(c, d, "/a") == bytes(100) + blob
    d.apply(c.flush("/a"))
    assert bytes(d.files["/a"]) == bytes(100) + blob and c.size("/a") is None


def test_truncate_then_extend_reads_zeros_not_old_disk_bytes():
    c, d = PageCache(), Disk()
    d.files["/a"] = bytearray(b"x" * 9000)
    c.truncate("/a", 10, 9000)
    write(c, d, "/a", 5000, b"y")
    data = read(c, d, "/a")
    assert data[:10] == b"x" * 10 and data[10:5000] == bytes(4990) and data[5000:] == b"y"
    d.apply(c.flush("/a"))
    assert bytes(d.files["/a"]) == data


def test_unsynced_truncate_is_lost():
    c, d = PageCache(), Disk()
    d.files["/log"] = bytearray(b"a" * 100)
    c.truncate("/log", 40, 100)
    assert c.size("/log") == 40
    c.lose()
    assert read(c, d, "/log") == b"a" * 100


def test_rename_carries_unsynced_contents_and_replaces_target():
    c, d = PageCache(), Disk()
    d.files["/e.tmp"] = bytearray()
    write(c, d, "/e.tmp", 0, b"7")
    write(c, d, "/e", 0, b"6")
    c.rename("/e.tmp", "/e")
    d.files["/e"] = d.files.pop("/e.tmp")
    assert c.size("/e") == 1 and c.size("/e.tmp") is None and read(c, d, "/e") == b"7"
    c.lose()
    assert read(c, d, "/e") == b""   # renamed but never fsync'ed: the name survives, empty


def test_bound_writes_back_and_counts_it():
    c, d = PageCache(max_dirty=2 * PAGE), Disk()
    write(c, d, "/a", 0, b"z" * (3 * PAGE))
    assert c.written_back == 3 * PAGE and c.size("/a") is None
    assert c.lose() == [] and read(c, d, "/a") == b"z" * (3 * PAGE)
