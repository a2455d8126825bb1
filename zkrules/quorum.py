"""Quorum verifiers: who votes, how much each vote weighs, what is a quorum.

Pure and immutable. `QuorumMaj` is a plain majority of participants;
`QuorumHierarchical` is ZooKeeper's group/weight scheme (a majority of
groups, each by more than half of its weight). Invalid configurations raise
`ValueError` with the reason, mirroring ZooKeeper's ConfigException cases
(spec §5), so the config loader can report `PATH:LINE: reason`.

Deliberate difference: `weight()` of a sid that is not a voting member is 0
(ZooKeeper returns 1 for QuorumMaj and throws an NPE for hierarchical,
ZK-2988); a weightless sid is never adopted as leader and never counts, which
is what callers want and never crashes a process.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Protocol, runtime_checkable

__all__ = ["QuorumVerifier", "QuorumMaj", "QuorumHierarchical"]


@runtime_checkable
class QuorumVerifier(Protocol):
    voting_members: frozenset[int]
    observers: frozenset[int]

    def weight(self, sid: int) -> int: ...

    def contains_quorum(self, sids: Iterable[int]) -> bool: ...

    def to_config_text(self, addrs: dict[int, str]) -> str: ...


def _check_members(participants: Iterable[int], observers: Iterable[int]) -> tuple[frozenset[int], frozenset[int]]:
    parts = list(participants)
    obs = list(observers)
    for sid in parts + obs:
        if isinstance(sid, bool) or not isinstance(sid, int) or sid < 0:
            raise ValueError(f"server id {sid!r} is not a non-negative integer")
    if len(set(parts)) != len(parts):
        raise ValueError("a participant is listed twice")
    if len(set(obs)) != len(obs):
        raise ValueError("an observer is listed twice")
    voters, observer_set = frozenset(parts), frozenset(obs)
    if not voters:
        raise ValueError("no participants: a quorum needs at least one voting member")
    both = voters & observer_set
    if both:
        raise ValueError(f"server {min(both)} is both a participant and an observer")
    return voters, observer_set


def _server_lines(voters: frozenset[int], observers: frozenset[int], addrs: Mapping[int, str]) -> list[str]:
    """`server.N=host:qport:eport:participant|observer[;client]` in sid order."""
    lines = []
    for sid in sorted(voters | observers):
        if sid not in addrs:
            raise ValueError(f"no address for server {sid}")
        addr, _, client = addrs[sid].partition(";")
        role = "participant" if sid in voters else "observer"
        line = f"server.{sid}={addr}:{role}"
        if client:
            line += f";{client}"
        lines.append(line)
    return lines


class QuorumMaj:
    """Majority of participants: `|S ∩ voters| > len(voters) // 2`."""

    __slots__ = ("voting_members", "observers", "half")

    def __init__(self, participants: Iterable[int], observers: Iterable[int] = ()) -> None:
        self.voting_members, self.observers = _check_members(participants, observers)
        self.half = len(self.voting_members) // 2

    def weight(self, sid: int) -> int:
        return 1 if sid in self.voting_members else 0

    def contains_quorum(self, sids: Iterable[int]) -> bool:
        return len(self.voting_members.intersection(sids)) > self.half

    def to_config_text(self, addrs: dict[int, str]) -> str:
        return "\n".join(_server_lines(self.voting_members, self.observers, addrs) + ["version=0"])

    def __repr__(self) -> str:
        return f"QuorumMaj(participants={sorted(self.voting_members)}, observers={sorted(self.observers)})"


class QuorumHierarchical:
    """ZooKeeper's hierarchical quorums.

    A set is a quorum when, in more than half of the groups that carry weight,
    its members hold more than half of the group's weight. A zero-weight group
    is not counted at all, so weight 0 lets a server follow without voting.
    """

    __slots__ = ("voting_members", "observers", "groups", "weights", "_group_of", "_group_weight", "num_groups")

    def __init__(
        self,
        participants: Iterable[int],
        groups: Mapping[int, Iterable[int]],
        weights: Mapping[int, int],
        observers: Iterable[int] = (),
    ) -> None:
        self.voting_members, self.observers = _check_members(participants, observers)
        if not groups:
            raise ValueError("hierarchical quorum needs at least one group.G line")
        group_of: dict[int, int] = {}
        norm_groups: dict[int, tuple[int, ...]] = {}
        for gid, members in groups.items():
            members = tuple(members)
            if not members:
                raise ValueError(f"group.{gid} is empty")
            for sid in members:
                if sid in self.observers:  # ZooKeeper would fail later with an NPE
                    raise ValueError(f"group.{gid} lists observer {sid}: observers never vote")
                if sid not in self.voting_members:
                    raise ValueError(f"group.{gid} lists server {sid}, which is not a participant")
                if sid in group_of:
                    raise ValueError(f"server {sid} is in two groups ({group_of[sid]} and {gid})")
                group_of[sid] = gid
            norm_groups[gid] = members
        missing = sorted(self.voting_members - group_of.keys())
        if missing:
            raise ValueError(f"participant {missing[0]} is in no group")
        norm_weights: dict[int, int] = {}
        for sid, w in weights.items():
            if sid not in self.voting_members and sid not in self.observers:
                raise ValueError(f"weight.{sid} names a server that is not in the configuration")
            if isinstance(w, bool) or not isinstance(w, int) or w < 0:
                raise ValueError(f"weight.{sid}={w!r}: a weight is a non-negative integer")
            if sid in self.voting_members:  # an observer's weight is accepted and, as in ZooKeeper, unused
                norm_weights[sid] = w
        self.groups = norm_groups
        self.weights = {sid: norm_weights.get(sid, 1) for sid in self.voting_members}
        self._group_of = group_of
        self._group_weight = {gid: sum(self.weights[s] for s in m) for gid, m in norm_groups.items()}
        self.num_groups = sum(1 for w in self._group_weight.values() if w > 0)

    def weight(self, sid: int) -> int:
        return self.weights.get(sid, 0)

    def contains_quorum(self, sids: Iterable[int]) -> bool:
        per_group: dict[int, int] = {}
        for sid in set(sids):
            gid = self._group_of.get(sid)
            if gid is not None:
                per_group[gid] = per_group.get(gid, 0) + self.weights[sid]
        if not per_group:
            return False
        majorities = sum(1 for gid, w in per_group.items() if w > self._group_weight[gid] // 2)
        return majorities > self.num_groups // 2

    def to_config_text(self, addrs: dict[int, str]) -> str:
        lines = _server_lines(self.voting_members, self.observers, addrs)
        for gid in sorted(self.groups):
            lines.append(f"group.{gid}=" + ":".join(str(s) for s in self.groups[gid]))
        for sid in sorted(self.weights):
            lines.append(f"weight.{sid}={self.weights[sid]}")
        lines.append("version=0")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"QuorumHierarchical(groups={self.groups}, weights={self.weights}, observers={sorted(self.observers)})"
