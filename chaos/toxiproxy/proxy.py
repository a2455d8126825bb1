"""A proxy: its listener, its live connections and its two toxic chains.

Each accepted client gets its own dial task, so a slow or blackholed upstream
never stalls other accepts (the real server dials inside its accept loop).
Client reads are paused until the upstream is connected. A client half-close
(SHUT_WR) is forwarded as a half-close upstream and replies keep flowing; the
connection closes when both directions have ended, a socket fails, or a toxic
closes it.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import sys
from typing import Any, Callable, Optional

from .link import Clock, Link, ToxicWrapper, set_linger_zero

__all__ = ["Proxy", "Connection", "ProxyError", "resolve_listen", "split_host_port", "format_addr"]

log = logging.getLogger("chaos.toxiproxy")
ACCEPT_BACKLOG = 1024


class ProxyError(Exception):
    """Binding or resolving failed; the API answers 500 with this text (Go-like)."""


def split_host_port(addr: str) -> tuple[str, str]:
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise ProxyError(f"address {addr}: missing ']' in address")
        host, rest = addr[1:end], addr[end + 1:]
        if not rest.startswith(":"):
            raise ProxyError(f"address {addr}: missing port in address")
        return host, rest[1:]
    if ":" not in addr:
        raise ProxyError(f"address {addr}: missing port in address")
    host, _, port = addr.rpartition(":")
    if ":" in host:
        raise ProxyError(f"address {addr}: too many colons in address")
    return host, port


def format_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port(port: str, addr: str) -> int:
    try:
        value = int(port, 10)
    except ValueError:
        try:
            return socket.getservbyname(port, "tcp")
        except OSError:
            raise ProxyError(f"listen tcp: lookup tcp/{port}: unknown port") from None
    if not 0 <= value <= 65535:
        raise ProxyError(f"listen tcp: address {addr}: invalid port")
    return value


async def resolve_listen(listen: str) -> tuple[str, int]:
    """(ip, port) to bind for a listen string; an empty host means 127.0.0.1."""
    addr = listen or "127.0.0.1:0"
    host, port_s = split_host_port(addr)
    port = _port(port_s, addr)
    if not host:
        return "127.0.0.1", port
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ProxyError(f"listen tcp: lookup {host}: {exc.strerror or 'no such host'}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # Go prefers IPv4 here
    return infos[0][4][0], port


READ_SIZE = 1 << 20
_READ_BUFFER = memoryview(bytearray(READ_SIZE))
# Reads land in one process-wide buffer and are consumed before the next read:
# a chunk is written at once (3.11 transports copy what they cannot send) or
# copied into a Chunk for the toxic chain. Python 3.12+ transports keep a
# reference to unsent data instead of copying it, so there each read is copied.
_COPY_READS = sys.version_info >= (3, 12)


class _Side(asyncio.BufferedProtocol):
    """One socket of a connection; `which` is 'client' or 'upstream'."""

    __slots__ = ("conn", "which", "transport", "link_out", "link_in")

    def __init__(self, conn: "Connection", which: str) -> None:
        self.conn = conn
        self.which = which
        self.transport: Optional[asyncio.Transport] = None
        self.link_out: Optional[Link] = None  # the link this socket feeds
        self.link_in: Optional[Link] = None  # the link that writes to this socket

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.conn.side_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        link = self.link_out
        if link is not None:
            data = _READ_BUFFER[:nbytes]
            link.feed(bytes(data) if _COPY_READS else data)

    def eof_received(self) -> bool:
        if self.link_out is not None:
            self.link_out.feed_eof()
        return True  # keep the write half open

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.conn.side_lost(self, exc)

    def pause_writing(self) -> None:
        if self.link_in is not None:
            self.link_in.throttle("dest")

    def resume_writing(self) -> None:
        if self.link_in is not None:
            self.link_in.unthrottle("dest")


class Connection:
    __slots__ = ("proxy", "seq", "client", "upstream", "links", "closed", "dial_task", "finished")

    def __init__(self, proxy: "Proxy", seq: int) -> None:
        self.proxy = proxy
        self.seq = seq
        self.client: Optional[_Side] = None
        self.upstream: Optional[_Side] = None
        self.links: dict[str, Link] = {}
        self.closed = False
        self.dial_task: Optional[asyncio.Task[None]] = None
        self.finished: set[str] = set()

    def side_made(self, side: _Side) -> None:
        if side.which == "client":
            self.client = side
            assert side.transport is not None
            side.transport.pause_reading()
            self.proxy.connections.add(self)
            self.dial_task = asyncio.get_running_loop().create_task(self._dial())
        else:
            self.upstream = side

    async def _dial(self) -> None:
        proxy = self.proxy
        try:
            host, port_s = split_host_port(proxy.upstream)
            await asyncio.get_running_loop().create_connection(
                lambda: _Side(self, "upstream"), host or "127.0.0.1", _port(port_s, proxy.upstream))
        except asyncio.CancelledError:
            raise
        except (OSError, ProxyError) as exc:
            proxy.emit("upstream_dial_failed", upstream=proxy.upstream, error=str(exc))
            self.close()
            return
        if self.closed:
            if self.upstream is not None and self.upstream.transport is not None:
                self.upstream.transport.close()
            return
        self._start_links()

    def _start_links(self) -> None:
        proxy = self.proxy
        client, upstream = self.client, self.upstream
        assert client is not None and upstream is not None
        assert client.transport is not None and upstream.transport is not None
        for direction, src, dst in (("upstream", client, upstream), ("downstream", upstream, client)):
            link = Link(self, direction, src.transport, dst.transport,  # type: ignore[arg-type]
                        f"{proxy.seed}/{proxy.name}/{self.seq}/{direction}", proxy.clock)
            self.links[direction] = link
            src.link_out = link
            dst.link_in = link
            for wrapper in proxy.toxics[direction]:
                link.add(wrapper)
        client.transport.resume_reading()

    def link_finished(self, link: Link) -> None:
        """A link delivered EOF: half-close its destination; close when both are done."""
        self.finished.add(link.direction)
        if len(self.finished) == 2:
            self.close()
            return
        dest = link.dest
        if dest.can_write_eof() and not dest.is_closing():
            try:
                dest.write_eof()
            except OSError:
                self.close()

    def side_lost(self, side: _Side, exc: Optional[Exception]) -> None:
        self.close()

    def close(self, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if self.dial_task is not None and not self.dial_task.done():
            self.dial_task.cancel()
        for link in self.links.values():
            link.shutdown()
        for side in (self.client, self.upstream):
            if side is None or side.transport is None:
                continue
            if reset:
                set_linger_zero(side.transport)
                side.transport.abort()
            else:
                side.transport.close()
        self.proxy.connection_closed(self)


class Proxy:
    """Name, listen, upstream, enabled, the toxics per stream, and live connections."""

    def __init__(self, name: str, listen: str, upstream: str, *, seed: int, clock: Clock,
                 emit: Callable[..., None]) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.seed = seed
        self.clock = clock
        self.emit = emit
        self.toxics: dict[str, list[ToxicWrapper]] = {"upstream": [], "downstream": []}
        self.connections: set[Connection] = set()
        self.server: Optional[asyncio.AbstractServer] = None
        self._seq = 0
        self.bytes: dict[str, int] = {"upstream": 0, "downstream": 0}  # sent, closed links
        self.received: dict[str, int] = {"upstream": 0, "downstream": 0}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream,
                "enabled": self.enabled, "Logger": {},
                "toxics": [w.to_json() for w in self.toxics["upstream"] + self.toxics["downstream"]]}

    # --- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        if self.enabled:
            return
        host, port = await resolve_listen(self.listen)
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(self._accept, host, port, backlog=ACCEPT_BACKLOG,
                                                   reuse_address=True)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise ProxyError(f"listen tcp {format_addr(host, port)}: bind: {reason}") from None
        sockname = self.server.sockets[0].getsockname()
        self.listen = format_addr(sockname[0], sockname[1])
        self.enabled = True
        self.emit("proxy_started", proxy=self.name, listen=self.listen, upstream=self.upstream)

    def _accept(self) -> _Side:
        self._seq += 1
        return _Side(Connection(self, self._seq), "client")

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for conn in list(self.connections):
            conn.close()
        if self.enabled:
            self.enabled = False
            self.emit("proxy_stopped", proxy=self.name)

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        for direction, link in conn.links.items():
            self.bytes[direction] += link.sent_bytes
            self.received[direction] += link.received_bytes

    async def differs(self, listen: str, upstream: str) -> bool:
        """Whether an update must rebind (resolution errors propagate as ProxyError)."""
        host, port = await resolve_listen(listen)
        return upstream != self.upstream or format_addr(host, port) != self.listen

    # --- toxics ----------------------------------------------------------------
    def find_toxic(self, name: str) -> Optional[ToxicWrapper]:
        for chain in self.toxics.values():
            for wrapper in chain:
                if wrapper.name == name:
                    return wrapper
        return None

    def _live_links(self, direction: str) -> list[Link]:
        return [c.links[direction] for c in self.connections if direction in c.links]

    def add_toxic(self, wrapper: ToxicWrapper) -> None:
        self.toxics[wrapper.direction].append(wrapper)
        for link in self._live_links(wrapper.direction):
            link.add(wrapper)

    def update_toxic(self, old: ToxicWrapper, new: ToxicWrapper) -> None:
        chain = self.toxics[old.direction]
        chain[chain.index(old)] = new
        for link in self._live_links(new.direction):
            link.update(new)

    def remove_toxic(self, wrapper: ToxicWrapper) -> None:
        self.toxics[wrapper.direction].remove(wrapper)
        for link in self._live_links(wrapper.direction):
            link.remove(wrapper.name)

    def remove_all_toxics(self) -> None:
        for chain in self.toxics.values():
            for wrapper in list(chain):
                self.remove_toxic(wrapper)
