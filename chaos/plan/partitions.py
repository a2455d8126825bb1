"""Partition specs compiled into who-cannot-reach-whom.

Pure: given the sids, the current leader and the run's seeded RNG, a spec
becomes a set of directed (src, dst) pairs meaning "bytes from src do not
reach dst". Symmetric cuts list both directions. The runner turns each pair
into toxics on the proxied link(s) of `spec.port`.

Shapes (the last two after Jepsen's nemeses):

- isolate: the target(s) on one side, everyone else on the other.
- majority_minority: a random minority (fewer than half) and the rest;
  `leader_in` puts the current leader on the chosen side.
- halves: shuffled, cut in two (the second half is the larger one).
- bridge: two halves plus one node that both halves still reach, and that
  reaches both; the halves cannot reach each other. Needs 3+ nodes.
- majorities_ring: nodes on a shuffled ring; each node hears from the window
  of a majority around itself. Every node hears from a majority and is heard by
  a majority, and no two nodes hear from the same set. The cut is symmetric
  when the majority size is odd (n = 4, 5, 8, 9, ...). Needs 3+ nodes.
- one_way: `src` cannot reach `dst`; the reverse direction stays up.
- groups: explicit components; nothing crosses between them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from .model import PartitionKind, PartitionSpec
from .selectors import ClusterView, resolve

__all__ = ["CompiledPartition", "PartitionError", "compile_partition", "majority"]


class PartitionError(Exception):
    """The spec cannot be applied to this cluster (too few nodes, no leader to
    place); the runner records the step as failed."""


def majority(n: int) -> int:
    return n // 2 + 1


@dataclass(frozen=True, slots=True)
class CompiledPartition:
    """`blocked`: directed (src, dst) pairs cut. `components`: the sides, when
    the cut is a plain split (None for bridge / majorities_ring / one_way)."""

    sids: tuple[int, ...]
    blocked: frozenset[tuple[int, int]]
    components: tuple[tuple[int, ...], ...] | None = None
    description: str = ""

    def reaches(self, src: int, dst: int) -> bool:
        return src == dst or (src, dst) not in self.blocked

    def heard_by(self, dst: int) -> frozenset[int]:
        """The sids whose bytes reach `dst` (itself included)."""
        return frozenset(s for s in self.sids if self.reaches(s, dst))

    def reached_from(self, src: int) -> frozenset[int]:
        return frozenset(d for d in self.sids if self.reaches(src, d))

    def is_symmetric(self) -> bool:
        return all((b, a) in self.blocked for a, b in self.blocked)

    def to_json(self) -> dict:
        return {"blocked": sorted([a, b] for a, b in self.blocked),
                "components": [list(c) for c in self.components] if self.components else None,
                "description": self.description}


def _split(sids: Sequence[int], groups: Iterable[Iterable[int]], what: str) -> CompiledPartition:
    comps = tuple(tuple(sorted(g)) for g in groups if g)
    side = {s: i for i, comp in enumerate(comps) for s in comp}
    blocked = frozenset((a, b) for a in sids for b in sids
                        if a != b and side.get(a) != side.get(b))
    desc = " | ".join(",".join(map(str, c)) for c in comps)
    return CompiledPartition(tuple(sorted(sids)), blocked, comps, f"{what}: {desc}")


def compile_partition(spec: PartitionSpec, sids: Sequence[int], leader: int | None,
                      rng: random.Random, *, view: ClusterView | None = None,
                      bindings: Mapping[str, tuple[int, ...]] | None = None,
                      voters: Sequence[int] | None = None) -> CompiledPartition:
    """Compile `spec` for the nodes `sids`. `view` and `bindings` resolve the
    selectors of isolate / one_way (a view of just `sids` and `leader` is used
    when none is given). `voters` (e.g. `ensemble.voters`) makes
    majority_minority count only voters; the others (observers, zero-weight
    participants) stay with the majority."""
    sids = tuple(sorted(set(sids)))
    n = len(sids)
    if view is None:
        view = ClusterView(leader=leader, followers=tuple(s for s in sids if s != leader),
                           live=sids, sids=sids)
    kind = spec.kind
    if kind is PartitionKind.ISOLATE:
        assert spec.target is not None
        target = set(resolve(spec.target, view, rng, bindings)) & set(sids)
        if not target:
            raise PartitionError(f"isolate: '{spec.target}' matches no node")
        return _split(sids, [sorted(target), [s for s in sids if s not in target]], "isolate")
    if kind is PartitionKind.GROUPS:
        assert spec.groups is not None
        listed = {s for g in spec.groups for s in g}
        rest = [s for s in sids if s not in listed]
        return _split(sids, [*spec.groups, rest], "groups")
    if kind is PartitionKind.ONE_WAY:
        assert spec.src is not None and spec.dst is not None
        src = resolve(spec.src, view, rng, bindings)
        dst = resolve(spec.dst, view, rng, bindings)
        blocked = frozenset((a, b) for a in src for b in dst if a != b)
        return CompiledPartition(sids, blocked, None, f"one_way: {src} -/-> {dst}")
    if n < 2:
        raise PartitionError(f"{kind.value} needs at least 2 nodes, got {n}")
    shuffled = list(sids)
    rng.shuffle(shuffled)
    if kind is PartitionKind.MAJORITY_MINORITY:
        counted = [s for s in shuffled if voters is None or s in set(voters)]
        bystanders = [s for s in shuffled if s not in counted]
        small = (len(counted) - 1) // 2
        if small == 0:
            raise PartitionError(f"majority_minority needs at least 3 voters, got {len(counted)}")
        if spec.leader_in is not None:
            if leader is None or leader not in counted:
                raise PartitionError(f"majority_minority: leader_in {spec.leader_in} "
                                     "but there is no leader right now")
            counted.remove(leader)
            counted.insert(0 if spec.leader_in == "minority" else len(counted), leader)
        return _split(sids, [counted[:small], counted[small:] + bystanders], "majority_minority")
    if kind is PartitionKind.HALVES:
        half = n // 2
        return _split(sids, [shuffled[:half], shuffled[half:]], "halves")
    if n < 3:
        raise PartitionError(f"{kind.value} needs at least 3 nodes, got {n}")
    if kind is PartitionKind.BRIDGE:
        half = n // 2
        left, bridge, right = shuffled[:half], shuffled[half], shuffled[half + 1:]
        if not left or not right:  # pragma: no cover - n >= 3 guarantees both
            raise PartitionError("bridge needs two non-empty halves")
        blocked = frozenset({(a, b) for a in left for b in right}
                            | {(b, a) for a in left for b in right})
        return CompiledPartition(
            sids, blocked, None,
            f"bridge: {sorted(left)} <-> {bridge} <-> {sorted(right)}")
    if kind is PartitionKind.MAJORITIES_RING:
        m = majority(n)
        back = (m - 1) // 2
        heard: dict[int, set[int]] = {}
        for i, dst in enumerate(shuffled):
            heard[dst] = {shuffled[(i + d) % n] for d in range(-back, m - back)}
        blocked = frozenset((src, dst) for dst in sids for src in sids
                            if src != dst and src not in heard[dst])
        return CompiledPartition(sids, blocked, None,
                                 f"majorities_ring: ring {shuffled}, windows of {m}")
    raise AssertionError(f"unhandled partition kind {kind!r}")  # pragma: no cover
