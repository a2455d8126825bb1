"""The toxic catalog: the 2.12 set, agreement with the embedded registry, and
that a toxic added on one side only is caught."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

import pytest

from chaos.toxiproxy.catalog import TOXIC_TYPES, AttributeSpec, ToxicType, Unit
from chaos.toxiproxy.toxics import REGISTRY, Toxic, catalog_problems

ROOT = Path(__file__).resolve().parents[2]


def test_catalog_is_the_toxiproxy_2_12_set():
    assert set(TOXIC_TYPES) == {"latency", "bandwidth", "slow_close", "timeout", "reset_peer",
                                "slicer", "limit_data", "noop"}
    assert "down" not in TOXIC_TYPES  # a plan-level fault, not a server toxic
    assert all(a.default == 0 for t in TOXIC_TYPES.values() for a in t.attributes)
    assert TOXIC_TYPES["slicer"].attribute("delay").unit is Unit.US
    assert TOXIC_TYPES["bandwidth"].attribute("rate").unit is Unit.KB_PER_S
    assert TOXIC_TYPES["reset_peer"].go_struct == "ResetToxic"
    assert TOXIC_TYPES["slicer"].required == ("average_size",)
    assert Unit.MS.seconds == 1e-3 and Unit.US.seconds == 1e-6 and Unit.BYTES.seconds is None


def test_catalog_imports_nothing_heavy():
    code = ("import sys, chaos.toxiproxy.catalog; "
            "bad = {'aiohttp', 'asyncio', 'requests', 'chaos.toxiproxy.toxics'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_registry_and_catalog_agree():
    assert catalog_problems(REGISTRY) == []
    for name, cls in REGISTRY.items():
        spec = TOXIC_TYPES[name]
        assert cls.fields == spec.attribute_names and cls.go_struct == spec.go_struct
        assert cls().to_json() == spec.defaults


def _catalog(*changed: ToxicType, drop: str = "") -> MappingProxyType:
    types = {n: t for n, t in TOXIC_TYPES.items() if n != drop}
    types.update({t.name: t for t in changed})
    return MappingProxyType(types)


def test_a_catalog_type_without_a_class_is_caught():
    extra = ToxicType("packet_loss", "PacketLossToxic", "drop chunks",
                      (AttributeSpec("loss_rate", Unit.BYTES, "x"),))
    assert catalog_problems(REGISTRY, _catalog(extra)) == ["catalog type 'packet_loss' has no toxic class"]


def test_importing_the_registry_fails_when_the_catalog_has_a_type_it_lacks():
    code = ("import types, chaos.toxiproxy.catalog as c; "
            "c.TOXIC_TYPES = types.MappingProxyType({**c.TOXIC_TYPES, "
            "'packet_loss': c.ToxicType('packet_loss', 'PacketLossToxic', 'x')}); "
            "import chaos.toxiproxy.toxics")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0
    assert "CatalogMismatch: catalog type 'packet_loss' has no toxic class" in r.stderr


def test_a_class_the_catalog_lacks_is_caught():
    problems = catalog_problems(REGISTRY, _catalog(drop="slicer"))
    assert problems == ["SlicerToxic is registered as 'slicer', which the catalog lacks"]


def test_attribute_drift_is_caught():
    latency = ToxicType("latency", "LatencyToxic", "x", (AttributeSpec("latency", Unit.MS, "x"),))
    problems = catalog_problems(REGISTRY, _catalog(latency))
    assert len(problems) == 2 and all(p.startswith("LatencyToxic ") for p in problems)


def test_a_class_for_a_type_the_catalog_lacks_cannot_be_defined():
    with pytest.raises(TypeError, match="not in chaos.toxiproxy.catalog"):
        class PacketLossToxic(Toxic):
            type_name = "packet_loss"


def test_a_class_declaring_an_attribute_the_catalog_lacks_is_caught():
    class LatencyWithSpike(Toxic):
        type_name = "latency"
        latency: int
        jitter: int
        spike: int

    problems = catalog_problems({"latency": LatencyWithSpike})
    assert [p for p in problems if "declares" in p] == [
        "LatencyWithSpike declares attributes ['latency', 'jitter', 'spike'], "
        "the catalog has ['latency', 'jitter'] for 'latency'"]


def _sample(spec: ToxicType) -> dict[str, int]:
    """Harmless non-zero values (slicer's average_size must exceed its variation)."""
    return {a.name: 2 if a.name == "average_size" else 1 for a in spec.attributes}


@pytest.mark.parametrize("type_name", sorted(TOXIC_TYPES))
def test_the_server_has_every_catalog_type_with_its_attributes(target, make_proxy, type_name):
    """Run against the binary too: the catalog describes toxiproxy-server 2.12 itself."""
    spec = TOXIC_TYPES[type_name]
    p = make_proxy()
    r = target.req("POST", f"/proxies/{p['name']}/toxics",
                   {"type": type_name, "stream": "upstream", "attributes": _sample(spec)})
    assert r.status_code == 200, r.text
    attributes = r.json()["attributes"]
    assert list(attributes) == list(spec.attribute_names)
    assert attributes == _sample(spec)
