"""``inject``: malformed election frames, sent straight to a node's election port.

A peer is only as robust as its receiver: ZooKeeper 3.6 lost its election
receiver thread to a notification too short to parse (ZK-3769), and a node
in that state still answers four-letter words while it hears no votes. The
step dials each selected node's real election port (not through a proxy: the
sender is not a member, and no link fault should touch it), sends the
handshake ZooKeeper's own peers send (3.8: protocol version -65536, sid and
"host:port"; 3.4: the bare sid) and then the chosen frames, and hangs up.
The bytes are ZooKeeper's wire format, so the step works on any target that
speaks it. It is an input, not a fault: nothing is left to undo.
"""
from __future__ import annotations

import socket
import struct
import time
from typing import Any

from chaos.context import RunContext
from chaos.steps import StepScope, handles

__all__ = ["frame_bytes", "handshake_bytes"]

_PROTOCOL_VERSION_V1 = -65536
_PACKET_MAX_SIZE = 524288
_CONNECT_TIMEOUT_S = 3.0
_LINGER_S = 0.2          # time for the receiver to read before we hang up


def handshake_bytes(sid: int, address: str, protocol: str) -> bytes:
    if protocol == "3.4":
        return struct.pack(">q", sid)
    body = address.encode()
    return struct.pack(">qqi", _PROTOCOL_VERSION_V1, sid, len(body)) + body


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def frame_bytes(kind: str, rng: Any) -> bytes:
    """One malformed frame of ``kind`` (see ``chaos.plan.model.INJECT_FRAMES``)."""
    if kind == "short":
        return _frame(struct.pack(">iqq", 1, 1, 0))                      # 20 bytes
    if kind == "bad_state":
        return _frame(struct.pack(">iqqqqi", 7, 1, 0, 1, 0, 1))          # 40 bytes, state 7
    if kind == "config_overflow":
        return _frame(struct.pack(">iqqqqii", 0, 1, 0, 1, 0, 2, 4096) + b"version=0")
    if kind == "random":
        return _frame(bytes(rng.getrandbits(8) for _ in range(64)))
    if kind == "zero_length":
        return struct.pack(">i", 0)
    if kind == "oversize":
        return struct.pack(">i", _PACKET_MAX_SIZE + 1) + b"\0" * 64
    raise ValueError(f"unknown frame kind {kind!r}")


@handles("inject")
def inject(step: Any, ctx: RunContext, scope: StepScope) -> None:
    sids = scope.target(step.target)
    ens = ctx.plan.ensemble
    sender = step.sender if step.sender is not None else max(ens.sids) + 1000
    scope.resolved.update({"node": list(sids), "from": sender, "frames": list(step.frames)})
    scope.begin()
    announce = ctx.links.host       # where the stranger says it is: the proxies' side
    where = getattr(ctx.target, "hosts", dict)()   # each node's own address (netns: inside its namespace)
    sent = 0
    for sid in sids:
        if not ctx.target.is_running(sid):
            raise scope.fail(f"node {sid} is not running: nothing listens on its election port")
        host = where.get(sid, announce)
        port = ctx.links.real_ports[sid]["election"]
        data = handshake_bytes(sender, f"{announce}:{port}", ens.protocol) + b"".join(
            frame_bytes(kind, ctx.rng) for kind in step.frames)
        try:
            with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S) as s:
                s.sendall(data)
                time.sleep(_LINGER_S)
        except OSError as e:
            raise scope.fail(f"cannot reach node {sid}'s election port {host}:{port}: {e}") from None
        sent += len(data)
    scope.resolved["bytes"] = sent
