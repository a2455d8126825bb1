"""`latency`: hold each chunk until `latency` ± `jitter` ms after it was read.

The deadline counts from the read time, so pipelined chunks are not delayed
cumulatively. Jitter is uniform in [-jitter, +jitter) from the link's RNG.
"""
from __future__ import annotations

from .base import Toxic, forward

__all__ = ["LatencyToxic"]


class LatencyToxic(Toxic):
    type_name = "latency"
    latency: int
    jitter: int

    def delay_ms(self, rng) -> int:
        if self.jitter > 0:
            return self.latency + rng.randrange(-self.jitter, self.jitter)
        return self.latency

    async def pipe(self, stub) -> None:
        while True:
            item = await stub.recv()
            if forward(stub, item):
                return
            await stub.sleep_until(item.ts + self.delay_ms(stub.rng) / 1000.0)
            stub.send(item)
