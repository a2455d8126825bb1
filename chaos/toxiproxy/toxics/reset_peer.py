"""`reset_peer`: on the first chunk (or EOF), drop it, wait `timeout` ms, then
reset the connection: both sockets are closed with SO_LINGER 0, so peers get
ECONNRESET. Linger is set only when the toxic fires (toxicity 0 never resets,
unlike the real server, issue #603), and it works on live connections too.

Once it has taken a chunk the reset is certain: nothing behind that chunk
passes while it waits, and removing the toxic then resets at once. The real
server's does the same (its removal waits for the pending reset); letting the
rest of the stream through would leave a hole where the dropped chunk was, a
stream TCP never delivers."""
from __future__ import annotations

from ..link import Close
from .base import Toxic

__all__ = ["ResetPeerToxic"]


class ResetPeerToxic(Toxic):
    type_name = "reset_peer"
    timeout: int

    def new_state(self) -> list[bool]:
        return [False]   # a chunk was taken: the reset is due

    async def pipe(self, stub) -> None:
        if not stub.state[0]:   # an update after the chunk keeps the reset coming
            await stub.recv()
            stub.drop()
            stub.state[0] = True
        deadline = stub.clock.now() + self.timeout / 1000.0
        while (left := deadline - stub.clock.now()) > 0:
            if await stub.recv_timeout(left) is not None:
                stub.drop()   # held back until the reset, which discards it
        stub.send(Close(reset=True))

    def on_remove(self, stub) -> None:
        if stub.state[0]:
            stub.link.conn.close(reset=True)
