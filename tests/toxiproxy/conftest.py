"""Fixtures for the Toxiproxy conformance suite.

`target` is the server under test: the one named by TOXIPROXY_URL if set
(shared: run with `-n 0`), else our embedded server; and a real
`toxiproxy-server` binary as a second parameter when one is on PATH.
Tests marked `deliberate` document where we differ from the real server on
purpose; they run against the embedded server only.
"""
from __future__ import annotations

import itertools
import os
import shutil
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import pytest
import requests

from chaos.toxiproxy.client import ToxiproxyClient
from chaos.toxiproxy.process import ToxiproxyServer
from toxihelp import EchoServer


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "deliberate: a deliberate difference from toxiproxy-server; "
                                       "embedded server only")


@dataclass
class Target:
    url: str
    kind: str  # embedded | binary | external
    client: ToxiproxyClient
    pid: Optional[int] = None  # None for an external server

    def req(self, method: str, path: str, body: Any = None, raw: Optional[bytes] = None,
            headers: Optional[dict[str, str]] = None) -> requests.Response:
        kwargs: dict[str, Any] = {"timeout": 30, "headers": headers or {}}
        if raw is not None:
            kwargs["data"] = raw
        elif body is not None:
            kwargs["json"] = body
        return requests.request(method, self.url + path, **kwargs)


@pytest.fixture(scope="session", params=["embedded", "binary"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    logs = tmp_path_factory.mktemp("toxiproxy")
    if request.param == "binary":
        path = shutil.which("toxiproxy-server")
        if path is None:
            pytest.skip("no toxiproxy-server binary on PATH")
        server = ToxiproxyServer.binary(path, log_path=logs / "binary.log")
        kind = "binary"
    elif os.environ.get("TOXIPROXY_URL"):
        url = os.environ["TOXIPROXY_URL"]
        yield Target(url, "external", ToxiproxyClient(url))
        return
    else:
        server = ToxiproxyServer.embedded(seed=1234, log_path=logs / "embedded.log")
        kind = "embedded"
    with server:
        yield Target(server.url, kind, ToxiproxyClient(server.url), server.pid)
        assert server.returncode is None, "the server died during the suite"


@pytest.fixture(autouse=True)
def _deliberate_only_embedded(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("deliberate") and "target" in request.fixturenames:
        if request.getfixturevalue("target").kind != "embedded":
            pytest.skip("documents a deliberate difference from toxiproxy-server")


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()



_names = itertools.count()


@pytest.fixture
def make_proxy(target: Target, echo: EchoServer) -> Iterator[Callable[..., dict]]:
    """Create a uniquely named proxy (to the echo server unless told); deleted afterwards."""
    made: list[str] = []

    def make(upstream: Optional[str] = None, **extra: Any) -> dict:
        name = f"t{os.getpid()}_{next(_names)}_{uuid.uuid4().hex[:6]}"
        body = {"name": name, "listen": "127.0.0.1:0", "upstream": upstream or echo.addr}
        body.update(extra)
        r = target.req("POST", "/proxies", body)
        assert r.status_code == 201, r.text
        made.append(name)
        info = r.json()
        info["port"] = int(info["listen"].rsplit(":", 1)[1])
        return info

    yield make
    for name in made:
        target.req("DELETE", f"/proxies/{name}")


