"""The HTTP API of toxiproxy-server 2.12: routes, JSON shapes, status codes, errors.

Routing is a small table rather than aiohttp's router so that unknown paths
answer exactly as Go's mux does (404 `404 page not found`, 405 with an empty
body). Every handler runs inside one guard: whatever a request contains, the
answer is an HTTP response and the server keeps serving.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from typing import Any, Awaitable, Callable, Optional

from aiohttp import web

from . import gojson
from .gojson import DecodeError, as_bool, as_float32, as_string
from .link import Clock, ToxicWrapper
from .proxy import Proxy, ProxyError
from .toxics import InvalidAttributes, Toxic, toxic_class

__all__ = ["ApiError", "ToxiproxyApp", "VERSION", "MAX_BODY"]

VERSION = "2.12.0"
MAX_BODY = 1 << 20
log = logging.getLogger("chaos.toxiproxy")


class ApiError(Exception):
    """An error the API reports as `{"error": message, "status": status}`."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def bad_body(detail: str) -> ApiError:
    return ApiError(f"bad request body: {detail}", 400)


ERR_PROXY_NOT_FOUND = ApiError("proxy not found", 404)
ERR_PROXY_EXISTS = ApiError("proxy already exists", 409)
ERR_INVALID_STREAM = ApiError("stream was invalid, can be either upstream or downstream", 400)
ERR_INVALID_TOXIC = ApiError("invalid toxic type", 400)
ERR_TOXIC_EXISTS = ApiError("toxic already exists", 409)
ERR_TOXIC_NOT_FOUND = ApiError("toxic not found", 404)
ERR_TOO_LARGE = ApiError(f"request body too large (limit {MAX_BODY} bytes)", 413)

Handler = Callable[..., Awaitable[web.StreamResponse]]


def _emit_stdout(event: str, **fields: Any) -> None:
    record = {"ts": time.time(), "mono_ms": round(time.monotonic() * 1000, 3), "event": event}
    record.update(fields)
    try:
        print(json.dumps(record, default=str), flush=True)
    except (OSError, ValueError):  # stdout gone: logging must never fail a request
        pass


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=gojson.dumps(value).encode(), status=status,
                        headers={"Content-Type": "application/json"})


def error_response(message: str, status: int) -> web.Response:
    body = gojson.dumps({"error": message, "status": status}) + "\n"
    return web.Response(body=body.encode(), status=status,
                        headers={"Content-Type": "text/plain; charset=utf-8",
                                 "X-Content-Type-Options": "nosniff"})


def plain_error(text: str, status: int) -> web.Response:
    return web.Response(body=(text + "\n").encode(), status=status,
                        headers={"Content-Type": "text/plain; charset=utf-8",
                                 "X-Content-Type-Options": "nosniff"})


def _object(value: Any, gotype: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_body(f"json: cannot unmarshal {gojson.json_kind(value)} into Go value of type {gotype}")
    return value


def _decode(body: bytes) -> Any:
    try:
        return gojson.decode_value(body)
    except DecodeError as exc:
        raise bad_body(str(exc)) from None


_PROXY_FIELDS = {"name": as_string, "listen": as_string, "upstream": as_string, "enabled": as_bool}
_TOXIC_FIELDS = {"name": as_string, "type": as_string, "stream": as_string,
                 "toxicity": as_float32, "attributes": lambda v, w: v}


def _fields(obj: dict[str, Any], wanted: dict[str, Any], struct: str) -> dict[str, Any]:
    try:
        return gojson.fields(obj, wanted, struct)
    except DecodeError as exc:
        raise bad_body(str(exc)) from None


class ToxiproxyApp:
    """All proxies of one server, and the request handler over them."""

    def __init__(self, *, seed: Optional[int] = None, clock: Optional[Clock] = None,
                 emit: Callable[..., None] = _emit_stdout, metrics: bool = False) -> None:
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2 ** 63)
        self.clock = clock or Clock()
        self.emit = emit
        self.metrics = metrics
        self.proxies: dict[str, Proxy] = {}
        self.lock = asyncio.Lock()
        self.routes: list[tuple[tuple[str, ...], dict[str, Handler]]] = [
            (("proxies",), {"GET": self.proxy_index, "POST": self.proxy_create}),
            (("proxies", "*"), {"GET": self.proxy_show, "PATCH": self.proxy_update,
                                "POST": self.proxy_update, "DELETE": self.proxy_delete}),
            (("proxies", "*", "toxics"), {"GET": self.toxic_index, "POST": self.toxic_create}),
            (("proxies", "*", "toxics", "*"), {"GET": self.toxic_show, "PATCH": self.toxic_update,
                                               "POST": self.toxic_update,
                                               "DELETE": self.toxic_delete}),
            (("populate",), {"POST": self.populate}),
            (("reset",), {"POST": self.reset}),
            (("version",), {"GET": self.version}),
        ]
        if metrics:
            self.routes.append((("metrics",), {"GET": self.metrics_text}))

    # --- dispatch -------------------------------------------------------------
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Route, then run the matched handler inside the guard.

        As in gorilla/mux, the request id and the browser check are middleware
        of matched routes only: an unmatched path's 404 and a 405 carry no
        `X-Toxiproxy-Request-Id`, and a browser gets them rather than the 403.
        """
        matched = self._route(request)
        if isinstance(matched, web.StreamResponse):
            return matched
        handler, args = matched
        request_id = uuid.uuid4().hex[:20]
        try:
            if request.headers.get("User-Agent", "").startswith("Mozilla/"):
                response: web.StreamResponse = plain_error("User agent not allowed", 403)
            else:
                response = await handler(request, *args)
        except ApiError as exc:
            response = error_response(exc.message, exc.status)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let one request take the server down
            log.exception("request failed")
            self.emit("request_failed", method=request.method, path=request.path, error=repr(exc))
            response = error_response(f"internal error: {exc}", 500)
        response.headers["X-Toxiproxy-Request-Id"] = request_id
        return response

    def _route(self, request: web.BaseRequest) -> "tuple[Handler, list[str]] | web.Response":
        """The handler and path arguments, or the 404/405 answer when no route matches."""
        parts = tuple(request.path.split("/")[1:])
        for pattern, methods in self.routes:
            if len(pattern) != len(parts):
                continue
            args = []
            for want, got in zip(pattern, parts):
                if want == "*":
                    if not got:
                        break
                    args.append(got)
                elif want != got:
                    break
            else:
                handler = methods.get(request.method)
                if handler is None:
                    return web.Response(status=405)
                return handler, args
        return plain_error("404 page not found", 404)

    async def _body(self, request: web.BaseRequest) -> bytes:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise ERR_TOO_LARGE
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ERR_TOO_LARGE from None

    def _proxy(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ERR_PROXY_NOT_FOUND
        return proxy

    def new_proxy(self, name: str, listen: str, upstream: str) -> Proxy:
        return Proxy(name, listen, upstream, seed=self.seed, clock=self.clock, emit=self.emit)

    # --- proxies --------------------------------------------------------------
    async def proxy_index(self, request: web.BaseRequest) -> web.Response:
        return json_response({n: self.proxies[n].to_json() for n in sorted(self.proxies)})

    async def proxy_create(self, request: web.BaseRequest) -> web.Response:
        obj = _object(_decode(await self._body(request)), "api.proxyToxics")
        values = {"listen": "", "enabled": True}
        values.update(_fields(obj, _PROXY_FIELDS, "proxyToxics"))
        if not values.get("name"):
            raise ApiError("missing required field: name", 400)
        if not values.get("upstream"):
            raise ApiError("missing required field: upstream", 400)
        async with self.lock:
            if values["name"] in self.proxies:
                raise ERR_PROXY_EXISTS
            proxy = self.new_proxy(values["name"], values["listen"], values["upstream"])
            if values["enabled"]:
                await self._start(proxy)
            self.proxies[proxy.name] = proxy
        self.emit("proxy_created", proxy=proxy.name, listen=proxy.listen, upstream=proxy.upstream)
        return json_response(proxy.to_json(), 201)

    async def _start(self, proxy: Proxy) -> None:
        try:
            await proxy.start()
        except ProxyError as exc:
            raise ApiError(str(exc), 500) from None

    async def proxy_show(self, request: web.BaseRequest, name: str) -> web.Response:
        return json_response(self._proxy(name).to_json())

    async def proxy_update(self, request: web.BaseRequest, name: str) -> web.Response:
        async with self.lock:
            proxy = self._proxy(name)
            obj = _object(_decode(await self._body(request)), "api.proxyToxics")
            values = {"listen": proxy.listen, "upstream": proxy.upstream, "enabled": proxy.enabled}
            values.update(_fields(obj, _PROXY_FIELDS, "proxyToxics"))
            if request.method == "POST":
                self.emit("deprecated_method", method="POST", path=request.path, use="PATCH")
            try:
                if await proxy.differs(values["listen"], values["upstream"]):
                    proxy.stop()
                    proxy.listen, proxy.upstream = values["listen"], values["upstream"]
                if values["enabled"] != proxy.enabled:
                    if values["enabled"]:
                        await proxy.start()
                    else:
                        proxy.stop()
            except ProxyError as exc:
                raise ApiError(str(exc), 500) from None
            return json_response(proxy.to_json())

    async def proxy_delete(self, request: web.BaseRequest, name: str) -> web.Response:
        async with self.lock:
            proxy = self._proxy(name)
            proxy.stop()
            del self.proxies[name]
        self.emit("proxy_deleted", proxy=name)
        return web.Response(status=204)

    # --- populate / reset -----------------------------------------------------
    async def populate(self, request: web.BaseRequest) -> web.Response:
        created: list[Proxy] = []

        def answer(error: Optional[ApiError]) -> web.Response:
            listed = [p.to_json() for p in created] or None
            body: dict[str, Any] = {}
            if error is not None:
                body.update({"error": error.message, "status": error.status})
            body["proxies"] = listed
            return json_response(body, error.status if error is not None else 201)

        try:
            await self.populate_entries(_decode(await self._body(request)), created)
        except ApiError as exc:
            return answer(exc)
        return answer(None)

    async def populate_entries(self, value: Any, created: list[Proxy]) -> list[Proxy]:
        """The /populate semantics (also used for `-config`); fills `created` as it goes."""
        if value is None:
            return created
        if not isinstance(value, list):
            raise bad_body(f"json: cannot unmarshal {gojson.json_kind(value)} into Go value of "
                           "type []proxy.Proxy")
        wanted: list[dict[str, Any]] = []
        for entry in value:
            values = {"listen": "", "enabled": True}
            values.update(_fields(_object(entry, "proxy.Proxy"), _PROXY_FIELDS, "Proxy"))
            wanted.append(values)
        for i, values in enumerate(wanted, 1):
            for field in ("name", "upstream"):
                if not values.get(field):
                    raise ApiError(f"missing required field: {field} at proxy {i}", 400)
        async with self.lock:
            for values in wanted:
                existing = self.proxies.get(values["name"])
                if existing is not None:
                    try:
                        differs = await existing.differs(values["listen"], values["upstream"])
                    except ProxyError as exc:
                        raise ApiError(str(exc), 500) from None
                    if not differs:
                        created.append(existing)
                        continue
                    existing.stop()
                    del self.proxies[existing.name]
                proxy = self.new_proxy(values["name"], values["listen"], values["upstream"])
                if values["enabled"]:
                    await self._start(proxy)
                self.proxies[proxy.name] = proxy
                created.append(proxy)
        return created

    async def reset(self, request: web.BaseRequest) -> web.Response:
        async with self.lock:
            for name in sorted(self.proxies):
                proxy = self.proxies[name]
                await self._start(proxy)
                proxy.remove_all_toxics()
        self.emit("reset_done", proxies=len(self.proxies))
        return web.Response(status=204)

    # --- toxics ---------------------------------------------------------------
    async def toxic_index(self, request: web.BaseRequest, name: str) -> web.Response:
        proxy = self._proxy(name)
        return json_response([w.to_json() for w in proxy.toxics["upstream"] + proxy.toxics["downstream"]])

    async def toxic_create(self, request: web.BaseRequest, name: str) -> web.Response:
        async with self.lock:
            proxy = self._proxy(name)
            obj = _object(_decode(await self._body(request)), "toxics.ToxicWrapper")
            values: dict[str, Any] = {"name": "", "type": "", "stream": "downstream", "toxicity": 1.0,
                                      "attributes": None}
            values.update(_fields(obj, _TOXIC_FIELDS, "ToxicWrapper"))
            attributes = values["attributes"]
            if attributes is not None and not isinstance(attributes, dict):
                raise bad_body(f"json: cannot unmarshal {gojson.json_kind(attributes)} into Go struct "
                               "field ToxicWrapper.attributes of type toxics.NoopToxic")
            direction = values["stream"].lower()
            if direction not in ("upstream", "downstream"):
                raise ERR_INVALID_STREAM
            toxic_name = values["name"] or f"{values['type']}_{values['stream']}"
            cls = toxic_class(values["type"])
            if cls is None:
                raise ERR_INVALID_TOXIC
            if proxy.find_toxic(toxic_name) is not None:
                raise ERR_TOXIC_EXISTS
            toxic = self._build(cls, attributes, None)
            wrapper = ToxicWrapper(toxic_name, values["type"], values["stream"], direction,
                                   values["toxicity"], toxic)
            proxy.add_toxic(wrapper)
        self.emit("toxic_added", proxy=name, toxic=toxic_name, type=wrapper.type,
                  stream=wrapper.stream, toxicity=wrapper.toxicity, attributes=toxic.to_json())
        return json_response(wrapper.to_json(), 200)

    @staticmethod
    def _build(cls: type[Toxic], attributes: Any, base: Optional[Toxic]) -> Toxic:
        try:
            return cls.decode(attributes, base)
        except DecodeError as exc:
            raise bad_body(str(exc)) from None
        except InvalidAttributes as exc:
            raise bad_body(str(exc)) from None

    def _toxic(self, proxy: Proxy, name: str) -> ToxicWrapper:
        wrapper = proxy.find_toxic(name)
        if wrapper is None:
            raise ERR_TOXIC_NOT_FOUND
        return wrapper

    async def toxic_show(self, request: web.BaseRequest, name: str, toxic: str) -> web.Response:
        return json_response(self._toxic(self._proxy(name), toxic).to_json())

    async def toxic_update(self, request: web.BaseRequest, name: str, toxic: str) -> web.Response:
        async with self.lock:
            proxy = self._proxy(name)
            old = self._toxic(proxy, toxic)
            obj = _object(_decode(await self._body(request)), "toxics.ToxicWrapper")
            values = _fields(obj, {"toxicity": as_float32, "attributes": lambda v, w: v},
                             "ToxicWrapper")
            new_toxic = self._build(type(old.toxic), values.get("attributes"), old.toxic)
            new = ToxicWrapper(old.name, old.type, old.stream, old.direction,
                               values.get("toxicity", old.toxicity), new_toxic)
            proxy.update_toxic(old, new)
        self.emit("toxic_updated", proxy=name, toxic=toxic, toxicity=new.toxicity,
                  attributes=new_toxic.to_json())
        return json_response(new.to_json())

    async def toxic_delete(self, request: web.BaseRequest, name: str, toxic: str) -> web.Response:
        async with self.lock:
            proxy = self._proxy(name)
            proxy.remove_toxic(self._toxic(proxy, toxic))
        self.emit("toxic_removed", proxy=name, toxic=toxic)
        return web.Response(status=204)

    # --- misc -------------------------------------------------------------------
    async def version(self, request: web.BaseRequest) -> web.Response:
        return web.Response(body=f'{{"version": "{VERSION}"}}\n'.encode(),
                            headers={"Content-Type": "application/json;charset=utf-8"})

    async def metrics_text(self, request: web.BaseRequest) -> web.Response:
        lines: list[str] = []
        for metric, attr, what in (("received", "received", "read from the source"),
                                   ("sent", "bytes", "written to the destination")):
            name = f"toxiproxy_proxy_{metric}_bytes_total"
            lines += [f"# HELP {name} Bytes {what}, counted when a connection closes.",
                      f"# TYPE {name} counter"]
            for pname in sorted(self.proxies):
                p = self.proxies[pname]
                for direction in ("downstream", "upstream"):
                    lines.append(f'{name}{{direction="{direction}",listener="{p.listen}",'
                                 f'proxy="{p.name}",upstream="{p.upstream}"}} '
                                 f"{getattr(p, attr)[direction]}")
        return web.Response(body=("\n".join(lines) + "\n").encode(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    # --- shutdown -------------------------------------------------------------------
    def close_all(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
