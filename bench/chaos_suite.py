"""Orchestrator speed, measured by hand (never a timed assertion in tests).

    python bench/chaos_suite.py                 # all three measurements
    python bench/chaos_suite.py --only single   # leader_kill wall time
    python bench/chaos_suite.py --only suite    # every plan, --jobs 2
    python bench/chaos_suite.py --only scale --max-nodes 15
    python bench/chaos_suite.py --only scale --max-nodes 27 --scale-repeat 3   # medians

1. wall time of `chaos run plans/leader_kill.yaml` (median of --repeat runs);
2. wall time of the whole plan suite with `--jobs 2` (2 cores);
3. the largest ensemble (every directed link behind its own proxy, both
   ports) that reaches `stable` within 5 s of its nodes being started,
   growing by 2 from 3 nodes until one fails.

Results go to stdout as a table and, with --json FILE, as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def chaos(*args: str, timeout: float = 1800) -> tuple[int, float, str]:
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "chaos", *args], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=timeout)
    return res.returncode, time.monotonic() - t0, res.stdout + res.stderr


def bench_single(tmp: Path, repeat: int) -> dict:
    times, codes = [], []
    for k in range(repeat):
        code, dt, _ = chaos("run", "plans/leader_kill.yaml", "--out", str(tmp / f"lk{k}"))
        times.append(dt)
        codes.append(code)
    return {"name": "leader_kill wall time", "median_s": round(statistics.median(times), 2),
            "runs_s": [round(t, 2) for t in times], "exit_codes": codes}


def bench_suite(tmp: Path) -> dict:
    plans = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "plans").glob("*.yaml"))
    code, dt, out = chaos("run", *plans, "--jobs", "2", "--out", str(tmp / "suite"))
    return {"name": f"whole suite ({len(plans)} plans, --jobs 2)", "wall_s": round(dt, 2),
            "exit_code": code}


PLAN = """\
name: scale_{n}
description: Elect with {n} nodes and every directed link proxied.
seed: 1
time_limit: 2m
ensemble: {{nodes: {n}}}
invariants: {{single_leader: {{}}}}
steps:
  - wait: {{for: stable, timeout: {timeout}}}
"""


def _elect_time(run_dir: Path) -> tuple[float | None, float | None]:
    """(seconds from the last node start to stable, setup seconds)."""
    j = json.loads((run_dir / "journal.json").read_text())
    starts = [r["t"] for r in j["records"] if r["type"] == "process" and r.get("action") == "started"]
    done = [r for r in j["records"] if r["type"] == "step_finished" and r["step"] == "steps[0]"]
    if not starts or not done or not done[0]["ok"]:
        return None, (min(starts) if starts else None)
    return done[0]["t"] - min(starts), min(starts)


def _median(xs: list[float | None]) -> float | None:
    """The median, a missing value (never stable) counting as infinite."""
    m = statistics.median(float("inf") if x is None else x for x in xs)
    return None if m == float("inf") else m


def bench_scale(tmp: Path, max_nodes: int, limit_s: float, repeat: int = 1) -> dict:
    """Each size runs ``repeat`` times; the median election time is the one
    held against the limit (a run that never got stable counts as infinite)."""
    rows, best = [], None
    n = 3
    while n <= max_nodes:
        plan = tmp / f"scale_{n}.yaml"
        plan.write_text(PLAN.format(n=n, timeout="30s"))
        runs, setups, walls, codes = [], [], [], []
        for k in range(repeat):
            out_dir = tmp / f"scale{n}" if repeat == 1 else tmp / f"scale{n}-{k}"
            code, dt, out = chaos("run", str(plan), "--out", str(out_dir), "--time-limit", "90s")
            try:
                elect, setup = _elect_time(out_dir)
            except (OSError, ValueError):
                elect, setup = None, None
            runs.append(elect)
            setups.append(setup)
            walls.append(dt)
            codes.append(code)
        elect = _median(runs)
        setup = _median(setups)
        dt = statistics.median(walls)
        code = max(codes)
        ok = elect is not None and elect <= limit_s
        rows.append({"nodes": n, "proxies": 2 * n * (n - 1), "elect_s": None if elect is None else round(elect, 2),
                     "setup_s": None if setup is None else round(setup, 2), "wall_s": round(dt, 2),
                     "exit_code": code, "within_limit": ok})
        if repeat > 1:
            rows[-1]["runs_s"] = [None if e is None else round(e, 2) for e in runs]
        shown = "" if repeat == 1 else " (median of " + ", ".join("-" if e is None else f"{e:.2f}" for e in runs) + ")"
        print(f"  {n:3d} nodes, {2 * n * (n - 1):4d} proxies: elected in "
              f"{'-' if elect is None else f'{elect:.2f}'} s{shown} (setup {setup} s, wall {dt:.1f} s)", flush=True)
        if not ok:
            if code == 2:
                print(f"  {n} nodes refused by the plan language: {out.strip().splitlines()[-1]}")
                rows[-1]["refused"] = out.strip().splitlines()[-1]
            break
        best = n
        n += 2
    return {"name": f"largest ensemble electing within {limit_s:g}s, all links proxied",
            "largest": best, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["single", "suite", "scale"], action="append")
    ap.add_argument("--repeat", type=int, default=3, help="runs of leader_kill for --only single")
    ap.add_argument("--scale-repeat", type=int, default=1,
                    help="runs per ensemble size for --only scale; the median is held against --limit")
    ap.add_argument("--max-nodes", type=int, default=21)
    ap.add_argument("--limit", type=float, default=5.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    which = args.only or ["single", "suite", "scale"]
    results = []
    with tempfile.TemporaryDirectory(prefix="chaos-bench-") as d:
        tmp = Path(d)
        if "single" in which:
            results.append(bench_single(tmp, args.repeat))
            print(results[-1], flush=True)
        if "suite" in which:
            results.append(bench_suite(tmp))
            print(results[-1], flush=True)
        if "scale" in which:
            results.append(bench_scale(tmp, args.max_nodes, args.limit, args.scale_repeat))
            print({k: v for k, v in results[-1].items() if k != "rows"}, flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
