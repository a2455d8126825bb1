"""`timeout`: drop all data; close the connection `timeout` ms after the stub
started or after the last chunk arrived (0: never). Removing it closes too."""
from __future__ import annotations

from ..link import Chunk, Close
from .base import Toxic

__all__ = ["TimeoutToxic"]


class TimeoutToxic(Toxic):
    type_name = "timeout"
    timeout: int

    async def pipe(self, stub) -> None:
        wait = self.timeout / 1000.0
        while True:
            item = await (stub.recv_timeout(wait) if self.timeout > 0 else stub.recv())
            if type(item) is Chunk:
                stub.drop()
                continue
            stub.send(item if isinstance(item, Close) else Close())  # EOF or timer: close
            return

    def on_remove(self, stub) -> None:
        stub.link.conn.close()
