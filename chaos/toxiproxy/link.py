"""One direction of a proxied connection: a chain of toxic stubs.

Theory of operation
-------------------
A connection has two links: `upstream` carries client→server bytes and
`downstream` server→client bytes. Each link is

    source socket ──► [stub 1] ──► [stub 2] ──► … ──► sink (destination socket)
                        │queue       │queue
                        └ toxic.pipe └ toxic.pipe

Every stub owns an input queue and one task running its toxic's `pipe`
coroutine, which takes items with `recv()` and passes them on with `send()`.
Items are `Chunk`s (bytes plus the monotonic time they were read), `EOF`
(the source half-closed: forwarded as a half-close) or `Close` (a toxic ended
the connection: a full close, or an RST when `reset` is set). Items move
between stubs synchronously (`send` puts straight into the next queue, or
writes to the destination), so the chain can be edited at any moment without
losing or reordering data:

* add: the new stub goes at the tail; the old tail's `next` points to it.
* update: the stub's task is cancelled, the item it held is delivered at once,
  the toxic is swapped (per-link state is kept) and the task restarts.
* remove: the task is cancelled, the held item and everything queued go to
  the next stub (or the sink), and the stub is spliced out.

With no stubs, bytes go from the source protocol's `data_received` straight to
the destination transport: no queue, no task hop. Backpressure: the source is
paused while the destination's write buffer is full or the chain holds more
than `HIGH_WATER` bytes.

Toxicity is rolled from the link's own seeded RNG each time a stub starts:
when the link is created (each toxic in chain order), and when that toxic is
added or updated. Editing a neighbour does not re-roll (the real server does).
"""
from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from typing import TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:
    from .toxics.base import Toxic

__all__ = ["Chunk", "EOF", "Close", "Item", "Stub", "Link", "Clock", "ToxicWrapper", "HIGH_WATER",
           "set_linger_zero"]

log = logging.getLogger("chaos.toxiproxy")
HIGH_WATER = 1 << 20
LOW_WATER = 1 << 18


class Clock:
    """Monotonic time and sleeping; injectable so toxics never read a global clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds if seconds > 0 else 0)


class Chunk:
    __slots__ = ("data", "ts")

    def __init__(self, data: bytes, ts: float) -> None:
        self.data = data
        self.ts = ts


class _Eof:
    __slots__ = ()

    def __repr__(self) -> str:
        return "EOF"


EOF = _Eof()


class Close:
    __slots__ = ("reset",)

    def __init__(self, reset: bool = False) -> None:
        self.reset = reset


Item = Union[Chunk, _Eof, Close]


class ToxicWrapper:
    """A toxic as the API sees it: name, type, stream as sent, toxicity, attributes."""

    __slots__ = ("name", "type", "stream", "direction", "toxicity", "toxic")

    def __init__(self, name: str, type: str, stream: str, direction: str, toxicity: float,
                 toxic: "Toxic") -> None:
        self.name = name
        self.type = type
        self.stream = stream
        self.direction = direction
        self.toxicity = toxicity
        self.toxic = toxic

    def to_json(self) -> dict[str, Any]:
        return {"attributes": self.toxic.to_json(), "name": self.name, "type": self.type,
                "stream": self.stream, "toxicity": self.toxicity}


class Stub:
    """A toxic's place in one link; what its `pipe` coroutine talks to."""

    __slots__ = ("link", "wrapper", "queue", "next", "held", "task", "state", "active")

    def __init__(self, link: "Link", wrapper: ToxicWrapper) -> None:
        self.link = link
        self.wrapper = wrapper
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.next: Optional[Stub] = None
        self.held: Optional[Item] = None
        self.task: Optional[asyncio.Task[None]] = None
        self.state: Any = wrapper.toxic.new_state()
        self.active = False

    # --- used by toxics -------------------------------------------------
    @property
    def rng(self) -> "random.Random":
        return self.link.rng

    @property
    def clock(self) -> Clock:
        return self.link.clock

    async def recv(self) -> Item:
        item = await self.queue.get()
        self.held = item
        if type(item) is Chunk:
            self.link.buffered -= len(item.data)
            if self.link.buffered < LOW_WATER:
                self.link.unthrottle("chain")
        return item

    async def recv_timeout(self, seconds: float) -> Optional[Item]:
        """Next item, or None when nothing arrived within `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                return await self.recv()
        except TimeoutError:
            return None

    def send(self, item: Item, keep: Optional[Item] = None) -> None:
        """Pass `item` on; `keep` is what the toxic still holds (e.g. an unsent remainder)."""
        self.held = keep
        nxt = self.next
        if nxt is not None:
            nxt.put(item)
        else:
            self.link.sink(item)

    def drop(self) -> None:
        self.held = None

    async def sleep(self, seconds: float) -> None:
        await self.link.clock.sleep(seconds)

    async def sleep_until(self, deadline: float) -> None:
        await self.link.clock.sleep(deadline - self.link.clock.now())

    # --- used by the link ----------------------------------------------
    def put(self, item: Item) -> None:
        self.queue.put_nowait(item)
        if type(item) is Chunk:
            self.link.buffered += len(item.data)
            if self.link.buffered > HIGH_WATER:
                self.link.throttle("chain")

    def start(self) -> None:
        from .toxics import NOOP
        self.active = self.link.toxicity_rng.random() < self.wrapper.toxicity
        toxic = self.wrapper.toxic if self.active else NOOP
        self.task = asyncio.get_running_loop().create_task(self._run(toxic))

    async def _run(self, toxic: "Toxic") -> None:
        try:
            await toxic.pipe(self)
        except asyncio.CancelledError:
            raise
        except Exception:  # a toxic bug must not take the server down
            log.exception("toxic %s failed", self.wrapper.name)
            self.link.conn.close()

    def interrupt(self) -> Optional[Item]:
        """Stop the task; return the item its toxic was holding, if any."""
        if self.task is not None:
            self.task.cancel()
            self.task = None
        held, self.held = self.held, None
        return held

    def drain(self) -> list[Item]:
        """Everything still queued, in order."""
        items: list[Item] = []
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if type(item) is Chunk:
                self.link.buffered -= len(item.data)
            items.append(item)
        return items


class Link:
    """The stub chain of one direction of one connection, and its sink."""

    __slots__ = ("conn", "direction", "dest", "source", "seed_key", "_rng", "_toxicity_rng", "clock",
                 "head", "stubs", "buffered", "throttled", "eof_sent", "closed", "sent_bytes",
                 "received_bytes")

    def __init__(self, conn: Any, direction: str, source: asyncio.Transport,
                 dest: asyncio.Transport, seed_key: str, clock: Clock) -> None:
        self.conn = conn
        self.direction = direction
        self.source = source
        self.dest = dest
        self.seed_key = seed_key
        self._rng: Optional["random.Random"] = None
        self._toxicity_rng: Optional["random.Random"] = None
        self.clock = clock
        self.head: Optional[Stub] = None
        self.stubs: list[Stub] = []
        self.buffered = 0
        self.throttled: set[str] = set()
        self.eof_sent = False
        self.closed = False
        self.sent_bytes = 0
        self.received_bytes = 0

    # --- randomness ---------------------------------------------------------
    # Two generators per link, seeded from ``seed_key`` (server seed, proxy,
    # connection number, direction): one draws the toxics' attributes (jitter,
    # slice sizes), one the toxicity rolls, so adding a toxic never shifts the
    # other's sequence. Made on first use: seeding costs ~20 us each, and most
    # links of a run never carry a toxic.
    @property
    def rng(self) -> "random.Random":
        if self._rng is None:
            self._rng = random.Random(self.seed_key + "/attributes")
        return self._rng

    @property
    def toxicity_rng(self) -> "random.Random":
        if self._toxicity_rng is None:
            self._toxicity_rng = random.Random(self.seed_key + "/toxicity")
        return self._toxicity_rng

    # --- data in ----------------------------------------------------------
    def feed(self, data: "bytes | memoryview") -> None:
        """Bytes read from the source; `data` may be a view valid only during this call."""
        self.received_bytes += len(data)
        head = self.head
        if head is None:
            self.sent_bytes += len(data)
            self.dest.write(data)
        else:
            head.put(Chunk(bytes(data), self.clock.now()))

    def feed_eof(self) -> None:
        head = self.head
        if head is None:
            self.sink(EOF)
        else:
            head.put(EOF)

    # --- data out ---------------------------------------------------------
    def sink(self, item: Item) -> None:
        if self.closed:
            return
        if type(item) is Chunk:
            if item.data:
                self.sent_bytes += len(item.data)
                self.dest.write(item.data)
        elif item is EOF:
            if not self.eof_sent:
                self.eof_sent = True
                self.conn.link_finished(self)
        else:
            assert isinstance(item, Close)
            self.conn.close(reset=item.reset)

    # --- flow control -----------------------------------------------------
    def throttle(self, reason: str) -> None:
        if not self.throttled:
            self.source.pause_reading()
        self.throttled.add(reason)

    def unthrottle(self, reason: str) -> None:
        if reason in self.throttled:
            self.throttled.discard(reason)
            if not self.throttled and not self.closed:
                self.source.resume_reading()

    # --- chain edits --------------------------------------------------------
    def add(self, wrapper: ToxicWrapper) -> None:
        if self.closed:
            return
        stub = Stub(self, wrapper)
        if self.stubs:
            self.stubs[-1].next = stub
        else:
            self.head = stub
        self.stubs.append(stub)
        stub.start()

    def _find(self, name: str) -> Optional[int]:
        for i, stub in enumerate(self.stubs):
            if stub.wrapper.name == name:
                return i
        return None

    def update(self, wrapper: ToxicWrapper) -> None:
        i = self._find(wrapper.name)
        if i is None or self.closed:
            return
        stub = self.stubs[i]
        held = stub.interrupt()
        stub.wrapper = wrapper
        if held is not None:
            stub.send(held)  # the held item goes out now; the queue stays for the new toxic
        stub.start()

    def remove(self, name: str) -> None:
        i = self._find(name)
        if i is None:
            return
        stub = self.stubs.pop(i)
        held = stub.interrupt()
        items = ([] if held is None else [held]) + stub.drain()
        if i == 0:
            self.head = stub.next
        else:
            self.stubs[i - 1].next = stub.next
        if self.closed:
            return
        # Toxiproxy runs a toxic's Cleanup before the flush: one that closes
        # the connection (timeout) passes on nothing it held. Flushing first
        # sent a chunk queued behind dropped ones, a hole in the stream.
        if stub.active:  # a toxic that never applied (toxicity roll) has nothing to undo
            stub.wrapper.toxic.on_remove(stub)
            if self.closed:
                return
        for item in items:
            stub.send(item)

    def shutdown(self) -> None:
        """Stop every stub; the connection is going away."""
        self.closed = True
        for stub in self.stubs:
            if stub.task is not None:
                stub.task.cancel()
                stub.task = None


def set_linger_zero(transport: asyncio.BaseTransport) -> None:
    """Make the next close of this socket send an RST instead of a FIN."""
    sock: Optional[socket.socket] = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass

