"""Election wire codec: table-driven, fed whole, byte by byte and with trailing bytes.

Expected bytes are written out by hand (struct layouts from the spec), not
produced by the encoder under test, so an encoder and decoder that agree on
the wrong layout still fail.
"""
from __future__ import annotations

import struct

import pytest

from node.codec import (
    MAX_ADDRESS_LEN,
    PACKET_MAX_SIZE,
    PROTOCOL_VERSION_V1,
    PROTOCOL_VERSION_V2,
    FrameDecoder,
    Handshake,
    HandshakeDecoder,
    ProtocolError,
    decode_notification,
    encode_frame,
    encode_handshake,
    encode_handshake_v2,
    encode_notification,
)
from zkrules.vote import Notification, ServerState

# --------------------------------------------------------------------------- helpers


def hs_bytes(version: int, sid: int, text: bytes, length: int | None = None) -> bytes:
    return struct.pack(">qqi", version, sid, len(text) if length is None else length) + text


def feed_whole(data: bytes):
    d = HandshakeDecoder()
    return d.feed(data), d


def feed_bytewise(data: bytes):
    """Feed one byte at a time; every call before the last must ask for more."""
    d = HandshakeDecoder()
    for i in range(len(data) - 1):
        assert d.feed(data[i:i + 1]) is None, f"decoder finished early at byte {i}"
    return d.feed(data[-1:]), d


# --------------------------------------------------------------------------- handshake encoding


def test_v1_handshake_layout():
    got = encode_handshake(3, ("127.0.0.1", 3888))
    want = (bytes.fromhex("ffffffffffff0000") + bytes.fromhex("0000000000000003")
            + bytes.fromhex("0000000e") + b"127.0.0.1:3888")
    assert got == want
    assert struct.unpack(">q", got[:8])[0] == PROTOCOL_VERSION_V1 == -65536


def test_v1_handshake_brackets_ipv6():
    got = encode_handshake(1, ("::1", 3888))
    assert got.endswith(b"[::1]:3888")
    assert struct.unpack_from(">i", got, 16)[0] == len(b"[::1]:3888")


def test_34_handshake_is_bare_int64_sid():
    assert encode_handshake(258, None, protocol="3.4") == bytes.fromhex("0000000000000102")


def test_v2_handshake_layout():
    got = encode_handshake_v2(7, (("10.0.0.1", 1), ("10.0.0.2", 2)))
    assert got == hs_bytes(PROTOCOL_VERSION_V2, 7, b"10.0.0.1:1|10.0.0.2:2")
    assert struct.unpack(">q", got[:8])[0] == -65535


@pytest.mark.parametrize("call", [
    lambda: encode_handshake(-1, None, protocol="3.4"),      # would read as a version
    lambda: encode_handshake(1, None, protocol="3.8"),       # 3.8 needs an address
    lambda: encode_handshake(1, ("h", 1), protocol="3.5"),   # unknown protocol
    lambda: encode_handshake(1, ("h" * MAX_ADDRESS_LEN, 1)), # address too long
    lambda: encode_handshake_v2(1, ()),
])
def test_local_mistakes_are_value_errors_not_protocol_errors(call):
    with pytest.raises(ValueError):
        call()


# --------------------------------------------------------------------------- handshake decoding

GOOD_HANDSHAKES = [
    ("v1", hs_bytes(-65536, 5, b"127.0.0.1:3888"), Handshake(5, -65536, (("127.0.0.1", 3888),))),
    ("v1-hostname", hs_bytes(-65536, 2, b"zk2.example:2"), Handshake(2, -65536, (("zk2.example", 2),))),
    ("v1-ipv6", hs_bytes(-65536, 9, b"[fe80::1]:3888"), Handshake(9, -65536, (("fe80::1", 3888),))),
    ("v1-negative-sid", hs_bytes(-65536, -4, b"a:1"), Handshake(-4, -65536, (("a", 1),))),
    ("v2-two", hs_bytes(-65535, 3, b"10.0.0.1:1|10.0.0.2:2"),
     Handshake(3, -65535, (("10.0.0.1", 1), ("10.0.0.2", 2)))),
    ("v2-wildcard-dropped", hs_bytes(-65535, 3, b"0.0.0.0:1|10.0.0.2:2|[::]:3"),
     Handshake(3, -65535, (("10.0.0.2", 2),))),
    ("v1-only-wildcard", hs_bytes(-65536, 3, b"0.0.0.0:3888"), Handshake(3, -65536, ())),
    ("bare-sid-34", struct.pack(">q", 17), Handshake(17, None, ())),
    ("bare-sid-zero", struct.pack(">q", 0), Handshake(0, None, ())),
    ("max-len-address", hs_bytes(-65536, 1, b"h" * (MAX_ADDRESS_LEN - 2) + b":1"),
     Handshake(1, -65536, (("h" * (MAX_ADDRESS_LEN - 2), 1),))),
]


@pytest.mark.parametrize("name,data,want", GOOD_HANDSHAKES, ids=[c[0] for c in GOOD_HANDSHAKES])
@pytest.mark.parametrize("feeder", [feed_whole, feed_bytewise], ids=["whole", "bytewise"])
def test_good_handshakes(name, data, want, feeder):
    got, d = feeder(data)
    assert got == want
    assert d.unconsumed == b""


@pytest.mark.parametrize("name,data,want", GOOD_HANDSHAKES, ids=[c[0] for c in GOOD_HANDSHAKES])
def test_good_handshakes_keep_trailing_bytes(name, data, want):
    trailer = encode_frame(b"\x00" * 40) + b"\x00\x00"
    d = HandshakeDecoder()
    assert d.feed(data + trailer) == want
    assert d.unconsumed == trailer


def test_handshake_needs_more_until_complete():
    data = hs_bytes(-65536, 5, b"127.0.0.1:3888")
    for cut in (0, 7, 8, 19, 20, len(data) - 1):
        assert HandshakeDecoder().feed(data[:cut]) is None


BAD_HANDSHAKES = [
    ("bad-version", struct.pack(">q", -65534) + b"\x00" * 12, "version"),
    ("bad-version-minus-one", struct.pack(">q", -1) + b"\x00" * 12, "version"),
    ("long-min", struct.pack(">q", -(2**63)), "version"),
    ("length-zero", hs_bytes(-65536, 1, b"", 0), "length 0"),
    ("length-negative", hs_bytes(-65536, 1, b"", -5), "length -5"),
    ("length-2049", hs_bytes(-65536, 1, b"", MAX_ADDRESS_LEN + 1), "2049"),
    ("length-1mib", hs_bytes(-65536, 1, b"", 1 << 20), "1048576"),
    ("bad-utf8", hs_bytes(-65536, 1, b"\xff\xfe:1"), "UTF-8"),
    ("no-colon", hs_bytes(-65536, 1, b"localhost"), "host:port"),
    ("port-not-int", hs_bytes(-65536, 1, b"localhost:http"), "not an integer"),
    ("port-negative", hs_bytes(-65536, 1, b"localhost:-1"), "not an integer"),
    ("port-too-big", hs_bytes(-65536, 1, b"localhost:65536"), "out of range"),
    ("empty-host", hs_bytes(-65536, 1, b":3888"), "host:port"),
    ("bare-ipv6", hs_bytes(-65536, 1, b"fe80::1:3888"), "brackets"),
    ("bad-bracket", hs_bytes(-65536, 1, b"[zz]:3888"), "ipv6"),
    ("v2-one-bad-part", hs_bytes(-65535, 1, b"a:1|b"), "host:port"),
    ("garbage", b"\xde\xad\xbe\xef" * 8, "version"),
]


@pytest.mark.parametrize("name,data,why", BAD_HANDSHAKES, ids=[c[0] for c in BAD_HANDSHAKES])
@pytest.mark.parametrize("feeder", [feed_whole, feed_bytewise], ids=["whole", "bytewise"])
def test_bad_handshakes_raise_protocol_error_saying_why(name, data, why, feeder):
    with pytest.raises(ProtocolError, match=why):
        feeder(data)


def test_bad_length_is_rejected_before_the_body_arrives():
    # A 1 MiB length must not make us wait for (or buffer) a megabyte.
    with pytest.raises(ProtocolError):
        HandshakeDecoder().feed(hs_bytes(-65536, 1, b"", 1 << 20))


def test_spent_handshake_decoder_refuses_more_input():
    d = HandshakeDecoder()
    assert d.feed(struct.pack(">q", 1)) is not None
    with pytest.raises(RuntimeError):
        d.feed(b"x")


# --------------------------------------------------------------------------- framing


def test_frame_layout():
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"


@pytest.mark.parametrize("payload", [b"", b"x" * (PACKET_MAX_SIZE + 1)])
def test_encode_frame_refuses_what_a_receiver_would_reject(payload):
    with pytest.raises(ValueError):
        encode_frame(payload)


PAYLOADS = [b"a", b"\x00" * 28, b"hello" * 11, bytes(range(256))]


def test_frames_whole_and_bytewise_and_split():
    stream = b"".join(encode_frame(p) for p in PAYLOADS)
    assert FrameDecoder().feed(stream) == PAYLOADS
    d = FrameDecoder()
    got = []
    for i in range(len(stream)):
        got += d.feed(stream[i:i + 1])
    assert got == PAYLOADS
    assert d.buffered == 0


def test_frames_with_trailing_partial_frame():
    d = FrameDecoder()
    tail = encode_frame(b"next one")[:6]
    assert d.feed(encode_frame(b"first") + tail) == [b"first"]
    assert d.buffered == 6
    assert d.feed(encode_frame(b"next one")[6:]) == [b"next one"]


def test_frame_at_max_size_is_accepted():
    payload = b"z" * PACKET_MAX_SIZE
    assert FrameDecoder().feed(encode_frame(payload)) == [payload]


@pytest.mark.parametrize("length", [0, -1, -20, PACKET_MAX_SIZE + 1, 2**31 - 1, -(2**31)])
def test_bad_frame_length_raises_with_the_length(length):
    d = FrameDecoder()
    # The good frame ahead of the bad header still counts (ZooKeeper reads one
    # frame at a time and handles it before it reads the next length) ...
    assert d.feed(encode_frame(b"ok") + struct.pack(">i", length) + b"junk") == [b"ok"]
    assert d.error is not None and d.error.length == length and str(length) in str(d.error)
    # ... and the stream cannot resync: the decoder stays failed.
    with pytest.raises(ProtocolError) as info:
        d.feed(encode_frame(b"ok"))
    assert info.value.length == length
    d = FrameDecoder()
    with pytest.raises(ProtocolError) as info:
        d.feed(struct.pack(">i", length) + b"junk")
    assert info.value.length == length and d.error is not None


def test_bad_frame_length_raises_before_payload_arrives():
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(struct.pack(">i", PACKET_MAX_SIZE + 1))


# --------------------------------------------------------------------------- notifications

LEADER, ZXID, ROUND, PEPOCH = 3, (5 << 32) | 7, 9, 4


def raw(size: int, *, state: int = 1, version: int = 2, cfg_len: int | None = None,
        cfg: bytes = b"") -> bytes:
    """A hand-built payload of exactly `size` bytes (zero padded)."""
    buf = struct.pack(">iqqqqi", state, LEADER, ZXID, ROUND, PEPOCH, version)
    if cfg_len is not None:
        buf += struct.pack(">i", cfg_len) + cfg
    buf = buf[:size]
    return buf + b"\x00" * (size - len(buf))


def n(version=0, config=None, peer_epoch=PEPOCH, state=ServerState.FOLLOWING):
    return Notification(7, state, LEADER, ZXID, ROUND, peer_epoch, version, config)


# (name, payload, expected for 3.8 (Notification or error-substring), expected for 3.4)
NOTIFICATION_TABLE = [
    ("12-short", raw(12), "short", "short"),
    ("27-short", raw(27), "short", "short"),
    ("28-old", raw(28), n(0, peer_epoch=5), n(0, peer_epoch=5)),
    *[(f"{s}-underflow", raw(s), "peerEpoch", "peerEpoch") for s in range(29, 36)],
    ("36-3.4.0", raw(36), "version", n(0)),
    ("37", raw(37, version=0x7FFFFFFF), "version", n(0)),
    ("39", raw(39, version=0x7FFFFFFF), "version", n(0)),
    ("40-v1", raw(40, version=1), n(0), n(1)),
    ("40-forced-0", raw(40, version=99), n(0), n(99)),
    ("41-v1-trailing", raw(41, version=1), n(1), n(1)),
    ("43-v-neg", raw(43, version=-5), n(-5), n(-5)),
    ("41-v2-underflow", raw(41, version=2), "configLength", n(2)),
    ("43-v2-underflow", raw(43, version=2), "configLength", n(2)),
    ("44-empty-config", raw(44, version=2, cfg_len=0), n(2, ""), n(2)),
    ("53-v2", raw(53, version=2, cfg_len=9, cfg=b"version=0"), n(2, "version=0"), n(2)),
    ("v2-trailing-ignored", raw(60, version=2, cfg_len=9, cfg=b"version=0"), n(2, "version=0"), n(2)),
    ("48-cfglen-neg", raw(48, version=2, cfg_len=-123), "configLength -123", n(2)),
    ("cfglen-10000", raw(60, version=2, cfg_len=10000), "configLength 10000", n(2)),
    ("cfglen-over-remaining", raw(50, version=2, cfg_len=49), "exceeds", n(2)),
    ("bad-utf8-config", raw(47, version=2, cfg_len=3, cfg=b"\xff\xfeA"), n(2, "\ufffd\ufffdA"), n(2)),
    ("state-4", raw(40, state=4), "state code 4", "state code 4"),
    ("state-neg", raw(28, state=-1), "state code -1", "state code -1"),
]


@pytest.mark.parametrize("protocol,col", [("3.8", 2), ("3.4", 3)])
@pytest.mark.parametrize("row", NOTIFICATION_TABLE, ids=[r[0] for r in NOTIFICATION_TABLE])
def test_notification_parsing_by_size(row, protocol, col):
    payload, want = row[1], row[col]
    if isinstance(want, str):
        with pytest.raises(ProtocolError, match=want):
            decode_notification(payload, 7, protocol=protocol)
    else:
        assert decode_notification(payload, 7, protocol=protocol) == want


def test_28_byte_peer_epoch_is_arithmetic_shift():
    payload = struct.pack(">iqqq", 0, 1, -1, 1)
    assert decode_notification(payload, 1).peer_epoch == -1


def test_encode_38_is_v2_with_utf8_config():
    got = encode_notification(ServerState.LEADING, 2, 3, 4, 5, config_text="server.1=é")
    cfg = "server.1=é".encode()
    assert got == struct.pack(">iqqqqii", 2, 2, 3, 4, 5, 2, len(cfg)) + cfg
    assert len(got) == 44 + len(cfg)


def test_encode_34_is_40_bytes_version_1():
    got = encode_notification(0, 2, 3, 4, 5, protocol="3.4")
    assert got == struct.pack(">iqqqqi", 0, 2, 3, 4, 5, 1)


@pytest.mark.parametrize("protocol", ["3.8", "3.4"])
@pytest.mark.parametrize("state", list(ServerState))
def test_roundtrip_extremes(protocol, state):
    lo, hi = -(2**63), 2**63 - 1
    payload = encode_notification(state, lo, hi, lo, hi, protocol=protocol)
    got = decode_notification(payload, 42, protocol=protocol)
    assert (got.sid, got.state, got.leader, got.zxid, got.round, got.peer_epoch) == (42, state, lo, hi, lo, hi)
    assert isinstance(got.state, ServerState)


def test_cross_version_decoding():
    # A 3.4.6 message counts as version 0 to 3.8 (Vote.equals relies on it) ...
    v1 = encode_notification(1, 2, 3, 4, 5, protocol="3.4")
    assert decode_notification(v1, 1, protocol="3.8").version == 0
    # ... and a 3.8 message parses in 3.4.6 as version 2, config ignored.
    v2 = encode_notification(1, 2, 3, 4, 5, protocol="3.8")
    got = decode_notification(v2, 1, protocol="3.4")
    assert (got.version, got.config) == (2, None)


def test_bad_state_is_refused_by_encoder():
    with pytest.raises(ValueError):
        encode_notification(7, 1, 1, 1, 1)


def test_unknown_protocol_is_a_local_error():
    with pytest.raises(ValueError):
        decode_notification(raw(40), 1, protocol="3.6")
