"""`limit_data`: forward at most `bytes` bytes per link, then close the
connection. The count (`state`) survives updates of the toxic."""
from __future__ import annotations

from ..link import Chunk, Close
from .base import Toxic, forward

__all__ = ["LimitDataToxic"]


class LimitDataToxic(Toxic):
    type_name = "limit_data"
    bytes: int

    def new_state(self) -> list[int]:
        return [0]  # bytes forwarded so far

    async def pipe(self, stub) -> None:
        while True:
            item = await stub.recv()
            if forward(stub, item):
                return
            room = self.bytes - stub.state[0]
            if room <= 0:
                stub.drop()
                stub.send(Close())
                return
            if len(item.data) < room:
                stub.state[0] += len(item.data)
                stub.send(item)
                continue
            stub.state[0] += room
            stub.send(Chunk(item.data[:room], item.ts))
            stub.send(Close())
            return
