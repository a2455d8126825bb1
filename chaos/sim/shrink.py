"""Shrinking a failing seed with :mod:`chaos.shrink`, its candidates run in the simulator.

:func:`chaos.shrink.shrink_run` searches; it takes a ``launch`` function
(the seam its tests use). Here each candidate schedule is written as a plan,
run at once in this process with the seed it records, and written as a run
directory, so the search, its log (``shrink.json``) and ``minimal.yaml`` are
those of ``chaos shrink``. A simulated run is deterministic: one try a
candidate is enough.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from chaos.outcome import Verdict
from chaos.plan import load_plan
from chaos.schedule import Schedule, write_plan
from chaos.shrink import ShrinkOptions, ShrinkResult, TryResult, shrink_run

__all__ = ["sim_launcher", "shrink_seed", "DEFAULT_SIM_SHRINK_BUDGET_S"]

DEFAULT_SIM_SHRINK_BUDGET_S = 120.0


class _Done:
    def __init__(self, result: TryResult) -> None:
        self.result = result

    def poll(self) -> TryResult:
        return self.result

    def stop(self) -> None:
        pass


def sim_launcher(seed: int, core_factory: Callable[..., Any] | None = None) -> Callable[[Schedule, Path], _Done]:
    from chaos.sim.command import write_run
    from chaos.sim.runner import run_sim

    def launch(schedule: Schedule, run_dir: Path) -> _Done:
        run_dir.mkdir(parents=True, exist_ok=True)
        path = write_plan(schedule, run_dir / "plan.yaml", name=schedule.default_name("shrink"),
                          description=f"A candidate of chaos sim --shrink for {schedule.origin()}.")
        r = run_sim(load_plan(str(path)), schedule.seed if schedule.seed is not None else seed,
                    core_factory=core_factory)
        write_run(r.journal, run_dir)
        return _Done(TryResult(r.exit_code, tuple(r.invalid) if r.verdict == Verdict.INVALID.value else ()))

    return launch


def shrink_seed(run_dir: Path, seed: int, *, budget_s: float = DEFAULT_SIM_SHRINK_BUDGET_S,
                say: Callable[[str], None] | None = None,
                core_factory: Callable[..., Any] | None = None) -> ShrinkResult:
    return shrink_run(ShrinkOptions(run_dir=run_dir, budget_s=budget_s, tries=1, jobs=1, say=say,
                                    launch=sim_launcher(seed, core_factory)))
