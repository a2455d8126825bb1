"""The typed state a run's step handlers work on.

Theory of operation. :class:`RunContext` is built by the runner's setup stage
and handed to every step handler (:mod:`chaos.steps`). It holds what steps
share — the seeded RNG, the names bound by ``as:``, the previous step's
target, the run's :class:`~chaos.targets.Target`, its :class:`~chaos.links.LinkFaults`,
the :class:`~chaos.faults.FaultLedger` — and the few questions handlers ask
of them (who leads now, is this node up, how long is left). Nothing here
starts or stops anything; the runner does that, and undoes it.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from chaos.faults import FaultLedger
from chaos.journal import JournalWriter
from chaos.links import LinkFaults
from chaos.observe import NodeStatus, Observer
from chaos.plan.model import Plan, Selector
from chaos.plan.selectors import ClusterView, resolve
from chaos.records import Journal, Record
from chaos.targets import Target

__all__ = ["RunContext"]


@dataclass
class RunContext:
    plan: Plan
    rng: random.Random
    journal: JournalWriter
    target: Target
    links: LinkFaults
    observer: Observer
    ledger: FaultLedger
    progress: Any
    t_end: float
    time_limit: float
    replay: Mapping[str, list[dict]] = field(default_factory=dict)
    bindings: dict[str, tuple[int, ...]] = field(default_factory=dict)
    previous: tuple[int, ...] = ()
    formed: bool = False
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    after_step: Callable[[], None] = lambda: None
    wire: Any = None                    # chaos.wirecut.WireCuts when the plan reboots nodes

    # ------------------------------------------------------------------ journal
    def record(self, cls: type[Record], **fields: Any) -> Record:
        return self.journal.record(cls, **fields)

    def snapshot(self) -> Journal:
        return self.journal.snapshot()

    def warn(self, msg: str) -> None:
        self.progress.say("warning: " + msg)

    # ------------------------------------------------------------------ the cluster
    def paused(self) -> set[int]:
        """Nodes frozen by a fault: paused, or silently dead (frozen behind black-holed links)."""
        return {int(f.target["sid"]) for f in self.ledger.active()
                if f.kind in ("pause", "silent_death")}

    def live_voters(self) -> list[int]:
        paused = self.paused()
        return [s for s in self.plan.ensemble.sids if self.target.is_running(s) and s not in paused]

    def status(self) -> dict[int, NodeStatus]:
        return self.observer.view()

    def view(self) -> ClusterView:
        v = self.observer.view()
        live = tuple(s for s, st in v.items() if st.up and self.target.is_running(s))
        leaders = [st for st in v.values() if st.up and st.state == "LEADING"]
        leader = max(leaders, key=lambda st: (st.epoch or 0, st.sid)).sid if leaders else None
        followers = tuple(s for s, st in v.items() if st.up and st.state == "FOLLOWING"
                          and (leader is None or st.leader == leader))
        observers = tuple(s for s, st in v.items() if st.up and st.state == "OBSERVING")
        if not observers:
            observers = tuple(s for s in self.plan.ensemble.observer_sids if s in live)
        return ClusterView(leader=leader, followers=followers, observers=observers, live=live,
                           previous=self.previous, sids=self.plan.ensemble.sids)

    def resolve(self, sel: Selector) -> tuple[int, ...]:
        return resolve(sel, self.view(), self.rng, self.bindings)

    def bind(self, name: str | None, sids: tuple[int, ...]) -> None:
        self.previous = tuple(sids)
        if name:
            self.bindings[name] = tuple(sids)

    def describe_view(self) -> str:
        """What each node looked like, for a failed wait's message."""
        parts = []
        paused = self.paused()
        for sid, st in sorted(self.observer.view().items()):
            if not self.target.is_running(sid):
                parts.append(f"n{sid} down")
            elif sid in paused:
                parts.append(f"n{sid} paused")
            elif not st.up:
                parts.append(f"n{sid} not answering")
            else:
                lead = f"->n{st.leader}" if st.leader is not None else ""
                parts.append(f"n{sid} {st.state}{lead} e{st.epoch}{'' if st.synced else ' unsynced'}")
        return ", ".join(parts)

    # ------------------------------------------------------------------ time
    def deadline_left(self) -> float:
        return self.t_end - self.clock()

    def sleep_within_limit(self, seconds: float) -> bool:
        """Sleep ``seconds``, but not past the time limit, in slices so node
        exits are noticed and progress redrawn. False when the limit cut it short."""
        cut = seconds > self.deadline_left()
        end = self.clock() + min(seconds, max(0.0, self.deadline_left()))
        while (left := end - self.clock()) > 0:
            self.sleep(min(left, 0.25))
            self.check_exits()
            self.progress.status()
        return not cut

    def check_exits(self) -> None:
        for sid, code in self.target.poll_exits():
            self.warn(f"node {sid} exited on its own (exit code {code})")
