"""Node selectors resolved against what the cluster looks like right now.

Pure: the runner builds a `ClusterView` from its latest status poll, passes
the run's seeded RNG and the names bound so far, and journals the sids that
come back. Singular roles (`leader`, `follower`, `observer`, `any`) resolve
to exactly one sid or raise `SelectorError`; plural roles may resolve to an
empty tuple, which the caller treats as "nothing to do" or as a failed step
as it sees fit. Seeded picks choose from sorted candidates, so one seed gives
one run.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Mapping

from .model import Direction, LinkSelector, Role, Selector, SelectorKind

__all__ = ["ClusterView", "SelectorError", "resolve", "resolve_links"]


class SelectorError(Exception):
    """The selector has no meaning in the current cluster (no leader yet, an
    unbound name). The runner records the step as failed; a `wait` before the
    step is usually what the plan is missing."""


@dataclass(frozen=True, slots=True)
class ClusterView:
    """The cluster as last observed. `sids` is every configured sid (defaults to
    the union of the others); `previous` is the previous step's resolved target."""

    leader: int | None
    followers: tuple[int, ...] = ()
    observers: tuple[int, ...] = ()
    live: tuple[int, ...] = ()
    previous: tuple[int, ...] = ()
    sids: tuple[int, ...] = ()

    @property
    def all_sids(self) -> tuple[int, ...]:
        if self.sids:
            return tuple(sorted(self.sids))
        known = set(self.followers) | set(self.observers) | set(self.live)
        if self.leader is not None:
            known.add(self.leader)
        return tuple(sorted(known))


def _pick(candidates: tuple[int, ...], rng: random.Random, what: str) -> tuple[int, ...]:
    if not candidates:
        raise SelectorError(f"no {what} to pick from right now")
    return (rng.choice(sorted(candidates)),)


def resolve(selector: Selector, view: ClusterView, rng: random.Random,
            bindings: Mapping[str, tuple[int, ...]] | None = None) -> tuple[int, ...]:
    """The sids `selector` means now, sorted, without duplicates."""
    if selector.kind is SelectorKind.SID:
        return (int(selector.value),)
    if selector.kind is SelectorKind.NAME:
        bound = (bindings or {}).get(str(selector.value))
        if bound is None:
            raise SelectorError(f"name '{selector.value}' is not bound (no earlier `as:` ran)")
        return tuple(sorted(set(bound)))
    role = selector.value
    if role is Role.LEADER:
        if view.leader is None:
            raise SelectorError("no leader right now")
        return (view.leader,)
    if role is Role.FOLLOWER:
        return _pick(view.followers, rng, "follower")
    if role is Role.FOLLOWERS:
        return tuple(sorted(set(view.followers)))
    if role is Role.OBSERVER:
        return _pick(view.observers, rng, "observer")
    if role is Role.OBSERVERS:
        return tuple(sorted(set(view.observers)))
    if role is Role.ALL:
        return view.all_sids
    if role is Role.OTHERS:
        return tuple(s for s in view.all_sids if s not in set(view.previous))
    if role is Role.ANY:
        return _pick(view.live, rng, "live node")
    raise AssertionError(f"unhandled role {role!r}")  # pragma: no cover


def resolve_links(links: LinkSelector, view: ClusterView, rng: random.Random,
                  bindings: Mapping[str, tuple[int, ...]] | None = None
                  ) -> tuple[tuple[int, int, str], ...]:
    """The directed links (from, to, port) a toxic goes on, sorted, as `chaos.links`
    names them: every (a, b) with a in `from`, b in `to`, a != b, on each port;
    with direction both also (b, a). `from` is resolved before `to` (one RNG order)."""
    src = resolve(links.src, view, rng, bindings)
    dst = resolve(links.dst, view, rng, bindings)
    pairs = {(a, b) for a in src for b in dst if a != b}
    if links.direction is Direction.BOTH:
        pairs |= {(b, a) for a, b in pairs}
    return tuple(sorted((a, b, port) for a, b in pairs for port in links.port.ports))
