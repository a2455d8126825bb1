"""Added latency and throughput of a Toxiproxy proxy with no toxics (run by hand).

    python bench/toxiproxy_latency.py [--url http://127.0.0.1:8474] [--n 5000] [--mb 512]

Round trips of 64-byte messages to an echo server, direct and through a
proxy: the added p50/p99 is proxied minus direct. Bulk throughput: a source
server streams `--mb` MiB to the client, direct and through the proxy.
Upstreams run in a child process so they do not share a GIL with the client.
Without --url an embedded server is started (and stopped). Reference, the
real toxiproxy-server 2.12: +102 µs p50, +402 µs p99; target ≥ 310 MB/s.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chaos.toxiproxy.client import ToxiproxyClient  # noqa: E402
from chaos.toxiproxy.process import ToxiproxyServer  # noqa: E402

UPSTREAMS = r"""
import socket, sys, threading
MB = int(sys.argv[1])
def serve(sock, fn):
    while True:
        c, _ = sock.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=fn, args=(c,), daemon=True).start()
def echo(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d: return
            c.sendall(d)
def source(c):
    block = b"\0" * (1 << 20)
    with c:
        for _ in range(MB):
            c.sendall(block)
socks = []
for fn in (echo, source):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64); socks.append(s)
    threading.Thread(target=serve, args=(s, fn), daemon=True).start()
print(socks[0].getsockname()[1], socks[1].getsockname()[1], flush=True)
sys.stdin.read()
"""


def round_trips(port: int, n: int) -> list[float]:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"m" * 64
    out = []
    for i in range(n + 200):
        t0 = time.perf_counter_ns()
        s.sendall(msg)
        got = 0
        while got < 64:
            got += len(s.recv(64 - got))
        if i >= 200:
            out.append((time.perf_counter_ns() - t0) / 1000.0)
    s.close()
    return out


def throughput(port: int, mb: int) -> float:
    s = socket.create_connection(("127.0.0.1", port))
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0
    t0 = time.perf_counter()
    while True:
        n = s.recv_into(view)
        if not n:
            break
        total += n
    dt = time.perf_counter() - t0
    s.close()
    assert total == mb << 20, total
    return total / dt / 1e6


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=1000)[int(q * 1000) - 1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=None)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--mb", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    up = subprocess.Popen([sys.executable, "-c", UPSTREAMS, str(args.mb)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
    server = None
    try:
        echo_port, source_port = map(int, up.stdout.readline().split())
        if args.url is None:
            server = ToxiproxyServer.embedded()
            url = server.url
        else:
            url = args.url
        c = ToxiproxyClient(url)
        for name in ("bench_echo", "bench_source"):
            try:
                c.delete_proxy(name)
            except Exception:
                pass
        pe = c.create_proxy("bench_echo", "127.0.0.1:0", f"127.0.0.1:{echo_port}").port
        ps = c.create_proxy("bench_source", "127.0.0.1:0", f"127.0.0.1:{source_port}").port
        results = []
        for _ in range(args.repeat):
            direct = round_trips(echo_port, args.n)
            proxied = round_trips(pe, args.n)
            results.append({
                "direct_p50_us": pct(direct, 0.5), "direct_p99_us": pct(direct, 0.99),
                "proxied_p50_us": pct(proxied, 0.5), "proxied_p99_us": pct(proxied, 0.99),
                "added_p50_us": pct(proxied, 0.5) - pct(direct, 0.5),
                "added_p99_us": pct(proxied, 0.99) - pct(direct, 0.99),
                "direct_MBps": throughput(source_port, args.mb),
                "proxied_MBps": throughput(ps, args.mb),
            })
        c.delete_proxy("bench_echo")
        c.delete_proxy("bench_source")
        median = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(json.dumps({"server": url, "kind": "external" if args.url else "embedded",
                          "n": args.n, "mb": args.mb, "cpus": os.cpu_count(),
                          "median_of_runs": {k: round(v, 1) for k, v in median.items()},
                          "runs": [{k: round(v, 1) for k, v in r.items()} for r in results]}, indent=1))
    finally:
        if server is not None:
            server.stop()
        up.stdin.close()
        up.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
