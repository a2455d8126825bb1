"""Toxics added, updated and removed on live connections (spec §3, common semantics)."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from toxihelp import connect, recv_exact, recv_until_eof


def add(target, p, **body):
    r = target.req("POST", f"/proxies/{p['name']}/toxics", body)
    assert r.status_code == 200, r.text


def patch(target, p, name, **body):
    r = target.req("PATCH", f"/proxies/{p['name']}/toxics/{name}", body)
    assert r.status_code == 200, r.text


def test_updating_latency_releases_the_held_chunk_at_once(target, make_proxy):
    p = make_proxy()
    add(target, p, type="latency", name="l", attributes={"latency": 5000})
    s = connect(p["port"])
    s.sendall(b"now")
    time.sleep(0.3)
    t0 = time.monotonic()
    patch(target, p, "l", attributes={"latency": 5000})
    assert recv_exact(s, 3) == b"now"
    assert time.monotonic() - t0 < 3.0
    s.close()


def test_timeout_timer_restarts_with_each_chunk(target, make_proxy):
    p = make_proxy()
    add(target, p, type="timeout", stream="upstream", attributes={"timeout": 500})
    s = connect(p["port"])
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:
        s.sendall(b".")
        last = time.monotonic()
        time.sleep(0.15)
    s.settimeout(0.05)
    with pytest.raises(socket.timeout):
        s.recv(1)  # still open past 3x the timeout, nothing delivered
    s.settimeout(5)
    assert recv_until_eof(s) == b""
    assert time.monotonic() - last >= 0.45, "the timer restarted at the last chunk"
    s.close()


def test_limit_data_count_survives_an_update(target, make_proxy):
    p = make_proxy()
    add(target, p, type="limit_data", name="cap", attributes={"bytes": 100})
    s = connect(p["port"])
    s.sendall(b"a" * 60)
    assert recv_exact(s, 60) == b"a" * 60
    patch(target, p, "cap", attributes={"bytes": 100})
    s.sendall(b"b" * 60)
    assert recv_until_eof(s) == b"b" * 40
    s.close()


def test_limit_data_on_upstream_only_limits_what_the_server_gets(target, make_proxy, echo):
    p = make_proxy()
    add(target, p, type="limit_data", stream="upstream", attributes={"bytes": 10})
    s = connect(p["port"])
    s.sendall(b"0123456789abcdef")
    got = recv_until_eof(s)  # the echo of the 10 bytes races with the close
    assert b"0123456789".startswith(got)
    deadline = time.monotonic() + 5
    while len(echo.received) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert bytes(echo.received) == b"0123456789"
    s.close()


def test_chain_edits_under_load_neither_lose_nor_reorder_data(target, make_proxy):
    p = make_proxy()
    s = connect(p["port"], timeout=20)
    payload = bytes(i % 251 for i in range(2_000_000))
    received = bytearray()

    def reader() -> None:
        while len(received) < len(payload):
            data = s.recv(65536)
            if not data:
                return
            received.extend(data)

    def writer() -> None:
        for i in range(0, len(payload), 4096):
            s.sendall(payload[i:i + 4096])

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    kinds = [("noop", {}), ("latency", {"latency": 2}), ("slicer", {"average_size": 512, "size_variation": 100}),
             ("bandwidth", {"rate": 100_000})]
    for round_ in range(12):
        kind, attrs = kinds[round_ % len(kinds)]
        stream = "upstream" if round_ % 2 else "downstream"
        add(target, p, type=kind, name=f"e{round_}", stream=stream, attributes=attrs)
        time.sleep(0.02)
        if round_ % 3 == 2:
            patch(target, p, f"e{round_}", toxicity=1)
        if round_ >= 2:
            assert target.req("DELETE", f"/proxies/{p['name']}/toxics/e{round_ - 2}").status_code == 204
    target.req("POST", "/reset")
    for t in threads:
        t.join(30)
    s.close()
    assert len(received) == len(payload)
    assert bytes(received) == payload
