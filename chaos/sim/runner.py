"""One simulated run of one plan and seed: the stages of ``chaos run``, in virtual time.

Theory of operation. The stages are :class:`chaos.runner.Runner`'s — start
the ensemble, run the steps with the same handlers, undo every fault, settle
(the final ``stable`` wait), teardown, log summaries, invariants — on a
:class:`~chaos.context.RunContext` whose target, links and observer are the
simulated ones (:mod:`chaos.sim.world`) and whose clock is the simulator's.
Nothing waits on the wall clock, so a 40-second plan takes milliseconds, and
every choice comes from the seed: the run's RNG (selectors, choices, the
nemesis) is ``Random(seed)`` as in a real run, the network's its own stream
derived from the seed. The same plan and seed give the same records.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from chaos import invariants as inv
from chaos.context import RunContext
from chaos.faults import FaultLedger
from chaos.outcome import Verdict
from chaos.plan.model import Plan, Wait, WaitCondition
from chaos.records import Fault, LogSummary, Process, RunStarted, Teardown
from chaos.sim.journal import MemoryJournal
from chaos.sim.world import SimLinks, SimObserver, SimTarget, build_world
from chaos.steps import SetupFailure, StepFailed, run_step, run_steps

__all__ = ["SimResult", "run_sim", "NET_SEED_SALT"]

NET_SEED_SALT = 0x5EED_0000
"""The network's RNG is seeded with seed ^ this: its draws never shift the plan's choices."""


@dataclass
class SimResult:
    plan: str
    seed: int
    verdict: str
    exit_code: int
    journal: MemoryJournal
    virtual_s: float
    invariants: list = field(default_factory=list)
    error: str | None = None

    @property
    def invalid(self) -> list[str]:
        return [r.name for r in self.invariants if r.verdict == Verdict.INVALID]


class _Quiet:
    """The progress sink handlers write to; a simulated run says nothing while it runs."""

    step = "-"
    leader: int | None = None

    def __init__(self, sink: Callable[[str], None] | None = None) -> None:
        self.sink = sink

    def say(self, msg: str, *, line: bool = True) -> None:
        if self.sink is not None:
            self.sink(msg)

    def status(self) -> None:
        pass


def run_sim(plan: Plan, seed: int, *, command: str = "", txn_interval_ms: float | None = None,
            progress: Callable[[str], None] | None = None,
            wall_clock: Callable[[], float] = time.time,
            core_factory: Callable[..., Any] | None = None) -> SimResult:
    """``core_factory``: a test's FLE core with a rule changed (:class:`node.sim_zab.ZabSim`)."""
    spec = plan.ensemble
    holder: dict[str, Any] = {}
    journal = MemoryJournal(clock=lambda: holder["world"].now_ms / 1000.0, wall_clock=wall_clock)
    observer_ref: list[SimObserver] = []
    world = build_world(spec, seed ^ NET_SEED_SALT, lambda sid, ev, f: observer_ref[0].event(sid, ev, f),
                        txn_interval_ms=txn_interval_ms, core_factory=core_factory)
    holder["world"] = world
    observer = SimObserver(world, journal, spec.sids)
    observer_ref.append(observer)
    say = _Quiet(progress)
    src = plan.source_path or plan.name
    journal.set_header(run={
        "id": f"sim-{seed}", "plan_name": plan.name, "plan_path": plan.source_path,
        "description": plan.description, "seed": seed, "command": command,
        "replay_command": f"chaos sim {src} --seed {seed} --repeat 1 --keep-all",
        "simulated": True, "toxiproxy": None, "target": {"kind": "fle", "version": "sim"}},
        plan=plan.to_json())

    def on_process(**kw: Any) -> None:
        journal.record(Process, **kw)
        observer.mark_down(kw["sid"])

    target = SimTarget(world, spec, on_process)
    links = SimLinks(world, spec.sids)
    journal.set_header(nodes=target.header(), links=links.header())
    first = [True]

    def journal_fault(phase: str, fid: str, kind: str, tgt: Any, lks: tuple) -> None:
        if phase == "requested" and first[0]:
            first[0] = False
            if inv.setup_failure(journal.snapshot()) is not None:
                raise SetupFailure("the ensemble never formed before the first fault")
        journal.record(Fault, phase=phase, fault_id=fid, kind=kind, target=tgt, links=[list(lk) for lk in lks])

    ledger = FaultLedger(journal_fault, lambda m: say.say("warning: " + m))
    ctx = RunContext(plan=plan, rng=random.Random(seed), journal=journal, target=target, links=links,
                     observer=observer, ledger=ledger, progress=say, t_end=plan.time_limit_s,
                     time_limit=plan.time_limit_s, clock=observer.clock, sleep=observer.sleep)
    journal.record(RunStarted, seed=seed, command=command)
    error: str | None = None
    aborted: str | None = None
    infra = False
    try:
        target.start_all()
        try:
            run_steps(ctx, plan.steps)
        except StepFailed as e:
            aborted = str(e)
        ledger.undo_all()
        if ctx.formed:
            _settle(ctx, plan)
    except SetupFailure as e:
        infra, error = True, str(e)
    except Exception as e:  # a bug in the simulator or a handler: unknown, never a verdict
        infra, error = True, f"{type(e).__name__}: {e}"
        ledger.undo_all()
    journal.record(Teardown, reason="failed" if infra else "finished")
    target.shutdown()
    observer.stop()
    observer.close_elections()
    for sid in spec.sids:
        journal.record(LogSummary, sid=sid, **target.log_summary(sid))
    return _finish(plan, seed, journal, world.now_ms / 1000.0, error, aborted, infra)


def _settle(ctx: RunContext, plan: Plan) -> None:
    spec = plan.invariant("convergence")
    within = float((spec.params.get("within") if spec else None) or inv.DEFAULT_CONVERGENCE_S)
    within = min(within, max(0.0, ctx.deadline_left()))
    if within <= 0:
        return
    step = Wait(WaitCondition.STABLE, timeout_s=within, path="final", label="final wait: stable")
    try:
        run_step(ctx, step, "final")
    except StepFailed:
        pass


def _finish(plan: Plan, seed: int, journal: MemoryJournal, virtual_s: float, error: str | None,
            aborted: str | None, infra: bool) -> SimResult:
    """The verdict as :meth:`chaos.runner.Runner.finish` gives it."""
    specs = {i.name: dict(i.params) for i in plan.invariants} or None
    j = inv.judge_run(journal.snapshot(), specs, error=error, infra=infra, aborted=aborted)
    results, verdict, code, error = j.results, j.verdict, j.code, j.error
    if error:
        journal.set_header(run={"error": error})
    if aborted:
        journal.set_header(run={"aborted": aborted})
    journal.finish(results, verdict, code)
    return SimResult(plan.name, seed, str(verdict), int(code), journal, virtual_s, list(results), error)
