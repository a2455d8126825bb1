"""Free loopback ports that parallel runs never share.

Binding port 0 and closing it leaves a window in which another run (another
pytest-xdist worker, a second `chaos run`) can be handed the same port. So a
port is picked outside the kernel's ephemeral range (where outgoing
connections would take it) and reserved with an flock on a per-port file held
by the allocating process: the reservation ends when that process closes it
or dies, so a crashed run never leaks ports.
"""
from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path

__all__ = ["PortReservation", "reserve_ports"]

_LOCK_DIR = Path(tempfile.gettempdir()) / "fle-chaos-ports"
_LOW, _HIGH = 20000, 32000  # below Linux's default ephemeral range (32768-60999)


class PortReservation:
    """A set of reserved ports; `release()` (or garbage collection) frees them."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self._fds: list[int] = []

    def release(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()

    def __enter__(self) -> "PortReservation":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def reserve_ports(n: int, host: str = "127.0.0.1", rng: random.Random | None = None,
                  into: PortReservation | None = None) -> PortReservation:
    """Reserve `n` distinct free TCP ports on `host`."""
    rng = rng or random.Random()
    res = into or PortReservation()
    _LOCK_DIR.mkdir(parents=True, exist_ok=True)
    attempts = 0
    wanted = len(res.ports) + n
    while len(res.ports) < wanted:
        attempts += 1
        if attempts > 20000:
            raise RuntimeError(f"could not reserve {n} free ports in {_LOW}-{_HIGH}")
        port = rng.randrange(_LOW, _HIGH)
        if port in res.ports:
            continue
        fd = os.open(_LOCK_DIR / f"{port}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if not _bindable(port, host):
            os.close(fd)
            continue
        res.ports.append(port)
        res._fds.append(fd)
    return res
