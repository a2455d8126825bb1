"""What `pytest --chaos` costs over `chaos run` (issue 12).

Runs every plan × K seeds twice, each side with 2 parallel runs:

  A. python -m chaos run PLANS --seed S --repeat K --jobs 2 --out A/
  B. python -m pytest -p chaos.pytest_plugin --chaos PLANS --chaos-seeds S:S+K -n 2 --chaos-out B/

and checks that every (plan, seed) got the same verdict on both sides, then
prints both wall times and the plugin's overhead (B - A) / A. Real processes
on a shared machine: run it by hand, not in the test suite.

    python3 bench/plugin_overhead.py --seeds 10            # the issue's K
    python3 bench/plugin_overhead.py --seeds 2 --limit 5   # 20 % overhead bound
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _timed(argv: list[str], log: Path) -> float:
    t0 = time.monotonic()
    with log.open("w") as f:
        subprocess.run(argv, cwd=ROOT, env=_env(), stdout=f, stderr=subprocess.STDOUT, check=False)
    return time.monotonic() - t0


def _run_verdicts(out: Path) -> dict[tuple[str, int], str]:
    got = {}
    for j in out.glob("*/journal.json"):
        d = json.loads(j.read_text())
        got[(d["run"].get("plan_name") or d["plan"]["name"], int(d["run"]["seed"]))] = d["verdict"]
    return got


def _plugin_verdicts(junit: Path, out: Path) -> dict[tuple[str, int], str]:
    got = {}
    for case in ET.parse(junit).iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        run_dir = Path(props.get("run_dir", ""))
        if "seed" not in props or not (run_dir / "journal.json").exists():
            continue
        d = json.loads((run_dir / "journal.json").read_text())
        got[(d["run"].get("plan_name") or d["plan"]["name"], int(props["seed"]))] = props["verdict"]
    return got


def _busy(out: Path) -> float:
    return sum(json.loads(j.read_text())["run"].get("duration_s") or 0.0 for j in out.glob("*/journal.json"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10, help="K seeds per plan (default 10)")
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--plans", nargs="*", default=None, help="plan files (default plans/*.yaml)")
    ap.add_argument("--limit", type=float, default=5.0, help="overhead bound in %% of wall time")
    ap.add_argument("--work", type=Path, default=None, help="keep runs here (default: a temp dir)")
    ap.add_argument("--order", choices=("ab", "ba"), default="ab",
                    help="ab: chaos run first; ba: pytest first (average both to cancel a drifting load)")
    a = ap.parse_args()
    plans = a.plans or sorted(str(p.relative_to(ROOT)) for p in (ROOT / "plans").glob("*.yaml"))
    work = a.work or Path(tempfile.mkdtemp(prefix="plugin-overhead-"))
    work.mkdir(parents=True, exist_ok=True)
    s, k = a.first_seed, a.seeds
    run_out, pyt_out, junit = work / "chaos-run", work / "pytest", work / "pytest.xml"
    print(f"{len(plans)} plan(s) x {k} seed(s) ({s}..{s + k - 1}), {a.jobs} at a time; runs in {work}", flush=True)

    run_argv = [sys.executable, "-m", "chaos", "run", *plans, "--seed", str(s), "--repeat", str(k),
                "--jobs", str(a.jobs), "--out", str(run_out)]
    pyt_argv = [sys.executable, "-m", "pytest", "-p", "chaos.pytest_plugin", "-p", "no:cacheprovider",
                "-q", "--chaos", *plans, "--chaos-seeds", f"{s}:{s + k}", "-n", str(a.jobs),
                "--chaos-out", str(pyt_out), "--junitxml", str(junit)]
    walls = {}
    for side in (("run", "pytest") if a.order == "ab" else ("pytest", "run")):
        if side == "run":
            walls[side] = _timed(run_argv, work / "chaos-run.log")
            print(f"chaos run --jobs {a.jobs}:   {walls[side]:8.1f} s", flush=True)
        else:
            walls[side] = _timed(pyt_argv, work / "pytest.log")
            print(f"pytest --chaos -n {a.jobs}: {walls[side]:8.1f} s", flush=True)
    wall_run, wall_pyt = walls["run"], walls["pytest"]
    # The machine is shared: the runs themselves may take longer on one side.
    # Their summed durations (from the journals) show how much.
    busy_run, busy_pyt = _busy(run_out), _busy(pyt_out)
    print(f"summed run durations: chaos run {busy_run:.1f} s, pytest {busy_pyt:.1f} s "
          f"({100.0 * (busy_pyt - busy_run) / busy_run:+.1f} %)")
    left, right = _run_verdicts(run_out), _plugin_verdicts(junit, pyt_out)
    differ = sorted(key for key in set(left) | set(right) if left.get(key) != right.get(key))
    counts = {v: sum(1 for x in right.values() if x == v) for v in ("valid", "invalid", "unknown")}
    print(f"runs: chaos run {len(left)}, pytest {len(right)}; pytest verdicts {counts}")
    for plan, seed in differ:
        print(f"  verdicts differ: {plan} seed {seed}: chaos run {left.get((plan, seed))}, "
              f"pytest {right.get((plan, seed))}")
    overhead = 100.0 * (wall_pyt - wall_run) / wall_run
    print(f"overhead: {overhead:+.1f} % of wall time (bound {a.limit:g} %)")
    per_busy = 100.0 * ((wall_pyt / busy_pyt) / (wall_run / busy_run) - 1)
    print(f"overhead per second of run time (load drift taken out): {per_busy:+.1f} %")
    ok = not differ and overhead < a.limit and len(left) == len(plans) * k
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
