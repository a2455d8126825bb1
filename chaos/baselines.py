"""Election-cost baselines: what clean runs of each plan cost, and the bounds
``election_cost: baseline`` takes from them.

Theory of operation. ``chaos baseline PLAN... --repeat N`` runs each plan N
times (seed, seed+1, ... as ``chaos run --repeat``) with the baseline bounds
switched off, keeps the runs whose verdict is valid, and records per plan
what ``election_cost`` measured on the elections it judges: the most rounds
and notifications any node spent on one election, and the p99 duration. The
table is ``baselines.json`` beside the plans (one file, in the repo). It holds
observations only; the bounds are derived here, when a plan is parsed, so the
margins below are the one place that says how much slack a bound has:

  max_rounds        clean max + ROUNDS_MARGIN (1)
  max_notifications clean max × NOTIFICATIONS_FACTOR (2), at least
                    NOTIFICATIONS_MIN_MARGIN (25) above it
  max_ms            clean p99 × DURATION_FACTOR (4), at least
                    DURATION_MIN_MARGIN_MS (2500) above it

Counts carry the weight: a re-send storm or an extra round shows in them on any
machine; the duration bound is wide so a busy machine never trips it. The
slack on counts covers what timing legitimately moves (one more re-send
while a peer is cut off, catching up with a round); the floor on durations
keeps a 20 ms out-of-election join from failing at 70 ms when the machine
stalls for a moment. Notification counts move with timing too: every
notification timeout re-sends to all voters, and a loaded machine fires more
of them (rolling_restart: clean max 11 on a quiet machine, 22 with both cores
busy), hence the factor 2. The floors come from the same kind of measurement:
a node restarted while the others are re-electing waits out their election
and its own timeouts (rolling_restart: 29 under a full test run), and a
loaded machine stretches elections (stale_leader_notifications: clean p99
609 ms, 2,529 ms with load average 6 and more).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = [
    "BASELINES_FILE", "RECORDING_ENV", "ROUNDS_MARGIN", "NOTIFICATIONS_FACTOR", "NOTIFICATIONS_MIN_MARGIN",
    "DURATION_FACTOR", "DURATION_MIN_MARGIN_MS", "BaselineError", "baselines_path", "bounds_from", "resolve", "recording",
    "entry_key", "for_target",
    "measure", "record_baselines",
]

BASELINES_FILE = "baselines.json"
RECORDING_ENV = "CHAOS_BASELINE_RECORDING"
"""Set (to 1) in the runs ``chaos baseline`` makes: ``election_cost: baseline`` then sets no bound."""

ROUNDS_MARGIN = 1
NOTIFICATIONS_FACTOR = 2.0
NOTIFICATIONS_MIN_MARGIN = 25
DURATION_FACTOR = 4.0
DURATION_MIN_MARGIN_MS = 2500.0
TABLE_VERSION = 1


class BaselineError(Exception):
    """No usable baseline: the message says which file and what to run."""


def baselines_path(plan_file: str | os.PathLike[str]) -> Path:
    """The table a plan reads: ``baselines.json`` in the plan's directory."""
    return Path(plan_file).parent / BASELINES_FILE


def recording() -> bool:
    return os.environ.get(RECORDING_ENV, "") not in ("", "0")


def bounds_from(entry: Mapping[str, Any]) -> dict[str, float]:
    """The bounds for one plan's observations (the margins are documented above)."""
    try:
        rounds = int(entry["max_rounds"])
        notes = int(entry["max_notifications"])
        p99 = float(entry["p99_ms"])
    except (KeyError, TypeError, ValueError) as e:
        raise BaselineError(f"baseline entry lacks {e}") from None
    return {"max_rounds": rounds + ROUNDS_MARGIN,
            "max_notifications": max(math.ceil(notes * NOTIFICATIONS_FACTOR), notes + NOTIFICATIONS_MIN_MARGIN),
            "max_ms": float(math.ceil(max(p99 * DURATION_FACTOR, p99 + DURATION_MIN_MARGIN_MS)))}


def _read_table(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise BaselineError(f"{path}: cannot read ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("plans", {}), dict):
        raise BaselineError(f"{path}: not a baselines table (expected {{\"plans\": {{...}}}})")
    return data


def entry_key(plan_name: str, target: str = "fle") -> str:
    """A plan's row in the table: our node's under the plan's name, another
    target's (its elections cost what they cost there) as ``name@target``."""
    return plan_name if target == "fle" else f"{plan_name}@{target}"


def resolve(plan_file: str | os.PathLike[str], plan_name: str, target: str = "fle") -> dict[str, Any]:
    """The ``election_cost`` parameters of ``election_cost: baseline``: the
    bounds and ``source`` (the table's path). Raises BaselineError."""
    path = baselines_path(plan_file)
    entry = _read_table(path).get("plans", {}).get(entry_key(plan_name, target))
    if not isinstance(entry, dict):
        flag = "" if target == "fle" else f" --target {target}"
        raise BaselineError(f"no {target} baseline for plan '{plan_name}' in {path}; "
                            f"record one with `chaos baseline{flag} {plan_file}`")
    return {**bounds_from(entry), "source": str(path)}


def for_target(plan: Any, target: str) -> Any:
    """``plan`` with its ``election_cost: baseline`` bounds taken from
    ``target``'s row (our node's are resolved when the plan is parsed). With no
    row the check has no bounds to judge by and says so (``missing``)."""
    spec = plan.invariant("election_cost")
    if target == "fle" or spec is None or "source" not in spec.params or recording():
        return plan
    import dataclasses
    from chaos.plan.model import FrozenDict, InvariantSpec
    try:
        params: dict[str, Any] = resolve(plan.source_path, plan.name, target)
    except BaselineError as e:
        params = {"missing": str(e)}
    invariants = tuple(InvariantSpec(i.name, FrozenDict(params)) if i.name == "election_cost" else i
                       for i in plan.invariants)
    return dataclasses.replace(plan, invariants=invariants)


# --------------------------------------------------------------------------- recording


def measure(run_dirs: list[Path]) -> tuple[dict[str, Any] | None, list[str]]:
    """Observations over the clean runs among ``run_dirs``, and a note per
    run left out (not valid, or unreadable)."""
    from chaos.invariants.cost import judged_costs, p99
    from chaos.journal import JournalError, load
    costs, used, notes = [], 0, []
    for d in run_dirs:
        try:
            journal = load(d)
        except (JournalError, OSError) as e:
            notes.append(f"{d}: {e}")
            continue
        if journal.verdict != "valid":
            notes.append(f"{d}: verdict {journal.verdict}, left out")
            continue
        used += 1
        costs.extend(judged_costs(journal))
    if not used:
        return None, notes
    return {"runs": used, "elections": len(costs),
            "max_rounds": max((c.rounds for c in costs), default=1),
            "max_notifications": max((c.notifications for c in costs), default=0),
            "p99_ms": round(p99(c.duration_ms for c in costs), 1),
            "max_ms": round(max((c.duration_ms for c in costs), default=0.0), 1)}, notes


@dataclass(frozen=True, slots=True)
class _Run:
    plan: Any
    k: int
    out: Path


def _run_all(runs: list[_Run], jobs: int, say: Callable[[str], None], target: str = "fle") -> None:
    """Each run as `python -m chaos run` in its own process, ``jobs`` at a time."""
    from chaos import procs
    env = {**os.environ, RECORDING_ENV: "1"}
    pending, active = list(runs), []
    try:
        while pending or active:
            while pending and len(active) < jobs:
                run = pending.pop(0)
                argv = [sys.executable, "-m", "chaos", "run", str(run.plan.source_path), "--out", str(run.out),
                        "--target", target]
                if run.plan.seed is not None:
                    argv += ["--seed", str(run.plan.seed + run.k)]
                run.out.parent.mkdir(parents=True, exist_ok=True)
                proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        stdin=subprocess.DEVNULL, preexec_fn=procs.pdeathsig_preexec(os.getpid()))
                active.append((proc, run))
            time.sleep(0.2)
            for item in list(active):
                proc, run = item
                if proc.poll() is not None:
                    active.remove(item)
                    say(f"{run.plan.name} #{run.k + 1}: exit {proc.returncode} ({run.out})")
    finally:
        for proc, _ in active:
            proc.terminate()
        for proc, _ in active:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def record_baselines(plans: list[Any], *, repeat: int, out: Path | None, jobs: int = 1,
                     runs_dir: Path | None = None, say: Callable[[str], None] = print, target: str = "fle") -> int:
    """Run, measure and write the table; returns an exit code (0 every plan
    recorded, 3 some plan had no clean run)."""
    if not plans:
        return 2
    out = out or baselines_path(plans[0].source_path)
    runs_dir = runs_dir or Path(tempfile.mkdtemp(prefix="chaos-baseline-"))
    runs = [_Run(p, k, runs_dir / f"{p.name}-{k + 1}") for p in plans for k in range(repeat)]
    say(f"baseline: {len(runs)} run(s) in {runs_dir}, {jobs} at a time")
    _run_all(runs, jobs, say, target)
    table = _read_table(out)
    entries = dict(table.get("plans", {}))
    missing = []
    for p in plans:
        entry, notes = measure([r.out for r in runs if r.plan is p])
        for n in notes:
            say(f"  {n}")
        if entry is None:
            missing.append(p.name)
            say(f"{p.name}: no clean run, baseline not recorded")
            continue
        entry["repeat"] = repeat
        entries[entry_key(p.name, target)] = entry
        b = bounds_from(entry)
        say(f"{p.name}: {entry['runs']} clean run(s), {entry['elections']} election(s): rounds {entry['max_rounds']}, "
            f"notifications {entry['max_notifications']}, p99 {entry['p99_ms']:g} ms -> bounds "
            f"max_rounds {b['max_rounds']}, max_notifications {b['max_notifications']}, max_ms {b['max_ms']:g}")
    table = {"version": TABLE_VERSION,
             "about": "Clean-run election costs per plan, written by `chaos baseline`; bounds = "
                      "chaos.baselines.bounds_from(entry). Regenerate, do not edit.",
             "plans": dict(sorted(entries.items()))}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out)
    say(f"wrote {out}")
    return 3 if missing else 0
