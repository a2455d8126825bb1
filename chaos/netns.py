"""`--links netns`: every node in its own network namespace, every link through its proxy.

Theory of operation. With `--links config` a node reaches a peer at the
proxy address written in its zoo.cfg. ZooKeeper does not keep to that: it
dials a lower-sid peer back at the election address the peer announced in
its handshake, so some connections would bypass Toxiproxy. Here each node
gets an address of its own, from 198.18.0.0/15 (reserved for benchmarks;
it exists only inside the namespaces a run makes), in a namespace of its own,
and every zoo.cfg names the peers' real addresses. The host side routes the
namespaces ("routed veth": one veth pair per node, the host end holding the
run's host address, a /32 route per node):

    ns n1 [198.18.K.2] ──veth── host [198.18.K.1, proxies listen here] ──veth── ns n2 [198.18.K.3]

An nft table per run (``ip fle_<run>``) holds one DNAT rule per (source node,
destination node, port): a connection from n1 to n2's election port is sent
to the proxy n1→n2 election, listening on the host address; the proxy dials
n2's real address from the host, which no rule matches. Traffic between two
namespaces that no rule rewrote is never forwarded (``no_bypass`` drops it,
and ``delivered`` counts any packet that reaches a node from anything but the
host, which the interposition test holds at zero). Routed rather than
bridged: DNAT of bridged frames needs br_netfilter and the host-wide
``bridge-nf-call-iptables`` switch; routing needs neither.

Names carry the run id, so a janitor can tell runs apart: namespaces
``fc-<run>-n<sid>``, host veth ends ``fc<run>n<sid>``, table ``fle_<run>``.
Subnets are /24 slots of 198.18.0.0/15 held by an flock (as ports are), so
concurrent runs never share one. :func:`janitor` removes what runs whose
orchestrator is gone left (a SIGKILLed ``chaos run``), never a live run's.

:func:`layout` and :func:`nft_ruleset` are pure; :class:`NetnsLinks` runs
``ip`` and ``nft``.
"""
from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

__all__ = ["NetLayout", "NodeNet", "layout", "nft_ruleset", "NetnsLinks", "missing_requirements",
           "reserve_slot", "SlotReservation", "janitor", "leftovers", "NetnsUnavailable",
           "NS_PREFIX", "TABLE_PREFIX", "SLOTS"]

BLOCK = ipaddress.ip_network("198.18.0.0/15")
SLOTS = BLOCK.num_addresses // 256          # 512 /24 slots
NS_PREFIX = "fc-"
TABLE_PREFIX = "fle_"
_LOCK_DIR = Path(tempfile.gettempdir()) / "fle-chaos-netns"
_RUN_ID = re.compile(r"^[0-9a-f]{8}$")


class NetnsUnavailable(RuntimeError):
    """This machine cannot make namespaces (no ip/nft, or no CAP_NET_ADMIN):
    the message says which, in one line."""


@dataclass(frozen=True, slots=True)
class NodeNet:
    sid: int
    netns: str          # namespace name
    host_if: str        # veth end in the host namespace
    node_if: str        # veth end inside the namespace
    address: str        # the node's own address (bound inside its namespace)


@dataclass(frozen=True, slots=True)
class NetLayout:
    run_id: str
    slot: int
    subnet: str         # 198.18.K.0/24
    host: str           # 198.18.K.1: proxies listen here
    nodes: Mapping[int, NodeNet]
    table: str          # nft table (family ip)

    def address(self, sid: int) -> str:
        return self.nodes[sid].address


def layout(run_id: str, slot: int, sids: Iterable[int]) -> NetLayout:
    """Names and addresses of a run's namespaces (pure)."""
    if not _RUN_ID.match(run_id):
        raise ValueError(f"run id {run_id!r}: expected 8 hex digits")
    if not 0 <= slot < SLOTS:
        raise ValueError(f"slot {slot} outside 0..{SLOTS - 1}")
    sids = sorted(sids)
    if sids and (sids[0] < 1 or sids[-1] > 253):
        raise ValueError("netns links hold sids 1..253 (one /24 per run)")
    base = int(BLOCK.network_address) + 256 * slot
    host = str(ipaddress.ip_address(base + 1))
    nodes = {s: NodeNet(sid=s, netns=f"{NS_PREFIX}{run_id}-n{s}", host_if=f"fc{run_id}n{s}",
                        node_if=f"fc{run_id}p{s}", address=str(ipaddress.ip_address(base + 1 + s)))
             for s in sids}
    return NetLayout(run_id=run_id, slot=slot, subnet=f"{ipaddress.ip_address(base)}/24", host=host,
                     nodes=nodes, table=f"{TABLE_PREFIX}{run_id}")


def nft_ruleset(net: NetLayout, real_ports: Mapping[int, Mapping[str, int]],
                listen_ports: Mapping[tuple[int, int, str], int]) -> str:
    """The run's nft table: one DNAT rule per directed link (pure).

    ``real_ports[sid][port]`` is the port node ``sid`` listens on (inside its
    namespace), ``listen_ports[(a, b, port)]`` the host port of proxy a→b."""
    lines = [f"table ip {net.table} {{",
             "  chain dnat_links {",
             "    type nat hook prerouting priority dstnat; policy accept;"]
    for (a, b, port), lp in sorted(listen_ports.items()):
        src, dst = net.nodes[a], net.nodes[b]
        lines.append(f'    iifname "{src.host_if}" ip saddr {src.address} ip daddr {dst.address} '
                     f'tcp dport {real_ports[b][port]} counter dnat to {net.host}:{lp} '
                     f'comment "{a}to{b}_{port}"')
    lines += ["  }",
              "  chain no_bypass {",
              "    type filter hook forward priority filter; policy accept;",
              f"    ip saddr {net.subnet} ip daddr {net.subnet} counter drop comment \"bypass\"",
              "  }",
              "  chain delivered {",
              # filter priority: before the reply direction of a DNAT is rewritten,
              # so a proxy's packets still show the host as their source
              "    type filter hook postrouting priority filter; policy accept;"]
    for s, n in sorted(net.nodes.items()):
        ports = ", ".join(str(p) for p in sorted(set(real_ports[s].values())))
        lines.append(f'    oifname "{n.host_if}" ip saddr != {net.host} counter comment "not_from_host_to_{s}"')
        lines.append(f'    oifname "{n.host_if}" ip saddr {net.host} tcp dport {{ {ports} }} counter '
                     f'comment "proxied_to_{s}"')
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def missing_requirements() -> str | None:
    """None when namespaces can be made here; else one line saying what is missing."""
    missing = [t for t in ("ip", "nft", "nsenter") if shutil.which(t) is None]
    if missing:
        pkgs = {"ip": "iproute2", "nft": "nftables", "nsenter": "util-linux"}
        return "netns links need " + " and ".join(f"`{t}` (package {pkgs[t]})" for t in missing)
    try:
        caps = int(next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                        if line.startswith("CapEff:")), 16)
    except (OSError, StopIteration, ValueError):
        caps = 0
    if not caps & (1 << 12):   # CAP_NET_ADMIN
        return "netns links need root or CAP_NET_ADMIN (to make namespaces, veths and an nft table)"
    r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"netns links need nftables to work here: `nft list tables` says {r.stderr.strip()[:120]}"
    return None


class SlotReservation:
    def __init__(self, slot: int, fd: int) -> None:
        self.slot, self._fd = slot, fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.release()


def _host_addresses() -> set[str]:
    r = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True)
    try:
        return {a["local"] for link in json.loads(r.stdout or "[]") for a in link.get("addr_info", [])}
    except (ValueError, KeyError, TypeError):
        return set()


def reserve_slot(start: int = 0) -> SlotReservation:
    """A /24 of 198.18.0.0/15 no other live run holds (flock per slot; a slot
    whose host address still exists is skipped: a dead run's leftover)."""
    _LOCK_DIR.mkdir(parents=True, exist_ok=True)
    used = _host_addresses()
    for k in range(SLOTS):
        slot = (start + k) % SLOTS
        fd = os.open(_LOCK_DIR / f"slot{slot}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if str(ipaddress.ip_address(int(BLOCK.network_address) + 256 * slot + 1)) in used:
            os.close(fd)
            continue
        return SlotReservation(slot, fd)
    raise NetnsUnavailable("every /24 of 198.18.0.0/15 is held by another run")


def _run(argv: list[str], *, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, input=input, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed: {r.stderr.strip()[:300]}")
    return r


class NetnsLinks:
    """Makes and removes one run's namespaces, veths, routes and nft table."""

    def __init__(self, net: NetLayout) -> None:
        self.net = net
        self.made: list[str] = []     # namespaces made, for removal

    def up(self, real_ports: Mapping[int, Mapping[str, int]],
           listen_ports: Mapping[tuple[int, int, str], int]) -> None:
        net = self.net
        for s, n in sorted(net.nodes.items()):
            _run(["ip", "netns", "add", n.netns])
            self.made.append(n.netns)
            _run(["ip", "link", "add", n.host_if, "type", "veth", "peer", "name", n.node_if,
                  "netns", n.netns])
            _run(["ip", "addr", "add", f"{net.host}/32", "dev", n.host_if])
            _run(["ip", "link", "set", n.host_if, "up"])
            _run(["ip", "route", "add", f"{n.address}/32", "dev", n.host_if, "src", net.host])
            ns = ["ip", "-n", n.netns]
            _run(ns + ["addr", "add", f"{n.address}/32", "dev", n.node_if])
            _run(ns + ["link", "set", "lo", "up"])
            _run(ns + ["link", "set", n.node_if, "up"])
            _run(ns + ["route", "add", f"{net.host}/32", "dev", n.node_if])
            _run(ns + ["route", "add", "default", "via", net.host, "dev", n.node_if])
        _run(["nft", "-f", "-"], input=nft_ruleset(net, real_ports, listen_ports))

    def exec_prefix(self, sid: int) -> list[str]:
        """argv prefix that runs a command inside node ``sid``'s namespace.
        ``nsenter --net`` execs the command (``ip netns exec`` forks and
        waits: the pid we hold, and PDEATHSIG, would be ip's, not the node's)."""
        return ["nsenter", f"--net=/run/netns/{self.net.nodes[sid].netns}"]

    def down(self) -> list[str]:
        """Remove everything; returns what could not be removed."""
        return remove_run(self.net.run_id, [n.netns for n in self.net.nodes.values()])

    def counters(self) -> dict[str, int]:
        """Packets per rule comment (``1to2_election``: connections DNATed;
        ``not_from_host_to_2``: packets delivered to node 2 not by a proxy)."""
        r = _run(["nft", "-j", "list", "table", "ip", self.net.table], check=False)
        out: dict[str, int] = {}
        try:
            items = json.loads(r.stdout or "{}").get("nftables", [])
        except ValueError:
            return out
        for it in items:
            rule = it.get("rule")
            if not rule:
                continue
            c = next((e["counter"] for e in rule.get("expr", []) if "counter" in e), None)
            if c is not None and rule.get("comment"):
                out[rule["comment"]] = int(c.get("packets", 0))
        return out


def remove_run(run_id: str, namespaces: Iterable[str] = ()) -> list[str]:
    """Remove run ``run_id``'s namespaces (which takes their veths), host veth
    ends and nft table; returns what failed."""
    failed = []
    names = set(namespaces) | {ns for ns in _list_netns() if ns.startswith(f"{NS_PREFIX}{run_id}-")}
    for ns in sorted(names):
        r = _run(["ip", "netns", "del", ns], check=False)
        if r.returncode != 0 and ns in _list_netns():
            failed.append(f"netns {ns}: {r.stderr.strip()}")
    for ifname in _list_links():
        if ifname.startswith(f"fc{run_id}"):
            r = _run(["ip", "link", "del", ifname], check=False)
            if r.returncode != 0 and ifname in _list_links():
                failed.append(f"link {ifname}: {r.stderr.strip()}")
    table = f"{TABLE_PREFIX}{run_id}"
    if table in _list_tables():
        r = _run(["nft", "delete", "table", "ip", table], check=False)
        if r.returncode != 0:
            failed.append(f"nft table {table}: {r.stderr.strip()}")
    return failed


def _list_netns() -> list[str]:
    r = _run(["ip", "-j", "netns", "list"], check=False)
    try:
        return [e["name"] for e in json.loads(r.stdout or "[]")]
    except (ValueError, KeyError, TypeError):
        return []


def _list_links() -> list[str]:
    r = _run(["ip", "-j", "link", "show"], check=False)
    try:
        return [e["ifname"] for e in json.loads(r.stdout or "[]")]
    except (ValueError, KeyError, TypeError):
        return []


def _list_tables() -> list[str]:
    r = _run(["nft", "-j", "list", "tables", "ip"], check=False)
    try:
        return [e["table"]["name"] for e in json.loads(r.stdout or "{}").get("nftables", []) if "table" in e]
    except (ValueError, KeyError, TypeError):
        return []


_NS_RUN = re.compile(rf"^{re.escape(NS_PREFIX)}([0-9a-f]{{8}})-n\d+$")
_IF_RUN = re.compile(r"^fc([0-9a-f]{8})[np]\d+$")
_TABLE_RUN = re.compile(rf"^{re.escape(TABLE_PREFIX)}([0-9a-f]{{8}})$")


def leftovers() -> dict[str, set[str]]:
    """run id -> names of its namespaces, veths and nft table present now."""
    if shutil.which("ip") is None:
        return {}
    found: dict[str, set[str]] = {}
    for names, pat in ((_list_netns(), _NS_RUN), (_list_links(), _IF_RUN),
                       (_list_tables() if shutil.which("nft") else [], _TABLE_RUN)):
        for name in names:
            m = pat.match(name)
            if m:
                found.setdefault(m.group(1), set()).add(name)
    return found


def janitor(live_run_ids: Iterable[str], log: Callable[[str], None] = lambda m: None) -> list[str]:
    """Remove the namespaces, veths and tables of runs not in ``live_run_ids``."""
    live = set(live_run_ids)
    removed = []
    for run_id, names in sorted(leftovers().items()):
        if run_id in live:
            continue
        log(f"janitor: removing network leftovers of dead run {run_id}: {', '.join(sorted(names))}")
        for f in remove_run(run_id):
            log(f"janitor: {f}")
        removed.append(run_id)
    return removed
