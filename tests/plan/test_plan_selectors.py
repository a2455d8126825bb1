"""Selector resolution against a cluster view, with a seeded RNG."""
from __future__ import annotations

import random

import pytest

from chaos.plan import ClusterView, Role, Selector, SelectorError, resolve

VIEW = ClusterView(leader=2, followers=(1, 3, 4, 5), observers=(6,), live=(1, 2, 3, 4, 5, 6),
                   previous=(2,), sids=(1, 2, 3, 4, 5, 6, 7))


@pytest.mark.parametrize("selector,expected", [
    (Selector.role("leader"), (2,)),
    (Selector.role("followers"), (1, 3, 4, 5)),
    (Selector.role("observers"), (6,)),
    (Selector.role("observer"), (6,)),
    (Selector.role("all"), (1, 2, 3, 4, 5, 6, 7)),
    (Selector.role("others"), (1, 3, 4, 5, 6, 7)),
    (Selector.sid(4), (4,)),
    (Selector.sid(7), (7,)),  # a dead node is still addressable by sid
    (Selector.name("victim"), (3, 5)),
])
def test_resolution_table(selector, expected):
    assert resolve(selector, VIEW, random.Random(1), {"victim": (5, 3, 3)}) == expected


def test_follower_is_one_of_the_followers_and_seeded():
    picks = {resolve(Selector.role("follower"), VIEW, random.Random(seed))[0] for seed in range(50)}
    assert picks == {1, 3, 4, 5}
    a = [resolve(Selector.role("follower"), VIEW, random.Random(9)) for _ in range(3)]
    assert len(set(a)) == 1


def test_any_picks_only_live_nodes():
    picks = {resolve(Selector.role(Role.ANY), VIEW, random.Random(s))[0] for s in range(80)}
    assert picks == set(VIEW.live)


def test_pick_does_not_depend_on_candidate_order():
    shuffled = ClusterView(leader=2, followers=(5, 4, 3, 1), live=VIEW.live)
    for seed in range(20):
        assert resolve(Selector.role("follower"), VIEW, random.Random(seed)) == \
            resolve(Selector.role("follower"), shuffled, random.Random(seed))


@pytest.mark.parametrize("selector,view,why", [
    (Selector.role("leader"), ClusterView(leader=None, followers=(), live=(1, 2, 3)), "no leader"),
    (Selector.role("follower"), ClusterView(leader=1, live=(1,)), "no follower"),
    (Selector.role("observer"), ClusterView(leader=1, followers=(2,)), "no observer"),
    (Selector.name("ghost"), VIEW, "not bound"),
])
def test_singular_selectors_raise_when_nothing_matches(selector, view, why):
    with pytest.raises(SelectorError, match=why):
        resolve(selector, view, random.Random(0), {})


def test_plural_selectors_may_be_empty():
    view = ClusterView(leader=None, live=(1, 2))
    assert resolve(Selector.role("followers"), view, random.Random(0)) == ()


def test_all_defaults_to_every_node_the_view_knows():
    view = ClusterView(leader=3, followers=(1,), observers=(4,), live=(1, 3, 4, 2))
    assert resolve(Selector.role("all"), view, random.Random(0)) == (1, 2, 3, 4)


def test_resolve_links_one_and_both_directions():
    from chaos.plan import Direction, LinkSelector, Port, resolve_links
    view = ClusterView(leader=1, followers=(2, 3), live=(1, 2, 3), sids=(1, 2, 3))
    one = LinkSelector(Selector.role("leader"), Selector.role("followers"), Port.ELECTION,
                       Direction.ONE)
    assert resolve_links(one, view, random.Random(0)) == ((1, 2, "election"), (1, 3, "election"))
    both = LinkSelector(Selector.role("leader"), Selector.sid(3), Port.BOTH, Direction.BOTH)
    assert resolve_links(both, view, random.Random(0)) == (
        (1, 3, "election"), (1, 3, "quorum"), (3, 1, "election"), (3, 1, "quorum"))
    everyone = LinkSelector(Selector.role("all"), Selector.role("all"))
    assert len(resolve_links(everyone, view, random.Random(0))) == 6  # no self-links
