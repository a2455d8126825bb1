"""`python -m chaos.toxiproxy` / `fle-toxiproxy-server`: toxiproxy-server's command line.

Flags as the Go binary spells them (`-host`, `-port 8474`, `-config FILE`,
`-seed N`, `-version`, `-proxy-metrics`, `-runtime-metrics`; `--flag` and
`-flag=value` work too), plus `-parent-pid PID`: exit when that process is
gone, so a crashed test run never leaves a server behind. The API listens on
127.0.0.1 unless `-host` says otherwise. Logs are JSON lines on stdout.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Optional, Sequence

from aiohttp import web

from .api import VERSION, ApiError, ToxiproxyApp

__all__ = ["main", "serve"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toxiproxy-server", allow_abbrev=False,
                                description="Toxiproxy-compatible server (fle-chaos embedded)")
    p.add_argument("-host", "--host", default="127.0.0.1", help="host for the API to listen on")
    p.add_argument("-port", "--port", type=int, default=8474, help="port for the API to listen on")
    p.add_argument("-config", "--config", default="", help="JSON file of proxies to create at start")
    p.add_argument("-seed", "--seed", type=int, default=None, help="seed for toxicity and jitter")
    p.add_argument("-version", "--version", action="store_true", help="print the version and exit")
    p.add_argument("-proxy-metrics", "--proxy-metrics", action="store_true", dest="proxy_metrics")
    p.add_argument("-runtime-metrics", "--runtime-metrics", action="store_true",
                   dest="runtime_metrics")
    p.add_argument("-parent-pid", "--parent-pid", type=int, default=None, dest="parent_pid",
                   help="exit when this process is gone (fle-chaos extension)")
    return p


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            stop.set()
            return
        except PermissionError:
            pass
        await asyncio.sleep(0.5)


async def serve(host: str, port: int, *, seed: Optional[int] = None, config: str = "",
                metrics: bool = False, parent_pid: Optional[int] = None,
                stop: Optional[asyncio.Event] = None) -> int:
    """Run the server until `stop` is set (or SIGINT/SIGTERM); returns an exit code."""
    app = ToxiproxyApp(seed=seed, metrics=metrics)
    emit = app.emit
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    if config:
        try:
            with open(config, "rb") as fh:
                body = fh.read()
            from .gojson import decode_value
            created: list = []
            await app.populate_entries(decode_value(body), created)
            emit("config_loaded", config=config, proxies=len(created))
        except (OSError, ValueError, ApiError) as exc:
            emit("config_failed", config=config, error=getattr(exc, "message", str(exc)))
    server = web.Server(app.handle)  # BaseRequest caps bodies at 1 MiB (MAX_BODY)
    runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        emit("api_bind_failed", host=host, port=port, error=str(exc))
        await runner.cleanup()
        return 3
    emit("api_started", host=host, port=port, version=VERSION, seed=app.seed, pid=os.getpid())
    watcher = loop.create_task(_watch_parent(parent_pid, stop)) if parent_pid else None
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        emit("server_stopping", proxies=len(app.proxies))
        app.close_all()
        await runner.cleanup()
        emit("server_stopped")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"toxiproxy-server version {VERSION}")
        return 0
    try:
        return asyncio.run(serve(args.host, args.port, seed=args.seed, config=args.config,
                                 metrics=args.proxy_metrics or args.runtime_metrics,
                                 parent_pid=args.parent_pid))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
