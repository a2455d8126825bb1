"""Start and stop a Toxiproxy server process: ours (`embedded`) or a real binary.

The caller owns the process: `stop()` (or leaving the `with` block) ends it by
pid, SIGTERM first, SIGKILL after `timeout`. The embedded server is also given
`-parent-pid`, so it exits by itself if the caller dies without stopping it.
The API port comes from `chaos.ports.reserve_ports` and stays reserved while
the server runs, so parallel test workers never collide.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Optional, Sequence

from chaos.ports import PortReservation, reserve_ports
from chaos.procs import pdeathsig_preexec, python_env

__all__ = ["ToxiproxyServer", "ServerStartError", "SERVER_NICE"]

_ROOT = Path(__file__).resolve().parents[2]

SERVER_NICE = -5
"""The server runs this many steps above normal CPU priority where it may
(root, CAP_SYS_NICE; elsewhere at normal priority). It stands for the
network: every byte between the nodes crosses it, so it must not queue behind
them. At an equal share, with 25 node interpreters starting at once (each in
its own session, so each its own autogroup), the embedded server's event loop
lagged 100-370 ms, election handshakes timed out and votes were lost."""


class ServerStartError(RuntimeError):
    """The server process exited or never answered /version; see its log."""


class ToxiproxyServer:
    """A running Toxiproxy-compatible server process."""

    def __init__(self, argv: Sequence[str], host: str, port: int, *, kind: str,
                 log_path: Optional[Path] = None, reservation: Optional[PortReservation] = None,
                 env: Optional[dict[str, str]] = None, ready_timeout: float = 15.0) -> None:
        self.kind = kind
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        self.log_path = log_path
        self._reservation = reservation
        self._log: Optional[IO[bytes]] = open(log_path, "ab") if log_path else None
        out = self._log if self._log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
                                     env=env, cwd=str(_ROOT),
                                     # Dies with its owner even on SIGKILL: the real
                                     # toxiproxy-server has no -parent-pid watchdog.
                                     preexec_fn=pdeathsig_preexec(os.getpid(), SERVER_NICE))
        self.pid = self.proc.pid
        try:
            self._wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    @classmethod
    def embedded(cls, *, host: str = "127.0.0.1", port: Optional[int] = None,
                 seed: Optional[int] = None, log_path: Optional[Path] = None,
                 extra_args: Sequence[str] = ()) -> "ToxiproxyServer":
        reservation = None
        if port is None:
            reservation = reserve_ports(1, host=host)
            port = reservation.ports[0]
        argv = [sys.executable, "-m", "chaos.toxiproxy", "-host", host, "-port", str(port),
                "-parent-pid", str(os.getpid()), *extra_args]
        if seed is not None:
            argv += ["-seed", str(seed)]
        env = python_env(_ROOT)
        return cls(argv, host, port, kind="embedded", log_path=log_path, reservation=reservation,
                   env=env)

    @classmethod
    def binary(cls, path: str, *, host: str = "127.0.0.1", port: Optional[int] = None,
               log_path: Optional[Path] = None, extra_args: Sequence[str] = ()) -> "ToxiproxyServer":
        reservation = None
        if port is None:
            reservation = reserve_ports(1, host=host)
            port = reservation.ports[0]
        argv = [path, "-host", host, "-port", str(port), *extra_args]
        return cls(argv, host, port, kind="binary", log_path=log_path, reservation=reservation)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerStartError(f"toxiproxy server exited with {self.proc.returncode} "
                                       f"(log: {self.log_path})")
            try:
                with urllib.request.urlopen(self.url + "/version", timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(f"toxiproxy server at {self.url} not ready after {timeout}s")
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._reservation is not None:
            self._reservation.release()
            self._reservation = None

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.poll()

    def __enter__(self) -> "ToxiproxyServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
