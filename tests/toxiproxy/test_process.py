"""The embedded server as a process: flags, -config, signals, -seed, metrics, parent watch."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from chaos.toxiproxy.process import ToxiproxyServer
from toxihelp import EchoServer, connect, recv_exact, recv_until_eof

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


def test_version_flag():
    out = subprocess.run([sys.executable, "-m", "chaos.toxiproxy", "-version"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout == "toxiproxy-server version 2.12.0\n"


def test_config_file_populates_at_start_and_sigterm_closes_proxies(tmp_path, echo):
    cfg = tmp_path / "proxies.json"
    cfg.write_text(json.dumps([{"name": "from_cfg", "listen": "127.0.0.1:0", "upstream": echo.addr}]))
    log = tmp_path / "server.log"
    srv = ToxiproxyServer.embedded(log_path=log, extra_args=["-config", str(cfg)])
    try:
        proxy = requests.get(srv.url + "/proxies/from_cfg", timeout=5).json()
        s = connect(int(proxy["listen"].rsplit(":", 1)[1]))
        s.sendall(b"hi")
        assert recv_exact(s, 2) == b"hi"
        os.kill(srv.pid, signal.SIGTERM)
        assert srv.proc.wait(10) == 0
        assert recv_until_eof(s) == b""
        s.close()
    finally:
        srv.stop()
    events = [json.loads(line)["event"] for line in log.read_text().splitlines() if line.startswith("{")]
    assert "config_loaded" in events and events[-1] == "server_stopped"


def test_bad_config_is_logged_not_fatal(tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text("[{\"name\": 1}]")
    log = tmp_path / "server.log"
    with ToxiproxyServer.embedded(log_path=log, extra_args=["-config", str(cfg)]) as srv:
        assert requests.get(srv.url + "/proxies", timeout=5).json() == {}
    assert "config_failed" in log.read_text()


def test_metrics_flag_enables_the_route(echo):
    with ToxiproxyServer.embedded(extra_args=["-proxy-metrics"]) as srv:
        requests.post(srv.url + "/proxies", json={"name": "m", "listen": "127.0.0.1:0",
                                                 "upstream": echo.addr}, timeout=5)
        port = int(requests.get(srv.url + "/proxies/m", timeout=5).json()["listen"].rsplit(":", 1)[1])
        s = connect(port)
        s.sendall(b"12345")
        assert recv_exact(s, 5) == b"12345"
        s.close()
        deadline = time.monotonic() + 5
        while True:
            text = requests.get(srv.url + "/metrics", timeout=5).text
            if 'direction="upstream",listener' in text and ' 5\n' in text or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert "toxiproxy_proxy_sent_bytes_total" in text and ' 5\n' in text
        assert 'toxiproxy_proxy_received_bytes_total{direction="upstream",listener=' in text


def _delayed_pattern(url: str, upstream: str, n: int = 12) -> list[bool]:
    requests.post(url + "/proxies", json={"name": "seeded", "listen": "127.0.0.1:0", "upstream": upstream},
                  timeout=5)
    requests.post(url + "/proxies/seeded/toxics", json={"type": "latency", "toxicity": 0.5,
                                                        "attributes": {"latency": 150}}, timeout=5)
    port = int(requests.get(url + "/proxies/seeded", timeout=5).json()["listen"].rsplit(":", 1)[1])
    out = []
    for _ in range(n):
        s = connect(port)
        t0 = time.monotonic()
        s.sendall(b"x")
        assert recv_exact(s, 1) == b"x"
        out.append(time.monotonic() - t0 >= 0.150)
        s.close()
    return out


def test_seed_makes_toxicity_rolls_reproducible(echo):
    with ToxiproxyServer.embedded(seed=99) as a:
        first = _delayed_pattern(a.url, echo.addr)
    with ToxiproxyServer.embedded(seed=99) as b:
        second = _delayed_pattern(b.url, echo.addr)
    assert first == second
    assert any(first) and not all(first), first


def test_server_exits_when_its_parent_dies(tmp_path):
    """-parent-pid: a server whose owner died without stopping it does not linger."""
    script = (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from chaos.toxiproxy.process import ToxiproxyServer\n"
        "s = ToxiproxyServer.embedded()\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(60)\n" % str(ROOT))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        child_pid = int(parent.stdout.readline())
        child = psutil.Process(child_pid)
        parent.kill()
        parent.wait(10)
        try:
            child.wait(10)
        except psutil.TimeoutExpired:
            child.kill()
            child.wait(5)
            pytest.fail("the server outlived its owner by 10 s")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
    assert not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE


def test_binary_server_dies_with_its_owner_without_a_watchdog(tmp_path):
    """A real toxiproxy-server has no -parent-pid; the death signal must end it."""
    wrapper = tmp_path / "toxiproxy-server"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m chaos.toxiproxy \"$@\"\n")
    wrapper.chmod(0o755)
    script = (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from chaos.toxiproxy.process import ToxiproxyServer\n"
        "s = ToxiproxyServer.binary(%r)\n"
        "print(s.pid, flush=True)\n"
        "time.sleep(60)\n" % (str(ROOT), str(wrapper)))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        child_pid = int(parent.stdout.readline())
        child = psutil.Process(child_pid)
        assert "-parent-pid" not in child.cmdline()
        parent.kill()
        parent.wait(10)
        try:
            child.wait(10)
        except psutil.TimeoutExpired:
            child.kill()  # the failure below says why; leave nothing behind
            child.wait(5)
            pytest.fail("the server outlived its owner by 10 s")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
