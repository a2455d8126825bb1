"""`slow_close`: data passes; the end of the stream is delayed by `delay` ms."""
from __future__ import annotations

from ..link import Chunk
from .base import Toxic

__all__ = ["SlowCloseToxic"]


class SlowCloseToxic(Toxic):
    type_name = "slow_close"
    delay: int

    async def pipe(self, stub) -> None:
        while True:
            item = await stub.recv()
            if type(item) is Chunk:
                stub.send(item)
                continue
            await stub.sleep(self.delay / 1000.0)
            stub.send(item)
            return
