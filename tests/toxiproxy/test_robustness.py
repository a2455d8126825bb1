"""Bad input never takes the server down: each gets its status, and the server keeps serving."""
from __future__ import annotations

import json
import socket
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toxihelp import connect, recv_exact


def alive(target) -> None:
    r = target.req("GET", "/version")
    assert r.status_code == 200


BAD_BODIES = [b"[" * 200_000, b'{"a":' * 100_000, b"{", b"[", b"nul", b"\xff\xfe\x00", b'{"name":', b"42", b'"str"', b"[1,2]",
              b'{"name":{"a":1},"upstream":"x"}', b'{"name":"a","upstream":["x"]}', b"\x00" * 100]


@pytest.mark.parametrize("body", BAD_BODIES, ids=[f"bad{i}" for i in range(len(BAD_BODIES))])
def test_malformed_proxy_bodies_are_400(target, body):
    r = target.req("POST", "/proxies", raw=body)
    assert r.status_code == 400
    assert json.loads(r.text)["error"].startswith("bad request body: ")
    alive(target)


@pytest.mark.parametrize("attrs", [{"latency": "1"}, {"latency": True}, {"latency": 2 ** 63},
                                   {"latency": [1]}, {"latency": {"a": 1}}, {"jitter": 1e3}])
def test_wrongly_typed_attributes_are_400(target, make_proxy, attrs):
    p = make_proxy()
    r = target.req("POST", f"/proxies/{p['name']}/toxics", {"type": "latency", "attributes": attrs})
    assert r.status_code == 400, attrs
    assert json.loads(r.text)["error"].startswith("bad request body: ")
    assert target.req("GET", f"/proxies/{p['name']}/toxics").json() == []


def test_attributes_that_are_not_an_object_are_400(target, make_proxy):
    p = make_proxy()
    r = target.req("POST", f"/proxies/{p['name']}/toxics", {"type": "latency", "attributes": "fast"})
    assert r.status_code == 400
    alive(target)


def test_unknown_fields_are_ignored_and_keys_are_case_insensitive(target, make_proxy):
    p = make_proxy()
    r = target.req("POST", f"/proxies/{p['name']}/toxics",
                   {"TYPE": "latency", "Name": "ci", "extra": [1, 2], "attributes": {"LATENCY": 7, "x": 1}})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "ci" and r.json()["attributes"] == {"latency": 7, "jitter": 0}


@pytest.mark.deliberate
def test_huge_body_is_413_and_server_survives(target):
    r = target.req("POST", "/proxies", raw=b"[" + b"1," * (700 * 1024) + b"1]")
    assert r.status_code == 413
    assert json.loads(r.text) == {"error": "request body too large (limit 1048576 bytes)", "status": 413}
    alive(target)


def test_garbage_http_does_not_kill_the_server(target):
    host, port = target.url.split("//")[1].split(":")
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
                 b"GET / HTTP/9.9\r\n\r\n", b"GARBAGE\r\n\r\n", b"POST /proxies HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                 b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n"):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            try:
                s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                s.recv(4096)
            except OSError:
                pass
    alive(target)


def test_flood_of_api_connections(target):
    host, port = target.url.split("//")[1].split(":")
    socks = []
    try:
        for _ in range(200):
            socks.append(socket.create_connection((host, int(port)), timeout=5))
        alive(target)
    finally:
        for s in socks:
            s.close()
    alive(target)


def test_flood_of_proxy_connections(target, make_proxy):
    p = make_proxy()
    socks = []
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            for _ in range(50):
                socks.append(connect(p["port"]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for s in socks[:20]:
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"
    for s in socks:
        s.close()
    alive(target)
    s = connect(p["port"])
    s.sendall(b"after")
    assert recv_exact(s, 5) == b"after"
    s.close()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                         lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
                             st.sampled_from(["name", "type", "stream", "toxicity", "attributes", "latency",
                                              "listen", "upstream", "enabled", "x"]), kids, max_size=4),
                         max_leaves=10))
def test_random_json_gets_a_4xx_or_success_never_500(target, body):
    r = target.req("POST", "/proxies/hyp_absent/toxics", body)
    assert r.status_code == 404
    r = target.req("PATCH", "/proxies/hyp_absent", body)
    assert r.status_code == 404
    r = target.req("POST", "/populate", body if not isinstance(body, list) else [])
    assert r.status_code in (201, 400), r.text


def test_closed_connections_release_their_sockets(target, make_proxy):
    if target.pid is None:
        pytest.skip("needs the server's pid")
    import time

    import psutil
    server = psutil.Process(target.pid)
    p = make_proxy()
    s = connect(p["port"])  # warm up: first connection may allocate lazily
    s.sendall(b"w")
    assert recv_exact(s, 1) == b"w"
    s.close()
    time.sleep(0.3)
    before = server.num_fds()
    for _ in range(100):
        s = connect(p["port"])
        s.sendall(b"x")
        assert recv_exact(s, 1) == b"x"
        s.close()
    refused = make_proxy(upstream="127.0.0.1:1")
    for _ in range(50):
        s = connect(refused["port"])
        s.recv(1)
        s.close()
    deadline = time.monotonic() + 10
    while server.num_fds() > before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.num_fds() <= before + 2, (before, server.num_fds())
