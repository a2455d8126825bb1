"""`reset_peer`: on the first chunk (or EOF), drop it, wait `timeout` ms, then
reset the connection: both sockets are closed with SO_LINGER 0, so peers get
ECONNRESET. Linger is set only when the toxic fires (toxicity 0 never resets,
unlike the real server, issue #603), and it works on live connections too."""
from __future__ import annotations

from ..link import Close
from .base import Toxic

__all__ = ["ResetPeerToxic"]


class ResetPeerToxic(Toxic):
    type_name = "reset_peer"
    timeout: int

    async def pipe(self, stub) -> None:
        await stub.recv()
        stub.drop()
        await stub.sleep(self.timeout / 1000.0)
        stub.send(Close(reset=True))
