"""How fast `chaos sim` explores schedules (issue 9 targets), measured by hand.

1. Runs of plans/leader_kill.yaml per minute on one core (target >= 1000):
   ``--seconds`` of back-to-back runs in this process, seeds 1, 2, ...
2. Every simulatable plan x ``--seeds`` N on ``--jobs`` processes (target: x1000 in
   under 15 min on 2 cores). With N < 1000 the time is measured for N and
   extrapolated linearly to 1000 (the runs are independent); the output says so.

    python3 bench/sim_speed.py [--seconds 30] [--seeds 50] [--jobs 2]

Numbers depend on the machine's load: report them with `uptime`.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chaos.plan import load_plan  # noqa: E402
from chaos.sim.check import not_simulatable  # noqa: E402
from chaos.sim.runner import run_sim  # noqa: E402


def one_core(seconds: float) -> tuple[int, float, dict]:
    plan = load_plan(str(ROOT / "plans" / "leader_kill.yaml"))
    verdicts: dict[str, int] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    while time.perf_counter() - t0 < seconds:
        n += 1
        r = run_sim(plan, n)
        verdicts[r.verdict] = verdicts.get(r.verdict, 0) + 1
    verdicts["cpu_s"] = round(time.process_time() - c0, 2)
    return n, time.perf_counter() - t0, verdicts


def _plan_seeds(args: tuple[str, int, int]) -> tuple[str, int, dict, float]:
    path, first, n = args
    c0 = time.process_time()
    plan = load_plan(path)
    verdicts: dict[str, int] = {}
    virtual = 0.0
    for seed in range(first, first + n):
        r = run_sim(plan, seed)
        verdicts[r.verdict] = verdicts.get(r.verdict, 0) + 1
        virtual += r.virtual_s
    verdicts["cpu_s"] = time.process_time() - c0
    return plan.name, n, verdicts, virtual


def suite(seeds: int, jobs: int) -> None:
    paths = sorted(glob.glob(str(ROOT / "plans" / "*.yaml")))
    plans = [p for p in paths if not not_simulatable(load_plan(p))]
    skipped = sorted(set(paths) - set(plans))
    per = max(1, seeds // 5)
    work = [(p, 1 + k, min(per, seeds - k)) for p in plans for k in range(0, seeds, per)]
    t0 = time.perf_counter()
    totals: dict[str, dict] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for name, n, verdicts, virtual in pool.map(_plan_seeds, work):
            t = totals.setdefault(name, {"runs": 0, "virtual": 0.0})
            t["runs"] += n
            t["virtual"] += virtual
            for v, c in verdicts.items():
                t[v] = t.get(v, 0) + c
    wall = time.perf_counter() - t0
    cpu = sum(t.get("cpu_s", 0.0) for t in totals.values())
    for name, t in sorted(totals.items()):
        print(f"  {name}: {t['runs']} runs, valid {t.get('valid', 0)}, invalid {t.get('invalid', 0)}, "
              f"unknown {t.get('unknown', 0)}, {t['virtual']:.0f} simulated s")
    runs = sum(t["runs"] for t in totals.values())
    print(f"suite: {len(plans)} simulatable plans x {seeds} seeds = {runs} runs on {jobs} processes "
          f"in {wall:.1f} s ({runs / wall:.1f} runs/s); skipped {[Path(s).name for s in skipped]}")
    est = wall * 1000 / seeds
    how = "measured" if seeds >= 1000 else f"extrapolated linearly from {seeds} seeds"
    print(f"x1000 seeds: {est / 60:.1f} min wall at this load ({how}); target < 15 min")
    print(f"  CPU: {cpu:.0f} s for {runs} runs ({1000 * cpu / runs:.0f} ms a run); on {jobs} otherwise idle cores "
          f"x1000 seeds would take {cpu * 1000 / seeds / jobs / 60:.1f} min")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--skip-suite", action="store_true")
    a = ap.parse_args()
    print(f"load: {os.getloadavg()}")
    n, wall, verdicts = one_core(a.seconds)
    cpu = verdicts.pop("cpu_s")
    print(f"leader_kill on one core: {n} runs in {wall:.1f} s = {60 * n / wall:.0f} runs/min wall "
          f"(target >= 1000), {60 * n / cpu:.0f} runs per CPU-minute; verdicts {verdicts}")
    if not a.skip_suite:
        suite(a.seeds, a.jobs)


if __name__ == "__main__":
    main()
