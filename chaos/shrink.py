"""`chaos shrink RUN_DIR`: the smallest schedule that still makes a run invalid.

Theory of operation. An invalid run's resolved schedule (:mod:`chaos.schedule`)
is a list of concrete steps whose faults come in *units*, a fault with its
undo. Shrinking re-runs smaller schedules as real `chaos run` processes, each
in its own directory under ``RUN_DIR/shrink/``, with the run's seed, and keeps
a smaller one whenever it still fails:

1. reproduce: the whole schedule, written as a plan, must fail first;
2. faults: delta debugging (:func:`ddmin`) over the units;
3. parts: ddmin over the steps of a unit that has several (a toxic on many
   links written as several steps, a cut written as several one-way cuts);
4. sleeps: none at all, else ddmin over them, then the rest halved while it fails;
5. waits: ddmin over every wait but the first (which forms the ensemble).

Real runs reproduce a failure only sometimes, so a candidate *fails* when any
of its ``tries`` runs is invalid (exit 1) on an invariant the original run
violated; an unknown verdict (exit 3) does not count. The candidates of one
ddmin round are tried in order, ``jobs`` runs at a time; the first that fails
wins and the runs still going are stopped. Each phase works on the best
schedule so far, and ``RUN_DIR/minimal.yaml`` is rewritten each time it
improves, so a shrink cut short by its budget or by Ctrl-C leaves the best it
found. ``RUN_DIR/shrink.json`` logs every candidate and run.

The oracle is separate from the search: :class:`Oracle` takes a ``launch``
function (schedule, directory) -> :class:`Launch`, so the unit tests drive it
with instant fakes and no processes.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, TypeVar

from chaos.outcome import ExitCode
from chaos.schedule import Schedule, StepRole, schedule_from_journal, write_plan

__all__ = ["DEFAULT_BUDGET_S", "DEFAULT_TRIES", "MINIMAL_NAME", "LOG_NAME", "ShrinkOptions",
           "ShrinkResult", "ShrinkUsage", "BudgetExhausted", "TryResult", "Launch", "Oracle",
           "ddmin", "sequential", "shrink_run"]

DEFAULT_BUDGET_S = 20 * 60.0
DEFAULT_TRIES = 3
MINIMAL_NAME = "minimal.yaml"
LOG_NAME = "shrink.json"
SCHEDULE_NAME = "schedule.yaml"
SHRINK_DIR = "shrink"
_MIN_SLEEP_S = 0.05
_POLL_S = 0.2
_STOP_WAIT_S = 60.0

T = TypeVar("T")


class ShrinkUsage(Exception):
    """RUN_DIR is not a run, or its run was not invalid: nothing to shrink (exit 2)."""


class BudgetExhausted(Exception):
    """The budget ran out; the runs in flight were stopped."""


# --------------------------------------------------------------------------- delta debugging


def ddmin(items: Sequence[T], first_failing: Callable[[list[list[T]]], int | None], *,
          empty: bool = False) -> list[T]:
    """A 1-minimal failing subsequence of ``items`` (which must fail as a whole).

    Zeller and Hildebrandt's ddmin: split into n chunks; keep a chunk that fails
    alone, else a complement that fails (then n - 1 chunks), else split finer,
    until the chunks are single items. ``first_failing(candidates)`` returns the
    index of the first failing candidate (in list order) or None, so a caller
    may try a round's candidates in parallel. With ``empty`` the empty
    sequence is tried first."""
    items = list(items)
    if empty and items and first_failing([[]]) == 0:
        return []
    n = 2
    while len(items) >= 2:
        n = min(n, len(items))
        size, extra = divmod(len(items), n)
        chunks, at = [], 0
        for i in range(n):
            step = size + (1 if i < extra else 0)
            chunks.append(items[at:at + step])
            at += step
        candidates = list(chunks)
        if n > 2:
            candidates += [[x for j, c in enumerate(chunks) if j != i for x in c] for i in range(n)]
        hit = first_failing(candidates)
        if hit is None:
            if n >= len(items):
                break
            n = min(len(items), 2 * n)
        elif hit < len(chunks):
            items, n = candidates[hit], 2
        else:
            items, n = candidates[hit], max(n - 1, 2)
    return items


def sequential(test: Callable[[list[T]], bool]) -> Callable[[list[list[T]]], int | None]:
    """``first_failing`` from a one-candidate test, trying candidates in order."""

    def first_failing(candidates: list[list[T]]) -> int | None:
        for i, c in enumerate(candidates):
            if test(c):
                return i
        return None

    return first_failing


# --------------------------------------------------------------------------- the oracle


@dataclass(frozen=True, slots=True)
class TryResult:
    exit_code: int
    invalid: tuple[str, ...] = ()   # invariants the run found invalid


class Launch(Protocol):
    """One run in flight."""

    def poll(self) -> TryResult | None: ...

    def stop(self) -> None: ...


Launcher = Callable[[Schedule, Path], Launch]


@dataclass
class _Candidate:
    id: str
    phase: str
    change: str
    schedule: Schedule
    runs: list[dict[str, Any]] = field(default_factory=list)
    failing: bool | None = None
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "phase": self.phase, "change": self.change,
                "faults": list(self.schedule.units()), "steps": len(self.schedule.steps),
                "sleep_s": round(self.schedule.sleep_s, 3), "failing": self.failing,
                "cached": self.cached, "runs": self.runs}


class Oracle:
    """Tries candidate schedules with real (or, in tests, fake) runs.

    ``failing_on``: the invariants the original run violated; a try counts as
    failing when it exits 1 and violates one of them (any, when empty)."""

    def __init__(self, launch: Launcher, root: Path, *, tries: int = DEFAULT_TRIES, jobs: int = 1,
                 deadline: float = float("inf"), failing_on: Iterable[str] = (),
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 say: Callable[[str], None] = lambda m: None,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.launch = launch
        self.root = root
        self.tries = max(1, tries)
        self.jobs = max(1, jobs)
        self.deadline = deadline
        self.failing_on = frozenset(failing_on)
        self.clock, self.sleep, self.say, self.on_change = clock, sleep, say, on_change
        self.candidates: list[_Candidate] = []
        self.cache: dict[tuple, bool] = {}
        self.runs = 0
        self._next = 1 + max((int(p.name[1:4]) for p in root.glob("c[0-9][0-9][0-9]-t*")
                              if p.name[1:4].isdigit()), default=0) if root.is_dir() else 1

    def fails(self, result: TryResult) -> bool:
        if result.exit_code != ExitCode.INVALID:
            return False
        return not self.failing_on or bool(self.failing_on & set(result.invalid))

    def _log(self, c: _Candidate) -> None:
        """Number and log a candidate once it is run (or found in the cache):
        the ones a round never reached are not in the log."""
        if not c.id:
            c.id = f"c{self._next:03d}"
            self._next += 1
            self.candidates.append(c)

    def first_failing(self, schedules: Sequence[Schedule], phase: str, changes: Sequence[str]) -> int | None:
        """Index of the first schedule that fails, trying them in order,
        ``jobs`` runs at a time; raises BudgetExhausted past the deadline."""
        cands = []
        for s, change in zip(schedules, changes):
            c = _Candidate("", phase, change, s)
            key = tuple(s.actions())
            if key in self.cache:
                c.failing, c.cached = self.cache[key], True
            cands.append(c)
        queue = [(i, k) for i, c in enumerate(cands) if c.failing is None for k in range(self.tries)]
        done = [0] * len(cands)
        active: list[tuple[int, dict[str, Any], Launch, float]] = []
        try:
            while True:
                for i, c in enumerate(cands):
                    if c.failing is None:
                        break
                    self._log(c)
                    if c.failing:
                        return i
                else:
                    return None
                winner = next((i for i, c in enumerate(cands) if c.failing), len(cands))
                while queue and len(active) < self.jobs:
                    i, k = queue.pop(0)
                    if cands[i].failing is not None or i > winner:
                        continue
                    if self.clock() >= self.deadline:
                        raise BudgetExhausted()
                    self._log(cands[i])
                    run_dir = self.root / f"{cands[i].id}-t{k + 1}"
                    entry = {"dir": str(run_dir), "try": k + 1}
                    cands[i].runs.append(entry)
                    self.runs += 1
                    self.say(f"{cands[i].id} {phase}: {cands[i].change} — try {k + 1}/{self.tries} in {run_dir}")
                    active.append((i, entry, self.launch(cands[i].schedule, run_dir), self.clock()))
                self.sleep(_POLL_S)
                if self.clock() >= self.deadline:
                    raise BudgetExhausted()
                for item in list(active):
                    if item not in active:
                        continue  # stopped a moment ago: its candidate was decided
                    i, entry, launch, t0 = item
                    result = launch.poll()
                    if result is None:
                        continue
                    active.remove(item)
                    done[i] += 1
                    failed = self.fails(result)
                    entry.update(exit_code=result.exit_code, invalid=list(result.invalid),
                                 seconds=round(self.clock() - t0, 1), failing=failed)
                    c = cands[i]
                    if failed:
                        c.failing = True
                    elif done[i] >= self.tries and c.failing is None:
                        c.failing = False
                    if c.failing is not None:
                        self.cache[tuple(c.schedule.actions())] = c.failing
                        self.say(f"{c.id} {'FAILS' if c.failing else 'passes'} "
                                 f"(exit {result.exit_code}{', ' + ', '.join(result.invalid) if result.invalid else ''})")
                        for other in [a for a in active if a[0] == i]:
                            other[2].stop()
                            other[1].update(stopped=True)
                            active.remove(other)
                        self.on_change()
        finally:
            if active:
                with _signals_ignored():
                    for i, entry, launch, _ in active:
                        launch.stop()
                        entry.update(stopped=True)
                    self.on_change()


# --------------------------------------------------------------------------- real runs


class _ChaosRun:
    """`python -m chaos run PLAN --out DIR --seed S` in its own session (the
    runner's children die with it; a terminal's Ctrl-C reaches only us, and we
    stop it with SIGTERM, which it answers by cleaning up)."""

    def __init__(self, argv: list[str], run_dir: Path, env: dict[str, str]) -> None:
        from chaos import procs
        self.run_dir = run_dir
        self.proc = procs.spawn(argv, log_path=run_dir / "chaos.log", env=env)

    def poll(self) -> TryResult | None:
        code = self.proc.poll()
        if code is None:
            return None
        return TryResult(code if code in set(ExitCode) else int(ExitCode.INFRA), _invalid_of(self.run_dir))

    def stop(self) -> None:
        from chaos import procs
        if self.proc.poll() is not None:
            return
        try:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=_STOP_WAIT_S)
        except Exception:
            procs.kill_tree(self.proc, timeout=5.0)
            try:
                self.proc.wait(timeout=5.0)
            except Exception:
                pass


def _invalid_of(run_dir: Path) -> tuple[str, ...]:
    try:
        from chaos.journal import load
        return tuple(i.name for i in load(run_dir).invariants if str(i.verdict) == "invalid")
    except Exception:
        return ()


def _chaos_launcher(seed: int | None, extra: Sequence[str]) -> Launcher:
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")

    def launch(schedule: Schedule, run_dir: Path) -> Launch:
        run_dir.mkdir(parents=True, exist_ok=True)
        plan = write_plan(schedule, run_dir / "plan.yaml", name=schedule.default_name("shrink"),
                          description=f"A candidate of chaos shrink for {schedule.origin()}.")
        argv = [sys.executable, "-m", "chaos", "run", str(plan), "--out", str(run_dir), *extra]
        if seed is not None:
            argv += ["--seed", str(seed)]
        return _ChaosRun(argv, run_dir, env)

    return launch


# --------------------------------------------------------------------------- the search


@dataclass
class ShrinkOptions:
    run_dir: Path
    budget_s: float = DEFAULT_BUDGET_S
    tries: int = DEFAULT_TRIES
    jobs: int = 1
    run_args: Sequence[str] = ()   # more `chaos run` options (--toxiproxy URL, --target KIND)
    say: Callable[[str], None] | None = None
    launch: Launcher | None = None  # tests: fake runs


@dataclass
class ShrinkResult:
    exit_code: int
    outcome: str   # shrunk | not_reproduced | interrupted | header_not_as_run
    minimal: Path | None
    log: Path
    original: Schedule
    best: Schedule | None
    runs: int = 0


def _size(s: Schedule) -> dict[str, Any]:
    return {"faults": list(s.units()), "fault_steps": sum(1 for x in s.steps if x.role is StepRole.FAULT),
            "steps": len(s.steps), "sleep_s": round(s.sleep_s, 3)}


class _Shrinker:
    def __init__(self, opts: ShrinkOptions, journal: Any) -> None:
        self.opts = opts
        self.run_dir = Path(opts.run_dir).resolve()
        self.journal = journal
        self.t0 = time.monotonic()
        self.started_at = time.time()
        self.original = schedule_from_journal(journal, run_dir=self.run_dir)
        self.best: Schedule | None = None
        self.failed_on = tuple(i.name for i in journal.invariants if str(i.verdict) == "invalid")
        self.say = opts.say or (lambda m: sys.stderr.write(
            f"[shrink {time.monotonic() - self.t0:6.1f}s] {m}\n"))
        extra = list(opts.run_args)
        target = journal.run.target.kind if journal.run.target else None
        if target and "--target" not in extra:
            extra += ["--target", target]
        launch = opts.launch or _chaos_launcher(journal.run.seed, extra)
        self.oracle = Oracle(launch, self.run_dir / SHRINK_DIR, tries=opts.tries, jobs=opts.jobs,
                             deadline=self.t0 + opts.budget_s, failing_on=self.failed_on,
                             say=self.say, on_change=self.write_log)
        self.outcome = "running"

    # ---- output

    def write_log(self) -> None:
        data = {"run_id": self.original.run_id, "run_dir": str(self.run_dir), "plan": self.original.plan_name,
                "seed": self.original.seed, "failed_on": list(self.failed_on), "tries": self.opts.tries,
                "jobs": self.opts.jobs, "budget_s": self.opts.budget_s, "started_at": self.started_at,
                "duration_s": round(time.monotonic() - self.t0, 1), "outcome": self.outcome,
                "runs": self.oracle.runs, "original": _size(self.original),
                "minimal": _size(self.best) if self.best is not None else None,
                "minimal_path": MINIMAL_NAME if self.best is not None else None,
                "candidates": [c.to_json() for c in self.oracle.candidates]}
        path = self.run_dir / LOG_NAME
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)

    def write_minimal(self) -> None:
        assert self.best is not None
        o, b = self.original, self.best
        on = ", ".join(self.failed_on) or "an invariant"
        text = (f"The smallest schedule chaos shrink found that still fails {on} as {o.origin()} "
                f"did: {len(b.units())} of {len(o.units())} faults ({', '.join(b.units()) or 'none'}), "
                f"{len(b.steps)} of {len(o.steps)} steps, {b.sleep_s:g}s of {o.sleep_s:g}s asleep. "
                f"A candidate failed if any of {self.opts.tries} runs was invalid, so it may need "
                f"a few runs to fail again.")
        import textwrap
        write_plan(b, self.run_dir / MINIMAL_NAME, name=o.default_name("minimal"),
                   description="\n".join(textwrap.wrap(text, 78)),
                   header=[f"chaos shrink {self.run_dir}: run it with "
                           f"chaos run {shlex.quote(str(self.run_dir / MINIMAL_NAME))}"
                           + (f" --seed {o.seed}" if o.seed is not None else "")])

    def accept(self, s: Schedule) -> None:
        self.best = s
        self.write_minimal()
        self.write_log()
        self.say(f"smaller: {len(s.units())} fault(s) {', '.join(s.units())}, {len(s.steps)} steps")

    # ---- phases

    def test(self, schedules: list[Schedule], phase: str, changes: list[str]) -> int | None:
        return self.oracle.first_failing(schedules, phase, changes)

    def run(self) -> None:
        write_plan(self.original, self.run_dir / SCHEDULE_NAME)
        self.write_log()
        if self.test([self.original], "reproduce", ["the whole resolved schedule"]) is None:
            self.outcome = "not_reproduced"
            return
        self.accept(self.original)
        self.faults()
        self.parts()
        self.sleeps()
        self.waits()

    def _ddmin(self, items: list[T], build: Callable[[list[T]], Schedule], phase: str,
               describe: Callable[[list[T]], str], *, empty: bool = False) -> list[T]:
        def first_failing(subsets: list[list[T]]) -> int | None:
            hit = self.test([build(s) for s in subsets], phase, [describe(s) for s in subsets])
            if hit is not None:
                self.accept(build(subsets[hit]))
            return hit
        return ddmin(items, first_failing, empty=empty)

    def faults(self) -> None:
        assert self.best is not None
        base = self.best
        units = list(base.units())
        if len(units) < 2:
            return
        self._ddmin(units, base.keep_units, "faults", lambda u: "keep faults " + (", ".join(u) or "none"))

    def parts(self) -> None:
        assert self.best is not None
        for unit in list(self.best.units()):
            base = self.best
            idx = list(base.fault_steps(unit))
            if len(idx) < 2:
                continue
            self._ddmin(idx, lambda keep, base=base, idx=idx: base.without(i for i in idx if i not in keep),
                        "parts", lambda keep, unit=unit, idx=idx: f"keep {len(keep)} of {len(idx)} steps of {unit}")

    def sleeps(self) -> None:
        assert self.best is not None
        base = self.best
        idx = [i for i, s in enumerate(base.steps) if s.kind == "sleep"]
        if not idx:
            return
        self._ddmin(idx, lambda keep: base.without(i for i in idx if i not in keep), "sleeps",
                    lambda keep: "keep sleeps " + (", ".join(base.steps[i].value for i in keep) or "none"),
                    empty=True)
        for _ in range(4):
            base = self.best
            longer = [i for i, s in enumerate(base.steps) if s.kind == "sleep" and (s.seconds or 0) > _MIN_SLEEP_S]
            if not longer:
                return
            halved = base
            for i in longer:
                s = base.steps[i]
                halved = halved.with_step(i, _with_seconds(s, max(_MIN_SLEEP_S, (s.seconds or 0) / 2)))
            if self.test([halved], "sleeps", ["every sleep halved"]) is None:
                return
            self.accept(halved)

    def waits(self) -> None:
        assert self.best is not None
        base = self.best
        idx = [i for i, s in enumerate(base.steps) if s.kind == "wait"][1:]
        if not idx:
            return
        self._ddmin(idx, lambda keep: base.without(i for i in idx if i not in keep), "waits",
                    lambda keep: f"keep {len(keep)} of {len(idx)} waits", empty=True)


def _with_seconds(step: Any, seconds: float) -> Any:
    from dataclasses import replace

    from chaos.plan import format_duration
    return replace(step, value=format_duration(seconds))


def shrink_run(opts: ShrinkOptions) -> ShrinkResult:
    """Shrink the invalid run in ``opts.run_dir``; see the module docstring.

    Exit codes: 0 a minimal.yaml was written, 3 the failure did not reproduce
    within the budget (or Ctrl-C/SIGTERM came first); ShrinkUsage (exit 2) when
    RUN_DIR is not an invalid run."""
    from chaos.journal import JournalError, load
    run_dir = Path(opts.run_dir)
    try:
        journal = load(run_dir)
    except (JournalError, OSError) as e:
        raise ShrinkUsage(f"{run_dir}: not a run directory ({e})") from None
    if journal.verdict != "invalid":
        raise ShrinkUsage(f"{run_dir}: the run's verdict is {journal.verdict}, not invalid; nothing to shrink")
    sh = _Shrinker(opts, journal)
    if not sh.original.exact_header:
        # Its runs would be judged by other rules than the run was: no shrink can be trusted.
        sh.outcome = "header_not_as_run"
        sh.write_log()
        for note in sh.original.notes:
            sh.say(note)
        sh.say("the run's plan header cannot be written as it ran; not shrinking")
        return ShrinkResult(int(ExitCode.INFRA), sh.outcome, None, run_dir / LOG_NAME, sh.original, None)
    old = _term_to_interrupt()
    try:
        try:
            sh.run()
            if sh.outcome == "running":
                sh.outcome = "shrunk"
        except BudgetExhausted:
            sh.outcome = "shrunk" if sh.best is not None else "not_reproduced"
            sh.say(f"budget of {opts.budget_s:g}s spent")
        except KeyboardInterrupt:
            sh.outcome = "interrupted"
            sh.say("interrupted")
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            sh.write_log()
            _rerender(run_dir, sh.say)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    code = ExitCode.OK if sh.outcome == "shrunk" else ExitCode.INFRA
    minimal = run_dir / MINIMAL_NAME if sh.best is not None else None
    if sh.outcome == "not_reproduced":
        sh.say(f"could not reproduce the failure ({', '.join(sh.failed_on) or 'invalid'}) "
               f"in {sh.oracle.runs} run(s)")
    elif minimal is not None:
        sh.say(f"minimal: {minimal} ({len(sh.best.units())} of {len(sh.original.units())} faults, "
               f"{len(sh.best.steps)} of {len(sh.original.steps)} steps; {sh.oracle.runs} runs)")
    return ShrinkResult(int(code), sh.outcome, minimal, run_dir / LOG_NAME, sh.original, sh.best,
                        sh.oracle.runs)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Stopping runs must not be cut short by a second Ctrl-C (main thread only)."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _term_to_interrupt() -> dict:
    """SIGTERM ends a shrink as Ctrl-C does (main thread only)."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = {signal.SIGTERM: signal.signal(signal.SIGTERM, handler),
           signal.SIGINT: signal.getsignal(signal.SIGINT)}
    if old[signal.SIGINT] is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return old


def _rerender(run_dir: Path, say: Callable[[str], None]) -> None:
    """The run's report, now linking minimal.yaml."""
    try:
        from chaos.report import render_report
        render_report(run_dir)
    except Exception as e:
        say(f"report not re-rendered: {type(e).__name__}: {e}")
