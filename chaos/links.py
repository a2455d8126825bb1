"""Directed links between nodes, each one a pair of Toxiproxy streams.

Theory of operation. There is one proxy per ordered pair (i, j) and per port
(election, quorum), named ``fle_<run>_<i>to<j>_<port>``: node i's zoo.cfg
points at its listen address, its upstream is j's real port. A TCP
connection between i and j goes through the proxy of whichever side dialled,
so the bytes *i sends to j* travel either

* upstream on proxy i→j (i dialled), or
* downstream on proxy j→i (j dialled).

A fault on the directed link i→j is therefore always two toxics, one on each
of those streams; the reverse direction is untouched. ``(i, j, port)`` is
the unit everything here speaks in::

      node i ──► [proxy i→j]  upstream ──► node j      (i dialled)
      node i ◄── [proxy i→j] downstream ◄── node j
      node j ──► [proxy j→i]  upstream ──► node i      (j dialled)
      node j ◄── [proxy j→i] downstream ◄── node i     ← also "i sends to j"

A partition ("i cannot reach j") is a black hole on i→j: a ``timeout``
toxic with timeout 0, which holds every byte forever; removing it closes the
connections it held, so the nodes reconnect after a heal.

Every toxic put on is kept in a registry under its fault id, so that each
fault is undone exactly once, at ``heal``/``untoxic`` or at the end of the
run whatever happened.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

__all__ = ["PORTS", "Link", "AppliedToxic", "LinkFaults", "proxy_name", "streams_for", "BLACKHOLE"]

PORTS = ("election", "quorum")
BLACKHOLE = {"type": "timeout", "attributes": {"timeout": 0}}
POPULATE_BATCH = 200
"""Proxies per /populate request (each one a bound listener on the server)."""

Link = tuple[int, int, str]  # (from sid, to sid, port)


def proxy_name(run_id: str, a: int, b: int, port: str) -> str:
    return f"fle_{run_id}_{a}to{b}_{port}"


def streams_for(run_id: str, link: Link) -> list[tuple[str, str]]:
    """The (proxy, stream) pairs carrying the bytes ``a`` sends to ``b``."""
    a, b, port = link
    return [(proxy_name(run_id, a, b, port), "upstream"),
            (proxy_name(run_id, b, a, port), "downstream")]


@dataclass(frozen=True, slots=True)
class AppliedToxic:
    proxy: str
    stream: str
    name: str
    link: Link


@dataclass
class _Fault:
    fault_id: str
    kind: str
    links: list[Link]
    toxics: list[AppliedToxic] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)   # proxies this fault holds down


class LinkFaults:
    """Creates the proxies of one run and applies/undoes faults on them.

    ``client`` is a :class:`chaos.toxiproxy.client.ToxiproxyClient`.
    ``real_ports`` maps sid -> {"election": port, "quorum": port};
    ``listen_ports`` maps (a, b, port) -> the proxy's listen port.
    ``host`` is where proxies listen (and nodes answer, unless ``node_hosts``
    gives each sid its own address: ``--links netns``, :mod:`chaos.netns`).
    """

    def __init__(self, client: Any, run_id: str, real_ports: Mapping[int, Mapping[str, int]],
                 listen_ports: Mapping[Link, int], host: str = "127.0.0.1",
                 node_hosts: Mapping[int, str] | None = None) -> None:
        self.client = client
        self.run_id = run_id
        self.real_ports = real_ports
        self.listen_ports = dict(listen_ports)
        self.host = host
        self.node_hosts = dict(node_hosts or {})
        self.created: list[str] = []
        self._down: dict[str, int] = {}   # proxy -> how many faults hold it disabled
        self.faults: dict[str, _Fault] = {}

    @staticmethod
    def all_links(sids: Iterable[int], ports: Iterable[str] = PORTS) -> list[Link]:
        sids = list(sids)
        return [(a, b, p) for a in sids for b in sids if a != b for p in ports]

    def header(self) -> list[dict]:
        return [{"from": a, "to": b, "port": p, "proxy": proxy_name(self.run_id, a, b, p),
                 "listen": f"{self.host}:{lp}", "upstream": self.upstream(b, p)}
                for (a, b, p), lp in sorted(self.listen_ports.items())]

    def upstream(self, sid: int, port: str) -> str:
        return f"{self.node_hosts.get(sid, self.host)}:{self.real_ports[sid][port]}"

    def create_proxies(self, batch: int = POPULATE_BATCH) -> None:
        """Create every proxy of the run with Toxiproxy's ``/populate`` (the real
        2.12 server has it too), ``batch`` proxies a request: one POST per proxy
        was 1200 HTTP exchanges at 25 nodes. On an error, what the server did
        create is still deleted at the end (found by listing)."""
        wanted = [{"name": proxy_name(self.run_id, a, b, p), "listen": f"{self.host}:{lp}",
                   "upstream": self.upstream(b, p), "enabled": True}
                  for (a, b, p), lp in sorted(self.listen_ports.items())]
        for i in range(0, len(wanted), batch):
            chunk = wanted[i:i + batch]
            try:
                self.client.populate(chunk)
            except Exception:
                names = {w["name"] for w in chunk}
                try:
                    self.created += [n for n in self.client.list_proxies() if n in names]
                except Exception:
                    self.created += sorted(names)   # unknown: try to delete them all
                raise
            self.created += [w["name"] for w in chunk]

    def delete_proxies(self, log: Callable[[str], None] = lambda m: None) -> None:
        for name in reversed(self.created):
            try:
                self.client.delete_proxy(name)
            except Exception as e:  # keep going: the rest must still go
                log(f"cannot delete proxy {name}: {e}")
        self.created.clear()

    # ------------------------------------------------------------------ faults
    def add_toxic(self, fault_id: str, kind: str, links: Iterable[Link], type: str,
                  attributes: Mapping[str, Any], toxicity: float = 1.0) -> list[AppliedToxic]:
        """Put one toxic on every stream that carries each directed link.

        On an error half-way the toxics already added stay registered, so
        :meth:`undo` still removes them."""
        if fault_id in self.faults:
            raise ValueError(f"fault {fault_id} already applied")
        links = list(dict.fromkeys(links))
        fault = _Fault(fault_id, kind, links)
        self.faults[fault_id] = fault
        for link in links:
            a, b, _ = link
            for proxy, stream in streams_for(self.run_id, link):
                name = f"{fault_id}_{a}to{b}"
                self.client.add_toxic(proxy, type=type, name=name, stream=stream,
                                      toxicity=toxicity, attributes=dict(attributes))
                fault.toxics.append(AppliedToxic(proxy, stream, name, link))
        return list(fault.toxics)

    def block(self, fault_id: str, pairs: Iterable[tuple[int, int]],
              ports: Iterable[str] = PORTS) -> list[Link]:
        """Black-hole every directed pair (a cannot reach b) on ``ports``."""
        ports = list(ports)
        links = [(a, b, p) for a, b in sorted(set(pairs)) for p in ports]
        self.add_toxic(fault_id, "partition", links, BLACKHOLE["type"], BLACKHOLE["attributes"])
        return links

    def down(self, fault_id: str, links: Iterable[Link]) -> list[Link]:
        """Disable the proxy of every directed link (Toxiproxy's ``enabled:
        false``, which closes its connections and refuses new ones) — the
        plan-level ``down`` fault. A proxy held down by two faults comes back
        only when both are undone."""
        if fault_id in self.faults:
            raise ValueError(f"fault {fault_id} already applied")
        links = list(dict.fromkeys(links))
        fault = _Fault(fault_id, "down", links)
        self.faults[fault_id] = fault
        for a, b, p in links:
            name = proxy_name(self.run_id, a, b, p)
            if self._down.get(name, 0) == 0:
                self.client.set_enabled(name, False)
            self._down[name] = self._down.get(name, 0) + 1
            fault.disabled.append(name)
        return links

    def undo(self, fault_id: str) -> list[Link]:
        """Remove every toxic of a fault and re-enable the proxies it held
        down; an already missing toxic counts as removed."""
        fault = self.faults.pop(fault_id, None)
        if fault is None:
            return []
        errors = []
        for name in reversed(fault.disabled):
            self._down[name] -= 1
            if self._down[name] == 0:
                del self._down[name]
                try:
                    self.client.set_enabled(name, True)
                except Exception as e:
                    errors.append(f"{name}: {e}")
        for t in reversed(fault.toxics):
            try:
                self.client.remove_toxic(t.proxy, t.name)
            except Exception as e:
                if getattr(e, "status", None) != 404:
                    errors.append(f"{t.proxy}/{t.name}: {e}")
        if errors:
            raise RuntimeError("could not undo: " + "; ".join(errors))
        return fault.links

    def blocked_pairs(self) -> set[tuple[int, int]]:
        """Who cannot reach whom right now (any port)."""
        return {(a, b) for f in self.faults.values() if f.kind == "partition" for a, b, _ in f.links}
