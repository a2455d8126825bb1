"""The ``fle`` target: our own node processes, their directories, zoo.cfg files and signals.

Layout inside the run dir (DESIGN.md §1 is the only contract with the node)::

    n<sid>/zoo.cfg   n<sid>/data/myid   n<sid>/data/events.jsonl   n<sid>/node.log
    pids/n<sid>.pid

Node i's zoo.cfg lists every other node j at the listen ports of the proxies
i→j (election and quorum), and itself at its real ports; so every byte
between two nodes crosses the proxy of the direction that dialled.
With ``--links netns`` (``net``, :mod:`chaos.netns`) each node runs in its
own namespace and every zoo.cfg names the real addresses; the host's DNAT
rules send each connection to its proxy.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import psutil

from chaos import procs
from chaos.plan.model import Ensemble as EnsembleSpec
from chaos.targets.process import ProcessTarget, ProcState

if TYPE_CHECKING:
    from chaos.netns import NetnsLinks

__all__ = ["NodeInfo", "ProcState", "FleTarget", "PROJECT_ROOT", "MAX_NOTIFICATION_INTERVAL_MS"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
# ZooKeeper caps the notification back-off at 60 s; a plan that heals a
# partition and expects convergence within seconds needs a lower cap.
MAX_NOTIFICATION_INTERVAL_MS = 2000

LinkPorts = Mapping[tuple[int, int, str], int]  # (from, to, "election"|"quorum") -> proxy listen port


@dataclass
class NodeInfo:
    sid: int
    role: str
    weight: int
    group: int | None
    client_port: int
    election_port: int
    quorum_port: int
    dir: Path
    data_dir: Path
    cfg_path: Path
    log_path: Path
    events_path: Path
    proc: psutil.Popen | None = None
    state: ProcState = ProcState.DOWN
    expected_exit: bool = False
    starts: int = 0

    def to_json(self) -> dict:
        return {"sid": self.sid, "name": f"n{self.sid}", "role": self.role, "weight": self.weight,
                "group": self.group, "client_port": self.client_port,
                "election_port": self.election_port, "quorum_port": self.quorum_port,
                "data_dir": str(self.data_dir), "log_path": str(self.log_path),
                "events_path": str(self.events_path)}


class FleTarget(ProcessTarget):
    """Owns the node processes of one run. Call from the main thread only
    (see :mod:`chaos.procs` on PDEATHSIG)."""

    kind = "fle"

    def __init__(self, run_dir: Path, spec: EnsembleSpec, real_ports: Iterable[int],
                 link_ports: LinkPorts, *, registry: procs.RunRegistry | None = None,
                 on_process: Callable[..., None] = lambda **kw: None,
                 python: str = sys.executable, net: "NetnsLinks | None" = None) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.net = net
        self.spec = spec
        self.link_ports = dict(link_ports)
        self.registry = registry
        self.on_process = on_process
        self.python = python
        ports = list(real_ports)
        if len(ports) < 3 * len(spec.sids):
            raise ValueError("need 3 real ports per node")
        self.nodes: dict[int, NodeInfo] = {}
        for k, sid in enumerate(spec.sids):
            d = self.run_dir / f"n{sid}"
            data = d / "data"
            self.nodes[sid] = NodeInfo(
                sid=sid, role="observer" if spec.is_observer(sid) else "participant",
                weight=spec.weight(sid), group=spec.group_of(sid),
                client_port=ports[3 * k], election_port=ports[3 * k + 1], quorum_port=ports[3 * k + 2],
                dir=d, data_dir=data, cfg_path=d / "zoo.cfg", log_path=d / "node.log",
                events_path=data / "events.jsonl")
        (self.run_dir / "pids").mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ config
    def zoo_cfg(self, sid: int) -> str:
        s, me = self.spec, self.nodes[sid]
        lines = [
            f"# written by chaos.targets.fle for node {sid}",
            f"tickTime={s.tick_time_ms}",
            f"initLimit={s.init_limit}",
            f"syncLimit={s.sync_limit}",
            f"dataDir={me.data_dir}",
            f"clientPort={me.client_port}",
            f"clientPortAddress={self.host(sid)}",
            "4lw.commands.whitelist=*",
            "electionAlg=3",
            f"txnIntervalMs={s.txn_interval_of(sid)}",
            f"fle.protocol={s.protocol}",
            f"fle.maxNotificationInterval={MAX_NOTIFICATION_INTERVAL_MS}",
        ]
        if me.role == "observer":
            lines.append("peerType=observer")
        for j, other in sorted(self.nodes.items()):
            if j == sid or self.net is not None:
                q, e = other.quorum_port, other.election_port
            else:
                q, e = self.link_ports[(sid, j, "quorum")], self.link_ports[(sid, j, "election")]
            suffix = ":observer" if other.role == "observer" else ""
            lines.append(f"server.{j}={self.host(j)}:{q}:{e}{suffix}")
        if s.groups:
            for gid, members in enumerate(s.groups, start=1):
                lines.append(f"group.{gid}=" + ":".join(str(m) for m in members))
        if s.groups or any(s.weight(p) != 1 for p in s.participants):
            for p in s.participants:
                lines.append(f"weight.{p}={s.weight(p)}")
        return "\n".join(lines) + "\n"

    def host(self, sid: int) -> str:
        """Where node ``sid`` listens: loopback, or its namespace's address."""
        return self.net.net.address(sid) if self.net is not None else "127.0.0.1"

    # ------------------------------------------------------------------ processes
    def _argv(self, n: NodeInfo) -> list[str]:
        # -S: no `site`. The node needs only the standard library and this
        # project (on PYTHONPATH); site-packages' .pth hooks cost each of the
        # n interpreters that start at once ~10 ms of CPU (of ~105).
        # In a namespace `nsenter` execs the node: the pid, and the parent
        # that `--parent-pid` names, stay the same.
        prefix = self.net.exec_prefix(n.sid) if self.net is not None else []
        return [*prefix, self.python, "-S", "-m", "node", "--config", str(n.cfg_path),
                "--parent-pid", str(os.getpid())]

    def _env(self) -> dict[str, str]:
        env = procs.python_env(PROJECT_ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _pid_file(self, sid: int) -> Path:
        return self.run_dir / "pids" / f"n{sid}.pid"

    def start(self, sid: int) -> int:
        n = self.nodes[sid]
        if n.proc is not None and n.state is not ProcState.DOWN:
            raise RuntimeError(f"node {sid} is already running (pid {n.proc.pid})")
        with open(n.log_path, "ab") as log:
            log.write(f"--- start #{n.starts + 1} at {time.strftime('%H:%M:%S')} ---\n".encode())
        n.proc = procs.spawn(self._argv(n), cwd=n.dir, log_path=n.log_path, env=self._env(),
                             registry=self.registry, name=str(n.cfg_path),
                             child_sets_pdeathsig=True)   # `--parent-pid` of its parent
        n.state = ProcState.RUNNING
        n.expected_exit = False
        n.starts += 1
        self._pid_file(sid).write_text(json.dumps({"pid": n.proc.pid, "create_time": n.proc.create_time(),
                                                   "orchestrator": os.getpid(), "cmdline": self._argv(n)}))
        self.on_process(sid=sid, action="started", pid=n.proc.pid, exit_code=None)
        return n.proc.pid

    def start_all(self) -> None:
        """Start every node, the largest sid first.

        Fresh nodes all vote for the largest sid (equal epochs and zxids), so
        starting it first lets each later node adopt that vote once. In sid
        order every node changed its vote again for each larger node that
        came up, and each change is a notification to every peer: about
        n³/2 of them (5000 at 21 nodes), each one a dial through a proxy while
        the peer was still down, in the seconds the ensemble forms."""
        for sid in sorted(self.nodes, reverse=True):
            if sid in self.spec.initial:   # the others wait for a `start` step
                self.start(sid)

    def _forget(self, sid: int) -> None:
        self._pid_file(sid).unlink(missing_ok=True)

    def header(self) -> list[dict]:
        return [n.to_json() for n in self.nodes.values()]

    def version(self) -> str | None:
        from chaos import __version__
        return __version__

    def endpoints(self) -> dict[int, tuple[int, Path | None]]:
        return {s: (n.client_port, n.events_path) for s, n in self.nodes.items()}

    def hosts(self) -> dict[int, str]:
        return {s: self.host(s) for s in self.nodes}

    def log_summary(self, sid: int) -> dict:
        """The node's txn log as ``LogSummary`` fields, read without writing."""
        from zkrules.txnlog import summarize_log
        n = self.nodes[sid]
        if not n.data_dir.is_dir():
            return {"runs": None, "error": "no dataDir"}
        s = summarize_log(n.data_dir)
        if s.error:
            return {"runs": None, "error": s.error}
        return {"runs": [list(r) for r in s.runs], "last_committed_zxid": s.last_committed_zxid}

    # ------------------------------------------------------------------ dataDir copies
    # `snapshot` / `restart: {from}`: a copy of a stopped node's dataDir (epoch
    # files, txn log, myid) under run_dir/snapshots/NAME, put back before a
    # start. The event log stays where it is: it is the orchestrator's record
    # of the node, tailed by offset, not the node's state.

    def _snapshot_holds(self, data: Path) -> dict:
        from zkrules.txnlog import read_epochs, summarize_log
        epochs, log = read_epochs(data), summarize_log(data)
        return {"accepted_epoch": epochs.accepted, "current_epoch": epochs.current,
                "runs": [list(r) for r in log.runs] if not log.error else None}
