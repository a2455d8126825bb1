"""Toxic registry: every toxic type by the name the API uses."""
from __future__ import annotations

from .bandwidth import BandwidthToxic
from .base import InvalidAttributes, Toxic
from .latency import LatencyToxic
from .limit_data import LimitDataToxic
from .noop import NoopToxic
from .reset_peer import ResetPeerToxic
from .slicer import SlicerToxic
from .slow_close import SlowCloseToxic
from .timeout import TimeoutToxic

__all__ = ["REGISTRY", "NOOP", "Toxic", "InvalidAttributes", "toxic_class"]

REGISTRY: dict[str, type[Toxic]] = {}


def register(cls: type[Toxic]) -> type[Toxic]:
    REGISTRY[cls.type_name] = cls
    return cls


for _cls in (NoopToxic, LatencyToxic, BandwidthToxic, SlowCloseToxic, TimeoutToxic,
             ResetPeerToxic, SlicerToxic, LimitDataToxic):
    register(_cls)

NOOP = NoopToxic()


def toxic_class(type_name: str) -> type[Toxic] | None:
    return REGISTRY.get(type_name)
