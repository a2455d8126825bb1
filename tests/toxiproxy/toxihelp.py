"""Real-socket helpers for the Toxiproxy suite: an echo server and blocking reads."""
from __future__ import annotations

import socket
import threading

__all__ = ["EchoServer", "connect", "recv_exact", "recv_until_eof"]


class EchoServer:
    """A real TCP echo server on 127.0.0.1 (threads). On EOF it half-closes back."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.conns: list[socket.socket] = []
        self.accepted = 0
        self.received = bytearray()  # everything any connection sent, in arrival order
        self._stop = False
        self._threads: list[threading.Thread] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    break
                self.received.extend(data)
                conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop = True
        for sock in [self.sock, *self.conns]:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept/recv
            except OSError:
                pass
            sock.close()
        for t in self._threads:
            t.join(timeout=2)


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = s.recv(n - len(buf))
        if not data:
            break
        buf += data
    return bytes(buf)


def recv_until_eof(s: socket.socket) -> bytes:
    buf = bytearray()
    while True:
        data = s.recv(65536)
        if not data:
            return bytes(buf)
        buf += data
