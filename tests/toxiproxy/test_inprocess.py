"""The data path in-process with an injected clock: toxics ask the clock, never time itself."""
from __future__ import annotations

import asyncio
import random

from chaos.toxiproxy.api import ToxiproxyApp
from chaos.toxiproxy.link import Clock, ToxicWrapper
from chaos.toxiproxy.toxics import REGISTRY


class RecordingClock(Clock):
    """Virtual time: `sleep` advances it at once and records the request."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.t += max(seconds, 0.0)
        await asyncio.sleep(0)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def _wrapper(type_: str, attrs: dict, stream: str = "downstream", toxicity: float = 1.0) -> ToxicWrapper:
    return ToxicWrapper(f"{type_}_{stream}", type_, stream, stream, toxicity, REGISTRY[type_].decode(attrs))


async def _run(toxics: list[ToxicWrapper], payload: bytes, seed: int = 3) -> tuple[bytes, RecordingClock]:
    clock = RecordingClock()
    app = ToxiproxyApp(seed=seed, clock=clock, emit=lambda *a, **k: None)
    upstream = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    proxy = app.new_proxy("p", "127.0.0.1:0", f"127.0.0.1:{port}")
    await proxy.start()
    for w in toxics:
        proxy.add_toxic(w)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", int(proxy.listen.rsplit(":", 1)[1]))
        w.write(payload)
        w.write_eof()
        got = await asyncio.wait_for(r.read(), 10)
        w.close()
        return got, clock
    finally:
        proxy.stop()
        upstream.close()


def test_latency_sleeps_on_the_injected_clock_for_exactly_its_delay():
    got, clock = asyncio.run(_run([_wrapper("latency", {"latency": 250})], b"abc"))
    assert got == b"abc"
    assert clock.sleeps and all(abs(s - 0.25) < 1e-6 for s in clock.sleeps)


def test_jitter_comes_from_the_seeded_link_rng():
    def delays(seed: int) -> list[float]:
        _, clock = asyncio.run(_run([_wrapper("latency", {"latency": 100, "jitter": 50})], b"x", seed))
        return clock.sleeps

    first = delays(11)
    assert first == delays(11)
    assert all(0.05 - 1e-6 <= s < 0.15 for s in first)


def test_bandwidth_schedule_is_rate_exact_on_a_virtual_clock():
    _, clock = asyncio.run(_run([_wrapper("bandwidth", {"rate": 10})], b"q" * 5000))
    assert abs(sum(clock.sleeps) - 0.5) < 0.01, clock.sleeps  # 5000 B at 10 KB/s


def test_toxicity_roll_uses_the_link_rng_not_the_global_one():
    random.seed(0)
    got, clock = asyncio.run(_run([_wrapper("latency", {"latency": 100}, toxicity=0.0)], b"z"))
    assert got == b"z" and clock.sleeps == []


def test_toxicity_is_rolled_again_when_the_toxic_is_updated_on_a_live_link():
    async def scenario() -> list[bool]:
        clock = RecordingClock()
        app = ToxiproxyApp(seed=21, clock=clock, emit=lambda *a, **k: None)
        upstream = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = upstream.sockets[0].getsockname()[1]
        proxy = app.new_proxy("p", "127.0.0.1:0", f"127.0.0.1:{port}")
        await proxy.start()
        old = _wrapper("latency", {"latency": 10}, toxicity=0.0)
        proxy.add_toxic(old)
        r, w = await asyncio.open_connection("127.0.0.1", int(proxy.listen.rsplit(":", 1)[1]))
        w.write(b"a")
        assert await r.readexactly(1) == b"a"
        link = next(iter(proxy.connections)).links["downstream"]
        states = [link.stubs[0].active]
        new = _wrapper("latency", {"latency": 10}, toxicity=1.0)
        proxy.update_toxic(old, new)
        states.append(link.stubs[0].active)
        w.write(b"b")
        assert await r.readexactly(1) == b"b"
        w.close()
        proxy.stop()
        upstream.close()
        return states

    assert asyncio.run(scenario()) == [False, True]


def test_removing_a_timeout_toxic_closes_before_anything_it_queued_gets_through():
    """A chunk still queued at the black hole when it is removed must not be
    flushed ahead of the close: the bytes before it were dropped, and
    delivering it left a hole in the stream (a follower got a proposal whose
    predecessors never arrived). Toxiproxy runs the timeout's Cleanup first."""
    async def scenario() -> bytes:
        received = bytearray()
        done = asyncio.Event()

        async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                received.extend(data)
            writer.close()
            done.set()

        app = ToxiproxyApp(seed=5, clock=RecordingClock(), emit=lambda *a, **k: None)
        upstream = await asyncio.start_server(record, "127.0.0.1", 0)
        proxy = app.new_proxy("p", "127.0.0.1:0", f"127.0.0.1:{upstream.sockets[0].getsockname()[1]}")
        await proxy.start()
        r, w = await asyncio.open_connection("127.0.0.1", int(proxy.listen.rsplit(":", 1)[1]))
        w.write(b"before|")
        for _ in range(200):
            if len(received) == 7:
                break
            await asyncio.sleep(0.01)
        hole = _wrapper("timeout", {"timeout": 0}, stream="upstream")
        proxy.add_toxic(hole)
        w.write(b"dropped|")
        link = next(iter(proxy.connections)).links["upstream"]
        for _ in range(200):
            if link.received_bytes == 15:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)                # the toxic has taken and dropped it
        link.feed(b"queued|")                    # arrives: in the toxic's queue, not yet taken
        proxy.remove_toxic(hole)                 # ... when the heal comes
        await asyncio.wait_for(done.wait(), 10)
        assert await asyncio.wait_for(r.read(), 10) == b""   # the connection went
        w.close()
        proxy.stop()
        upstream.close()
        return bytes(received)

    assert asyncio.run(scenario()) == b"before|"
