"""HTTP API conformance: routes, shapes, status codes and error bodies (spec §2)."""
from __future__ import annotations

import json
import socket

import pytest

from chaos.ports import reserve_ports

from toxihelp import connect

ERR_CT = "text/plain; charset=utf-8"


def err(r) -> dict:
    assert r.headers["Content-Type"] == ERR_CT
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.text.endswith("\n")
    body = json.loads(r.text)
    assert body["status"] == r.status_code
    return body


def test_version_is_json_with_a_space_and_newline(target):
    r = target.req("GET", "/version")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json;charset=utf-8"
    assert r.text == '{"version": "2.12.0"}\n' or target.kind != "embedded"
    assert json.loads(r.text)["version"].startswith("2.")
    assert r.headers.get("X-Toxiproxy-Request-Id")


def test_create_resolves_port_zero_and_returns_the_proxy_object(target, make_proxy, echo):
    info = make_proxy()
    assert info["port"] != 0 and info["listen"].startswith("127.0.0.1:")
    assert list(info)[:6] == ["name", "listen", "upstream", "enabled", "Logger", "toxics"]
    assert info["Logger"] == {} and info["toxics"] == [] and info["enabled"] is True
    assert info["upstream"] == echo.addr
    r = target.req("GET", f"/proxies/{info['name']}")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.json()["listen"] == info["listen"]
    listed = target.req("GET", "/proxies").json()
    assert listed[info["name"]]["listen"] == info["listen"]


def test_localhost_port_zero_becomes_ipv4(target, make_proxy):
    info = make_proxy(listen="localhost:0")
    assert info["listen"].startswith("127.0.0.1:") and info["port"] > 0


def test_disabled_proxy_keeps_listen_unresolved_until_enabled(target, make_proxy):
    info = make_proxy(listen="localhost:0", enabled=False)
    assert info["listen"] == "localhost:0" and info["enabled"] is False
    r = target.req("PATCH", f"/proxies/{info['name']}", {"enabled": True})
    assert r.status_code == 200
    assert r.json()["enabled"] is True and r.json()["listen"].startswith("127.0.0.1:")


def test_create_errors(target, make_proxy, echo):
    info = make_proxy()
    r = target.req("POST", "/proxies", {"name": info["name"], "upstream": echo.addr, "listen": "127.0.0.1:0"})
    assert r.status_code == 409 and err(r)["error"] == "proxy already exists"
    r = target.req("POST", "/proxies", {"upstream": echo.addr})
    assert r.status_code == 400 and err(r)["error"] == "missing required field: name"
    r = target.req("POST", "/proxies", {"name": "x_no_upstream"})
    assert r.status_code == 400 and err(r)["error"] == "missing required field: upstream"
    r = target.req("POST", "/proxies", raw=b"{not json")
    assert r.status_code == 400 and err(r)["error"].startswith("bad request body: ")
    r = target.req("POST", "/proxies", raw=b"")
    assert r.status_code == 400 and err(r)["error"].startswith("bad request body: ")
    r = target.req("POST", "/proxies", {"name": 5, "upstream": echo.addr})
    assert r.status_code == 400 and "cannot unmarshal number" in err(r)["error"]
    r = target.req("POST", "/proxies", {"name": "x_bad_enabled", "upstream": echo.addr, "enabled": "yes"})
    assert r.status_code == 400 and "cannot unmarshal string" in err(r)["error"]


def test_bind_conflict_is_500_with_the_bind_error(target, make_proxy):
    with reserve_ports(1) as res:
        port = res.ports[0]
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a reserved port may sit in TIME_WAIT
            s.bind(("127.0.0.1", port))
            s.listen(1)
            r = target.req("POST", "/proxies", {"name": f"busy{port}", "upstream": "127.0.0.1:1",
                                                 "listen": f"127.0.0.1:{port}"})
    assert r.status_code == 500
    assert "address already in use" in err(r)["error"]
    assert target.req("GET", f"/proxies/busy{port}").status_code == 404


def test_not_found_and_method_not_allowed_and_browser_refused(target):
    """The request id and the browser check are middleware on matched routes
    only (gorilla/mux skips them when no route matches): a routed 404 and the
    403 carry an id; an unmatched path's 404 and a 405 carry none, and a
    browser asking for an unknown path gets the 404, not the 403."""
    rid = "X-Toxiproxy-Request-Id"
    r = target.req("GET", "/proxies/does_not_exist")
    assert r.status_code == 404 and err(r)["error"] == "proxy not found"
    assert r.headers.get(rid)
    r = target.req("DELETE", "/proxies/does_not_exist")
    assert r.status_code == 404 and err(r)["error"] == "proxy not found"
    assert r.headers.get(rid)
    r = target.req("GET", "/nothing/here")
    assert r.status_code == 404 and r.text == "404 page not found\n"
    assert rid not in r.headers
    r = target.req("PUT", "/version")
    assert r.status_code == 405 and r.content == b""
    assert rid not in r.headers
    r = target.req("GET", "/version", headers={"User-Agent": "Mozilla/5.0 (X11)"})
    assert r.status_code == 403 and r.text.startswith("User agent not allowed")
    assert r.headers.get(rid)
    r = target.req("GET", "/nothing/here", headers={"User-Agent": "Mozilla/5.0 (X11)"})
    assert r.status_code == 404 and rid not in r.headers
    r = target.req("PUT", "/version", headers={"User-Agent": "Mozilla/5.0 (X11)"})
    assert r.status_code == 405 and rid not in r.headers
    r = target.req("GET", "/metrics")
    assert r.status_code == 404 and rid not in r.headers


def test_toxic_create_defaults_and_shape(target, make_proxy):
    p = make_proxy()
    r = target.req("POST", f"/proxies/{p['name']}/toxics", {"type": "latency", "attributes": {"latency": 5}})
    assert r.status_code == 200
    t = r.json()
    assert list(t) == ["attributes", "name", "type", "stream", "toxicity"]
    assert t == {"attributes": {"latency": 5, "jitter": 0}, "name": "latency_downstream",
                 "type": "latency", "stream": "downstream", "toxicity": 1}
    r = target.req("POST", f"/proxies/{p['name']}/toxics", {"type": "bandwidth", "stream": "UPSTREAM"})
    assert r.status_code == 200
    assert r.json()["name"] == "bandwidth_UPSTREAM" and r.json()["attributes"] == {"rate": 0}
    r = target.req("POST", f"/proxies/{p['name']}/toxics", {"type": "noop", "name": "n", "toxicity": 2})
    assert r.status_code == 200 and r.json()["toxicity"] == 2
    listed = target.req("GET", f"/proxies/{p['name']}/toxics").json()
    assert [t["name"] for t in listed] == ["bandwidth_UPSTREAM", "latency_downstream", "n"]
    shown = target.req("GET", f"/proxies/{p['name']}").json()["toxics"]
    assert [t["name"] for t in shown] == ["bandwidth_UPSTREAM", "latency_downstream", "n"]
    r = target.req("GET", f"/proxies/{p['name']}/toxics/latency_downstream")
    assert r.status_code == 200 and r.json()["attributes"]["latency"] == 5


def test_toxic_errors(target, make_proxy):
    p = make_proxy()
    base = f"/proxies/{p['name']}/toxics"
    r = target.req("POST", base, {"type": "latency", "stream": "sideways"})
    assert r.status_code == 400
    assert err(r)["error"] == "stream was invalid, can be either upstream or downstream"
    r = target.req("POST", base, {"type": "no_such_toxic"})
    assert r.status_code == 400 and err(r)["error"] == "invalid toxic type"
    r = target.req("POST", base, {"name": "x"})
    assert r.status_code == 400 and err(r)["error"] == "invalid toxic type"
    r = target.req("POST", base, {"type": "slow_close", "attributes": {"delay": "soon"}})
    assert r.status_code == 400
    assert err(r)["error"].startswith("bad request body: json: cannot unmarshal string")
    assert "delay" in err(r)["error"] and "int64" in err(r)["error"]
    r = target.req("POST", base, {"type": "latency", "attributes": {"latency": 1.5}})
    assert r.status_code == 400
    r = target.req("POST", base, {"type": "latency", "toxicity": "high"})
    assert r.status_code == 400
    assert target.req("POST", base, {"type": "latency"}).status_code == 200
    r = target.req("POST", base, {"type": "latency"})
    assert r.status_code == 409 and err(r)["error"] == "toxic already exists"
    r = target.req("POST", base, {"type": "noop", "name": "latency_downstream", "stream": "upstream"})
    assert r.status_code == 409, "names are unique across both streams"
    r = target.req("GET", base + "/nope")
    assert r.status_code == 404 and err(r)["error"] == "toxic not found"
    r = target.req("DELETE", base + "/nope")
    assert r.status_code == 404 and err(r)["error"] == "toxic not found"
    r = target.req("POST", "/proxies/nope/toxics", {"type": "latency"})
    assert r.status_code == 404 and err(r)["error"] == "proxy not found"
    assert target.req("GET", "/proxies/nope/toxics").status_code == 404


def test_toxic_update_merges_attributes_and_keeps_toxicity(target, make_proxy):
    p = make_proxy()
    base = f"/proxies/{p['name']}/toxics"
    target.req("POST", base, {"type": "latency", "name": "l", "toxicity": 0.5,
                              "attributes": {"latency": 100, "jitter": 7}})
    r = target.req("PATCH", base + "/l", {"attributes": {"latency": 200}, "type": "bandwidth",
                                          "stream": "upstream", "name": "ignored"})
    assert r.status_code == 200
    assert r.json() == {"attributes": {"latency": 200, "jitter": 7}, "name": "l", "type": "latency",
                        "stream": "downstream", "toxicity": 0.5}
    r = target.req("POST", base + "/l", {"toxicity": 1})
    assert r.status_code == 200 and r.json()["toxicity"] == 1 and r.json()["attributes"]["latency"] == 200
    r = target.req("PATCH", base + "/l", {"attributes": {"jitter": "x"}})
    assert r.status_code == 400
    assert target.req("GET", base + "/l").json()["attributes"]["jitter"] == 7
    assert target.req("DELETE", base + "/l").status_code == 204
    assert target.req("GET", base).json() == []


@pytest.mark.deliberate
def test_slicer_with_average_size_zero_is_refused(target, make_proxy):
    """The real server accepts it and then dies of a stack overflow on the first byte."""
    p = make_proxy()
    base = f"/proxies/{p['name']}/toxics"
    r = target.req("POST", base, {"type": "slicer"})
    assert r.status_code == 400 and err(r)["error"].startswith("bad request body: ")
    r = target.req("POST", base, {"type": "slicer", "attributes": {"average_size": 4, "size_variation": 9}})
    assert r.status_code == 400
    assert target.req("POST", base, {"type": "slicer", "attributes": {"average_size": 4}}).status_code == 200
    r = target.req("PATCH", base + "/slicer_downstream", {"attributes": {"average_size": 0}})
    assert r.status_code == 400
    assert target.req("GET", base + "/slicer_downstream").json()["attributes"]["average_size"] == 4


def test_update_proxy_rebinds_when_listen_changes(target, make_proxy):
    p = make_proxy()
    r = target.req("PATCH", f"/proxies/{p['name']}", {"listen": "127.0.0.1:0"})
    assert r.status_code == 200
    new = r.json()
    assert new["listen"] != p["listen"] and new["enabled"] is True
    with pytest.raises(ConnectionRefusedError):
        connect(p["port"]).close()
    s = connect(int(new["listen"].rsplit(":", 1)[1]))
    s.sendall(b"hi")
    assert s.recv(2) == b"hi"
    s.close()
    r = target.req("PATCH", f"/proxies/{p['name']}", {"listen": "nonsense"})
    assert r.status_code == 500
    assert target.req("GET", f"/proxies/{p['name']}").json()["listen"] == new["listen"]


def test_populate_keeps_identical_and_replaces_differing(target, make_proxy, echo):
    p = make_proxy()
    target.req("POST", f"/proxies/{p['name']}/toxics", {"type": "latency", "name": "keep"})
    target.req("PATCH", f"/proxies/{p['name']}", {"enabled": False})
    r = target.req("POST", "/populate", [{"name": p["name"], "listen": p["listen"], "upstream": echo.addr,
                                          "enabled": True}])
    assert r.status_code == 201 and r.headers["Content-Type"] == "application/json"
    got = r.json()["proxies"][0]
    assert got["enabled"] is False and [t["name"] for t in got["toxics"]] == ["keep"]
    r = target.req("POST", "/populate", [{"name": p["name"], "listen": p["listen"], "upstream": "127.0.0.1:9"}])
    got = r.json()["proxies"][0]
    assert r.status_code == 201 and got["enabled"] is True and got["toxics"] == []
    assert got["upstream"] == "127.0.0.1:9"


def test_populate_errors_and_empty(target, make_proxy, echo):
    r = target.req("POST", "/populate", [])
    assert r.status_code == 201 and r.json() == {"proxies": None}
    r = target.req("POST", "/populate", [{"name": "pop_ok_x", "upstream": echo.addr, "listen": "127.0.0.1:0"},
                                         {"upstream": echo.addr}])
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/json"
    assert r.json() == {"error": "missing required field: name at proxy 2", "status": 400, "proxies": None}
    assert target.req("GET", "/proxies/pop_ok_x").status_code == 404, "validation precedes creation"
    r = target.req("POST", "/populate", raw=b"{")
    assert r.status_code == 400 and r.json()["error"].startswith("bad request body")


def test_metrics_route_is_absent_without_flags(target):
    assert target.req("GET", "/metrics").status_code == 404


def test_error_body_is_exact(target):
    r = target.req("GET", "/proxies/missing_one")
    assert r.text == '{"error":"proxy not found","status":404}\n'


@pytest.mark.deliberate
def test_empty_listen_binds_loopback_not_all_interfaces(target, echo):
    r = target.req("POST", "/proxies", {"name": "no_listen", "upstream": echo.addr})
    try:
        assert r.status_code == 201
        assert r.json()["listen"].startswith("127.0.0.1:")
    finally:
        target.req("DELETE", "/proxies/no_listen")
