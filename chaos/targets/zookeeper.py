"""The ``zookeeper`` target: real ZooKeeper 3.8 servers, one JVM per node, each in its namespace.

Layout inside the run dir::

    n<sid>/zoo.cfg  n<sid>/log4j.properties  n<sid>/zk.log  n<sid>/stdout.txt
    n<sid>/data/myid  n<sid>/data/version-2/{currentEpoch,acceptedEpoch,log.*}

Links always go through ``--links netns`` (:mod:`chaos.netns`): ZooKeeper
dials a lower-sid peer back at the address that peer announces, so proxy
addresses in zoo.cfg would let some connections bypass Toxiproxy.

Observation. ZooKeeper has no ``fles`` and no events.jsonl. A status is the
4lw ``mntr`` (``zk_server_state``, ``zk_peer_state``: synced once it says
``broadcast``), the AdminServer's ``/commands/leader`` (``leader_id``) and
``dataDir/version-2/{current,accepted}Epoch``. Node events come from the
server log (:func:`parse_log_line`, pure): FastLeaderElection's
``Notification:`` (INFO, received) and ``Sending Notification:`` (DEBUG,
sent while LOOKING), ``New election.``, ``LEADING/FOLLOWING - LEADER ELECTION
TOOK`` and QuorumPeer's ``Peer state changed``. What that evidence cannot
show is judged ``unknown`` with the reason (``chaos.invariants``'s
``EVIDENCE_GAPS``), never guessed.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from chaos import procs
from chaos.observe import NodeStatus, four_letter
from chaos.plan.model import Ensemble as EnsembleSpec
from chaos.targets.fle import MAX_NOTIFICATION_INTERVAL_MS, NodeInfo, ProcState
from chaos.targets.process import ProcessTarget

if TYPE_CHECKING:
    from chaos.netns import NetnsLinks

__all__ = ["ZooKeeperTarget", "parse_log_line", "ElectionFold", "classpath", "DEBIAN_JARS", "parse_mntr"]

JAVA_DIR = Path("/usr/share/java")
# What QuorumPeerMain and its AdminServer need, by Debian's unversioned jar
# names. Never log4j-over-slf4j: with slf4j-log4j12 the JVM exits at start.
DEBIAN_JARS = (
    "zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar", "slf4j-log4j12.jar", "log4j-1.2.jar",
    "netty-handler.jar", "netty-common.jar", "netty-buffer.jar", "netty-transport.jar",
    "netty-codec.jar", "netty-resolver.jar", "netty-transport-native-epoll.jar",
    "netty-transport-native-unix-common.jar", "metrics-core.jar", "commons-cli.jar",
    "snappy-java.jar", "commons-io.jar",
    "jetty9-server.jar", "jetty9-servlet.jar", "jetty9-http.jar", "jetty9-io.jar", "jetty9-util.jar",
    "jetty9-security.jar", "jetty9-util-ajax.jar", "servlet-api.jar",
    "jackson-databind.jar", "jackson-core.jar", "jackson-annotations.jar",
)
MIN_NOTIFICATION_INTERVAL_MS = 200   # our node's fle.minNotificationInterval default
HEAP = "-Xmx256m"

LOG4J = """\
log4j.rootLogger=INFO, F
log4j.logger.org.apache.zookeeper.server.quorum.FastLeaderElection=DEBUG
log4j.appender.F=org.apache.log4j.FileAppender
log4j.appender.F.File={log}
log4j.appender.F.layout=org.apache.log4j.PatternLayout
log4j.appender.F.layout.ConversionPattern=%d{{ISO8601}} %p [%t] %c{{1}} - %m%n
"""


def classpath(home: str | os.PathLike[str] | None = None) -> list[str]:
    """The server's jars: ``home/lib/*.jar`` (a release; its own slf4j binding)
    plus ``home``'s own jars, or Debian's package."""
    if home:
        h = Path(home)
        jars = sorted(h.glob("lib/*.jar")) + sorted(h.glob("*.jar"))
        return [str(j) for j in jars if "log4j-over-slf4j" not in j.name]
    return [str(JAVA_DIR / j) for j in DEBIAN_JARS if (JAVA_DIR / j).exists()]


def _version(home: str | None) -> str | None:
    jars = [Path(j).name for j in classpath(home)] if home else [p.name for p in JAVA_DIR.glob("zookeeper-3*.jar")]
    for name in jars:
        m = re.match(r"zookeeper-(\d+\.\d+\.\d+[^/]*?)\.jar$", name)
        if m and not any(x in name for x in ("jute", "contrib", "recipes", "it-")):
            return m.group(1)
    return None


# ---------------------------------------------------------------------------- pure parsing

# The thread name may hold brackets: "[QuorumPeer[myid=1](plain=…)(secure=disabled)]".
_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) \[.*?\] (\w+) - (.*)$")
_RECV = re.compile(r"Notification: my state:(\w+); n\.sid:(\d+), n\.state:(\w+), n\.leader:(-?\d+), "
                   r"n\.round:0x([0-9a-f]+), n\.peerEpoch:0x([0-9a-f]+), n\.zxid:0x([0-9a-f]+), "
                   r"message format version:0x([0-9a-f]+)")
_SENT = re.compile(r"Sending Notification: (-?\d+) \(n\.leader\), 0x([0-9a-f]+) \(n\.zxid\), "
                   r"0x([0-9a-f]+) \(n\.round\), (\d+) \(recipient\), (\d+) \(myid\), "
                   r"0x([0-9a-f]+) \(n\.peerEpoch\)")
_NEW = re.compile(r"New election\. My id = (\d+), proposed zxid=0x([0-9a-f]+)")
_TOOK = re.compile(r"^(LEADING|FOLLOWING|OBSERVING) - LEADER ELECTION TOOK - (\d+) (\w+)")
_PEER = re.compile(r"^Peer state changed: (.+)$")
_LEAVE = re.compile(r"About to leave FLE instance: leader=(-?\d+), zxid=0x([0-9a-f]+), my id=(\d+), my state=(\w+)")


def _hex64(text: str) -> int:
    """A Java ``Long.toHexString``: two's complement, so Long.MIN_VALUE (an
    observer's vote) reads ``8000000000000000``."""
    v = int(text, 16)
    return v - (1 << 64) if v >= 1 << 63 else v


def _wall(stamp: str) -> float:
    d = _dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=_dt.timezone.utc)
    return d.timestamp()


def parse_log_line(sid: int, line: str, mono_offset: float) -> dict | None:
    """One server log line as an events.jsonl-like dict (DESIGN §1 names), or
    None. ``mono_offset`` = ``time.time() - time.monotonic()`` of the reader
    (the log has wall-clock ms; the JVM runs with user.timezone=UTC)."""
    m = _TS.match(line.rstrip("\r\n"))
    if not m:
        return None
    stamp, _level, _cls, msg = m.groups()
    try:
        ts = _wall(stamp)
    except ValueError:
        return None
    head = {"ts": ts, "mono_ms": round((ts - mono_offset) * 1000.0, 3), "sid": sid}
    if (r := _SENT.search(msg)):
        return {**head, "event": "notification_sent", "to": int(r[4]), "state": "LOOKING",
                "leader": int(r[1]), "zxid": _hex64(r[2]), "round": _hex64(r[3]), "peer_epoch": _hex64(r[6])}
    if (r := _RECV.search(msg)):
        return {**head, "event": "notification_received", "from": int(r[2]), "state": r[3],
                "leader": int(r[4]), "zxid": _hex64(r[7]), "round": _hex64(r[5]),
                "peer_epoch": _hex64(r[6]), "version": _hex64(r[8]), "my_state": r[1]}
    if (r := _NEW.search(msg)):
        return {**head, "event": "election_started", "last_zxid": _hex64(r[2]),
                "vote": {"leader": int(r[1]), "zxid": _hex64(r[2]), "peer_epoch": None}}
    if (r := _TOOK.search(msg)):
        ms = int(r[2]) * (1000 if r[3].upper() in ("S", "SEC", "SECONDS") else 1)
        return {**head, "event": "election_finished", "state": r[1], "duration_ms": ms,
                "leader": sid if r[1] == "LEADING" else None}
    if (r := _PEER.search(msg)):
        return {**head, "event": "peer_state_changed", "peer_state": r[1].strip()}
    if (r := _LEAVE.search(msg)):
        return {**head, "event": "fle_left", "leader": int(r[1]), "zxid": _hex64(r[2]), "state": r[4]}
    return None


class ElectionFold:
    """Joins what ZooKeeper logs about one election on several lines (pure).

    ``New election`` has no round and no peerEpoch; the first ``Sending
    Notification`` after it has both (a LOOKING node broadcasts its new vote at
    once), so ``election_started`` is emitted with that send, completed. ``About
    to leave FLE instance`` (DEBUG) names the leader decided and its zxid; the
    ``… - LEADER ELECTION TOOK`` line after it gets them, and the election's
    notification counts: every ``Notification:`` taken while LOOKING, every
    broadcast, and the one reply WorkerReceiver sends unlogged to each LOOKING
    notification of a round below the server's (its round is that of its last
    broadcast). ZooKeeper logs nothing of a voter's exchange with non-voters,
    which is no election cost here either. The non-voter's side of it is
    logged: the voter's at-once answer comes in from an older round and is
    answered back, and those pairs are ``nonvoter_echoes``, as on our node."""

    def __init__(self, nonvoters: frozenset[int] = frozenset()) -> None:
        self.nonvoters = nonvoters
        self._start: dict[int, dict] = {}
        self._left: dict[int, dict] = {}
        self._round: dict[int, int] = {}
        self._counts: dict[int, list[int]] = {}   # sid -> [sent, received, echoes] of the open election
        self._rounds: dict[int, set[int]] = {}    # sid -> rounds it broadcast in (every new one is broadcast)

    def _count(self, ev: dict) -> None:
        sid, kind, counts = ev["sid"], ev["event"], self._counts.get(ev["sid"])
        if counts is None:
            return
        if kind == "notification_sent":
            counts[0] += 1
            self._round[sid] = ev["round"]
            self._rounds.setdefault(sid, set()).add(ev["round"])
        elif kind == "notification_received" and ev.get("my_state") == "LOOKING":
            counts[1] += 1
            mine = self._round.get(sid)
            if ev.get("state") == "LOOKING" and mine is not None and ev["round"] < mine:
                counts[0] += 1
                counts[2] += sid in self.nonvoters

    def feed(self, ev: dict | None) -> list[dict]:
        if ev is None:
            return []
        sid, kind = ev["sid"], ev["event"]
        self._count(ev)
        if kind == "election_started":
            self._start[sid] = ev
            self._counts[sid] = [0, 0, 0]
            self._rounds[sid] = set()
            self._round.pop(sid, None)
            return []
        if kind == "notification_sent" and sid in self._start:
            st = self._start.pop(sid)
            started = {**st, "logical_clock": ev["round"], "current_epoch": ev["peer_epoch"],
                       "vote": {"leader": ev["leader"], "zxid": ev["zxid"], "peer_epoch": ev["peer_epoch"]}}
            return [started, ev]
        if kind == "fle_left":
            self._left[sid] = ev
            return []
        if kind == "election_finished":
            out = []
            if sid in self._start:       # decided without sending (never seen in 3.8): say so, unenriched
                out.append(self._start.pop(sid))
            left = self._left.pop(sid, None)
            if left is not None and left["state"] == ev["state"]:
                ev = {**ev, "leader": left["leader"], "zxid": left["zxid"]}
            counts, rounds = self._counts.pop(sid, None), self._rounds.pop(sid, set())
            if counts is not None:
                ev = {**ev, "notifications_sent": counts[0], "notifications_received": counts[1],
                      "nonvoter_echoes": counts[2], "rounds": max(1, len(rounds))}
            return out + [ev]
        return [ev]


def parse_mntr(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "\t" in line:
            k, v = line.split("\t", 1)
            out[k.strip()] = v.strip()
    return out


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------- target

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # never an http_proxy

class ZooKeeperTarget(ProcessTarget):
    """One QuorumPeerMain JVM per node, each in its network namespace."""

    kind = "zookeeper"
    default_links = "netns"

    @staticmethod
    def missing_requirements(home: str | None = None) -> str | None:
        if shutil.which("java") is None:
            return "--target zookeeper needs `java` (a JRE 11+, e.g. Debian's default-jre-headless)"
        cp = classpath(home)
        if not any(Path(j).name.startswith("zookeeper") and "jute" not in j for j in cp):
            where = f"{home}/lib" if home else f"{JAVA_DIR} (Debian package zookeeper)"
            return f"--target zookeeper needs ZooKeeper's jars: none in {where}; set --zookeeper-home"
        return None

    def __init__(self, run_dir: Path, spec: EnsembleSpec, real_ports: Iterable[int],
                 link_ports: Mapping[tuple[int, int, str], int], *, registry: procs.RunRegistry | None = None,
                 on_process: Callable[..., None] = lambda **kw: None, net: "NetnsLinks | None" = None,
                 zookeeper_home: str | None = None) -> None:
        if net is None:
            raise ValueError("the zookeeper target needs --links netns (ZooKeeper dials back announced "
                             "addresses, which zoo.cfg proxy addresses cannot catch)")
        self.run_dir = Path(run_dir).resolve()
        self.spec = spec
        self.net = net
        self.registry = registry
        self.on_process = on_process
        self.home = zookeeper_home
        self.cp = ":".join(classpath(zookeeper_home))
        ports = list(real_ports)
        if len(ports) < 3 * len(spec.sids):
            raise ValueError("need 3 real ports per node")
        self.nodes: dict[int, NodeInfo] = {}
        self.admin_port = 8080   # each node has its own address: one port for all
        for k, sid in enumerate(spec.sids):
            d = self.run_dir / f"n{sid}"
            self.nodes[sid] = NodeInfo(
                sid=sid, role="observer" if spec.is_observer(sid) else "participant",
                weight=spec.weight(sid), group=spec.group_of(sid),
                client_port=ports[3 * k], election_port=ports[3 * k + 1], quorum_port=ports[3 * k + 2],
                dir=d, data_dir=d / "data", cfg_path=d / "zoo.cfg", log_path=d / "zk.log",
                events_path=d / "zk.log")
        self._mono_offset = time.time() - time.monotonic()
        # only the observer's tail thread feeds it
        self._fold = ElectionFold(frozenset(s for s in spec.sids if spec.is_observer(s)))

    def host(self, sid: int) -> str:
        return self.net.net.address(sid)

    def hosts(self) -> dict[int, str]:
        return {s: self.host(s) for s in self.nodes}

    # ------------------------------------------------------------------ config
    def zoo_cfg(self, sid: int) -> str:
        s, me = self.spec, self.nodes[sid]
        lines = [
            f"# written by chaos.targets.zookeeper for node {sid}",
            f"tickTime={s.tick_time_ms}", f"initLimit={s.init_limit}", f"syncLimit={s.sync_limit}",
            f"dataDir={me.data_dir}", f"clientPort={me.client_port}",
            f"clientPortAddress={self.host(sid)}", "4lw.commands.whitelist=*", "electionAlg=3",
            "standaloneEnabled=false", "reconfigEnabled=false",
            "admin.enableServer=true", f"admin.serverAddress={self.host(sid)}",
            f"admin.serverPort={self.admin_port}",
        ]
        if me.role == "observer":
            lines.append("peerType=observer")
        for j, other in sorted(self.nodes.items()):
            suffix = ":observer" if other.role == "observer" else ""
            lines.append(f"server.{j}={self.host(j)}:{other.quorum_port}:{other.election_port}{suffix}")
        if s.groups:
            for gid, members in enumerate(s.groups, start=1):
                lines.append(f"group.{gid}=" + ":".join(str(m) for m in members))
            for p in s.participants:
                lines.append(f"weight.{p}={s.weight(p)}")
        elif any(s.weight(p) != 1 for p in s.participants):
            raise ValueError("ZooKeeper refuses weights without groups (weight.N needs group.G)")
        return "\n".join(lines) + "\n"

    def write_configs(self) -> None:
        super().write_configs()
        for n in self.nodes.values():
            (n.dir / "log4j.properties").write_text(LOG4J.format(log=n.log_path))

    # ------------------------------------------------------------------ processes
    def _argv(self, n: NodeInfo) -> list[str]:
        return [*self.net.exec_prefix(n.sid), "java", HEAP, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Xss512k", "-XX:MaxMetaspaceSize=96m", "-Duser.timezone=UTC",
                f"-Dlog4j.configuration=file:{n.dir / 'log4j.properties'}",
                f"-Dzookeeper.fastleader.minNotificationInterval={MIN_NOTIFICATION_INTERVAL_MS}",
                f"-Dzookeeper.fastleader.maxNotificationInterval={MAX_NOTIFICATION_INTERVAL_MS}",
                "-Dzookeeper.jmx.log4j.disable=true",
                f"-Dfle.chaos.run={self.run_dir}",
                "-cp", self.cp, "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(n.cfg_path)]

    def start(self, sid: int) -> int:
        n = self.nodes[sid]
        if n.proc is not None and n.state is not ProcState.DOWN:
            raise RuntimeError(f"node {sid} is already running (pid {n.proc.pid})")
        n.proc = procs.spawn(self._argv(n), cwd=n.dir, log_path=n.dir / "stdout.txt",
                             registry=self.registry, name=str(n.cfg_path))
        n.state = ProcState.RUNNING
        n.starts += 1
        self.on_process(sid=sid, action="started", pid=n.proc.pid, exit_code=None)
        return n.proc.pid

    def start_all(self) -> None:
        for sid in sorted(self.nodes, reverse=True):
            if sid in self.spec.initial:
                self.start(sid)

    def header(self) -> list[dict]:
        out = []
        for n in self.nodes.values():
            d = n.to_json()
            d["events_path"] = None      # no events.jsonl: events come from zk.log
            d["address"] = self.host(n.sid)
            out.append(d)
        return out

    def version(self) -> str | None:
        return _version(self.home)

    def endpoints(self) -> dict[int, tuple[int, Path | None]]:
        return {s: (n.client_port, n.log_path) for s, n in self.nodes.items()}

    def client_servers(self) -> dict[int, str]:
        """sid -> host:port of its client port, for the workload (chaos.workload)."""
        return {s: f"{self.host(s)}:{n.client_port}" for s, n in self.nodes.items()}

    # ------------------------------------------------------------------ observation
    def parse_event_line(self, sid: int, line: bytes) -> list[dict]:
        return self._fold.feed(parse_log_line(sid, line.decode("utf-8", "replace"), self._mono_offset))

    def poll_status(self, sid: int, timeout: float = 1.0) -> NodeStatus | None:
        """mntr + /commands/leader + epoch files; None when the JVM does not answer."""
        n = self.nodes[sid]
        host = self.host(sid)
        text = four_letter(host, n.client_port, "mntr", timeout)
        if text is None:
            return None
        m = parse_mntr(text)
        epochs = n.data_dir / "version-2"
        current, accepted = _read_int(epochs / "currentEpoch"), _read_int(epochs / "acceptedEpoch")
        if "zk_server_state" not in m:
            # "not currently serving requests": electing, or syncing with a leader
            return NodeStatus(sid=sid, up=True, state="LOOKING", epoch=current, accepted_epoch=accepted,
                              synced=False, pid=self.pid(sid), mono=time.monotonic())
        state = {"leader": "LEADING", "follower": "FOLLOWING", "observer": "OBSERVING"}.get(
            m["zk_server_state"], m["zk_server_state"].upper())
        leader = sid if state == "LEADING" else self._leader_id(host, timeout)
        synced = m.get("zk_peer_state", "").endswith("broadcast")
        return NodeStatus(sid=sid, up=True, state=state, leader=leader, epoch=current, accepted_epoch=accepted,
                          zxid=None, synced=synced, pid=self.pid(sid), mono=time.monotonic())

    def _leader_id(self, host: str, timeout: float) -> int | None:
        try:
            with _NO_PROXY.open(f"http://{host}:{self.admin_port}/commands/leader", timeout=timeout) as r:
                d = json.loads(r.read())
        except (OSError, ValueError):
            return None
        lid = d.get("leader_id")
        return lid if isinstance(lid, int) and lid >= 0 else None

    # ------------------------------------------------------------------ dataDir copies
    def _snapshot_holds(self, data: Path) -> dict:
        """The epoch files of a copied dataDir (myid, version-2: epoch files,
        txn logs, snapshots); its txn log is ZooKeeper's own format, not read."""
        v2 = data / "version-2"
        return {"accepted_epoch": _read_int(v2 / "acceptedEpoch"), "current_epoch": _read_int(v2 / "currentEpoch"),
                "runs": None}

    def log_summary(self, sid: int) -> dict:
        return {"runs": None, "error": "ZooKeeper's txn log is not read (its own format); "
                                      "committed writes are checked by reading every server back"}
