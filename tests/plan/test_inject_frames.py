"""inject: the plan entry is checked up front, and every frame kind is one a
ZooKeeper 3.8 receiver must reject (node/codec decodes exactly as it does)."""
from __future__ import annotations

import random
import struct

import pytest

from chaos.plan import PlanError, parse_plan
from chaos.plan.model import INJECT_FRAMES
from chaos.steps.wire import frame_bytes, handshake_bytes
from node.codec import FrameDecoder, HandshakeDecoder, ProtocolError, decode_notification

PLAN = "name: d\ndescription: d\nensemble: {nodes: 3}\nsteps:\n  - wait: stable\n  - inject: %s\n"


@pytest.mark.parametrize("kind", sorted(INJECT_FRAMES))
def test_every_frame_kind_is_rejected_by_a_receiver(kind):
    data = frame_bytes(kind, random.Random(1))
    dec = FrameDecoder()
    if kind in ("zero_length", "oversize"):
        with pytest.raises(ProtocolError):
            dec.feed(data)
        return
    (payload,) = dec.feed(data)
    with pytest.raises(ProtocolError):
        decode_notification(payload, 1003, protocol="3.8")


def test_the_handshake_is_the_one_peers_send():
    hs = HandshakeDecoder().feed(handshake_bytes(1003, "127.0.0.1:4000", "3.8"))
    assert hs is not None and hs.sid == 1003 and hs.addresses == (("127.0.0.1", 4000),)
    assert handshake_bytes(7, "x:1", "3.4") == struct.pack(">q", 7)


@pytest.mark.parametrize("value, message", [
    ("{node: all, frames: [short, shrt]}",
     "<plan>:6:41 steps[1].inject.frames[1]: expected one of short, bad_state, config_overflow, random, "
     "zero_length, oversize, got 'shrt'; did you mean 'short'?"),
    ("{nod: leader}", "<plan>:6:14 steps[1].inject.nod: unknown key 'nod'; did you mean 'node'?"),
    ("{node: all, from: -1}", "<plan>:6:25 steps[1].inject.from: expected at least 0, got -1"),
    ("{node: all, frames: []}", "<plan>:6:25 steps[1].inject.frames: expected at least 1 item(s), got none"),
])
def test_a_bad_inject_entry_names_where_and_why(value, message):
    with pytest.raises(PlanError) as e:
        parse_plan(PLAN % value)
    assert any(str(i).startswith(message) for i in e.value.errors), [str(i) for i in e.value.errors]


def test_defaults_send_the_payload_kinds_from_an_unknown_sid():
    step = parse_plan(PLAN % "{node: follower}").steps[1]
    assert step.frames == ("short", "bad_state", "config_overflow", "random") and step.sender is None
    assert step.to_json()["frames"] == list(step.frames)
