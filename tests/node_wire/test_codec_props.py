"""Properties of the wire codec: remote garbage only ever parses or raises ProtocolError."""
from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from node.codec import (
    PACKET_MAX_SIZE,
    FrameDecoder,
    Handshake,
    HandshakeDecoder,
    ProtocolError,
    decode_notification,
    encode_frame,
    encode_handshake,
    encode_notification,
)
from zkrules.vote import Notification, ServerState

int64 = st.integers(-(2**63), 2**63 - 1)
protocols = st.sampled_from(["3.8", "3.4"])

# Garbage that is biased toward the interesting prefixes (valid versions,
# small lengths), so the deeper branches are fuzzed too, not just "bad version".
prefixes = st.sampled_from([
    b"",
    struct.pack(">q", -65536),
    struct.pack(">q", -65535),
    struct.pack(">qq", -65536, 1),
    struct.pack(">qqi", -65536, 1, 5),
    struct.pack(">iqqqqi", 0, 1, 1, 1, 1, 2),
])
garbage = st.builds(lambda p, b: p + b, prefixes, st.binary(max_size=200))


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points + [len(data)]:
        out.append(data[last:p])
        last = p
    return out


@settings(max_examples=400, deadline=None)
@given(garbage, st.lists(st.integers(0, 300), max_size=6))
def test_handshake_decoder_only_returns_or_raises_protocol_error(data, cuts):
    d = HandshakeDecoder()
    try:
        for part in chunks(data, cuts):
            got = d.feed(part)
            if got is not None:
                assert isinstance(got, Handshake)
                break
    except ProtocolError:
        pass


@settings(max_examples=400, deadline=None)
@given(garbage, st.lists(st.integers(0, 300), max_size=6))
def test_frame_decoder_only_returns_or_raises_protocol_error(data, cuts):
    d = FrameDecoder()
    try:
        for part in chunks(data, cuts):
            for frame in d.feed(part):
                assert 0 < len(frame) <= PACKET_MAX_SIZE
    except ProtocolError as exc:
        assert exc.length is not None


@settings(max_examples=600, deadline=None)
@given(garbage, int64, protocols)
def test_decode_notification_only_returns_or_raises_protocol_error(data, sid, protocol):
    try:
        got = decode_notification(data, sid, protocol=protocol)
    except ProtocolError:
        return
    assert isinstance(got, Notification)
    assert got.sid == sid and isinstance(got.state, ServerState)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(ServerState)), int64, int64, int64, int64, protocols,
       st.text(max_size=60))
def test_notification_roundtrip(state, leader, zxid, rnd, peer_epoch, protocol, config):
    payload = encode_notification(state, leader, zxid, rnd, peer_epoch,
                                  protocol=protocol, config_text=config)
    got = decode_notification(payload, 1, protocol=protocol)
    assert (got.state, got.leader, got.zxid, got.round, got.peer_epoch) == (
        state, leader, zxid, rnd, peer_epoch)
    assert got.config == (config if protocol == "3.8" else None)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=64), max_size=8),
       st.lists(st.integers(0, 1000), max_size=10))
def test_frames_survive_any_split(payloads, cuts):
    stream = b"".join(encode_frame(p) for p in payloads)
    d = FrameDecoder()
    got = []
    for part in chunks(stream, cuts):
        got += d.feed(part)
    assert got == payloads


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**63 - 1), st.integers(0, 65535), st.binary(max_size=40),
       st.lists(st.integers(0, 100), max_size=5))
def test_handshake_roundtrip_any_split(sid, port, trailer, cuts):
    data = encode_handshake(sid, ("10.1.2.3", port)) + trailer
    d = HandshakeDecoder()
    got = None
    parts = chunks(data, cuts)
    for i, part in enumerate(parts):
        got = d.feed(part)
        if got is not None:
            rest = b"".join(parts[i + 1:])
            break
    assert got == Handshake(sid, -65536, (("10.1.2.3", port),))
    assert d.unconsumed + rest == trailer
