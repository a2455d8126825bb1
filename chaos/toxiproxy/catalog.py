"""The toxic types of Toxiproxy 2.12 and their attributes: the one table.

toxiproxy-server 2.12.0 registers exactly these eight types. Each is a Go
struct whose JSON fields are its attributes; all are integers, and each new
toxic starts from the struct's zero value, so every attribute defaults to 0
and the API requires none of them. Because the set and the shapes are the
real server's, this table describes the binary and any external server as
much as our embedded one: a plan checked against it runs on either.

Who reads it:
- the embedded server: each class in `chaos.toxiproxy.toxics` names its type,
  takes its attribute names from here, and the registry refuses to import if
  the two sets differ;
- plan validation, to know the type names, the attribute names and units, and
  which attributes a plan must state.

`required` is not the server's notion (it requires nothing). It marks the
attributes whose zero value is a different fault from the one the type's name
promises, so that a fault description must give them explicitly: `bandwidth`
rate 0 stalls the stream forever, `timeout` 0 holds the connection forever,
`limit_data` 0 cuts at the first chunk, `slow_close` 0 does nothing, and
`slicer` average_size 0 crashes the real server.

Not here: `down` is a plan-level fault (the orchestrator disables proxies),
not a toxic; `packet_loss` came after 2.12. This module is pure data and
imports nothing from the project, so it is cheap to import anywhere.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Optional

__all__ = ["Unit", "AttributeSpec", "ToxicType", "TOXIC_TYPES"]


class Unit(enum.Enum):
    """What an attribute's integer counts, as toxiproxy-server reads it."""

    MS = "ms"
    US = "µs"
    KB_PER_S = "KB/s"  # 1 KB = 1000 bytes
    BYTES = "bytes"

    @property
    def seconds(self) -> Optional[float]:
        """Seconds per unit for a duration (so `200ms` can be converted), else None."""
        return {Unit.MS: 1e-3, Unit.US: 1e-6}.get(self)


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    name: str
    unit: Unit
    doc: str
    required: bool = False
    default: int = 0  # toxiproxy 2.12: the Go zero value, for every attribute


@dataclass(frozen=True, slots=True)
class ToxicType:
    name: str
    go_struct: str  # named in the server's 400s: `SlowCloseToxic.attributes.delay`
    doc: str
    attributes: tuple[AttributeSpec, ...] = ()

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes if a.required)

    @property
    def defaults(self) -> dict[str, int]:
        return {a.name: a.default for a in self.attributes}

    def attribute(self, name: str) -> Optional[AttributeSpec]:
        for a in self.attributes:
            if a.name == name:
                return a
        return None


def _table(*types: ToxicType) -> Mapping[str, ToxicType]:
    return MappingProxyType({t.name: t for t in types})


TOXIC_TYPES: Mapping[str, ToxicType] = _table(
    ToxicType("latency", "LatencyToxic", "hold each chunk latency ± jitter after it was read", (
        AttributeSpec("latency", Unit.MS, "delay added to every chunk"),
        AttributeSpec("jitter", Unit.MS, "uniform ± variation of the delay"),
    )),
    ToxicType("bandwidth", "BandwidthToxic", "limit throughput", (
        AttributeSpec("rate", Unit.KB_PER_S, "throughput limit; 0 stalls the stream forever",
                      required=True),
    )),
    ToxicType("slow_close", "SlowCloseToxic", "delay the close after the stream ends", (
        AttributeSpec("delay", Unit.MS, "how late the close follows the end of the stream; "
                      "0 does nothing", required=True),
    )),
    ToxicType("timeout", "TimeoutToxic", "drop all data, close after a quiet timeout", (
        AttributeSpec("timeout", Unit.MS, "close after this long without data; "
                      "0 holds the connection forever", required=True),
    )),
    ToxicType("reset_peer", "ResetToxic", "on the first data, wait, then reset the connection", (
        AttributeSpec("timeout", Unit.MS, "wait between the first data and the reset"),
    )),
    ToxicType("slicer", "SlicerToxic", "cut each chunk into small pieces", (
        AttributeSpec("average_size", Unit.BYTES, "mean piece size; 0 crashes toxiproxy-server",
                      required=True),
        AttributeSpec("size_variation", Unit.BYTES, "± variation of the piece size, "
                      "at most average_size"),
        AttributeSpec("delay", Unit.US, "pause between pieces"),
    )),
    ToxicType("limit_data", "LimitDataToxic", "close after this many bytes on the link", (
        AttributeSpec("bytes", Unit.BYTES, "bytes forwarded before the close; "
                      "0 closes at the first chunk", required=True),
    )),
    ToxicType("noop", "NoopToxic", "pass everything through (registered, so creatable)"),
)
