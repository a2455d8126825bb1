"""The election port's wire format: handshake, int32 framing, notifications.

Theory of operation
-------------------
Pure: bytes in, values out; bytes out for values in. No sockets, clocks or
randomness, so the asyncio transport (``node.qcm``) and the tests drive the
same code.

Anything a *remote* peer can send that is wrong raises :class:`ProtocolError`
and nothing else (a hypothesis property checks this). The transport turns it
into "log, drop, maybe close the connection" - never a crash. Mistakes by the
*local* caller (encoding a negative sid as a 3.4 handshake, an unknown
protocol name) raise ``ValueError``: they are bugs, not network weather.

Receivers mirror ZooKeeper exactly, including its oddities, because the point
of the harness is to behave like the real peer on the wire:

* 3.8 picks the notification format by payload size (the buffer's capacity);
  a 40-byte payload has its version forced to 0, and sizes that make the Java
  ``ByteBuffer`` underflow (29-35, 36-39, 41-43 with version > 1) are dropped.
* 3.4.6 reads a version only if four bytes remain and ignores any config;
  where the Java receiver thread would die (29-35 bytes) we raise instead.

All integers are big-endian, as Java's ``DataOutputStream``/``ByteBuffer``.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from zkrules.vote import Notification, ServerState

__all__ = [
    "MAX_ADDRESS_LEN",
    "PACKET_MAX_SIZE",
    "PROTOCOL_VERSION_V1",
    "PROTOCOL_VERSION_V2",
    "PROTOCOLS",
    "FrameDecoder",
    "Handshake",
    "HandshakeDecoder",
    "ProtocolError",
    "decode_notification",
    "encode_frame",
    "encode_handshake",
    "encode_handshake_v2",
    "encode_notification",
    "format_address",
]

PROTOCOL_VERSION_V1 = -65536  # 0xFFFFFFFFFFFF0000: one "host:port"
PROTOCOL_VERSION_V2 = -65535  # 0xFFFFFFFFFFFF0001: "h1:p1|h2:p2|..." (multiAddress)
PACKET_MAX_SIZE = 524288      # QuorumCnxManager.PACKETMAXSIZE: 512 KiB
MAX_ADDRESS_LEN = 2048        # InitialMessage maxBuffer
PROTOCOLS = ("3.8", "3.4")

#: ServerState codes a receiver accepts; anything else is dropped by ZooKeeper.
_STATE_CODES = {int(s): s for s in ServerState}
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "0:0:0:0:0:0:0:0"})

_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_HANDSHAKE_HEAD = struct.Struct(">qqi")   # version, sid, address length
_NOTIFICATION_V1 = struct.Struct(">iqqqqi")  # state, leader, zxid, round, peer_epoch, version
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class ProtocolError(Exception):
    """A remote peer sent bytes that do not follow the election protocol.

    The caller should drop the offending message (notification level) or
    close the connection (handshake or framing level), log the message, and
    carry on. ``length`` is the offending length field when there is one
    (framing), so the transport can report it in ``malformed_frame``.
    """

    def __init__(self, reason: str, *, length: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.length = length


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown election protocol {protocol!r}; expected one of {PROTOCOLS}")


# --------------------------------------------------------------------------- handshake

@dataclass(frozen=True, slots=True)
class Handshake:
    """What a dialling peer said about itself.

    ``protocol_version`` is None for a 3.4 peer (bare sid, no address).
    ``addresses`` has wildcard hosts removed (ZK-2164), so it may be empty;
    the transport never dials these anyway (it uses the configured address).
    """

    sid: int
    protocol_version: int | None
    addresses: tuple[tuple[str, int], ...] = ()


def format_address(address: tuple[str, int]) -> str:
    """``host:port``, with IPv6 literals bracketed as Java's InitialMessage expects."""
    host, port = address
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def _handshake_bytes(version: int, sid: int, text: str) -> bytes:
    if not _INT64_MIN <= sid <= _INT64_MAX:
        raise ValueError(f"sid {sid} does not fit in an int64")
    body = text.encode("utf-8")
    if not 1 <= len(body) <= MAX_ADDRESS_LEN:
        raise ValueError(f"handshake address is {len(body)} bytes; must be 1..{MAX_ADDRESS_LEN}")
    return _HANDSHAKE_HEAD.pack(version, sid, len(body)) + body


def encode_handshake(sid: int, address: tuple[str, int] | None, *, protocol: str = "3.8") -> bytes:
    """The dialler's handshake, as one bytes object so it goes out in one write.

    The 3.8 acceptor reads the address with a single ``read()``: a handshake
    split across TCP segments can be rejected as "Read only x bytes", so the
    caller must write the whole result at once.
    """
    _check_protocol(protocol)
    if protocol == "3.4":
        if not 0 <= sid <= _INT64_MAX:
            # A negative bare sid would be read as a protocol version.
            raise ValueError(f"a 3.4 handshake needs a non-negative sid, got {sid}")
        return _I64.pack(sid)
    if address is None:
        raise ValueError("a 3.8 handshake needs the sender's election address")
    return _handshake_bytes(PROTOCOL_VERSION_V1, sid, format_address(address))


def encode_handshake_v2(sid: int, addresses: tuple[tuple[str, int], ...]) -> bytes:
    """The -65535 multi-address handshake (``multiAddress.enabled=true`` peers)."""
    if not addresses:
        raise ValueError("a V2 handshake needs at least one address")
    return _handshake_bytes(PROTOCOL_VERSION_V2, sid, "|".join(format_address(a) for a in addresses))


def _parse_address(part: str) -> tuple[str, int]:
    host, sep, port_text = part.rpartition(":")
    if not sep or not host:
        raise ProtocolError(f"handshake address {part!r} is not host:port")
    if host.startswith("[") or host.endswith("]"):
        if not (host.startswith("[") and host.endswith("]")) or len(host) < 3:
            raise ProtocolError(f"handshake address {part!r} has a malformed [ipv6] host")
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ProtocolError(f"handshake address {part!r} has a malformed [ipv6] host") from None
    elif ":" in host:
        raise ProtocolError(f"handshake address {part!r}: an IPv6 host must be in brackets")
    if not (port_text.isascii() and port_text.isdigit()):
        raise ProtocolError(f"handshake address {part!r}: port {port_text!r} is not an integer")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ProtocolError(f"handshake address {part!r}: port {port} is out of range 0..65535")
    return host, port


def _parse_addresses(body: bytes) -> tuple[tuple[str, int], ...]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"handshake address is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    parsed = tuple(_parse_address(part) for part in text.split("|"))
    return tuple(a for a in parsed if a[0] not in _WILDCARD_HOSTS)


class HandshakeDecoder:
    """Accumulates bytes until a whole handshake has arrived.

    ``feed`` returns None while more bytes are needed, then the Handshake.
    Bytes after the handshake (frames a fast peer wrote right behind it) are
    kept in ``unconsumed`` for the frame decoder. Once a handshake or an
    error has come out, the decoder is spent: feeding it again is a bug.
    """

    __slots__ = ("_buf", "_done", "unconsumed")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._done = False
        self.unconsumed = b""

    def feed(self, data: bytes) -> Handshake | None:
        if self._done:
            raise RuntimeError("HandshakeDecoder already produced a result")
        self._buf += data
        buf = self._buf
        if len(buf) < 8:
            return None
        (first,) = _I64.unpack_from(buf, 0)
        if first >= 0:
            return self._finish(Handshake(first, None, ()), 8)
        if first not in (PROTOCOL_VERSION_V1, PROTOCOL_VERSION_V2):
            self._done = True
            raise ProtocolError(
                f"handshake protocol version {first} is neither {PROTOCOL_VERSION_V1} (V1) "
                f"nor {PROTOCOL_VERSION_V2} (V2)"
            )
        if len(buf) < _HANDSHAKE_HEAD.size:
            return None
        _, sid, n = _HANDSHAKE_HEAD.unpack_from(buf, 0)
        if not 1 <= n <= MAX_ADDRESS_LEN:
            self._done = True
            raise ProtocolError(f"handshake address length {n} is outside 1..{MAX_ADDRESS_LEN}")
        end = _HANDSHAKE_HEAD.size + n
        if len(buf) < end:
            return None
        try:
            addresses = _parse_addresses(bytes(buf[_HANDSHAKE_HEAD.size:end]))
        except ProtocolError:
            self._done = True
            raise
        return self._finish(Handshake(sid, first, addresses), end)

    def _finish(self, handshake: Handshake, end: int) -> Handshake:
        self._done = True
        self.unconsumed = bytes(self._buf[end:])
        self._buf.clear()
        return handshake


# --------------------------------------------------------------------------- framing

def encode_frame(payload: bytes) -> bytes:
    """int32 length + payload; the receiver rejects empty or >512 KiB frames."""
    if not 0 < len(payload) <= PACKET_MAX_SIZE:
        raise ValueError(f"frame payload is {len(payload)} bytes; must be 1..{PACKET_MAX_SIZE}")
    return _I32.pack(len(payload)) + payload


class FrameDecoder:
    """Splits a byte stream into int32-length-prefixed payloads.

    A bad length means the stream is out of step and can never resync, so the
    decoder stays failed (every later feed raises again) and the connection
    must be closed, as ZooKeeper's RecvWorker does.
    """

    __slots__ = ("_buf", "_error", "_max")

    def __init__(self, max_size: int = PACKET_MAX_SIZE) -> None:
        self._buf = bytearray()
        self._error: ProtocolError | None = None
        self._max = max_size

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    @property
    def error(self) -> ProtocolError | None:
        """The bad length that failed the stream, once one was read."""
        return self._error

    def feed(self, data: bytes) -> list[bytes]:
        """The whole frames ``data`` completes. Frames before a bad length are
        still returned (a reader that takes one frame at a time, as
        ZooKeeper's does, handles them before it reads the bad header); then
        :attr:`error` is set and every later feed raises."""
        if self._error is not None:
            raise ProtocolError(self._error.reason, length=self._error.length)
        self._buf += data
        buf = self._buf
        frames: list[bytes] = []
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = _I32.unpack_from(buf, pos)
            if n <= 0 or n > self._max:
                self._error = ProtocolError(
                    f"frame length {n} is outside 1..{self._max}", length=n
                )
                del buf[:]
                if frames:
                    return frames
                raise ProtocolError(self._error.reason, length=n)
            if len(buf) - pos - 4 < n:
                break
            frames.append(bytes(buf[pos + 4:pos + 4 + n]))
            pos += 4 + n
        if pos:
            del buf[:pos]
        return frames


# --------------------------------------------------------------------------- notifications

def encode_notification(
    state: int,
    leader: int,
    zxid: int,
    round: int,  # noqa: A002 - ZooKeeper's electionEpoch, named as in Notification
    peer_epoch: int,
    *,
    protocol: str = "3.8",
    config_text: str = "version=0",
) -> bytes:
    """A notification payload (without the frame length).

    3.8 sends the version-2 form with the sender's config text (UTF-8);
    static ensembles send ``version=0`` so a 3.8 receiver never mistakes the
    sender's view for a newer reconfiguration. 3.4 sends 40 bytes, version 1.
    """
    _check_protocol(protocol)
    state = int(state)
    if state not in _STATE_CODES:
        raise ValueError(f"unknown ServerState code {state}")
    if protocol == "3.4":
        return _NOTIFICATION_V1.pack(state, leader, zxid, round, peer_epoch, 1)
    config = config_text.encode("utf-8")
    return _NOTIFICATION_V1.pack(state, leader, zxid, round, peer_epoch, 2) + _I32.pack(len(config)) + config


def _state(code: int) -> ServerState:
    try:
        return _STATE_CODES[code]
    except KeyError:
        raise ProtocolError(f"unknown server state code {code}") from None


def decode_notification(payload: bytes, sid: int, *, protocol: str = "3.8") -> Notification:
    """Parse a notification from ``sid`` exactly as that protocol's receiver does."""
    _check_protocol(protocol)
    size = len(payload)
    if size < 28:
        raise ProtocolError(f"short notification: {size} bytes, need at least 28")
    state_code, leader, zxid, rnd = struct.unpack_from(">iqqq", payload, 0)
    state = _state(state_code)
    if size == 28:
        # 3.3-era message: the proposed leader's epoch is the zxid's high word.
        return Notification(sid, state, leader, zxid, rnd, zxid >> 32, 0, None)
    if size < 36:
        raise ProtocolError(f"notification of {size} bytes underflows reading peerEpoch (needs 36)")
    (peer_epoch,) = _I64.unpack_from(payload, 28)
    if protocol == "3.4":
        version = _I32.unpack_from(payload, 36)[0] if size >= 40 else 0
        return Notification(sid, state, leader, zxid, rnd, peer_epoch, version, None)
    if size == 40:
        # 3.8 never reads the int at offset 36 of a 40-byte message (3.4.6 peers).
        return Notification(sid, state, leader, zxid, rnd, peer_epoch, 0, None)
    if size < 40:
        raise ProtocolError(f"notification of {size} bytes underflows reading version (needs 40)")
    (version,) = _I32.unpack_from(payload, 36)
    if version <= 1:
        return Notification(sid, state, leader, zxid, rnd, peer_epoch, version, None)
    if size < 44:
        raise ProtocolError(
            f"version-{version} notification of {size} bytes underflows reading configLength (needs 44)"
        )
    (config_len,) = _I32.unpack_from(payload, 40)
    if config_len < 0 or config_len > size:
        raise ProtocolError(f"notification configLength {config_len} is outside 0..{size}")
    if config_len > size - 44:
        raise ProtocolError(
            f"notification configLength {config_len} exceeds the {size - 44} bytes that follow"
        )
    # Java's new String(bytes) replaces malformed input rather than failing.
    config = payload[44:44 + config_len].decode("utf-8", errors="replace")
    return Notification(sid, state, leader, zxid, rnd, peer_epoch, version, config)
