"""Real node processes on loopback: write zoo.cfg + myid, start, query, end.

Shared by the node process tests, the interop tests and bench/node_election.py.
Every process is started with `--parent-pid` of the test process and ended by
pid in `close()`, so neither a failing assertion nor a crashed test run leaves
a node behind.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from chaos.ports import PortReservation, reserve_ports

__all__ = ["Ensemble", "NodeProc", "four_letter", "fles", "wait_until", "REPO"]

REPO = Path(__file__).resolve().parents[2]


def four_letter(port: int, word: str, *, host: str = "127.0.0.1", timeout: float = 2.0) -> str | None:
    """Send one four-letter word, return the whole reply (None if nobody answers)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(word.encode("ascii"))
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
            return b"".join(chunks).decode("utf-8", errors="replace")
    except OSError:
        return None


def fles(port: int, **kw: Any) -> dict[str, str] | None:
    reply = four_letter(port, "fles", **kw)
    if not reply:
        return None
    out = {}
    for line in reply.splitlines():
        k, _, v = line.partition("\t")
        out[k] = v
    return out


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class NodeProc:
    sid: int
    dir: Path
    client_port: int
    quorum_port: int
    election_port: int
    observer: bool = False
    proc: subprocess.Popen | None = None
    history: list[subprocess.Popen] = field(default_factory=list)

    @property
    def cfg_path(self) -> Path:
        return self.dir / "zoo.cfg"

    @property
    def events_path(self) -> Path:
        return self.dir / "events.jsonl"

    def events(self) -> list[dict]:
        try:
            lines = self.events_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line being written
        return out

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Ensemble:
    """N participants (sids 1..n) plus observers, on reserved loopback ports."""

    def __init__(self, root: Path, n: int, *, observers: int = 0,
                 groups: list[list[int]] | None = None, weights: dict[int, int] | None = None,
                 tick_time: int = 200, init_limit: int = 10, sync_limit: int = 5,
                 extra: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.ports: PortReservation = reserve_ports(3 * (n + observers))
        self.nodes: dict[int, NodeProc] = {}
        p = iter(self.ports.ports)
        for sid in range(1, n + observers + 1):
            d = self.root / f"node{sid}"
            d.mkdir(parents=True, exist_ok=True)
            self.nodes[sid] = NodeProc(sid, d, next(p), next(p), next(p), observer=sid > n)
        self.settings = {
            "tickTime": str(tick_time), "initLimit": str(init_limit), "syncLimit": str(sync_limit),
            "4lw.commands.whitelist": "*", "clientPortAddress": "127.0.0.1",
            "txnIntervalMs": "100",
        }
        self.settings.update(extra or {})
        self.groups = groups
        self.weights = weights or {}
        for node in self.nodes.values():
            self.write_config(node.sid)

    # --------------------------------------------------------------- files
    def server_lines(self) -> list[str]:
        lines = []
        for s, nd in self.nodes.items():
            kind = ":observer" if nd.observer else ""
            lines.append(f"server.{s}=127.0.0.1:{nd.quorum_port}:{nd.election_port}{kind}")
        return lines

    def config_text(self, sid: int) -> str:
        nd = self.nodes[sid]
        lines = [f"{k}={v}" for k, v in self.settings.items()]
        lines += [f"dataDir={nd.dir}", f"clientPort={nd.client_port}"]
        if nd.observer:
            lines.append("peerType=observer")
        lines += self.server_lines()
        for gi, members in enumerate(self.groups or [], start=1):
            lines.append(f"group.{gi}=" + ":".join(map(str, members)))
        for s, w in self.weights.items():
            lines.append(f"weight.{s}={w}")
        return "\n".join(lines) + "\n"

    def write_config(self, sid: int) -> None:
        nd = self.nodes[sid]
        nd.cfg_path.write_text(self.config_text(sid))
        (nd.dir / "myid").write_text(f"{sid}\n")

    # --------------------------------------------------------------- processes
    def start(self, *sids: int) -> None:
        for sid in sids or tuple(self.nodes):
            nd = self.nodes[sid]
            assert not nd.alive(), f"node {sid} already running"
            log = open(nd.dir / "node.log", "ab")
            nd.proc = subprocess.Popen(
                [sys.executable, "-m", "node", "--config", str(nd.cfg_path), "--parent-pid", str(os.getpid())],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            nd.history.append(nd.proc)

    def start_first(self, first: int, timeout: float = 30.0) -> None:
        """Start `first`, wait until it answers `fles`, then start the others.

        With every node started at once, whichever two happen to be up first
        may legitimately elect each other before the expected winner listens
        (ZooKeeper behaves the same). Tests that assert *which* node wins
        start the winner first so the outcome is decided by the rules.
        """
        self.start(first)
        wait_until(lambda: self.fles(first), timeout, what=f"node {first} to answer fles")
        self.start(*[s for s in self.nodes if s != first])

    def signal(self, sid: int, sig: int) -> None:
        nd = self.nodes[sid]
        if nd.alive():
            os.kill(nd.proc.pid, sig)

    def kill(self, sid: int) -> None:
        nd = self.nodes[sid]
        if nd.alive():
            os.kill(nd.proc.pid, signal.SIGKILL)
            nd.proc.wait(10)

    def stop(self, sid: int, timeout: float = 15.0) -> int | None:
        nd = self.nodes[sid]
        if nd.proc is None:
            return None
        if nd.alive():
            os.kill(nd.proc.pid, signal.SIGTERM)
        try:
            return nd.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(nd.proc.pid, signal.SIGKILL)
            nd.proc.wait(5)
            raise AssertionError(f"node {sid} did not exit within {timeout}s of SIGTERM")

    def close(self) -> None:
        for nd in self.nodes.values():
            for p in nd.history:
                if p.poll() is None:
                    try:
                        os.kill(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    try:
                        p.wait(10)
                    except subprocess.TimeoutExpired:
                        pass
        self.ports.release()

    # --------------------------------------------------------------- queries
    def fles(self, sid: int) -> dict[str, str] | None:
        return fles(self.nodes[sid].client_port)

    def states(self, sids: list[int] | None = None) -> dict[int, dict[str, str] | None]:
        return {s: self.fles(s) for s in (sids or list(self.nodes))}

    def agreed_leader(self, sids: list[int] | None = None, *, need_synced: bool = True) -> int | None:
        """The leader every given node reports (LEADING/FOLLOWING/OBSERVING), else None."""
        sids = sids or [s for s, nd in self.nodes.items() if nd.alive()]
        leaders = set()
        for s in sids:
            st = self.fles(s)
            if st is None or st.get("fle_state") == "LOOKING":
                return None
            if need_synced and st.get("fle_synced") != "1":
                return None
            leaders.add(int(st["fle_leader"]))
        if len(leaders) != 1:
            return None
        leader = leaders.pop()
        if leader in sids and self.fles(leader).get("fle_state") != "LEADING":
            return None
        return leader

    def wait_leader(self, sids: list[int] | None = None, timeout: float = 30.0) -> int:
        return wait_until(lambda: self.agreed_leader(sids), timeout, interval=0.2,
                          what=f"agreed leader among {sids or 'all'}")

    def __enter__(self) -> "Ensemble":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
