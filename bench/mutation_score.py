"""Mutation score of the plan suite: how many seeded node/ bugs does it catch?

    python bench/mutation_score.py                       # every mutant, plans/*.yaml, seed 1, --jobs 2
    python bench/mutation_score.py --only zk1514_leader_ignores_round slip_no_trunc
    python bench/mutation_score.py --check               # apply + import each mutant, no suite
    python bench/mutation_score.py --list                # what each mutant models
    python bench/mutation_score.py --unit                # also: do tests/node_core, tests/node_zab see it?
    python bench/mutation_score.py --json out.json --markdown out.md

Each file in bench/mutants/ is a unified diff of node/ headed by comment
lines (`# Mutant:`, `# Models:`, `# Kind:`, `# Breaks:`, `# Adaptation:`)
naming the ZooKeeper JIRA or classic slip it models. A mutant is *killed*
when some plan of one suite pass ends `invalid`; `unknown` is not a kill,
since a harness that cannot judge has not caught anything.

Why a copy: other people edit this working tree while the bench runs, and a
mutant must never touch it. The bench copies the tree once (`--source
worktree`, the default: the files `git ls-files --cached --others
--exclude-standard` lists, with their working-tree contents, so uncommitted
plans and oracles count; `--source head`: `git archive HEAD`, what CI
sees), leaving out reports/. Every mutant then gets its own copy of that
base, where `git apply` patches it; the suite runs there with the real CLI
(`python -m chaos run PLANS --seed S --jobs 2 --out DIR`, cwd and
PYTHONPATH the copy), so the nodes it starts import the mutated node/.

Plans this machine cannot run (`chaos.targets.plan_preflight`: a power cut
needs FUSE, a reboot nftables and root) are left out of every pass and named
in the output, rather than ending `unknown` everywhere and voiding the score.

Before the mutants, one clean pass of the same suite on the unmutated base
must be all `valid`; otherwise the score is void (a plan that fails on its
own kills every mutant) and the output says so. A mutant whose patch no
longer applies is reported `stale` (node/ changed under it) and one that
does not import is `broken`; neither counts in the score.

Exit status: 0 measured (whatever the score: it is a measurement, not a
gate), 1 some mutant is stale or broken (or its pass gave no verdict), 3 the clean pass was not all valid
(score void), 130 interrupted.

Every suite pass is bounded by --timeout. The bench owns the processes it
starts: it watches their descendants while they run and, on timeout,
Ctrl-C or SIGTERM, ends the chaos process group and then any descendant
still alive, by pid. Temporary copies are removed in `finally`.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

__all__ = ["Mutant", "Outcome", "load_mutants", "main"]

ROOT = Path(__file__).resolve().parents[1]
MUTANTS_DIR = ROOT / "bench" / "mutants"
EXCLUDE_TOP = ("reports/",)
UNIT_TESTS = ("tests/node_core", "tests/node_zab")
IMPORT_CHECK = "import node.fle, node.server"

# statuses of one mutant
KILLED, SURVIVED, TIMEOUT, STALE, BROKEN, ERROR, CHECKED = (
    "killed", "survived", "timeout", "stale", "broken", "error", "applies")


class Interrupted(Exception):
    """SIGTERM (e.g. a cancelled CI job): unwind through every cleanup like Ctrl-C."""


# --------------------------------------------------------------------------- mutants

@dataclass(frozen=True, slots=True)
class Mutant:
    name: str
    path: Path
    models: str
    kind: str
    breaks: str

    @property
    def label(self) -> str:
        """Short form of what it models, for the table: JIRA ids, or the slip's name."""
        jiras = re.findall(r"ZOOKEEPER-(\d+)", self.models)
        if jiras:
            return ", ".join(f"ZK-{j}" for j in dict.fromkeys(jiras))
        m = re.match(r"Classic slip:\s*([^.:]+)", self.models)
        return "slip: " + (m.group(1) if m else self.models)[:60]


def _header(text: str) -> dict[str, str]:
    """The `# Key: value` lines (with indented continuations) before the diff."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line.startswith(("--- ", "diff ")):
            break
        if not line.startswith("#"):
            continue
        body = line[1:].strip()
        m = re.match(r"([A-Z][A-Za-z]*):\s*(.*)", body)
        if m and line[1:2] == " " and not line[2:3].isspace():
            key = m.group(1).lower()
            fields[key] = m.group(2)
        elif key and body:
            fields[key] += " " + body
    return fields


def load_mutants(directory: Path, only: list[str] | None = None) -> list[Mutant]:
    out = []
    for p in sorted(directory.glob("*.patch")):
        h = _header(p.read_text())
        out.append(Mutant(p.stem, p, h.get("models", "?"), h.get("kind", "?"), h.get("breaks", "")))
    if only:
        known = {m.name for m in out}
        missing = [n for n in only if n not in known]
        if missing:
            raise SystemExit(f"no such mutant(s): {', '.join(missing)} (see {directory})")
        out = [m for m in out if m.name in only]
    return out


# --------------------------------------------------------------------------- processes

class Owned:
    """Processes this bench started, and every descendant seen while they ran."""

    def __init__(self) -> None:
        self.current: subprocess.Popen | None = None
        self.seen: dict[int, psutil.Process] = {}

    def _snapshot(self, proc: subprocess.Popen) -> None:
        try:
            for c in psutil.Process(proc.pid).children(recursive=True):
                self.seen.setdefault(c.pid, c)
        except psutil.Error:
            pass

    def run(self, argv: list[str], *, cwd: Path, env: dict[str, str], log: Path,
            timeout: float) -> tuple[int | None, float]:
        """Run to completion or timeout; returns (exit code or None on timeout, seconds)."""
        t0 = time.monotonic()
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.current = proc
        try:
            while True:
                self._snapshot(proc)
                try:
                    code = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() - t0 > timeout:
                        code = None
                        break
        finally:
            self.end()
        return code, time.monotonic() - t0

    def end(self) -> None:
        """End the current child (group first, gently) and every descendant still alive."""
        proc, self.current = self.current, None
        if proc is not None and proc.poll() is None:
            self._snapshot(proc)
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # chaos tears its runs down on SIGTERM
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
        left = [p for p in self.seen.values() if p.is_running()]
        for p in left:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(left, timeout=5)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        self.seen.clear()


# --------------------------------------------------------------------------- copies

def make_base(dest: Path, source: str) -> None:
    """A copy of the repo to patch; never the working tree itself."""
    dest.mkdir(parents=True)
    if source == "head":
        with tempfile.TemporaryFile() as tar:
            subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, stdout=tar, check=True)
            tar.seek(0)
            with tarfile.open(fileobj=tar) as tf:
                members = [m for m in tf.getmembers() if not m.name.startswith(EXCLUDE_TOP)]
                tf.extractall(dest, members=members)
    else:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=ROOT, capture_output=True, check=True).stdout.decode()
        for rel in sorted(set(filter(None, listed.split("\0")))):
            if rel.startswith(EXCLUDE_TOP):
                continue
            src = ROOT / rel
            if not src.is_file():  # deleted in the working tree, or a submodule
                continue
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    # its own (empty) repository, so `git apply` resolves paths against the copy
    subprocess.run(["git", "init", "-q", str(dest)], check=True)


def child_env(copy: Path, pycache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONPYCACHEPREFIX"] = str(pycache)  # byte code of the copies stays in our temp dir
    return env


# --------------------------------------------------------------------------- one pass

@dataclass
class SuitePass:
    code: int | None                 # chaos exit code; None = timed out
    seconds: float
    runs: dict[str, str] = field(default_factory=dict)        # plan -> verdict
    invalid: dict[str, list[str]] = field(default_factory=dict)  # plan -> invalid invariants
    log: str = ""                    # tail of the CLI's output, when it produced no verdict

    @property
    def all_valid(self) -> bool:
        return self.code == 0 and bool(self.runs) and all(v == "valid" for v in self.runs.values())


def read_verdicts(out_dir: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    runs: dict[str, str] = {}
    invalid: dict[str, list[str]] = {}
    for d in sorted({p.parent for p in out_dir.glob("journal.json*")} |
                    {p.parent for p in out_dir.glob("*/journal.json*")}):
        plan = d.name
        try:
            j = json.loads((d / "journal.json").read_text())
        except (OSError, ValueError):
            runs[plan] = "unfinished"  # killed mid-run: no verdict
            continue
        plan = j.get("run", {}).get("plan_name") or plan
        runs[plan] = j.get("verdict", "unknown")
        bad = [i.get("name", "?") for i in j.get("invariants", []) if i.get("verdict") == "invalid"]
        if runs[plan] == "invalid":
            invalid[plan] = bad or ["(run)"]
    return runs, invalid


def runnable_plans(copy: Path, pattern: str) -> tuple[list[str], dict[str, str]]:
    """The plans of ``pattern`` this machine can run, and the rest with why
    (chaos.targets.plan_preflight: a power cut needs FUSE, a reboot nftables
    and root). A plan that cannot run here would end `unknown` in every pass,
    the clean one included, and void the score; left out, it is named."""
    plans = sorted(glob.glob(pattern, root_dir=copy))
    if not plans:
        raise SystemExit(f"--plans {pattern!r} matches nothing")
    sys.path.insert(0, str(copy))
    try:
        from chaos.plan import PlanError, load_plan
        from chaos.targets import plan_preflight
        runnable, left_out = [], {}
        for p in plans:
            try:
                problem = plan_preflight(load_plan(copy / p))
            except PlanError:
                problem = None   # `chaos run` reports a broken plan itself
            if problem:
                left_out[p] = problem
            else:
                runnable.append(p)
        return runnable, left_out
    finally:
        sys.path.remove(str(copy))


def run_suite(owned: Owned, copy: Path, work: Path, tag: str, args, pycache: Path) -> SuitePass:
    plans = args.runnable
    out = work / f"out-{tag}"
    argv = [sys.executable, "-m", "chaos", "run", *plans, "--seed", str(args.seed),
            "--jobs", str(args.jobs), "--out", str(out)]
    code, secs = owned.run(argv, cwd=copy, env=child_env(copy, pycache), log=work / f"{tag}.log",
                           timeout=args.timeout)
    runs, invalid = read_verdicts(out)
    tail = "" if runs else _tail((work / f"{tag}.log").read_text(errors="replace"), 300)
    return SuitePass(code, secs, runs, invalid, log=tail)


# --------------------------------------------------------------------------- one mutant

@dataclass
class Outcome:
    name: str
    label: str
    kind: str
    status: str
    killed_by: dict[str, list[str]] = field(default_factory=dict)  # plan -> its invalid invariants
    verdicts: dict[str, str] = field(default_factory=dict)
    unit: str | None = None                               # "detected" / "missed" / None
    unit_detail: str = ""
    seconds: float = 0.0
    detail: str = ""


def killers(o: Outcome) -> str:
    """Who killed it, short: the plans by name when few, else invariants with plan counts."""
    if not o.killed_by:
        return o.detail
    if len(o.killed_by) <= 2:
        return "; ".join(f"{p}: {', '.join(inv)}" for p, inv in o.killed_by.items())
    count: dict[str, int] = {}
    for inv in o.killed_by.values():
        for i in inv:
            count[i] = count.get(i, 0) + 1
    by = ", ".join(f"{i} ×{n}" for i, n in sorted(count.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{len(o.killed_by)} plans: {by}"


def _tail(text: str, n: int = 400) -> str:
    text = text.strip()
    return text if len(text) <= n else "…" + text[-n:]


def try_mutant(owned: Owned, m: Mutant, base: Path, work: Path, args, pycache: Path) -> Outcome:
    t0 = time.monotonic()
    o = Outcome(m.name, m.label, m.kind, CHECKED)
    copy = work / f"m-{m.name}"
    shutil.copytree(base, copy, symlinks=True)
    try:
        env = child_env(copy, pycache)
        chk = subprocess.run(["git", "apply", "--check", str(m.path)], cwd=copy,
                             capture_output=True, text=True)
        if chk.returncode != 0:
            o.status, o.detail = STALE, _tail(chk.stderr)
            return o
        subprocess.run(["git", "apply", str(m.path)], cwd=copy, check=True, capture_output=True)
        imp = subprocess.run([sys.executable, "-c", IMPORT_CHECK], cwd=copy, env=env,
                             capture_output=True, text=True, timeout=60)
        if imp.returncode != 0:
            o.status, o.detail = BROKEN, _tail(imp.stderr)
            return o
        if args.unit:
            log = work / f"unit-{m.name}.log"
            code, _ = owned.run([sys.executable, "-m", "pytest", *args.unit_tests, "-x", "-q",
                                 "-p", "no:cacheprovider"], cwd=copy, env=env, log=log,
                                timeout=args.unit_timeout)
            o.unit = "missed" if code == 0 else "detected"
            failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", log.read_text(errors="replace"), re.M)
            o.unit_detail = failed[0] if failed else ("timeout" if code is None else f"exit {code}")
        if args.check:
            return o
        sp = run_suite(owned, copy, work, m.name, args, pycache)
        o.verdicts = sp.runs
        if sp.invalid:
            o.status = KILLED
            o.killed_by = dict(sorted(sp.invalid.items()))
        elif sp.code is None:
            o.status, o.detail = TIMEOUT, f"suite pass over --timeout {args.timeout:.0f}s"
        elif not sp.runs:  # e.g. exit 2: a plan does not parse; nothing was judged
            o.status, o.detail = ERROR, f"chaos run exit {sp.code}, no verdict: {sp.log}"
        else:
            o.status = SURVIVED
            others = sorted(p for p, v in sp.runs.items() if v != "valid")
            if len(others) > 2:
                count: dict[str, int] = {}
                for p in others:
                    count[sp.runs[p]] = count.get(sp.runs[p], 0) + 1
                o.detail = "no kill; " + ", ".join(f"{v} ×{n}" for v, n in sorted(count.items()))
            elif others:
                o.detail = "no kill; " + ", ".join(f"{p}={sp.runs[p]}" for p in others)
        return o
    finally:
        o.seconds = time.monotonic() - t0
        if not args.keep:
            shutil.rmtree(copy, ignore_errors=True)


# --------------------------------------------------------------------------- report

def _score(outcomes: list[Outcome]) -> tuple[int, int]:
    scored = [o for o in outcomes if o.status in (KILLED, SURVIVED, TIMEOUT)]
    return sum(o.status == KILLED for o in scored), len(scored)


def render_text(outcomes: list[Outcome], clean: SuitePass | None, args, command: str) -> str:
    rows = [("mutant", "models", "result", "killed by (plans: invalid invariants)", "unit", "wall")]
    for o in outcomes:
        why = killers(o)
        rows.append((o.name, o.label, o.status, why, o.unit or "-", f"{o.seconds:.0f}s"))
    widths = [min(max(len(r[i]) for r in rows), cap) for i, cap in enumerate((44, 24, 9, 80, 8, 6))]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(c[:w].ljust(w) for c, w in zip(r, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.extend(_summary(outcomes, clean, args, command))
    return "\n".join(lines)


def _summary(outcomes: list[Outcome], clean: SuitePass | None, args, command: str) -> list[str]:
    killed, total = _score(outcomes)
    out = [f"command: {command}"]
    if clean is not None:
        state = "all valid" if clean.all_valid else "NOT all valid" + (f" ({clean.log})" if clean.log else "")
        out.append(f"clean pass: {state} ({len(clean.runs)} plans, {clean.seconds:.0f}s"
                   + (", timed out" if clean.code is None else "") + ")")
    for p, why in (getattr(args, "left_out", None) or {}).items():
        out.append(f"left out (cannot run here): {p}: {why}")
    stale = [o.name for o in outcomes if o.status in (STALE, BROKEN)]
    if stale:
        out.append(f"not scored (stale/broken, fix the patch): {', '.join(stale)}")
    errors = [o.name for o in outcomes if o.status == ERROR]
    if errors:
        out.append(f"not scored (the suite produced no verdict): {', '.join(errors)}")
    if args.unit:
        ran = [o for o in outcomes if o.unit]
        out.append(f"unit tests ({' '.join(args.unit_tests)}) detect {sum(o.unit == 'detected' for o in ran)}"
                   f" of {len(ran)} mutants")
    if args.check:
        out.append(f"check only: {sum(o.status == CHECKED for o in outcomes)} of {len(outcomes)} apply and import")
    elif total:
        pct = 100.0 * killed / total
        if clean is not None and not clean.all_valid:
            bad = ", ".join(f"{p}={v}" for p, v in sorted(clean.runs.items()) if v != "valid") or "no verdicts"
            out.append(f"score: VOID — the clean pass is not all valid ({bad}); "
                       f"raw {killed}/{total} = {pct:.0f}% means nothing")
        else:
            out.append(f"score: {killed}/{total} killed = {pct:.0f}%")
    return out


def render_markdown(outcomes: list[Outcome], clean: SuitePass | None, args, command: str) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")
    lines = ["## Mutation score of the plan suite", ""]
    lines += [f"- {cell(s)}" for s in _summary(outcomes, clean, args, command)]
    lines += ["", "| mutant | models | result | killed by (plans: invalid invariants) | unit | wall |",
              "|---|---|---|---|---|---|"]
    for o in outcomes:
        why = killers(o)
        mark = {KILLED: "**killed**", SURVIVED: "survived"}.get(o.status, o.status)
        lines.append(f"| `{o.name}` | {cell(o.label)} | {mark} | {cell(why)} | {o.unit or '-'} "
                     f"| {o.seconds:.0f}s |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plans", default="plans/*.yaml", help="glob, relative to the repo (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1, help="one fixed seed for every run (default %(default)s)")
    ap.add_argument("--jobs", type=int, default=2, help="chaos run --jobs (default %(default)s)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these mutants (file stems)")
    ap.add_argument("--mutants", type=Path, default=MUTANTS_DIR, help="directory of *.patch")
    ap.add_argument("--source", choices=("worktree", "head"), default="worktree",
                    help="copy the working tree's files (default) or HEAD")
    ap.add_argument("--timeout", type=float, default=1200.0, help="bound of one suite pass, s (default %(default)s)")
    ap.add_argument("--unit", action="store_true", help=f"also run pytest {' '.join(UNIT_TESTS)} -x per mutant")
    ap.add_argument("--unit-tests", nargs="+", default=list(UNIT_TESTS), metavar="PATH",
                    help="test paths for --unit (default %(default)s)")
    ap.add_argument("--unit-timeout", type=float, default=600.0)
    ap.add_argument("--check", action="store_true", help="only check that each mutant applies and imports")
    ap.add_argument("--list", action="store_true", help="list the mutants and what they model, then exit")
    ap.add_argument("--skip-clean", action="store_true", help="skip the clean pass (the score is then unvalidated)")
    ap.add_argument("--json", type=Path, help="write every outcome as JSON here")
    ap.add_argument("--markdown", type=Path, help="write the table as GitHub markdown here")
    ap.add_argument("--keep", action="store_true", help="keep the copies and run dirs (prints where)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python bench/mutation_score.py " + " ".join(argv if argv is not None else sys.argv[1:])
    mutants = load_mutants(args.mutants.resolve(), args.only)
    if not mutants:
        print(f"no mutants in {args.mutants}", file=sys.stderr)
        return 2
    if args.list:
        for m in mutants:
            print(f"{m.name}\n  models: {m.models}\n  breaks: {m.breaks}")
        return 0

    def on_term(signum, frame):
        raise Interrupted(f"signal {signum}")
    old_term = signal.signal(signal.SIGTERM, on_term)
    owned = Owned()
    work = Path(tempfile.mkdtemp(prefix="mutation-score-"))
    pycache = work / "pycache"
    outcomes: list[Outcome] = []
    clean: SuitePass | None = None
    interrupted = False
    try:
        base = work / "base"
        make_base(base, args.source)
        args.runnable, args.left_out = runnable_plans(base, args.plans)
        for p, why in args.left_out.items():
            print(f"left out (cannot run here): {p}: {why}", flush=True)
        if not args.check and not args.skip_clean:
            print(f"clean pass: {args.plans} --seed {args.seed} --jobs {args.jobs} …", flush=True)
            clean = run_suite(owned, base, work, "clean", args, pycache)
            print(f"  {'all valid' if clean.all_valid else 'NOT all valid: ' + str(clean.runs)}"
                  f" ({clean.seconds:.0f}s)", flush=True)
        for k, m in enumerate(mutants, 1):
            print(f"[{k}/{len(mutants)}] {m.name} ({m.label}) …", end=" ", flush=True)
            o = try_mutant(owned, m, base, work, args, pycache)
            outcomes.append(o)
            extra = f", unit {o.unit}" if o.unit else ""
            why = killers(o)
            print(f"{o.status}{extra} ({o.seconds:.0f}s){' — ' + why if why else ''}", flush=True)
    except (KeyboardInterrupt, Interrupted) as e:
        interrupted = True
        print(f"\ninterrupted ({str(e) or 'Ctrl-C'}); cleaning up", file=sys.stderr, flush=True)
    finally:
        owned.end()
        signal.signal(signal.SIGTERM, old_term)
        if args.keep:
            print(f"kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(render_text(outcomes, clean, args, command))
    if args.json:
        args.json.write_text(json.dumps({
            "command": command, "seed": args.seed, "plans": args.plans, "jobs": args.jobs,
            "left_out": getattr(args, "left_out", {}),
            "source": args.source, "interrupted": interrupted,
            "clean": asdict(clean) if clean else None,
            "score": dict(zip(("killed", "total"), _score(outcomes))),
            "mutants": [asdict(o) for o in outcomes]}, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(render_markdown(outcomes, clean, args, command))
    if interrupted:
        return 130
    if clean is not None and not clean.all_valid:
        return 3
    if any(o.status in (STALE, BROKEN, ERROR) for o in outcomes):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
