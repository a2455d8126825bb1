"""Wire cuts: every packet of one node dropped in the kernel, for `reboot`.

Theory of operation. A process killed on a live machine is not silent: its
kernel sends a FIN (or RST) on every socket, the proxy sees the end of the
stream and passes it on, and every peer learns at once. A host that crashes
sends nothing, and a peer's connection to it stays open, half-open, until the
peer writes into it and the host, rebooted by then, answers with an RST.
Toxiproxy cannot hold a connection open across its own heal (lifting a black
hole closes what it held), so this cut lives below the proxy: a pair of rules
in the run's nft table (``ip fle_<run>``, the table :mod:`chaos.netns` makes,
or one of its own with ``--links config``), in chains on the output and input
hooks, that drop

* ``--links netns``: everything leaving or entering the node's host-side veth
  (``oifname``/``iifname``);
* ``--links config`` (everything on loopback, so the output hook sees every
  packet): every TCP segment to or from one of the node's own election and
  quorum ports, or the listen ports of the proxies of the links it dials
  (its ports are its run's alone: :mod:`chaos.ports` reserves them).

A node killed behind a cut takes its FINs with it. Its kernel does not die
with it, though, and would go on re-sending those FINs once the wire is back;
:meth:`WireCuts.forget` destroys the sockets it left (``ss -K``, whose RSTs
die at the cut too), as a reboot would. Lifting the cut deletes the node's
rules, nothing else: connections its peers held stay up until written into,
and then the rebooted node's kernel answers with an RST. The table goes with the run (or its janitor, :func:`chaos.netns.janitor`,
which knows the name), so a cut never outlives a run.

:func:`cut_rules` is pure; :class:`WireCuts` runs ``nft``.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import Iterable, Mapping

from chaos.netns import TABLE_PREFIX

__all__ = ["NodeWire", "WireCuts", "WireCutError", "cut_rules", "config_wires", "forget_argv", "wires_for",
           "missing_requirements", "CHAINS"]

CHAINS = {"cut_out": "output", "cut_in": "input"}
"""Chain name -> hook; priority ``filter - 10``, before any accept of the run's."""


class WireCutError(RuntimeError):
    """nft refused a cut or its lifting; the message holds its words."""


@dataclass(frozen=True, slots=True)
class NodeWire:
    """What identifies one node's packets: its host-side interface and
    namespace (netns links), or the TCP ports only its connections use (config
    links): ``own`` the ports it listens on, ``dialled`` the proxies' it dials."""

    sid: int
    host_if: str | None = None
    netns: str | None = None
    own: tuple[int, ...] = ()
    dialled: tuple[int, ...] = ()

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(sorted({*self.own, *self.dialled}))


def cut_rules(wire: NodeWire) -> list[tuple[str, str]]:
    """(chain, rule body) pairs that drop every packet of ``wire`` (pure)."""
    tag = f'comment "cut_{wire.sid}"'
    if wire.host_if is not None:
        return [("cut_out", f'oifname "{wire.host_if}" drop {tag}'),
                ("cut_in", f'iifname "{wire.host_if}" drop {tag}')]
    if not wire.ports:
        raise ValueError(f"node {wire.sid}: a wire needs an interface or ports")
    ports = ", ".join(str(p) for p in sorted(set(wire.ports)))
    return [("cut_out", f"tcp sport {{ {ports} }} drop {tag}"),
            ("cut_out", f"tcp dport {{ {ports} }} drop {tag}")]


def config_wires(real_ports: Mapping[int, Mapping[str, int]],
                 listen_ports: Mapping[tuple[int, int, str], int]) -> dict[int, NodeWire]:
    """Each node's ports with ``--links config``: its own election and quorum
    ports (what the proxies dial) and the listen ports of the proxies it dials."""
    wires = {}
    for sid, own in real_ports.items():
        dialled = [p for (a, _b, _port), p in listen_ports.items() if a == sid]
        wires[sid] = NodeWire(sid, own=tuple(sorted(set(own.values()))), dialled=tuple(sorted(set(dialled))))
    return wires


def forget_argv(wire: NodeWire) -> list[str]:
    """``ss -K`` that destroys the sockets a killed node left in the kernel
    (pure). Its kernel outlives it here, still sending FINs for closed
    sockets; a rebooted host's would be gone. Only the node's own ends: the
    proxies' ends are the half-open connections a reboot leaves."""
    if wire.netns is not None:   # every socket in its namespace is its own
        return ["nsenter", f"--net=/run/netns/{wire.netns}", "ss", "-K", "-t", "state", "all"]
    terms = [f"sport = :{p}" for p in wire.own] + [f"dport = :{p}" for p in wire.dialled]
    return ["ss", "-K", "-t", "state", "all", "( " + " or ".join(terms) + " )"]


def missing_requirements() -> str | None:
    """Why this machine cannot cut wires, in one line (None: it can)."""
    if shutil.which("nft") is None:
        return "reboot cuts a node's wire with nftables: install nftables (`nft`)"
    if shutil.which("ss") is None:
        return "reboot forgets a dead node's sockets with `ss -K`: install iproute2 (`ss`)"
    r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"reboot cuts a node's wire with nftables, which refuses here: {r.stderr.strip()[:160]}"
    return None


def _nft(args: list[str], *, input: str | None = None) -> str:
    r = subprocess.run(["nft", *args], input=input, capture_output=True, text=True)
    if r.returncode != 0:
        raise WireCutError(f"`nft {' '.join(args)}` failed: {r.stderr.strip()[:300]}")
    return r.stdout


class WireCuts:
    """Cuts and lifts node wires in run ``run_id``'s nft table.

    ``own_table``: the table is made here (and removed by :meth:`close`);
    otherwise it is :mod:`chaos.netns`'s, which removes it with the rest."""

    def __init__(self, run_id: str, wires: Mapping[int, NodeWire], *, own_table: bool) -> None:
        self.table = f"{TABLE_PREFIX}{run_id}"
        self.wires = dict(wires)
        self.own_table = own_table
        self.cut_now: set[int] = set()

    def open(self) -> None:
        lines = [f"table ip {self.table} {{"]
        for chain, hook in CHAINS.items():
            lines += [f"  chain {chain} {{", f"    type filter hook {hook} priority filter - 10; policy accept;",
                      "  }"]
        lines.append("}")
        _nft(["-f", "-"], input="\n".join(lines) + "\n")

    def cut(self, sid: int) -> None:
        if sid in self.cut_now:
            return
        rules = cut_rules(self.wires[sid])
        self.cut_now.add(sid)   # before: a half-made cut is lifted too
        _nft(["-f", "-"], input="".join(f"add rule ip {self.table} {chain} {body}\n" for chain, body in rules))

    def forget(self, sid: int) -> None:
        """Destroy what the killed node left in the kernel, behind the cut
        (the RSTs that go out die there), as a reboot would."""
        if sid not in self.cut_now:
            raise WireCutError(f"node {sid}: forgetting its sockets with its wire up would reset its peers")
        r = subprocess.run(forget_argv(self.wires[sid]), capture_output=True, text=True)
        if r.returncode != 0:
            raise WireCutError(f"`ss -K` for node {sid} failed: {r.stderr.strip()[:300]}")

    def lift(self, sid: int) -> None:
        """Delete node ``sid``'s rules (whatever part of a cut was made)."""
        tag = f"cut_{sid}"
        for chain in CHAINS:
            out = _nft(["-j", "-a", "list", "chain", "ip", self.table, chain])
            for item in json.loads(out or "{}").get("nftables", []):
                rule = item.get("rule")
                if rule and rule.get("comment") == tag:
                    _nft(["delete", "rule", "ip", self.table, chain, "handle", str(rule["handle"])])
        self.cut_now.discard(sid)

    def lift_all(self) -> None:
        for sid in sorted(self.cut_now):
            self.lift(sid)

    def close(self) -> None:
        """Lift every cut; drop the table if it is ours."""
        try:
            self.lift_all()
        finally:
            if self.own_table:
                subprocess.run(["nft", "delete", "table", "ip", self.table], capture_output=True, text=True)


def wires_for(sids: Iterable[int], *, net: object | None, real_ports: Mapping[int, Mapping[str, int]],
              listen_ports: Mapping[tuple[int, int, str], int]) -> dict[int, NodeWire]:
    """The run's wires: by interface with a :class:`chaos.netns.NetLayout`, else by port."""
    if net is not None:
        return {s: NodeWire(s, host_if=net.nodes[s].host_if, netns=net.nodes[s].netns)  # type: ignore[attr-defined]
                for s in sids}
    wires = config_wires(real_ports, listen_ports)
    return {s: wires[s] for s in sids}
