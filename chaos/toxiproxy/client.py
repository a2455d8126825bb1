"""The orchestrator's Toxiproxy client: a thin adapter over toxiproxy-python 0.1.1.

What it fixes in that client (spec §5):
* `version()` returns the decoded version string, not raw JSON bytes;
* every non-2xx answer raises `ToxiproxyError(status, message)` (the client
  raises `KeyError` on a 500 and its own exception types on 400/404/409);
* `create_proxy` is one POST (the client does a racy GET first);
* `add_toxic` returns the created toxic (the client discards it);
* toxic update (PATCH), GET of one proxy and server-side /populate, which the
  client lacks, go straight to the HTTP API at the same host and port, and so
  do deletes (one kept-alive connection instead of one connection per call);
* enabling/disabling uses PATCH, not the deprecated POST.

toxiproxy-python keeps the server's host and port in class attributes of
`APIConsumer`, shared by the whole process. Every call here sets them under a
process-wide lock and holds it for the request, so several `ToxiproxyClient`s
(one per server) can be used from several threads safely.
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional
from urllib.parse import quote, urlsplit

import requests
import toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

__all__ = ["ToxiproxyClient", "ToxiproxyError", "ProxyInfo", "ToxicInfo"]

_consumer_lock = threading.RLock()


class ToxiproxyError(Exception):
    """The server refused a request (`status` is the HTTP status; 0: unreachable).

    404: the proxy or toxic does not exist; 409: the name is taken; 400: the
    request is wrong (fix the call); 500: the server could not bind or resolve.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"toxiproxy {status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class ToxicInfo:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ToxicInfo":
        return cls(d["name"], d["type"], d["stream"], float(d.get("toxicity", 1.0)),
                   dict(d.get("attributes") or {}))


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    name: str
    listen: str
    upstream: str
    enabled: bool

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ProxyInfo":
        return cls(d["name"], d["listen"], d["upstream"], bool(d["enabled"]))

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


def _message(body: bytes, status: int) -> str:
    try:
        data = json.loads(body)
        if isinstance(data, dict) and "error" in data:
            return str(data["error"])
    except ValueError:
        pass
    return body.decode("utf-8", "replace").strip() or f"HTTP {status}"


class ToxiproxyClient:
    """One Toxiproxy server (ours or the real binary), by its API URL."""

    def __init__(self, url: str = "http://127.0.0.1:8474", timeout: float = 30.0) -> None:
        parts = urlsplit(url if "://" in url else "http://" + url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 8474
        self.url = f"http://{self.host}:{self.port}"
        self.timeout = timeout
        # Keep-alive for the requests made here directly. toxiproxy-python opens
        # a connection per call; deleting a 25-node run's 1200 proxies that way
        # took 2-4.5 s of teardown.
        self._session = requests.Session()
        self._session_lock = threading.Lock()

    # --- plumbing ---------------------------------------------------------------
    @contextmanager
    def _consumer(self) -> Iterator[None]:
        with _consumer_lock:
            saved = APIConsumer.host, APIConsumer.port
            APIConsumer.host, APIConsumer.port = self.host, self.port
            try:
                yield
            finally:
                APIConsumer.host, APIConsumer.port = saved

    def _call(self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200,)) -> Any:
        """One request through APIConsumer (GET/POST) or directly, on a kept-alive
        connection (DELETE, PATCH)."""
        try:
            if method in ("GET", "POST"):
                with self._consumer():
                    if method == "GET":
                        resp = APIConsumer.get(path, timeout=self.timeout)
                    else:
                        resp = APIConsumer.post(path, json=body, timeout=self.timeout)
            else:
                with self._session_lock:
                    resp = self._session.request(method, self.url + path, json=body, timeout=self.timeout)
        except (ProxyExists, NotFound, InvalidToxic) as exc:
            status = {ProxyExists: 409, NotFound: 404, InvalidToxic: 400}[type(exc)]
            raw = exc.args[0] if exc.args else b""
            raise ToxiproxyError(status, _message(raw if isinstance(raw, bytes) else str(raw).encode(),
                                                  status)) from None
        except requests.RequestException as exc:
            raise ToxiproxyError(0, f"{self.url} unreachable: {exc}") from None
        if resp.status_code not in expect:
            raise ToxiproxyError(resp.status_code, _message(resp.content, resp.status_code))
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise ToxiproxyError(resp.status_code, f"not JSON: {resp.content[:200]!r}") from None

    @staticmethod
    def _p(name: str) -> str:
        return quote(name, safe="")

    # --- server -------------------------------------------------------------------
    def version(self) -> str:
        with self._consumer():
            try:
                raw = toxiproxy.Toxiproxy().version()
            except requests.RequestException as exc:
                raise ToxiproxyError(0, f"{self.url} unreachable: {exc}") from None
        if raw is None:
            raise ToxiproxyError(0, f"{self.url} unreachable")
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        try:
            return str(json.loads(text)["version"])
        except (ValueError, KeyError, TypeError):
            return text.strip()  # servers before 2.7.0 answer plain text

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.version()
                return
            except ToxiproxyError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def reset(self) -> None:
        self._call("POST", "/reset", expect=(204,))

    def populate(self, proxies: list[dict[str, Any]]) -> list[ProxyInfo]:
        """Server-side /populate: same-name proxies whose listen/upstream match are kept."""
        try:
            resp = requests.post(self.url + "/populate", json=proxies, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ToxiproxyError(0, f"{self.url} unreachable: {exc}") from None
        if resp.status_code != 201:
            raise ToxiproxyError(resp.status_code, _message(resp.content, resp.status_code))
        return [ProxyInfo.from_json(p) for p in (resp.json().get("proxies") or [])]

    # --- proxies --------------------------------------------------------------------
    def create_proxy(self, name: str, listen: str, upstream: str, enabled: bool = True) -> ProxyInfo:
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        return ProxyInfo.from_json(self._call("POST", "/proxies", body, expect=(201,)))

    def get_proxy(self, name: str) -> ProxyInfo:
        return ProxyInfo.from_json(self._call("GET", f"/proxies/{self._p(name)}"))

    def list_proxies(self) -> dict[str, ProxyInfo]:
        try:
            with self._consumer():
                proxies = toxiproxy.Toxiproxy().proxies()
        except requests.RequestException as exc:
            raise ToxiproxyError(0, f"{self.url} unreachable: {exc}") from None
        return {name: ProxyInfo(p.name, p.listen, p.upstream, bool(p.enabled))
                for name, p in proxies.items()}

    def set_enabled(self, name: str, enabled: bool) -> ProxyInfo:
        return ProxyInfo.from_json(self._call("PATCH", f"/proxies/{self._p(name)}",
                                              {"enabled": enabled}))

    def delete_proxy(self, name: str) -> None:
        self._call("DELETE", f"/proxies/{self._p(name)}", expect=(204,))

    # --- toxics ------------------------------------------------------------------------
    def add_toxic(self, proxy: str, *, type: str, name: Optional[str] = None,
                  stream: str = "downstream", toxicity: float = 1.0,
                  attributes: Optional[dict[str, Any]] = None) -> ToxicInfo:
        body: dict[str, Any] = {"type": type, "stream": stream, "toxicity": toxicity,
                                "attributes": attributes or {}}
        if name:
            body["name"] = name
        return ToxicInfo.from_json(self._call("POST", f"/proxies/{self._p(proxy)}/toxics", body))

    def update_toxic(self, proxy: str, name: str, *, attributes: Optional[dict[str, Any]] = None,
                     toxicity: Optional[float] = None) -> ToxicInfo:
        body: dict[str, Any] = {}
        if attributes is not None:
            body["attributes"] = attributes
        if toxicity is not None:
            body["toxicity"] = toxicity
        return ToxicInfo.from_json(self._call("PATCH", f"/proxies/{self._p(proxy)}/toxics/{self._p(name)}",
                                              body))

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{self._p(proxy)}/toxics/{self._p(name)}", expect=(204,))

    def list_toxics(self, proxy: str) -> list[ToxicInfo]:
        return [ToxicInfo.from_json(t) for t in self._call("GET", f"/proxies/{self._p(proxy)}/toxics")]
