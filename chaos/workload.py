"""A client workload for real ZooKeeper: sequential creates all run long, read back at the end.

Theory of operation. Election bugs matter when they lose writes. The writer
(a thread in the orchestrator, on the host) keeps one kazoo session to the
whole ensemble and issues an asynchronous sequential create every
``1/rate`` s under ``ROOT``; a create counts as *acknowledged* when its
reply arrives, whenever that is (a create that times out on our side may
still be acknowledged later). Connection loss during a fault is expected:
it is counted as an error in that second, never a failure of the run. Each
second's acks and errors become a ``workload_tick`` record (the report's
timeline shows them).

At the end, after the ensemble settled, :meth:`ZnodeWorkload.read_back`
connects to every running server alone, ``sync``s and lists ``ROOT``:
a ``workload_readback`` record per server says which acknowledged creates it
lacks and a digest of what it holds. ``no_committed_txn_lost`` and
``log_agreement`` judge those records on this target
(:mod:`chaos.invariants.writes`).

Bounded: at most ``max_outstanding`` creates in flight (further ticks are
skipped and counted as errors), acknowledged paths kept as names (rate ×
time limit of them), ``MISSING_SHOWN`` missing names per record.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from chaos.records import WorkloadReadback, WorkloadTick

__all__ = ["ZnodeWorkload", "ROOT", "MISSING_SHOWN", "readback_fields"]

ROOT = "/fle-chaos"
MISSING_SHOWN = 20


def readback_fields(acked: set[str], held: list[str] | None, error: str | None = None) -> dict[str, Any]:
    """A ``workload_readback``'s fields from what one server holds (pure)."""
    if held is None:
        return {"acked": len(acked), "error": error or "not read"}
    have = set(held)
    missing = sorted(acked - have)
    return {"acked": len(acked), "held": len(have), "missing_count": len(missing),
            "missing": tuple(missing[:MISSING_SHOWN]), "extra_count": len(have - acked),
            "digest": hashlib.sha1("\n".join(sorted(have)).encode()).hexdigest()[:16]}


def _kazoo_logger(log_path: Path) -> logging.Logger:
    """kazoo logs every reconnect; into the run dir, not the terminal."""
    lg = logging.getLogger("kazoo")
    lg.propagate = False
    lg.setLevel(logging.INFO)
    for h in list(lg.handlers):
        lg.removeHandler(h)
        h.close()
    h = logging.FileHandler(log_path)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    lg.addHandler(h)
    return lg


class ZnodeWorkload:
    def __init__(self, journal: Any, servers: Mapping[int, str], *, log_path: Path, rate: float = 20.0,
                 max_outstanding: int = 200, clock: Callable[[], float] = time.monotonic) -> None:
        """``servers``: sid -> "host:port" of its client port."""
        self.journal = journal
        self.servers = dict(servers)
        self.rate = rate
        self.max_outstanding = max_outstanding
        self.clock = clock
        self.log_path = log_path
        self.acked: set[str] = set()
        self.errors = 0
        self._lock = threading.Lock()
        self._tick = {"acks": 0, "errors": 0}
        self._outstanding = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None

    # ------------------------------------------------------------------ writing
    def start(self) -> None:
        from kazoo.client import KazooClient
        from kazoo.retry import KazooRetry
        _kazoo_logger(self.log_path)
        hosts = ",".join(self.servers[s] for s in sorted(self.servers))
        self._client = KazooClient(hosts=hosts, timeout=4.0,
                                   connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0),
                                   logger=logging.getLogger("kazoo.client"))
        self._client.start_async()
        self._thread = threading.Thread(target=self._loop, name="workload", daemon=True)
        self._thread.start()

    def _done(self, result: Any) -> None:
        try:
            path = result.get_nowait()
        except Exception:
            with self._lock:
                self._outstanding -= 1
                self._tick["errors"] += 1
                self.errors += 1
            return
        with self._lock:
            self._outstanding -= 1
            self._tick["acks"] += 1
            self.acked.add(path)

    def _loop(self) -> None:
        t0 = self.clock()
        second = 0
        period = 1.0 / self.rate
        n = 0
        root_made = False
        while not self._stop.is_set():
            now = self.clock()
            if now - t0 >= second + 1:
                self._flush_tick(second)
                second = int(now - t0)
            if self._client.connected:
                if not root_made:
                    try:
                        self._client.ensure_path(ROOT)
                        root_made = True
                    except Exception:
                        pass
                with self._lock:
                    full = self._outstanding >= self.max_outstanding
                    if not full:
                        self._outstanding += 1
                if full:
                    self._count_error()
                elif root_made:
                    n += 1
                    try:
                        r = self._client.create_async(f"{ROOT}/w-", str(n).encode(), sequence=True)
                        r.rawlink(self._done)
                    except Exception:
                        with self._lock:
                            self._outstanding -= 1
                        self._count_error()
                else:
                    with self._lock:
                        self._outstanding -= 1
            else:
                self._count_error()   # no session now: a write that could not be made
            self._stop.wait(max(0.0, period - (self.clock() - now)))
        self._flush_tick(second)

    def _count_error(self) -> None:
        with self._lock:
            self._tick["errors"] += 1
            self.errors += 1

    def _flush_tick(self, second: int) -> None:
        with self._lock:
            acks, errors = self._tick["acks"], self._tick["errors"]
            self._tick = {"acks": 0, "errors": 0}
        if acks or errors:
            self.journal.record(WorkloadTick, second=second, acks=acks, errors=errors)

    def stop(self, drain_s: float = 3.0) -> None:
        """Stop writing; wait up to ``drain_s`` for creates in flight to answer."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5.0)
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._outstanding <= 0:
                    break
            time.sleep(0.05)
        self._thread = None
        try:
            self._client.stop()
            self._client.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ reading back
    def read_back(self, running: Callable[[int], bool], timeout: float = 10.0) -> None:
        """One ``workload_readback`` per server (see the module doc)."""
        from kazoo.client import KazooClient
        with self._lock:
            acked = set(self.acked)
        for sid in sorted(self.servers):
            if not running(sid):
                self.journal.record(WorkloadReadback, sid=sid, **readback_fields(acked, None, "not running at the end"))
                continue
            zk = KazooClient(hosts=self.servers[sid], timeout=timeout, logger=logging.getLogger("kazoo.client"))
            try:
                zk.start(timeout=timeout)
                zk.sync(ROOT)
                held = [f"{ROOT}/{c}" for c in zk.get_children(ROOT)] if zk.exists(ROOT) else []
                fields = readback_fields(acked, held)
            except Exception as e:
                fields = readback_fields(acked, None, f"{type(e).__name__}: {e}")
            finally:
                try:
                    zk.stop()
                    zk.close()
                except Exception:
                    pass
            self.journal.record(WorkloadReadback, sid=sid, **fields)
