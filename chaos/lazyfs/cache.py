"""What a power cut would leave of each file: the page cache of the lazy filesystem.

Theory of operation. Pure: no file is touched here; the FUSE shell
(:mod:`chaos.lazyfs.fs`) passes a ``read_backing(offset, size)`` callable
for a file's durable bytes and acts on the :class:`Flush` plans it gets back.

The backing file is the disk. A write does not reach it: it lands in dirty
4 KiB pages held here, and the file's logical size moves. A truncate moves
the logical size too and marks the disk's bytes past the cut as gone
(``valid``): read back, that range is zeros until a write fills it, exactly
as after a real truncate followed by an extension. ``fsync``/``fdatasync``
of the file (or a sync of the whole filesystem) turns the dirty state into a
:class:`Flush` — cut the disk file to ``valid``, write the dirty pages, set
its size — after which the file is clean. :meth:`PageCache.lose` drops every
dirty page and size change: the disk is what survives a power cut.

Bounded: past ``max_dirty`` bytes of dirty pages the file being written is
written back (a :class:`Flush` without the durability claim, as a kernel
under memory pressure does). A power cut may keep such data, so losing less
is still a state a real disk could show; ``written_back`` counts it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

__all__ = ["PAGE", "DEFAULT_MAX_DIRTY", "Flush", "FileLoss", "PageCache", "FileState"]

PAGE = 4096
DEFAULT_MAX_DIRTY = 64 << 20

ReadBacking = Callable[[int, int], bytes]


@dataclass(frozen=True, slots=True)
class Flush:
    """Make the disk file hold the logical content: truncate it to ``cut``,
    write each ``(offset, bytes)``, then set its size to ``size``."""

    path: str
    cut: int
    writes: tuple[tuple[int, bytes], ...]
    size: int


@dataclass(frozen=True, slots=True)
class FileLoss:
    """One file a power cut changed: its size before, what survives, the dirty bytes dropped."""

    path: str
    size: int
    durable_size: int
    dropped_bytes: int

    def to_json(self) -> dict:
        return {"path": self.path, "size": self.size, "durable_size": self.durable_size,
                "dropped_bytes": self.dropped_bytes}


@dataclass(slots=True)
class FileState:
    """A file with writes or a size change not yet on disk."""

    size: int                     # logical size
    disk_size: int                # the disk file's size when the state began
    valid: int                    # disk bytes at or past this offset are not content
    pages: dict[int, bytearray] = field(default_factory=dict)

    def dirty_bytes(self) -> int:
        return sum(min(PAGE, max(0, self.size - p * PAGE)) for p in self.pages)


class PageCache:
    """Dirty pages and sizes per file path (paths as the filesystem shows them)."""

    def __init__(self, max_dirty: int = DEFAULT_MAX_DIRTY) -> None:
        self.max_dirty = max_dirty
        self.files: dict[str, FileState] = {}
        self.written_back = 0     # bytes written back because of the bound

    # ---- reads
    def size(self, path: str) -> int | None:
        """The logical size, or None when the file is clean (the disk's size holds)."""
        st = self.files.get(path)
        return None if st is None else st.size

    def _page(self, st: FileState, p: int, read_backing: ReadBacking) -> bytes:
        page = st.pages.get(p)
        if page is not None:
            return page
        start = p * PAGE
        if start >= st.valid:
            return bytes(PAGE)
        data = read_backing(start, min(PAGE, st.valid - start))
        return data + bytes(PAGE - len(data))

    def read(self, path: str, offset: int, size: int, read_backing: ReadBacking) -> bytes | None:
        """The logical bytes, or None when the file is clean (read the disk)."""
        st = self.files.get(path)
        if st is None:
            return None
        end = min(st.size, offset + size)
        if offset >= end:
            return b""
        out = bytearray()
        for p in range(offset // PAGE, (end - 1) // PAGE + 1):
            page = self._page(st, p, read_backing)
            lo = max(offset, p * PAGE) - p * PAGE
            hi = min(end, (p + 1) * PAGE) - p * PAGE
            out += page[lo:hi]
        return bytes(out)

    # ---- changes
    def _state(self, path: str, disk_size: int) -> FileState:
        st = self.files.get(path)
        if st is None:
            st = self.files[path] = FileState(size=disk_size, disk_size=disk_size, valid=disk_size)
        return st

    def write(self, path: str, offset: int, data: bytes, disk_size: int,
              read_backing: ReadBacking) -> Flush | None:
        """Apply a write; returns a write-back :class:`Flush` when the bound is passed."""
        st = self._state(path, disk_size)
        end = offset + len(data)
        pos = offset
        while pos < end:
            p = pos // PAGE
            page = st.pages.get(p)
            if page is None:
                page = st.pages[p] = bytearray(self._page(st, p, read_backing))
            lo = pos - p * PAGE
            n = min(PAGE - lo, end - pos)
            page[lo:lo + n] = data[pos - offset:pos - offset + n]
            pos += n
        st.size = max(st.size, end)
        if self.dirty_total() > self.max_dirty:
            flush = self.flush(path)
            if flush is not None:
                self.written_back += sum(len(b) for _, b in flush.writes)
            return flush
        return None

    def truncate(self, path: str, length: int, disk_size: int) -> None:
        st = self._state(path, disk_size)
        if length < st.size:
            for p in [p for p in st.pages if p * PAGE >= length]:
                del st.pages[p]
            tail = st.pages.get(length // PAGE)
            if tail is not None:
                lo = length % PAGE
                tail[lo:] = bytes(PAGE - lo)
            st.valid = min(st.valid, length)
        st.size = length

    def flush(self, path: str) -> Flush | None:
        """What makes ``path`` durable (fsync); the file is clean afterwards."""
        st = self.files.pop(path, None)
        if st is None:
            return None
        writes = []
        for p in sorted(st.pages):
            start = p * PAGE
            if start < st.size:
                writes.append((start, bytes(st.pages[p][:min(PAGE, st.size - start)])))
        return Flush(path, min(st.valid, st.disk_size), tuple(writes), st.size)

    def flush_all(self) -> list[Flush]:
        return [f for f in (self.flush(p) for p in sorted(self.files)) if f is not None]

    def lose(self) -> list[FileLoss]:
        """The power cut: every unsynced write and size change is gone."""
        lost = [FileLoss(p, st.size, st.disk_size, st.dirty_bytes()) for p, st in sorted(self.files.items())]
        self.files.clear()
        return lost

    # ---- names (the disk's directory changes at once; see chaos.lazyfs.fs)
    def rename(self, old: str, new: str) -> None:
        self.forget(new)
        moved = {p: st for p, st in self.files.items() if p == old or p.startswith(old + "/")}
        for p, st in moved.items():
            del self.files[p]
            self.files[new + p[len(old):]] = st

    def forget(self, path: str) -> None:
        for p in [p for p in self.files if p == path or p.startswith(path + "/")]:
            del self.files[p]

    def dirty_total(self) -> int:
        return sum(len(st.pages) for st in self.files.values()) * PAGE

    def stats(self) -> dict:
        return {"files": len(self.files), "dirty_bytes": sum(st.dirty_bytes() for st in self.files.values()),
                "written_back": self.written_back}
