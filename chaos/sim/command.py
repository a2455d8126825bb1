"""`chaos sim PLAN...`: every plan, many seeds, in the simulator.

Theory of operation. Plans are loaded (a bad plan: its errors, exit 2) and
checked for simulatability (:mod:`chaos.sim.check`) before any run starts; a
plan that is not simulatable is listed as skipped with each offending step's
FILE:LINE:COL, and the others go on (all skipped: exit 2). Each plan then
runs ``--repeat N`` times with seeds S, S+1, … (S: ``--seed``, else the
plan's, else 1), in ``--jobs`` processes. A run that is not valid — and every
run with ``--keep-all`` — writes ``OUT/<plan>-seed<k>/`` (``journal.json``,
``journal.jsonl``, ``report.html``, ``junit.xml``; with ``--promote`` also
``promoted.yaml``, the schedule it ran as a plan ``chaos run`` executes);
a passing one leaves only its count. Per plan one summary line: runs,
valid/invalid/unknown, runs/s and simulated seconds per second (with
``--shrink``, the first invalid seeds of the plan shrunk as ``chaos shrink``
does, their candidates run in the simulator: ``minimal.yaml``); then the
runs index (``OUT/index.html``) over the runs written. Exit codes as
``chaos run``: 0 all valid, 1 any invalid, 2 bad plan, 3 unknown.
"""
from __future__ import annotations

import os
import shlex
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from chaos.outcome import ExitCode, Verdict
from chaos.plan import PlanError, load_plan
from chaos.plan.model import Plan

__all__ = ["SimOptions", "Outcome", "simulate", "run_dir_for", "DEFAULT_SEED"]

DEFAULT_SEED = 1
CHUNK = 25
SHRINK_PER_PLAN = 3
"""--shrink shrinks at most this many invalid seeds of each plan (the first ones)."""


@dataclass
class SimOptions:
    paths: Sequence[str]
    repeat: int = 1
    seed: int | None = None
    out: Path = Path("reports/sim")
    jobs: int = 1
    keep_all: bool = False
    promote: bool = False
    shrink: bool = False
    shrink_budget_s: float = 120.0
    command: str = ""


@dataclass(frozen=True)
class Outcome:
    plan: str
    seed: int
    verdict: str
    exit_code: int
    virtual_s: float
    invalid: tuple[str, ...]
    error: str | None
    run_dir: str | None


def run_dir_for(out: Path, plan_name: str, seed: int) -> Path:
    return out / f"{plan_name}-seed{seed}"


def _one(path: str, seed: int, out: str, keep_all: bool, promote: bool, command: str) -> Outcome:
    from chaos.sim.runner import run_sim
    plan = load_plan(path)
    try:
        r = run_sim(plan, seed, command=command)
    except Exception as e:  # a simulator bug: unknown, never a verdict
        return Outcome(plan.name, seed, Verdict.UNKNOWN.value, int(ExitCode.INFRA), 0.0, (),
                       f"{type(e).__name__}: {e}", None)
    run_dir = None
    if keep_all or r.verdict != Verdict.VALID.value:
        d = run_dir_for(Path(out), plan.name, seed)
        write_run(r.journal, d, promote=promote and r.verdict == Verdict.INVALID.value)
        run_dir = str(d)
    return Outcome(plan.name, seed, r.verdict, r.exit_code, r.virtual_s, tuple(r.invalid), r.error, run_dir)


def _chunk(args: tuple) -> list[Outcome]:
    path, seeds, out, keep_all, promote, command = args
    return [_one(path, s, out, keep_all, promote, command) for s in seeds]


def write_run(journal, run_dir: Path, *, promote: bool = False) -> None:
    """The files of a real run: journal, report, JUnit; ``promoted.yaml`` if asked."""
    from chaos.report import render_report, write_junit
    journal.write(run_dir)
    j = journal.snapshot()
    render_report(run_dir, journal=j)
    write_junit(j, run_dir / "junit.xml")
    if promote:
        from chaos.schedule import schedule_from_journal, write_plan
        sched = schedule_from_journal(j, run_dir=run_dir.resolve())
        write_plan(sched, run_dir / "promoted.yaml", name=f"{j.plan.name}_seed{j.run.seed}",
                   header=[f"Promoted from `chaos sim` seed {j.run.seed} ({j.verdict}): run it for real with",
                           f"  chaos run {run_dir / 'promoted.yaml'}"])


def _shrink_some(outcomes: list[Outcome], budget_s: float, echo: Callable[[str], None]) -> None:
    from chaos.sim.shrink import shrink_seed
    failing = [o for o in outcomes if o.verdict == Verdict.INVALID.value and o.run_dir][:SHRINK_PER_PLAN]
    for o in failing:
        r = shrink_seed(Path(o.run_dir), o.seed, budget_s=budget_s)
        if r.minimal is not None and r.best is not None:
            echo(f"    shrunk seed {o.seed}: {r.minimal} ({len(r.best.units())} of {len(r.original.units())} "
                 f"faults, {len(r.best.steps)} of {len(r.original.steps)} steps, {r.runs} runs)")
        else:
            echo(f"    seed {o.seed} not shrunk: {r.outcome}")


def _load(paths: Sequence[str], echo: Callable[[str], None]) -> tuple[list[Plan], bool, list[str]]:
    from chaos.sim.check import not_simulatable
    plans, bad, skipped = [], False, []
    for p in paths:
        try:
            plan = load_plan(p)
        except PlanError as e:
            bad = True
            for issue in e.errors:
                echo(str(issue))
            continue
        except OSError as e:
            bad = True
            echo(f"{p}: {e.strerror or e}")
            continue
        issues = not_simulatable(plan)
        if issues:
            skipped.append(p)
            echo(f"skipped {p}: not simulatable")
            for issue in issues:
                echo(f"  {issue}")
            continue
        plans.append(plan)
    return plans, bad, skipped


def simulate(opts: SimOptions, echo: Callable[[str], None]) -> int:
    plans, bad, skipped = _load(opts.paths, echo)
    if bad:
        return int(ExitCode.USAGE)
    if not plans:
        echo("every plan was skipped: nothing to simulate")
        return int(ExitCode.USAGE)
    out = Path(opts.out)
    command = opts.command or "chaos sim " + " ".join(shlex.quote(p) for p in opts.paths)
    codes: list[int] = []
    written: list[str] = []
    pool = ProcessPoolExecutor(max_workers=opts.jobs) if opts.jobs > 1 else None
    try:
        for plan in plans:
            base = opts.seed if opts.seed is not None else (plan.seed if plan.seed is not None else DEFAULT_SEED)
            seeds = [base + k for k in range(opts.repeat)]
            path = plan.source_path
            t0 = time.monotonic()
            if pool is None:
                outcomes = _chunk((path, seeds, str(out), opts.keep_all, opts.promote, command))
            else:
                size = max(1, min(CHUNK, len(seeds) // (opts.jobs * 4) or 1))
                parts = [(path, seeds[i:i + size], str(out), opts.keep_all, opts.promote, command)
                         for i in range(0, len(seeds), size)]
                outcomes = [o for chunk in pool.map(_chunk, parts) for o in chunk]
            wall = max(time.monotonic() - t0, 1e-9)
            counts = {v.value: 0 for v in (Verdict.VALID, Verdict.INVALID, Verdict.UNKNOWN)}
            for o in outcomes:
                counts[o.verdict] = counts.get(o.verdict, 0) + 1
                codes.append(o.exit_code)
                if o.run_dir:
                    written.append(o.run_dir)
                if o.verdict != Verdict.VALID.value:
                    why = ", ".join(o.invalid) if o.invalid else (o.error or "")
                    echo(f"  {plan.name} seed {o.seed}: {o.verdict.upper()} {why}  -> {o.run_dir}")
                    echo(f"    replay: chaos sim {path} --seed {o.seed} --repeat 1 --keep-all")
            if opts.shrink:
                _shrink_some(outcomes, opts.shrink_budget_s, echo)
            virtual = sum(o.virtual_s for o in outcomes)
            echo(f"{plan.name}: {len(outcomes)} runs, {counts['valid']} valid, {counts['invalid']} invalid, "
                 f"{counts['unknown']} unknown; {len(outcomes) / wall:.1f} runs/s, "
                 f"{virtual / wall:.0f} simulated s/s")
    finally:
        if pool is not None:
            pool.shutdown()
    for p in skipped:
        echo(f"skipped: {p}")
    if written:
        try:
            from chaos.report import render_index
            echo(f"runs index: {render_index(out)}")
        except Exception as e:
            echo(f"warning: runs index not written: {type(e).__name__}: {e}")
    for c in (ExitCode.INVALID, ExitCode.INFRA):
        if c in codes:
            return int(c)
    return int(ExitCode.OK)


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)))
