"""`noop`: pass everything through (also what a stub runs when toxicity says no)."""
from __future__ import annotations

from .base import Toxic, forward

__all__ = ["NoopToxic"]


class NoopToxic(Toxic):
    type_name = "noop"

    async def pipe(self, stub) -> None:
        while True:
            item = await stub.recv()
            if forward(stub, item):
                return
            stub.send(item)
