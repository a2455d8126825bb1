"""zoo.cfg for one node: parsed once into a frozen `NodeConfig`.

The file format is Java's Properties as ZooKeeper reads it (`key=value` or
`key: value`, `#`/`!` comments, values trimmed, a trailing backslash joins the
next line), so a zoo.cfg written for a real ZooKeeper ensemble works unchanged.
ZooKeeper keys we have no use for are accepted and listed in
`NodeConfig.ignored_keys`, which the server reports as `config_key_ignored`
events once its event log is open (the log lives in dataDir, which is only
known after parsing). Relative dataDir/dataLogDir paths are taken relative to
the config file's directory (ZooKeeper uses its working directory), so an
ensemble directory can be moved as a whole.

Every error is a `ConfigError` whose text is `PATH:LINE: reason` (or
`PATH: reason` for a key that is missing altogether): the node prints it and
exits 2, so an orchestrator or a person can go straight to the bad line.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ConfigError",
    "IgnoredKey",
    "LearnerType",
    "NodeConfig",
    "ServerSpec",
    "parse_config",
    "parse_config_text",
    "parse_server_line",
    "load_config",
    "ALL_FOUR_LETTER_WORDS",
]

# Every word ZooKeeper 3.8 knows; `4lw.commands.whitelist=*` enables all of them.
ALL_FOUR_LETTER_WORDS = frozenset({
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "hash", "isro",
    "mntr", "ruok", "srst", "srvr", "stat", "stmk", "wchc", "wchp", "wchs",
})

_PROTOCOL_VERSIONS = ("3.8", "3.4")


class ConfigError(Exception):
    """The configuration cannot be used; str() is `PATH:LINE: reason`.

    The caller should print it and exit 2; nothing has been started yet.
    """

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class LearnerType(enum.Enum):
    PARTICIPANT = "participant"
    OBSERVER = "observer"


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One `server.N=` line."""

    sid: int
    host: str
    quorum_port: int
    election_port: int
    learner_type: LearnerType = LearnerType.PARTICIPANT
    client_host: str | None = None
    client_port: int | None = None


@dataclass(frozen=True, slots=True)
class IgnoredKey:
    key: str
    line: int


@dataclass(frozen=True, slots=True)
class NodeConfig:
    path: str
    sid: int
    data_dir: Path
    data_log_dir: Path
    init_limit: int
    sync_limit: int
    servers: tuple[ServerSpec, ...]
    tick_time: int = 3000
    client_port: int | None = None
    client_port_address: str = "0.0.0.0"
    groups: tuple[tuple[int, tuple[int, ...]], ...] = ()
    weights: tuple[tuple[int, int], ...] = ()
    cnx_timeout_ms: int = 5000
    quorum_cnxn_timeout_ms: int = -1
    election_alg: int = 3
    four_letter_whitelist: frozenset[str] = frozenset({"srvr"})
    peer_type: LearnerType = LearnerType.PARTICIPANT
    txn_interval_ms: int = 100
    protocol: str = "3.8"
    min_notification_interval: int = 200
    max_notification_interval: int = 60000
    finalize_wait: int = 200
    log_notifications: bool = True
    ignored_keys: tuple[IgnoredKey, ...] = field(default=())

    @property
    def me(self) -> ServerSpec:
        return self.server(self.sid)

    def server(self, sid: int) -> ServerSpec:
        for s in self.servers:
            if s.sid == sid:
                return s
        raise KeyError(sid)

    @property
    def hierarchical(self) -> bool:
        return bool(self.groups or self.weights)

    @property
    def participants(self) -> tuple[int, ...]:
        return tuple(s.sid for s in self.servers if s.learner_type is LearnerType.PARTICIPANT)

    @property
    def observers(self) -> tuple[int, ...]:
        return tuple(s.sid for s in self.servers if s.learner_type is LearnerType.OBSERVER)

    @property
    def election_addrs(self) -> dict[int, tuple[str, int]]:
        return {s.sid: (s.host, s.election_port) for s in self.servers}

    @property
    def quorum_addrs(self) -> dict[int, tuple[str, int]]:
        return {s.sid: (s.host, s.quorum_port) for s in self.servers}

    @property
    def handshake_timeout_ms(self) -> int:
        """ZooKeeper: quorumCnxnTimeoutMs if > 0, else tickTime*syncLimit."""
        if self.quorum_cnxn_timeout_ms > 0:
            return self.quorum_cnxn_timeout_ms
        return self.tick_time * self.sync_limit

    @property
    def client_address(self) -> tuple[str, int] | None:
        """Where the four-letter-word server listens (None: no client port)."""
        me = self.me
        if self.client_port is not None:
            return (self.client_port_address, self.client_port)
        if me.client_port is not None:
            return (me.client_host or "0.0.0.0", me.client_port)
        return None

    def make_verifier(self):
        """The quorum verifier (majority, or hierarchical if groups/weights are set)."""
        from zkrules.quorum import QuorumHierarchical, QuorumMaj

        if self.hierarchical:
            groups = {g: members for g, members in self.groups}
            weights = dict(self.weights)
            return QuorumHierarchical(self.participants, groups, weights, observers=self.observers)
        return QuorumMaj(self.participants, observers=self.observers)


# ---------------------------------------------------------------- parsing

def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Java Properties line joining: trailing odd backslashes continue a line."""
    out: list[tuple[int, str]] = []
    pending: str | None = None
    start = 0
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.lstrip() if pending is not None else raw
        if pending is None:
            stripped = line.strip()
            if not stripped or stripped[0] in "#!":
                continue
            start = no
            pending = ""
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending += line[:-1]
            continue
        out.append((start, pending + line))
        pending = None
    if pending is not None:
        out.append((start, pending))
    return out


def _split_key_value(line: str) -> tuple[str, str] | None:
    s = line.strip()
    for i, ch in enumerate(s):
        if ch in "=:" or ch.isspace():
            key = s[:i]
            rest = s[i:].lstrip()
            if ch.isspace() and rest[:1] in ("=", ":"):
                rest = rest[1:]
            elif not ch.isspace():
                rest = s[i + 1:]
            return key, rest.strip()
    return None


def _int(path: str, line: int, key: str, value: str, *, minimum: int | None = None) -> int:
    try:
        n = int(value, 10)
    except ValueError:
        raise ConfigError(path, line, f"{key}: expected an integer, got {value!r}") from None
    if minimum is not None and n < minimum:
        raise ConfigError(path, line, f"{key}: must be >= {minimum}, got {n}")
    return n


def _port(path: str, line: int, what: str, value: str) -> int:
    n = _int(path, line, what, value)
    if not 0 < n < 65536:
        raise ConfigError(path, line, f"{what}: port {n} is out of range 1..65535")
    return n


def _bool(path: str, line: int, key: str, value: str) -> bool:
    v = value.lower()
    if v in ("true", "yes", "1"):
        return True
    if v in ("false", "no", "0"):
        return False
    raise ConfigError(path, line, f"{key}: expected true or false, got {value!r}")


def _split_host_ports(text: str) -> list[str]:
    """`host:p1:p2[:type]` with an optional `[v6]` host."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unterminated IPv6 address in {text!r}")
        host = text[1:end]
        rest = text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"expected ':' after ']' in {text!r}")
        return [host] + (rest[1:].split(":") if rest else [])
    return text.split(":")


def parse_server_line(sid: int, value: str, *, path: str = "<zoo.cfg>", line: int = 0) -> ServerSpec:
    """`host:qport:eport[:participant|:observer][;[chost:]cport]`."""
    key = f"server.{sid}"
    addr_part, sep, client_part = value.partition(";")
    addr_part = addr_part.strip()
    if "|" in addr_part:
        raise ConfigError(path, line, f"{key}: multiple addresses ('|', multiAddress.enabled) are not supported")
    try:
        parts = _split_host_ports(addr_part)
    except ValueError as e:
        raise ConfigError(path, line, f"{key}: {e}") from None
    if len(parts) < 3 or len(parts) > 4:
        raise ConfigError(path, line,
                          f"{key}: expected host:quorumPort:electionPort[:participant|:observer], got {value!r}")
    host = parts[0].strip()
    if not host:
        raise ConfigError(path, line, f"{key}: empty host")
    qport = _port(path, line, f"{key} quorum port", parts[1].strip())
    eport = _port(path, line, f"{key} election port", parts[2].strip())
    if qport == eport:
        raise ConfigError(path, line, f"{key}: quorum and election ports must differ ({qport})")
    ltype = LearnerType.PARTICIPANT
    if len(parts) == 4:
        t = parts[3].strip().lower()
        try:
            ltype = LearnerType(t)
        except ValueError:
            raise ConfigError(path, line, f"{key}: unrecognised peer type {parts[3]!r} "
                                          "(participant or observer)") from None
    chost: str | None = None
    cport: int | None = None
    if sep:
        c = client_part.strip()
        if not c:
            raise ConfigError(path, line, f"{key}: empty client address after ';'")
        try:
            cparts = _split_host_ports(c)
        except ValueError as e:
            raise ConfigError(path, line, f"{key}: {e}") from None
        if len(cparts) == 1:
            cport = _port(path, line, f"{key} client port", cparts[0].strip())
        elif len(cparts) == 2:
            chost = cparts[0].strip() or None
            cport = _port(path, line, f"{key} client port", cparts[1].strip())
        else:
            raise ConfigError(path, line, f"{key}: expected [clientHost:]clientPort after ';', got {c!r}")
    return ServerSpec(sid, host, qport, eport, ltype, chost, cport)


def _read_myid(path: str, data_dir: Path) -> int:
    myid_path = data_dir / "myid"
    try:
        text = myid_path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ConfigError(myid_path, None, "myid file is missing (it holds this server's id)") from None
    except OSError as e:
        raise ConfigError(myid_path, None, f"cannot read myid: {e.strerror or e}") from None
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    try:
        return int(first, 10)
    except ValueError:
        raise ConfigError(myid_path, 1, f"expected a server id (integer), got {first!r}") from None


def parse_config_text(text: str, path: str | Path = "<zoo.cfg>", *,
                      base_dir: Path | None = None, sid: int | None = None) -> NodeConfig:
    """Parse zoo.cfg text; `sid` overrides reading dataDir/myid (for tests/tools)."""
    path = str(path)
    raw: dict[str, tuple[int, str]] = {}
    for line_no, line in _logical_lines(text):
        kv = _split_key_value(line)
        if kv is None or not kv[0]:
            raise ConfigError(path, line_no, f"expected key=value, got {line.strip()!r}")
        raw[kv[0]] = (line_no, kv[1])

    def rel(p: str) -> Path:
        q = Path(p)
        if not q.is_absolute() and base_dir is not None:
            q = base_dir / q
        return q

    kw: dict = {}
    servers: dict[int, ServerSpec] = {}
    groups: dict[int, tuple[int, tuple[int, ...]]] = {}
    weights: dict[int, tuple[int, int]] = {}
    ignored: list[IgnoredKey] = []
    peer_type_line: int | None = None

    for key, (ln, value) in raw.items():
        if key.startswith("server."):
            n = _int(path, ln, key, key[len("server."):])
            servers[n] = parse_server_line(n, value, path=path, line=ln)
        elif key.startswith("group."):
            g = _int(path, ln, key, key[len("group."):])
            members = []
            for m in value.split(":"):
                members.append(_int(path, ln, key, m.strip()))
            if not members:
                raise ConfigError(path, ln, f"{key}: empty group")
            groups[g] = (ln, tuple(members))
        elif key.startswith("weight."):
            s = _int(path, ln, key, key[len("weight."):])
            weights[s] = (ln, _int(path, ln, key, value, minimum=0))
        elif key == "tickTime":
            kw["tick_time"] = _int(path, ln, key, value, minimum=1)
        elif key == "initLimit":
            kw["init_limit"] = _int(path, ln, key, value, minimum=1)
        elif key == "syncLimit":
            kw["sync_limit"] = _int(path, ln, key, value, minimum=1)
        elif key == "dataDir":
            if not value:
                raise ConfigError(path, ln, "dataDir: empty path")
            kw["data_dir"] = rel(value)
        elif key == "dataLogDir":
            if value:
                kw["data_log_dir"] = rel(value)
        elif key == "clientPort":
            kw["client_port"] = _port(path, ln, key, value)
        elif key == "clientPortAddress":
            if not value:
                raise ConfigError(path, ln, "clientPortAddress: empty address")
            kw["client_port_address"] = value
        elif key == "cnxTimeout":
            kw["cnx_timeout_ms"] = _int(path, ln, key, value, minimum=1)
        elif key == "quorumCnxnTimeoutMs":
            kw["quorum_cnxn_timeout_ms"] = _int(path, ln, key, value)
        elif key == "electionAlg":
            alg = _int(path, ln, key, value)
            if alg != 3:
                raise ConfigError(path, ln, f"electionAlg: only 3 (FastLeaderElection) is supported, got {alg}")
            kw["election_alg"] = alg
        elif key == "4lw.commands.whitelist":
            words = {w.strip() for w in value.split(",") if w.strip()}
            if "*" in words:
                words = set(ALL_FOUR_LETTER_WORDS)
            else:
                unknown = sorted(w for w in words if w not in ALL_FOUR_LETTER_WORDS and w != "fles")
                if unknown:
                    raise ConfigError(path, ln, f"4lw.commands.whitelist: unknown command(s) {', '.join(unknown)}")
            kw["four_letter_whitelist"] = frozenset(words)
        elif key == "peerType":
            v = value.lower()
            try:
                kw["peer_type"] = LearnerType(v)
            except ValueError:
                raise ConfigError(path, ln, f"peerType: expected participant or observer, got {value!r}") from None
            peer_type_line = ln
        elif key == "txnIntervalMs":
            kw["txn_interval_ms"] = _int(path, ln, key, value, minimum=0)
        elif key == "fle.protocol":
            if value not in _PROTOCOL_VERSIONS:
                raise ConfigError(path, ln, f"fle.protocol: expected 3.8 or 3.4, got {value!r}")
            kw["protocol"] = value
        elif key == "fle.minNotificationInterval":
            kw["min_notification_interval"] = _int(path, ln, key, value, minimum=1)
        elif key == "fle.maxNotificationInterval":
            kw["max_notification_interval"] = _int(path, ln, key, value, minimum=1)
        elif key == "fle.finalizeWait":
            kw["finalize_wait"] = _int(path, ln, key, value, minimum=0)
        elif key == "fle.logNotifications":
            kw["log_notifications"] = _bool(path, ln, key, value)
        else:
            ignored.append(IgnoredKey(key, ln))

    for required in ("dataDir", "initLimit", "syncLimit"):
        if required not in raw:
            raise ConfigError(path, None, f"{required} is required but not set")
    if not servers:
        raise ConfigError(path, None, "no server.N lines: a quorum configuration needs at least one")
    if kw.get("min_notification_interval", 200) > kw.get("max_notification_interval", 60000):
        ln = raw.get("fle.minNotificationInterval", (None,))[0]
        raise ConfigError(path, ln, "fle.minNotificationInterval is larger than fle.maxNotificationInterval")

    sorted_servers = tuple(servers[k] for k in sorted(servers))
    participants = {s.sid for s in sorted_servers if s.learner_type is LearnerType.PARTICIPANT}
    if not participants:
        raise ConfigError(path, None, "no participant among the server.N lines")

    # Hierarchical quorum checks as ZooKeeper does them.
    if groups or weights:
        seen: dict[int, int] = {}
        for g, (ln, members) in sorted(groups.items()):
            for m in members:
                if m in seen:
                    raise ConfigError(path, ln, f"group.{g}: server {m} is already in group.{seen[m]}")
                if m not in servers:
                    raise ConfigError(path, ln, f"group.{g}: server {m} has no server.{m} line")
                seen[m] = g
        if groups:
            for s in sorted(participants):
                if s not in seen:
                    raise ConfigError(path, raw[f"server.{s}"][0],
                                      f"server.{s}: participant is in no group.G (hierarchical quorum)")
        for s, (ln, _) in sorted(weights.items()):
            if s not in servers:
                raise ConfigError(path, ln, f"weight.{s}: server {s} has no server.{s} line")
        if not groups:
            # ZooKeeper refuses weights without groups ("every participant has
            # to be in a group"); we read them as one group of all participants,
            # i.e. a weighted majority, which is what plans with only
            # `weights:` mean (DESIGN.md §1).
            groups[1] = (0, tuple(sorted(participants)))

    data_dir = kw["data_dir"]
    if sid is None:
        sid = _read_myid(path, data_dir)
    if sid not in servers:
        raise ConfigError(path, None, f"myid {sid} has no server.{sid} line")
    kw.setdefault("data_log_dir", data_dir)

    me = servers[sid]
    # As ZooKeeper: the servers list decides the role; a disagreeing peerType
    # is overridden and reported rather than refused.
    if "peer_type" in kw and kw["peer_type"] is not me.learner_type:
        ignored.append(IgnoredKey("peerType", peer_type_line or 0))
    kw["peer_type"] = me.learner_type

    cfg = NodeConfig(
        path=path,
        sid=sid,
        servers=sorted_servers,
        groups=tuple((g, members) for g, (_, members) in sorted(groups.items())),
        weights=tuple((s, w) for s, (_, w) in sorted(weights.items())),
        ignored_keys=tuple(ignored),
        **kw,
    )
    try:
        cfg.make_verifier()
    except ValueError as e:
        raise ConfigError(path, None, f"quorum configuration: {e}") from None
    return cfg


def parse_config(path: str | Path) -> NodeConfig:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(p, None, "config file not found") from None
    except OSError as e:
        raise ConfigError(p, None, f"cannot read config: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(p, line, f"not UTF-8 text (byte 0x{data[e.start]:02x})") from None
    return parse_config_text(text, p, base_dir=p.parent)


load_config = parse_config

