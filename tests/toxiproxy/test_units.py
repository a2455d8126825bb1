"""Pure pieces: Go-style JSON decoding and slicer cuts (no sockets)."""
from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos.toxiproxy import gojson
from chaos.toxiproxy.toxics import REGISTRY, InvalidAttributes
from chaos.toxiproxy.toxics.slicer import SlicerToxic


@pytest.mark.parametrize("body,value", [(b'{"a":1} trailing', {"a": 1}), (b"  [1]", [1]), (b"null", None)])
def test_decoder_reads_only_the_first_value(body, value):
    assert gojson.decode_value(body) == value


@pytest.mark.parametrize("body", [b"", b"   ", b"{", b"x", b"\xff"])
def test_decoder_errors(body):
    with pytest.raises(gojson.DecodeError):
        gojson.decode_value(body)


def test_int64_rejects_bools_floats_and_overflow():
    for bad in (True, 1.0, 2 ** 63, "1", None):
        with pytest.raises(gojson.DecodeError):
            gojson.as_int64(bad, "X.y")
    assert gojson.as_int64(-(2 ** 63), "X.y") == -(2 ** 63)


def test_dumps_prints_go_style():
    assert gojson.dumps({"t": 1.0, "u": 0.5, "s": "<&>"}) == '{"t":1,"u":0.5,"s":"\\u003c\\u0026\\u003e"}'


def test_every_toxic_serialises_all_its_attributes_with_zero_defaults():
    assert {name: cls().to_json() for name, cls in REGISTRY.items() if name != "slicer"} == {
        "noop": {}, "latency": {"latency": 0, "jitter": 0}, "bandwidth": {"rate": 0},
        "slow_close": {"delay": 0}, "timeout": {"timeout": 0}, "reset_peer": {"timeout": 0},
        "limit_data": {"bytes": 0}}


def test_decode_merges_into_base_case_insensitively():
    base = REGISTRY["latency"].decode({"latency": 5, "jitter": 2})
    new = REGISTRY["latency"].decode({"JITTER": 9, "unknown": "x", "latency": None}, base)
    assert new.to_json() == {"latency": 5, "jitter": 9} and base.to_json() == {"latency": 5, "jitter": 2}


@pytest.mark.parametrize("attrs", [{}, {"average_size": -1}, {"average_size": 3, "size_variation": 4},
                                   {"average_size": 3, "size_variation": -1}])
def test_slicer_refuses_attributes_it_cannot_run_with(attrs):
    with pytest.raises(InvalidAttributes):
        SlicerToxic.decode(attrs)


@given(size=st.integers(0, 5000), avg=st.integers(1, 300), var_frac=st.floats(0, 1), seed=st.integers(0, 99))
def test_slicer_cuts_cover_the_chunk_in_bounded_pieces(size, avg, var_frac, seed):
    var = int(avg * var_frac)
    toxic = SlicerToxic.decode({"average_size": avg, "size_variation": var})
    cuts = toxic.cuts(size, random.Random(seed))
    assert cuts[0] == 0 and cuts[-1] == size
    pieces = [b - a for a, b in zip(cuts, cuts[1:])]
    assert all(0 < p <= avg + var for p in pieces) or size == 0
