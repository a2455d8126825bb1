"""`slicer`: split each chunk into pieces of about `average_size` bytes
(± `size_variation`), `delay` µs apart.

Pieces are cut at the midpoint moved by a random offset in
[-size_variation, size_variation] (clamped so each cut makes progress) until
each is at most average_size + size_variation. average_size ≤ 0 or
size_variation outside [0, average_size] is refused with 400 (the real server
recurses forever or panics on them).
"""
from __future__ import annotations

from ..link import Chunk
from .base import InvalidAttributes, Toxic, forward

__all__ = ["SlicerToxic"]


class SlicerToxic(Toxic):
    type_name = "slicer"
    average_size: int
    size_variation: int
    delay: int

    def validate(self) -> None:
        if self.average_size <= 0:
            raise InvalidAttributes("slicer average_size must be greater than 0")
        if not 0 <= self.size_variation <= self.average_size:
            raise InvalidAttributes("slicer size_variation must be between 0 and average_size")

    def cuts(self, size: int, rng) -> list[int]:
        """Piece boundaries [0, …, size]."""
        limit = self.average_size + self.size_variation
        out, todo = [0], [(0, size)]
        bounds: list[int] = []
        while todo:
            start, end = todo.pop()
            if end - start <= limit:
                bounds.append(end)
                continue
            mid = start + (end - start) // 2
            if self.size_variation > 0:
                mid += rng.randint(-self.size_variation, self.size_variation)
            mid = min(max(mid, start + 1), end - 1)
            todo.append((mid, end))
            todo.append((start, mid))
        out.extend(bounds)
        return out

    async def pipe(self, stub) -> None:
        while True:
            item = await stub.recv()
            if forward(stub, item):
                return
            cuts = self.cuts(len(item.data), stub.rng)
            data = item.data
            for i in range(1, len(cuts)):
                if i > 1 and self.delay > 0:
                    await stub.sleep(self.delay / 1e6)
                rest = data[cuts[i]:]
                stub.send(Chunk(data[cuts[i - 1]:cuts[i]], item.ts),
                          keep=Chunk(rest, item.ts) if rest else None)
