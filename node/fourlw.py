"""Four-letter words on the client port, printed as ZooKeeper 3.8 prints them.

Monitoring tools (and `chaos.observe`) parse `srvr`/`stat`/`mntr` output, so
the lines, their order and spelling follow ZooKeeper 3.8.0 byte for byte;
only values differ (we have no data tree, no client sessions, no latency).
`fles` is our extension: the election state as `key\\tvalue` lines, always
answered whatever the whitelist says, because the orchestrator depends on it.
Like ZooKeeper, every word but `ruok` (and `fles`) answers NOT_SERVING
until the node is synced: FLE alone does not make a leader or follower.

`answer()` is pure (status in, bytes out); `FourLetterServer` is the thin
asyncio listener: one command per connection, reply, close.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = [
    "ClientStats",
    "FourLetterServer",
    "NodeStatus",
    "NOT_SERVING",
    "ZK_VERSION",
    "answer",
    "format_fles",
    "not_whitelisted",
]

NOT_SERVING = "This ZooKeeper instance is not currently serving requests\n"
ZK_VERSION = "3.8.0-fle-chaos, built on 1970-01-01 00:00 UTC"
# What an empty ZooKeeper 3.8 reports (/, /zookeeper, its quota and config
# nodes...): we keep no data tree, so this never changes.
_NODE_COUNT = 5
_APPROX_DATA_SIZE = 182


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """Everything the four-letter words report, captured at one instant."""

    sid: int
    pid: int
    state: str  # LOOKING | FOLLOWING | LEADING | OBSERVING
    logical_clock: int = 0
    vote_leader: int = -1
    vote_zxid: int = -1
    vote_peer_epoch: int = -1
    vote_round: int = 0
    leader: int = -1
    synced: bool = False
    accepted_epoch: int = 0
    current_epoch: int = 0
    last_zxid: int = 0
    last_committed_zxid: int = 0
    elections: int = 0
    last_election_ms: int = 0
    last_election_path: str = "none"
    quorum_size: int = 1
    learners: int = 0
    synced_followers: int = 0
    synced_observers: int = 0
    uptime_ms: int = 0
    leader_uptime_ms: int = 0
    open_fds: int = 0
    max_fds: int = 0


@dataclass(slots=True)
class ClientStats:
    """Counters of the client port itself (ZooKeeper's Received/Sent/Connections)."""

    received: int = 0
    sent: int = 0
    connections: dict[int, tuple[str, int]] = field(default_factory=dict)


def not_whitelisted(word: str) -> str:
    return f"{word} is not executed because it is not in the whitelist.\n"


def _hex_zxid(zxid: int) -> str:
    return format(zxid & 0xFFFFFFFFFFFFFFFF, "x")


def _mode(state: str) -> str:
    return {"LEADING": "leader", "FOLLOWING": "follower", "OBSERVING": "observer"}.get(state, "looking")


def format_fles(s: NodeStatus) -> str:
    rows: list[tuple[str, Any]] = [
        ("fle_sid", s.sid),
        ("fle_pid", s.pid),
        ("fle_state", s.state),
        ("fle_logical_clock", s.logical_clock),
        ("fle_vote_leader", s.vote_leader),
        ("fle_vote_zxid", s.vote_zxid),
        ("fle_vote_peer_epoch", s.vote_peer_epoch),
        ("fle_vote_round", s.vote_round),
        ("fle_leader", s.leader if s.state != "LOOKING" else -1),
        ("fle_synced", 1 if s.synced else 0),
        ("fle_accepted_epoch", s.accepted_epoch),
        ("fle_current_epoch", s.current_epoch),
        ("fle_last_zxid", s.last_zxid),
        ("fle_last_committed_zxid", s.last_committed_zxid),
        ("fle_elections", s.elections),
        ("fle_last_election_ms", s.last_election_ms),
        ("fle_last_election_path", s.last_election_path),
    ]
    return "".join(f"{k}\t{v}\n" for k, v in rows)


def _display_zxid(s: NodeStatus) -> int:
    """ZooKeeper's lastProcessedZxid: once a new epoch is established it reads
    `epoch << 32` even before the first txn of that epoch is logged."""
    if s.synced and s.current_epoch > (s.last_zxid >> 32):
        return s.current_epoch << 32
    return s.last_zxid


def _server_stats(s: NodeStatus, c: ClientStats) -> str:
    return (
        "Latency min/avg/max: 0/0.0/0\n"
        f"Received: {c.received}\n"
        f"Sent: {c.sent}\n"
        f"Connections: {len(c.connections)}\n"
        "Outstanding: 0\n"
        f"Zxid: 0x{_hex_zxid(_display_zxid(s))}\n"
        f"Mode: {_mode(s.state)}\n"
        f"Node count: {_NODE_COUNT}\n"
    )


def _srvr(s: NodeStatus, c: ClientStats, *, with_clients: bool) -> str:
    out = [f"Zookeeper version: {ZK_VERSION}\n"]
    if with_clients:
        out.append("Clients:\n")
        for host, port in c.connections.values():
            out.append(f" /{host}:{port}[0](queued=0,recved=1,sent=0)\n")
        out.append("\n")
    out.append(_server_stats(s, c))
    if s.state == "LEADING":
        out.append("Proposal sizes last/min/max: -1/-1/-1\n")
    return "".join(out)


def _mntr(s: NodeStatus, c: ClientStats) -> str:
    rows: list[tuple[str, Any]] = [
        ("zk_version", ZK_VERSION),
        ("zk_server_state", _mode(s.state)),
        ("zk_peer_state", f"{s.state.lower()} - broadcast"),  # answered only once synced
        ("zk_ephemerals_count", 0),
        ("zk_num_alive_connections", len(c.connections)),
        ("zk_avg_latency", "0.0"),
        ("zk_outstanding_requests", 0),
        ("zk_znode_count", _NODE_COUNT),
        ("zk_global_sessions", 0),
        ("zk_packets_sent", c.sent),
        ("zk_packets_received", c.received),
    ]
    if s.state == "LEADING":
        rows += [
            ("zk_synced_followers", s.synced_followers),
            ("zk_synced_non_voting_followers", 0),
            ("zk_synced_observers", s.synced_observers),
            ("zk_last_proposal_size", -1),
            ("zk_pending_syncs", 0),
            ("zk_leader_uptime", s.leader_uptime_ms),
            ("zk_learners", s.learners),
        ]
    rows += [
        ("zk_watch_count", 0),
        ("zk_approximate_data_size", _APPROX_DATA_SIZE),
        ("zk_open_file_descriptor_count", s.open_fds),
        ("zk_max_file_descriptor_count", s.max_fds),
        ("zk_local_sessions", 0),
        ("zk_uptime", s.uptime_ms),
        ("zk_min_latency", 0),
        ("zk_max_latency", 0),
        ("zk_quorum_size", s.quorum_size),
    ]
    return "".join(f"{k}\t{v}\n" for k, v in rows) + format_fles(s)


def answer(word: str, status: NodeStatus, whitelist: frozenset[str], clients: ClientStats) -> str | None:
    """The reply to one command, or None to close without a reply (as ZooKeeper
    does for bytes that are not a four-letter word: it reads them as the length
    prefix of a client request and drops the connection)."""
    if word == "fles":
        return format_fles(status)
    if word not in ("ruok", "srvr", "stat", "mntr", "conf", "cons", "crst", "dirs", "dump", "envi",
                    "gtmk", "hash", "isro", "srst", "stmk", "wchc", "wchp", "wchs"):
        return None
    if word not in whitelist:
        return not_whitelisted(word)
    if word == "ruok":
        return "imok"
    if status.state == "LOOKING" or not status.synced:
        # ZooKeeper answers only once its ZooKeeperServer runs: a leader after a
        # quorum acked NEWLEADER, a learner after UPTODATE. Between the decision
        # and then, Mode would name a role whose epoch does not exist yet.
        return NOT_SERVING
    if word == "srvr":
        return _srvr(status, clients, with_clients=False)
    if word == "stat":
        return _srvr(status, clients, with_clients=True)
    if word == "mntr":
        return _mntr(status, clients)
    if word == "isro":
        return "rw"
    return f"{word} is not implemented by fle-node\n"


class FourLetterServer:
    """Listens on the client port; one command per connection, then close."""

    def __init__(self, host: str, port: int, status: Callable[[], NodeStatus],
                 whitelist: frozenset[str], *, read_timeout_s: float = 5.0,
                 emit: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.host = host
        self.port = port
        self._status = status
        self._whitelist = whitelist
        self._read_timeout_s = read_timeout_s
        self._emit = emit or (lambda e, f: None)
        self.stats = ClientStats()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Bind; an OSError (port in use...) propagates so the node exits 3."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  reuse_address=True)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for t in list(self._tasks):
            t.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        key = id(writer)
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.stats.connections[key] = (str(peer[0]), int(peer[1]))
        try:
            try:
                data = await asyncio.wait_for(reader.readexactly(4), self._read_timeout_s)
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                return
            self.stats.received += 1
            word = data.decode("ascii", errors="replace")
            try:
                reply = answer(word, self._status(), self._whitelist, self.stats)
            except Exception as e:  # a status bug must not kill the listener
                self._emit("fourlw_failed", {"word": word, "reason": repr(e)})
                return
            if reply is None:
                return
            self.stats.sent += 1
            writer.write(reply.encode("utf-8"))
            await writer.drain()
            # Half-close and drain what the client still sends (`echo srvr | nc`
            # adds a newline): closing with unread input would send an RST that
            # can destroy the reply before the client reads it.
            if writer.can_write_eof():
                writer.write_eof()
            try:
                await asyncio.wait_for(reader.read(4096), 0.5)
            except (asyncio.TimeoutError, ConnectionError):
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            self.stats.connections.pop(key, None)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError, asyncio.CancelledError):
                pass
            if task is not None:
                self._tasks.discard(task)
