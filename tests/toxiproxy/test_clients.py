"""toxiproxy-python 0.1.1 (unmodified) and our adapter, against a live server."""
from __future__ import annotations

import socket
import threading
import time

import pytest
import toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import NotFound, ProxyExists

from chaos.ports import reserve_ports
from chaos.toxiproxy.client import ProxyInfo, ToxicInfo, ToxiproxyClient, ToxiproxyError
from toxihelp import connect, recv_exact, recv_until_eof


@pytest.fixture
def server_client(target):
    return target.client


def test_toxiproxy_python_drives_the_embedded_server(target, echo):
    if target.kind != "embedded":
        pytest.skip("exercised against the embedded server")
    host, port = target.url.split("//")[1].split(":")
    saved = APIConsumer.host, APIConsumer.port
    server = toxiproxy.Toxiproxy()
    server.update_api_consumer(host, int(port))
    try:
        assert server.running()
        assert server.version() == b'{"version": "2.12.0"}\n'  # the client's flaw 1, kept as is
        proxy = server.create(upstream=echo.addr, name="tp_python", listen="127.0.0.1:0")
        assert proxy.listen.startswith("127.0.0.1:") and proxy.enabled is True
        with pytest.raises(ProxyExists):
            server.create(upstream=echo.addr, name="tp_python")
        assert "tp_python" in server.proxies()
        proxy.add_toxic(type="latency", attributes={"latency": 120})
        toxics = proxy.toxics()
        assert toxics["latency_downstream"].attributes == {"latency": 120, "jitter": 0}
        port_ = int(proxy.listen.rsplit(":", 1)[1])
        s = connect(port_)
        t0 = time.monotonic()
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping" and time.monotonic() - t0 >= 0.12
        with proxy.down():  # POST /proxies/{n} {"enabled": false}
            assert recv_until_eof(s) == b""
            with pytest.raises(ConnectionRefusedError):
                connect(port_)
        s.close()
        assert proxy.destroy_toxic("latency_downstream") is True
        with pytest.raises(NotFound):
            proxy.destroy_toxic("latency_downstream")
        assert server.reset() is True
        assert proxy.destroy() is True
        assert server.get_proxy("tp_python") is None
    finally:
        APIConsumer.host, APIConsumer.port = saved
        target.req("DELETE", "/proxies/tp_python")


def test_adapter_round_trip(server_client: ToxiproxyClient, echo):
    c = server_client
    assert c.version().startswith("2.")
    c.wait_ready(timeout=5)
    info = c.create_proxy("ad_rt", "127.0.0.1:0", echo.addr)
    try:
        assert isinstance(info, ProxyInfo) and info.enabled and info.port > 0
        assert c.get_proxy("ad_rt") == info
        assert c.list_proxies()["ad_rt"] == info
        t = c.add_toxic("ad_rt", type="latency", attributes={"latency": 50}, toxicity=0.5)
        assert t == ToxicInfo("latency_downstream", "latency", "downstream", 0.5, {"latency": 50, "jitter": 0})
        t2 = c.update_toxic("ad_rt", "latency_downstream", attributes={"jitter": 5})
        assert t2.attributes == {"latency": 50, "jitter": 5} and t2.toxicity == 0.5
        t3 = c.update_toxic("ad_rt", "latency_downstream", toxicity=1.0)
        assert t3.toxicity == 1.0 and t3.attributes["jitter"] == 5
        assert [x.name for x in c.list_toxics("ad_rt")] == ["latency_downstream"]
        off = c.set_enabled("ad_rt", False)
        assert off.enabled is False
        with pytest.raises(ConnectionRefusedError):
            connect(info.port)
        c.reset()
        assert c.get_proxy("ad_rt").enabled is True and c.list_toxics("ad_rt") == []
        c.add_toxic("ad_rt", type="noop", name="n")
        c.remove_toxic("ad_rt", "n")
        assert c.list_toxics("ad_rt") == []
    finally:
        c.delete_proxy("ad_rt")
    with pytest.raises(ToxiproxyError) as exc:
        c.get_proxy("ad_rt")
    assert exc.value.status == 404 and exc.value.message == "proxy not found"


def test_adapter_errors_are_clear(server_client: ToxiproxyClient, echo):
    c = server_client
    with reserve_ports(1) as res, socket.socket() as busy:
        # A reserved port may still have connections in TIME_WAIT from an
        # earlier user; only a listener counts as "in use" here.
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", res.ports[0]))
        busy.listen(1)
        with pytest.raises(ToxiproxyError) as exc:
            c.create_proxy("ad_busy", f"127.0.0.1:{res.ports[0]}", echo.addr)
    assert exc.value.status == 500 and "address already in use" in exc.value.message
    c.create_proxy("ad_dup", "127.0.0.1:0", echo.addr)
    try:
        with pytest.raises(ToxiproxyError) as exc:
            c.create_proxy("ad_dup", "127.0.0.1:0", echo.addr)
        assert exc.value.status == 409 and exc.value.message == "proxy already exists"
        with pytest.raises(ToxiproxyError) as exc:
            c.add_toxic("ad_dup", type="bogus")
        assert exc.value.status == 400 and exc.value.message == "invalid toxic type"
        with pytest.raises(ToxiproxyError) as exc:
            c.update_toxic("ad_dup", "none", attributes={})
        assert exc.value.status == 404
    finally:
        c.delete_proxy("ad_dup")
    with reserve_ports(1) as res:
        dead = ToxiproxyClient(f"http://127.0.0.1:{res.ports[0]}", timeout=2)
        with pytest.raises(ToxiproxyError) as exc:
            dead.version()
        assert exc.value.status == 0
        with pytest.raises(ToxiproxyError):
            dead.wait_ready(timeout=0.3)


def test_adapter_populate_is_server_side_and_keeps_identical_proxies(server_client, echo):
    c = server_client
    first = c.populate([{"name": "ad_pop", "listen": "127.0.0.1:0", "upstream": echo.addr}])
    try:
        assert len(first) == 1 and first[0].port > 0
        c.add_toxic("ad_pop", type="noop", name="kept")
        again = c.populate([{"name": "ad_pop", "listen": first[0].listen, "upstream": echo.addr}])
        assert again == first and [t.name for t in c.list_toxics("ad_pop")] == ["kept"]
        with pytest.raises(ToxiproxyError) as exc:
            c.populate([{"name": "ad_pop2"}])
        assert exc.value.status == 400 and "upstream" in exc.value.message
    finally:
        c.delete_proxy("ad_pop")


def test_adapter_is_thread_safe_across_two_servers(target, echo):
    """APIConsumer's host/port are class globals; two clients in threads must not mix them up."""
    if target.kind != "embedded":
        pytest.skip("needs a second embedded server")
    from chaos.toxiproxy.process import ToxiproxyServer
    with ToxiproxyServer.embedded(seed=5) as other:
        a, b = target.client, ToxiproxyClient(other.url)
        b.create_proxy("only_on_b", "127.0.0.1:0", echo.addr)
        wrong: list[str] = []

        def hammer(client: ToxiproxyClient, expect_b: bool) -> None:
            for _ in range(30):
                if ("only_on_b" in client.list_proxies()) != expect_b:
                    wrong.append(client.url)

        threads = [threading.Thread(target=hammer, args=(a, False)), threading.Thread(target=hammer, args=(b, True))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not wrong
