"""Partition compilation: tables for the simple shapes, properties for bridge and majorities_ring."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaos.plan import (PartitionError, PartitionKind, PartitionSpec, Selector, compile_partition,
                        majority)


def spec(kind: str, **kw) -> PartitionSpec:
    return PartitionSpec(kind=PartitionKind(kind), **kw)


def sides(cut) -> list[set[int]]:
    return sorted((set(c) for c in cut.components), key=lambda c: (len(c), sorted(c)))


def test_isolate_leader_is_symmetric_both_ways():
    cut = compile_partition(spec("isolate", target=Selector.role("leader")), [1, 2, 3], 2,
                            random.Random(0))
    assert cut.blocked == {(2, 1), (1, 2), (2, 3), (3, 2)}
    assert cut.reaches(1, 3) and cut.reaches(3, 1) and cut.is_symmetric()
    assert sides(cut) == [{2}, {1, 3}]


def test_isolate_a_bound_name():
    cut = compile_partition(spec("isolate", target=Selector.name("pair")), [1, 2, 3, 4, 5], 1,
                            random.Random(0), bindings={"pair": (4, 5)})
    assert sides(cut) == [{4, 5}, {1, 2, 3}]


@pytest.mark.parametrize("n,small", [(3, 1), (4, 1), (5, 2), (6, 2), (7, 3)])
@pytest.mark.parametrize("leader_in", ["minority", "majority"])
def test_majority_minority_places_the_leader(n, small, leader_in):
    sids = list(range(1, n + 1))
    for seed in range(10):
        cut = compile_partition(spec("majority_minority", leader_in=leader_in), sids, 2,
                                random.Random(seed))
        minority, major = sides(cut)
        assert len(minority) == small and len(major) >= majority(n)
        assert (2 in minority) == (leader_in == "minority")
        assert cut.is_symmetric()


def test_majority_minority_needs_a_leader_to_place():
    with pytest.raises(PartitionError, match="no leader"):
        compile_partition(spec("majority_minority", leader_in="minority"), [1, 2, 3], None,
                          random.Random(0))


@pytest.mark.parametrize("n", range(2, 8))
def test_halves(n):
    cut = compile_partition(spec("halves"), range(1, n + 1), 1, random.Random(n))
    a, b = sides(cut)
    assert (len(a), len(b)) == (n // 2, n - n // 2)
    assert cut.is_symmetric()
    assert all(not cut.reaches(x, y) for x in a for y in b)


def test_one_way_blocks_only_one_direction():
    cut = compile_partition(spec("one_way", src=Selector.role("leader"),
                                 dst=Selector.role("followers")), [1, 2, 3], 1, random.Random(0))
    assert cut.blocked == {(1, 2), (1, 3)}
    assert cut.reaches(2, 1) and cut.reaches(2, 3) and not cut.is_symmetric()


def test_explicit_groups_and_unlisted_nodes_form_one_more_group():
    cut = compile_partition(spec("groups", groups=((1, 2), (3,))), [1, 2, 3, 4, 5], None,
                            random.Random(0))
    assert sides(cut) == [{3}, {1, 2}, {4, 5}]
    assert cut.reaches(4, 5) and not cut.reaches(4, 1) and not cut.reaches(3, 2)


def test_same_seed_same_cut_and_seeds_differ():
    cuts = {compile_partition(spec("halves"), range(1, 6), 1, random.Random(s)).blocked
            for s in range(30)}
    again = compile_partition(spec("halves"), range(1, 6), 1, random.Random(4)).blocked
    assert again == compile_partition(spec("halves"), range(1, 6), 1, random.Random(4)).blocked
    assert len(cuts) > 1


@pytest.mark.parametrize("kind", ["bridge", "majorities_ring", "majority_minority"])
def test_too_few_nodes(kind):
    with pytest.raises(PartitionError, match="at least 3"):
        compile_partition(spec(kind), [1, 2], 1, random.Random(0))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 7), seed=st.integers(0, 2**32))
def test_bridge_properties(n, seed):
    sids = list(range(1, n + 1))
    cut = compile_partition(spec("bridge"), sids, None, random.Random(seed))
    assert cut.is_symmetric()
    bridges = [s for s in sids if cut.reached_from(s) == set(sids)]
    assert len(bridges) == 1
    (bridge,) = bridges
    rest = [s for s in sids if s != bridge]
    # the others fall into exactly two cliques that cannot reach each other
    groups = {frozenset(cut.reached_from(s) - {bridge}) for s in rest}
    assert len(groups) == 2
    a, b = groups
    assert a | b == set(rest) and not a & b
    assert abs(len(a) - len(b)) <= 1
    assert all(cut.reaches(x, bridge) and cut.reaches(bridge, x) for x in rest)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 7), seed=st.integers(0, 2**32))
def test_majorities_ring_properties(n, seed):
    sids = list(range(1, n + 1))
    cut = compile_partition(spec("majorities_ring"), sids, None, random.Random(seed))
    m = majority(n)
    heard = [cut.heard_by(s) for s in sids]
    reached = [cut.reached_from(s) for s in sids]
    assert all(len(h) == m for h in heard), "every node hears from exactly a majority"
    assert all(len(r) == m for r in reached), "every node reaches exactly a majority"
    assert len(set(heard)) == n, "no two nodes hear from the same majority"
    assert cut.blocked, "a majority ring cuts something"
    # with an odd majority the ring window is centred, so the cut is symmetric
    assert cut.is_symmetric() == (m % 2 == 1)


def test_to_json_is_sorted_plain_data():
    cut = compile_partition(spec("isolate", target=Selector.sid(3)), [1, 2, 3], 1,
                            random.Random(0))
    assert cut.to_json()["blocked"] == [[1, 3], [2, 3], [3, 1], [3, 2]]


def test_majority_minority_counts_only_voters():
    # four voters (3 has weight 0, 6 observes): a minority of (4 - 1) // 2 = 1 voter,
    # and the non-voters always stay with the majority
    voters = [1, 2, 4, 5]
    for seed in range(20):
        cut = compile_partition(spec("majority_minority", leader_in="minority"),
                                [1, 2, 3, 4, 5, 6], 4, random.Random(seed), voters=voters)
        minority, major = sides(cut)
        assert minority == {4}
        assert {3, 6} <= major
