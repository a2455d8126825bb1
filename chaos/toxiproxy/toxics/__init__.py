"""Toxic registry: every toxic type by the name the API uses.

The registry must hold exactly the types of `chaos.toxiproxy.catalog`, each
with the catalog's attributes; importing this package fails otherwise, so the
embedded server, the catalog and what plans are validated against cannot drift.
"""
from __future__ import annotations

import typing
from typing import Mapping

from ..catalog import TOXIC_TYPES, ToxicType
from .bandwidth import BandwidthToxic
from .base import InvalidAttributes, Toxic
from .latency import LatencyToxic
from .limit_data import LimitDataToxic
from .noop import NoopToxic
from .reset_peer import ResetPeerToxic
from .slicer import SlicerToxic
from .slow_close import SlowCloseToxic
from .timeout import TimeoutToxic

__all__ = ["REGISTRY", "NOOP", "Toxic", "InvalidAttributes", "CatalogMismatch", "toxic_class",
           "catalog_problems"]


class CatalogMismatch(RuntimeError):
    """The toxic classes disagree with the catalog: fix whichever one is wrong."""


def _annotated(cls: type[Toxic]) -> tuple[str, ...]:
    """Instance attributes the class itself declares (`rate: int`), ClassVars aside."""
    own = cls.__dict__.get("__annotations__", {})
    return tuple(name for name, hint in own.items()
                 if not (isinstance(hint, str) and hint.startswith(("ClassVar", "typing.ClassVar")))
                 and typing.get_origin(hint) is not typing.ClassVar)


def catalog_problems(registry: Mapping[str, type[Toxic]],
                     catalog: Mapping[str, ToxicType] = TOXIC_TYPES) -> list[str]:
    """Every way `registry` and `catalog` disagree; empty when they match."""
    problems = [f"catalog type {name!r} has no toxic class" for name in catalog if name not in registry]
    for name, cls in registry.items():
        spec = catalog.get(name)
        if spec is None:
            problems.append(f"{cls.__name__} is registered as {name!r}, which the catalog lacks")
            continue
        if cls.type_name != name:
            problems.append(f"{cls.__name__} is registered as {name!r} but names {cls.type_name!r}")
        for what, names in (("parses", cls.fields), ("declares", _annotated(cls))):
            if tuple(names) != spec.attribute_names:
                problems.append(f"{cls.__name__} {what} attributes {list(names)}, the catalog "
                                f"has {list(spec.attribute_names)} for {name!r}")
    return problems


REGISTRY: dict[str, type[Toxic]] = {
    cls.type_name: cls
    for cls in (LatencyToxic, BandwidthToxic, SlowCloseToxic, TimeoutToxic, ResetPeerToxic,
                SlicerToxic, LimitDataToxic, NoopToxic)
}

_problems = catalog_problems(REGISTRY)
if _problems:
    raise CatalogMismatch("; ".join(_problems))

NOOP = NoopToxic()


def toxic_class(type_name: str) -> type[Toxic] | None:
    return REGISTRY.get(type_name)
