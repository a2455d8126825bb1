"""Decode request bodies the way toxiproxy-server's Go `encoding/json` does.

Clients written against the real server rely on its quirks, so they are kept:
only the first JSON value of a body is read (trailing bytes are ignored),
object keys match struct fields case-insensitively, unknown keys are ignored,
`null` leaves a field unchanged, and a wrongly typed value is an error whose
text names the Go struct field (`json: cannot unmarshal string into Go struct
field SlowCloseToxic.attributes.delay of type int64`).
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable

__all__ = ["DecodeError", "decode_value", "json_kind", "INT64_MIN", "INT64_MAX",
           "as_string", "as_bool", "as_int64", "as_float32", "fields", "dumps"]

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_decoder = json.JSONDecoder()


class DecodeError(ValueError):
    """The body is not valid JSON or a value has the wrong type; text as Go prints it."""


def decode_value(body: bytes) -> Any:
    """The first JSON value in `body` (Go's `json.Decoder.Decode`)."""
    text = body.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        raise DecodeError("EOF")
    try:
        value, _ = _decoder.raw_decode(text)
    except RecursionError:
        raise DecodeError("exceeded max depth") from None
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text):
            raise DecodeError("unexpected EOF") from None
        raise DecodeError(f"invalid character {text[exc.pos]!r} looking for beginning of value"
                          if exc.msg.startswith("Expecting value")
                          else f"invalid character {text[exc.pos]!r} at offset {exc.pos}: {exc.msg}") from None
    return value


def json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _type_error(value: Any, where: str, gotype: str) -> DecodeError:
    return DecodeError(f"json: cannot unmarshal {json_kind(value)} into Go struct field {where} of type {gotype}")


def as_string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _type_error(value, where, "string")
    return value


def as_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _type_error(value, where, "bool")
    return value


def as_int64(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX:
        raise _type_error(value, where, "int64")
    return value


def as_float32(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or abs(value) > 3.4028234663852886e38:
        raise _type_error(value, where, "float32")
    return float(value)


def fields(obj: dict[str, Any], wanted: dict[str, Callable[[Any, str], Any]],
           struct: str) -> dict[str, Any]:
    """Pick `wanted` fields from `obj` (case-insensitive keys, last one wins, nulls skipped)."""
    by_lower = {k.lower(): k for k in wanted}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = by_lower.get(key.lower())
        if name is None or value is None:
            continue
        out[name] = wanted[name](value, f"{struct}.{name}")
    return out


def dumps(value: Any) -> str:
    """Compact JSON with Go's HTML escaping and integral floats printed as integers."""
    text = json.dumps(_go_floats(value), separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _go_floats(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {k: _go_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_floats(v) for v in value]
    return value
