"""interposition: every connection a node dials goes to its link's proxy.

Theory of operation. With ``links: config`` (the default for our node) each
node's zoo.cfg names, for every peer, the listen address of the proxy of that
directed link; faults are put on those proxies. A node that dials a peer
anywhere else — at the address the peer announced in its handshake
(ZooKeeper 3.5+, ZK-2164), at the peer's real port — has a connection no
fault touches, and every verdict of the run then rests on faults that did
not apply. The node logs the other end of each connection it opens
(``connection_opened.remote``); an outgoing one must be the proxy's listen
address of (node, peer, port) as the journal's header lists the links.
Simulated runs (no proxies), runs whose header names no links, or that interpose by network namespaces
(``run.links.mode == "netns"``: nodes dial real addresses and DNAT rules
carry every connection to its proxy), are not judged here.
"""

from __future__ import annotations

from typing import Any, Mapping

from chaos.records import NodeEvent

from .core import Context, Finding, as_int, invariant

__all__ = ["interposition"]


@invariant("interposition")
def interposition(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """Every connection a node dials reaches its peer through that directed
    link's proxy (the address in the node's zoo.cfg)."""
    if ctx.journal.run is not None and ctx.journal.run.simulated:
        return Finding.valid("not applicable: a simulated network has no proxies to go around")
    links = ctx.journal.run.extra.get("links") if ctx.journal.run is not None else None
    mode = links.get("mode") if isinstance(links, Mapping) else links
    if mode not in (None, "config"):
        return Finding.valid(f"not applicable: links interposed by {mode}, not by addresses in zoo.cfg")
    listen = {(lk.src, lk.dst, lk.port): lk.listen for lk in ctx.journal.links}
    if not listen:
        return Finding.unknown("the journal lists no proxied links")
    checked = 0
    for r in ctx.records:
        if not (isinstance(r, NodeEvent) and r.event == "connection_opened" and r.get("direction") == "out"):
            continue
        remote, peer, port = r.get("remote"), as_int(r.get("peer")), r.get("port")
        expected = listen.get((r.sid, peer, port))
        if not isinstance(remote, str) or expected is None:
            continue
        checked += 1
        if remote != expected:
            return Finding.invalid(
                f"node {r.sid} dialled node {peer}'s {port} port at {remote}, not at the proxy of link "
                f"{r.sid}→{peer} ({expected}, the address its zoo.cfg gives): no fault planned on that link "
                "applies to this connection", (r.seq,), r.seq)
    if not checked:
        return Finding.unknown("no outgoing connection with its remote address in the journal")
    return Finding.valid(f"{checked} outgoing connection(s), each to its link's proxy")
