"""`chaos` / `flechaos`: run, validate, list, schema, report.

Exit codes CI can read: 0 every invariant valid, 1 an invariant invalid,
2 bad plan or usage (nothing started), 3 infrastructure failure or unknown
verdict (includes Ctrl-C/SIGTERM).
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click

from chaos.outcome import ExitCode

__all__ = ["main", "cli"]


def _load_plans(paths, *, on_error=None) -> tuple[list, bool]:
    """Load every plan; print each one's errors (all of them, FILE:LINE:COL).
    Returns the plans that loaded and whether any did not. ``on_error(path,
    n_errors)`` replaces the printing (``chaos list`` shows a count instead)."""
    from chaos.plan import PlanError, load_plan
    loaded, bad = [], False
    for p in paths:
        try:
            loaded.append(load_plan(str(p)))
        except PlanError as e:
            bad = True
            if on_error is not None:
                on_error(p, len(e.errors))
            else:
                for line in e.errors:
                    click.echo(str(line), err=True)
        except OSError as e:
            bad = True
            click.echo(f"{p}: {e.strerror or e}", err=True)
    return loaded, bad


def _combine(codes: list[int]) -> int:
    """One exit code for several runs: a violation beats an infrastructure
    problem, which beats success."""
    for c in (ExitCode.USAGE, ExitCode.INVALID, ExitCode.INFRA):
        if c in codes:
            return int(c)
    return int(ExitCode.OK)


def _target_names() -> list[str]:
    from chaos.targets import TARGETS
    return sorted(TARGETS)


class _Group(click.Group):
    def main(self, *a, **kw):  # click's usage errors exit 2 already
        return super().main(*a, **kw)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Chaos tests for ZooKeeper-style leader election."""


@cli.command()
@click.argument("plans", nargs=-1)
@click.option("--seed", type=int, default=None, help="Seed for every random choice (default: the plan's, else random).")
@click.option("--repeat", "repeat", type=click.IntRange(1), default=1,
              help="Run each plan K times, the k-th (from 0) with seed + k.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory (with several runs: a parent directory for them).")
@click.option("--time-limit", type=str, default=None, help="Bound for the whole run, e.g. 90s (overrides the plan).")
@click.option("--toxiproxy", "toxiproxy_url", default=None, help="Use a running Toxiproxy at URL.")
@click.option("--toxiproxy-bin", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Launch this toxiproxy-server binary.")
@click.option("--replay", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Re-apply the resolved choices of an earlier run.")
@click.option("--jobs", type=click.IntRange(1), default=1, help="Runs in parallel (separate processes).")
@click.option("--target", type=click.Choice(_target_names()), default=None,
              help="What runs the plan: our node (fle, the default) or real ZooKeeper servers (zookeeper); "
                   "overrides the plan's ensemble.target.")
@click.option("--links", "links", type=click.Choice(["config", "netns"]), default=None,
              help="How links pass the proxies: zoo.cfg addresses (config; fle's default) or a network "
                   "namespace per node with nft DNAT (netns; zookeeper's, needs root, ip and nft).")
@click.option("--zookeeper-home", type=click.Path(exists=True, file_okay=False), default=None,
              envvar="ZOOKEEPER_HOME", help="An unpacked ZooKeeper release (default: Debian's package).")
@click.option("--shrink", is_flag=True, help="Shrink each invalid run (as chaos shrink RUN_DIR).")
@click.option("--shrink-budget", default=None, help="Bound for each shrink, e.g. 10m (default 20m).")
def run(plans, seed, repeat, out, time_limit, toxiproxy_url, toxiproxy_bin, replay, jobs, target,
        links, zookeeper_home, shrink, shrink_budget) -> None:
    """Run PLAN(s); print the seed and where the journal and report are."""
    if toxiproxy_url and toxiproxy_bin:
        raise click.UsageError("--toxiproxy and --toxiproxy-bin exclude each other")
    global _RUN_EXTRA
    _RUN_EXTRA = {"links": links, "zookeeper_home": zookeeper_home}
    if not plans and replay is not None:
        from chaos.journal import load as load_journal
        p = load_journal(replay).run.plan_path
        if not p:
            raise click.UsageError(f"{replay}: the journal names no plan; give PLAN")
        plans = (p,)
    if not plans:
        raise click.UsageError("give at least one PLAN")
    limit = None
    if time_limit is not None:
        limit = _seconds(time_limit)
        if limit is None:
            raise click.UsageError(f"--time-limit: expected a duration like 90s, got {time_limit!r}")
    shrink_s = _shrink_budget(shrink, shrink_budget)
    loaded, bad = _load_plans(plans)
    if bad:
        sys.exit(ExitCode.USAGE)
    runs = [(plan, k) for plan in loaded for k in range(repeat)]
    multi = len(runs) > 1
    if out is not None:
        targets = [out / f"{plan.name}-{k + 1}" for plan, k in runs] if multi else [out]
        used = [t for t in targets if (t / "journal.jsonl").exists()]
        if used:
            raise click.UsageError(f"{used[0]} already holds a run; pick another --out")
    if jobs > 1 and multi:
        sys.exit(_run_parallel(runs, jobs, seed=seed, out=out, limit=limit, toxiproxy_url=toxiproxy_url,
                               toxiproxy_bin=toxiproxy_bin, replay=replay, target=target, shrink_s=shrink_s))
    codes = []
    for plan, k in runs:
        run_out = out
        if multi and out is not None:
            run_out = out / f"{plan.name}-{k + 1}"
        codes.append(_run_one(plan, _seed_for(plan, seed, k), run_out, limit, toxiproxy_url,
                              toxiproxy_bin, replay, target, shrink_s))
    sys.exit(_combine(codes))


def _seed_for(plan, seed: int | None, k: int) -> int | None:
    """Repeat k of a plan explores a schedule of its own (base seed + k), and
    every run stays reproducible from the seed it records and prints. None:
    neither --seed nor the plan fixes one, so each run draws a fresh seed."""
    base = seed if seed is not None else plan.seed
    return None if base is None else base + k


def _seconds(text: str) -> float | None:
    """A CLI duration: `90s`, `2m`, `1500ms`; a bare number is seconds here
    (in a plan a bare number is milliseconds)."""
    from chaos.plan.durations import DurationError, parse_duration
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_duration(text)
    except DurationError:
        return None


def _run_one(plan, seed, out, limit, toxiproxy_url, toxiproxy_bin, replay, target, shrink_s=None) -> int:
    from chaos.runner import RunOptions, run_plan
    from chaos.targets import preflight
    target = target or getattr(plan.ensemble, "target", None) or "fle"
    problem = preflight(target, _RUN_EXTRA.get("links"), _RUN_EXTRA.get("zookeeper_home"))
    if problem:
        click.echo(f"{plan.name}: {problem}", err=True)
        return int(ExitCode.INFRA)
    skip = _skip_reason(plan, target)
    if skip:
        click.echo(f"{plan.name}: skipped on {target}: {skip}")
        return int(ExitCode.OK)
    opts = RunOptions(plan=plan, seed=seed, out=out, time_limit_s=limit, toxiproxy_url=toxiproxy_url,
                      toxiproxy_bin=toxiproxy_bin, replay=replay, target=target,
                      links=_RUN_EXTRA.get("links"),
                      target_options={"zookeeper_home": _RUN_EXTRA["zookeeper_home"]}
                      if _RUN_EXTRA.get("zookeeper_home") else {},
                      command=" ".join(shlex.quote(a) for a in ["chaos", *sys.argv[1:]]))
    result = run_plan(opts)
    click.echo(f"{plan.name}: seed {result.seed}", err=True)
    summary = f"{plan.name}: verdict {result.verdict}, exit {result.exit_code}"
    if result.error:
        summary += f" ({result.error})"
    click.echo(summary)
    for r in result.invariants:
        click.echo(f"  {r.verdict:8} {r.name}: {r.message}")
    click.echo(f"  journal: {result.run_dir / 'journal.json'}")
    click.echo(f"  report:  {result.run_dir / 'report.html'}")
    click.echo(f"  replay:  chaos run {plan.source_path or plan.name} --seed {result.seed} --replay {result.run_dir}")
    if shrink_s is not None and result.exit_code == ExitCode.INVALID:
        _shrink(result.run_dir, shrink_s, run_args=_pass_on(limit, toxiproxy_url, toxiproxy_bin))
    return result.exit_code


_RUN_EXTRA: dict = {}


def _skip_reason(plan, target: str) -> str | None:
    """A plan that says ``targets: [...]`` without this one is skipped, with its reason."""
    targets = getattr(plan, "targets", None)
    if targets and target not in targets:
        return getattr(plan, "targets_reason", None) or f"the plan runs only on {', '.join(targets)}"
    return None


def _run_parallel(runs, jobs, *, seed, out, limit, toxiproxy_url, toxiproxy_bin, replay, target,
                  shrink_s=None) -> int:
    """Each run in its own `python -m chaos run` process (PDEATHSIG needs the
    spawning thread to live, and a crash of one run must not take the others)."""
    from chaos import procs
    from chaos.runner import default_run_dir
    import signal as _signal

    def _term(signum, frame):
        raise KeyboardInterrupt

    _signal.signal(_signal.SIGTERM, _term)
    pending = list(runs)
    active: list[tuple[object, str]] = []
    codes: list[int] = []
    try:
        while pending or active:
            while pending and len(active) < jobs:
                plan, k = pending.pop(0)
                run_out = (out / f"{plan.name}-{k + 1}") if out is not None else default_run_dir(plan.name)
                run_out.parent.mkdir(parents=True, exist_ok=True)
                argv = [sys.executable, "-m", "chaos", "run", plan.source_path, "--out", str(run_out)]
                if target:
                    argv += ["--target", target]
                for flag, key in (("--links", "links"), ("--zookeeper-home", "zookeeper_home")):
                    if _RUN_EXTRA.get(key):
                        argv += [flag, _RUN_EXTRA[key]]
                run_seed = _seed_for(plan, seed, k)
                if run_seed is not None:
                    argv += ["--seed", str(run_seed)]
                if limit is not None:
                    argv += ["--time-limit", f"{limit}s"]
                if toxiproxy_url:
                    argv += ["--toxiproxy", toxiproxy_url]
                if toxiproxy_bin:
                    argv += ["--toxiproxy-bin", toxiproxy_bin]
                if replay:
                    argv += ["--replay", str(replay)]
                if shrink_s is not None:
                    argv += ["--shrink", "--shrink-budget", f"{shrink_s}s"]
                proc = subprocess.Popen(argv, preexec_fn=procs.pdeathsig_preexec(os.getpid()))
                active.append((proc, plan.name))
                click.echo(f"started {plan.name} (pid {proc.pid}) -> {run_out}", err=True)
                run_out.mkdir(parents=True, exist_ok=True)
            time.sleep(0.2)
            for item in list(active):
                proc, name = item
                if proc.poll() is not None:
                    active.remove(item)
                    codes.append(proc.returncode if proc.returncode in set(ExitCode) else int(ExitCode.INFRA))
    except KeyboardInterrupt:
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
        # Each child cleans up on SIGTERM (journal, report, exit 3); SIGKILL
        # only if it does not finish in time.
        for proc, _ in active:
            try:
                proc.send_signal(_signal.SIGTERM)
            except OSError:
                pass
        for proc, _ in active:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return int(ExitCode.INFRA)
    return _combine(codes)


@cli.command()
@click.argument("plans", nargs=-1, required=True)
def validate(plans) -> None:
    """Check PLAN(s); print every error; exit 2 if any."""
    loaded, bad = _load_plans(plans)
    for plan in loaded:
        click.echo(f"{plan.source_path}: ok ({plan.name}, {len(plan.steps)} steps)")
    sys.exit(ExitCode.USAGE if bad else ExitCode.OK)


@cli.command("shrink")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--budget", default="20m", show_default=True, help="Bound for the whole shrink, e.g. 20m.")
@click.option("--tries", type=click.IntRange(1), default=3, show_default=True,
              help="Runs per candidate; it fails if any of them is invalid.")
@click.option("--jobs", type=click.IntRange(1), default=1, help="Runs in parallel (separate processes).")
@click.option("--toxiproxy", "toxiproxy_url", default=None, help="Use a running Toxiproxy at URL.")
@click.option("--toxiproxy-bin", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Launch this toxiproxy-server binary.")
def shrink_cmd(run_dir, budget, tries, jobs, toxiproxy_url, toxiproxy_bin) -> None:
    """Re-run smaller versions of an invalid run's resolved schedule and write
    the smallest that still fails as RUN_DIR/minimal.yaml (exit 0; 2: not an
    invalid run; 3: the failure did not reproduce within the budget)."""
    sys.exit(_shrink(run_dir, _shrink_budget(True, budget), tries=tries, jobs=jobs,
                     run_args=_pass_on(None, toxiproxy_url, toxiproxy_bin)))


def _shrink_budget(shrink: bool, text: str | None) -> float | None:
    from chaos.shrink import DEFAULT_BUDGET_S
    if not shrink:
        return None
    budget = DEFAULT_BUDGET_S if text is None else _seconds(text)
    if budget is None or budget <= 0:
        raise click.UsageError(f"expected a budget like 20m, got {text!r}")
    return budget


def _pass_on(limit, toxiproxy_url, toxiproxy_bin) -> list[str]:
    """The `chaos run` options a shrink's runs keep."""
    out = [] if limit is None else ["--time-limit", f"{limit}s"]
    if toxiproxy_url:
        out += ["--toxiproxy", toxiproxy_url]
    if toxiproxy_bin:
        out += ["--toxiproxy-bin", str(toxiproxy_bin)]
    return out


def _shrink(run_dir, budget_s, *, tries=None, jobs=1, run_args=()) -> int:
    from chaos.shrink import DEFAULT_TRIES, ShrinkOptions, ShrinkUsage, shrink_run
    try:
        result = shrink_run(ShrinkOptions(Path(run_dir), budget_s=budget_s, tries=tries or DEFAULT_TRIES,
                                          jobs=jobs, run_args=run_args))
    except ShrinkUsage as e:
        click.echo(str(e), err=True)
        return int(ExitCode.USAGE)
    click.echo(f"shrink {run_dir}: {result.outcome.replace('_', ' ')} after {result.runs} run(s)")
    if result.minimal is not None:
        click.echo(f"  minimal: {result.minimal}")
    click.echo(f"  log:     {result.log}")
    return result.exit_code


@cli.command("list")
@click.option("--dir", "plan_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("plans"))
def list_plans(plan_dir: Path) -> None:
    """The plans in plans/ and what each proves."""
    files = sorted(plan_dir.glob("*.yaml")) + sorted(plan_dir.glob("*.yml"))
    if not files:
        click.echo(f"no plans in {plan_dir}", err=True)
        sys.exit(ExitCode.USAGE)
    for f in files:
        loaded, _ = _load_plans([f], on_error=lambda p, n: click.echo(f"{str(p):40} INVALID ({n} error(s))"))
        for plan in loaded:
            first = (plan.description.strip().splitlines() or [""])[0]
            click.echo(f"{str(f):40} {first}")


@cli.command()
def schema() -> None:
    """Print the plan language as JSON Schema."""
    from chaos.plan import schema_json
    out = schema_json()
    click.echo(out if isinstance(out, str) else __import__("json").dumps(out, indent=2))


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def report(run_dir: Path) -> None:
    """Re-render RUN_DIR's report (and junit.xml, and the index) from its journal."""
    from chaos.journal import JournalError, load
    from chaos.report import render_index, render_report, write_junit
    from chaos.runner import is_reports_folder
    try:
        journal = load(run_dir)
    except JournalError as e:
        click.echo(str(e), err=True)
        sys.exit(ExitCode.USAGE)
    path = render_report(run_dir)
    write_junit(journal, run_dir / "junit.xml")
    if is_reports_folder(run_dir.resolve().parent):
        render_index(run_dir.resolve().parent)
    click.echo(str(path))


@cli.command()
@click.argument("plans", nargs=-1, required=True)
@click.option("--repeat", type=click.IntRange(1), default=5, show_default=True,
              help="Clean runs per plan (seed, seed+1, ...).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Baselines table to update (default: baselines.json beside the first plan).")
@click.option("--jobs", type=click.IntRange(1), default=1, help="Runs in parallel (separate processes).")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the runs go (default: a new temporary directory).")
@click.option("--target", type=click.Choice(_target_names()), default="fle", show_default=True,
              help="Whose elections to measure: our node's, or real ZooKeeper's (rows `PLAN@zookeeper`).")
def baseline(plans, repeat, out, jobs, runs_dir, target) -> None:
    """Record what clean runs of PLAN(s) cost per election (the bounds of
    `election_cost: baseline`); updates those plans' entries in the table."""
    from chaos.baselines import RECORDING_ENV, record_baselines
    # A plan asks for `election_cost: baseline` before it has one: that is what this records.
    os.environ[RECORDING_ENV] = "1"
    loaded, bad = _load_plans(plans)
    if bad:
        sys.exit(ExitCode.USAGE)
    for p in [p for p in loaded if p.targets and target not in p.targets]:
        click.echo(f"{p.name}: skipped, not for {target} ({p.targets_reason or 'targets: ' + ', '.join(p.targets)})",
                   err=True)
        loaded.remove(p)
    if not loaded:
        sys.exit(ExitCode.OK)
    sys.exit(record_baselines(loaded, repeat=repeat, out=out, jobs=jobs, runs_dir=runs_dir,
                              say=lambda m: click.echo(m, err=True), target=target))


@cli.command("sim")
@click.argument("plans", nargs=-1, required=True)
@click.option("--repeat", "--runs", "repeat", type=click.IntRange(1), default=1,
              help="Runs per plan, the k-th (from 0) with seed + k (--runs: the same).")
@click.option("--seed", type=int, default=None, help="First seed (default: the plan's, else 1).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("reports/sim"),
              show_default=True, help="Where failing (or, with --keep-all, every) runs go: OUT/<plan>-seed<k>/.")
@click.option("--jobs", type=click.IntRange(1), default=1, help="Worker processes.")
@click.option("--keep-all", is_flag=True, help="Write every run's directory, not only the failing ones.")
@click.option("--promote", is_flag=True, help="Also write each invalid run's schedule as a plan for chaos run.")
@click.option("--shrink", is_flag=True, help="Shrink the first invalid seeds of each plan (in the simulator).")
@click.option("--shrink-budget", default="2m", show_default=True, help="Bound for each shrink.")
def sim(plans, repeat, seed, out, jobs, keep_all, promote, shrink, shrink_budget) -> None:
    """Run PLAN(s) in the deterministic simulator (virtual time, seeded network)."""
    from chaos.sim.command import SimOptions, simulate
    budget = _seconds(shrink_budget)
    if budget is None:
        raise click.UsageError(f"--shrink-budget: expected a duration like 2m, got {shrink_budget!r}")
    opts = SimOptions(paths=plans, repeat=repeat, seed=seed, out=out, jobs=jobs, keep_all=keep_all,
                      promote=promote, shrink=shrink, shrink_budget_s=budget,
                      command=" ".join(shlex.quote(a) for a in ["chaos", *sys.argv[1:]]))
    sys.exit(simulate(opts, lambda m: click.echo(m)))


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="chaos")


if __name__ == "__main__":  # pragma: no cover
    main()
