"""An embedded Toxiproxy-compatible server (drop-in for toxiproxy-server 2.12)
and the adapter the orchestrator talks to it with.

`python -m chaos.toxiproxy` runs the server; `ToxiproxyServer` starts one (or a
real binary) as a child process; `ToxiproxyClient` drives either over HTTP.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ToxiproxyClient", "ToxiproxyError", "ProxyInfo", "ToxicInfo", "ToxiproxyServer",
           "VERSION"]

VERSION = "2.12.0"


def __getattr__(name: str) -> Any:  # lazy: the server process never imports requests
    if name in ("ToxiproxyClient", "ToxiproxyError", "ProxyInfo", "ToxicInfo"):
        from . import client
        return getattr(client, name)
    if name == "ToxiproxyServer":
        from .process import ToxiproxyServer
        return ToxiproxyServer
    raise AttributeError(name)
