"""`bandwidth`: at most `rate` KB/s (1 KB = 1000 bytes), in pieces of rate×100 bytes.

A sending schedule (`state`, kept across updates) advances by len/rate for
each piece and the pipe sleeps until the piece is due, so throughput is the
rate whatever the chunk sizes. `rate` ≤ 0 holds the data (nothing passes)
until the toxic is updated or removed, which is what toxiproxy-server 2.12
does in practice; the pipe just waits, it never polls.
"""
from __future__ import annotations

import asyncio

from ..link import Chunk
from .base import Toxic, forward

__all__ = ["BandwidthToxic"]


class BandwidthToxic(Toxic):
    type_name = "bandwidth"
    rate: int

    def new_state(self) -> list[float]:
        return [0.0]  # when the link is free to send again

    async def pipe(self, stub) -> None:
        while True:
            item = await stub.recv()
            if forward(stub, item):
                return
            if self.rate <= 0:
                await asyncio.Event().wait()  # held until interrupted
            per_byte = 1.0 / (self.rate * 1000.0)
            piece = self.rate * 100
            data = item.data
            while data:
                part, data = data[:piece], data[piece:]
                due = max(stub.state[0], stub.clock.now()) + len(part) * per_byte
                stub.state[0] = due
                stub.held = Chunk(part + data, item.ts)
                await stub.sleep_until(due)
                stub.send(Chunk(part, item.ts), keep=Chunk(data, item.ts) if data else None)
