"""``pytest --chaos PLAN_OR_DIR...``: fault plans as pytest items, spread by pytest-xdist.

Theory of operation. Without ``--chaos`` the plugin only adds its options, so
the project's own tests collect exactly as before. With it, the positional
arguments are plan files or folders and only ``*.yaml``/``*.yml`` below them
are collected: a :class:`PlanFile` per plan (a plan that does not load is that
file's one collection error, FILE:LINE:COL, and the others still run) and a
:class:`PlanItem` per seed, ``plans/leader_kill.yaml::seed=1000``.

An item's *setup* runs the plan in its own ``python -m chaos run`` process (or
``chaos sim`` with ``--chaos-sim``), as ``chaos run --jobs`` does, and reads
the verdict from the run's journal. So an unknown verdict or a broken run is
a setup **error**, an invalid verdict is the call's **failure** (invariants,
run dir, report, replay command), valid **passes**, and a plan that cannot
run here is **skipped** with the reason. pytest's own machinery (-k, -x,
--lf/--ff, --junitxml, xdist's -n and --tx) then needs nothing special:
seeds are part of the item id, so --lf re-runs the same plan × seed pairs.

Where runs go: every run is ``OUT/<plan stem>-seed<K>`` (``--chaos-out``,
default ``reports/pytest-<UTC time>``). A worker on another host (``--tx
ssh=…``) writes its runs below its own working directory and sends each
run's journal.json, report.html and junit.xml back with the setup report; the
controller writes them under OUT, and at the end writes one runs index for
all hosts. A worker whose fle-chaos version differs from the controller's is
refused before it collects anything.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest

from chaos import __version__
from chaos.outcome import ExitCode, Verdict

__all__ = ["parse_seeds", "default_seed", "Judgement", "judge", "PlanFile", "PlanItem", "Settings",
           "SIM_MISSING", "SHIPPED", "merge_junit"]

PLAN_SUFFIXES = (".yaml", ".yml")
SHIPPED = ("journal.json", "report.html", "junit.xml")
"""What a remote worker sends back of each run (the rest stays on its host)."""
SIM_MISSING = "chaos sim is not available in this build"
DEFAULT_MARGIN_S = 60.0
OUTPUT_TAIL = 40  # lines of a run's output kept for an error's text
OUTPUT_TAIL_BYTES = 16384
_VERSION_PROBE = """
try:
    import chaos
    channel.send(getattr(chaos, "__version__", "without a version"))
except ImportError:
    channel.send("not installed")
"""
_LASTFAILED_ID = re.compile(r"^(?P<file>.+)::seed=(?P<seed>-?\d+)$")


# --------------------------------------------------------------------------- pure parts

def parse_seeds(text: str) -> range:
    """``A:B`` is the half-open range A … B-1; a bare ``A`` is just A."""
    m = re.fullmatch(r"\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?", text or "")
    if not m:
        raise ValueError(f"--chaos-seeds: expected A:B (seeds A … B-1), got {text!r}")
    start = int(m.group(1))
    stop = int(m.group(2)) if m.group(2) is not None else start + 1
    if stop <= start:
        raise ValueError(f"--chaos-seeds: {text!r} is empty; A:B runs seeds A … B-1, so B must exceed A")
    return range(start, stop)


def default_seed(plan: Any) -> int:
    """A plan's own seed; a plan without one gets one derived from its name, so
    every xdist worker collects the same ids and --lf finds them again."""
    if plan.seed is not None:
        return int(plan.seed)
    return zlib.crc32(plan.name.encode()) & 0x7FFFFFFF


def _seeds_from_lastfailed(lastfailed: Mapping[str, Any]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for nodeid in lastfailed:
        m = _LASTFAILED_ID.match(nodeid)
        if m:
            out.setdefault(m["file"], []).append(int(m["seed"]))
    return {k: sorted(set(v)) for k, v in out.items()}


@dataclass(frozen=True, slots=True)
class Judgement:
    """What pytest makes of one run: ``passed``, ``failed`` (invalid), ``error``
    (unknown verdict, broken run) or ``skipped``; ``text`` is the report's."""

    outcome: str
    verdict: str
    text: str


def judge(*, exit_code: int | None, journal: Any, run_dir: Path, label: str, replay: str,
          output_tail: str = "", timed_out: bool = False, sim: bool = False, where: str = "") -> Judgement:
    """The exit code and the journal (None if there is none) of one run, as a
    pytest outcome. The exit code decides, the journal explains."""
    invariants = list(journal.invariants) if journal is not None else []
    verdict = Verdict.parse(journal.verdict).value if journal is not None else Verdict.UNKNOWN.value
    lines = [f"  {r.verdict:8} {r.name}: {r.message}" for r in invariants]
    report = run_dir / "report.html"
    paths = [f"run dir: {run_dir}{where}"]
    if report.exists() or where:
        paths.append(f"report:  {report}")
    paths.append(f"replay:  {replay}")
    if exit_code == ExitCode.OK and verdict == Verdict.VALID:
        return Judgement("passed", verdict, "\n".join([f"valid: {label}", *lines, *paths]))
    if exit_code == ExitCode.INVALID:
        return Judgement("failed", Verdict.INVALID.value,
                         "\n".join([f"invalid: {label}", *lines, *paths]))
    if sim and exit_code == ExitCode.USAGE:
        reason = output_tail.strip().splitlines()[-1] if output_tail.strip() else "no reason given"
        return Judgement("skipped", verdict, f"chaos sim cannot run this plan: {reason}")
    if timed_out:
        why = "the run outlived its timeout (time_limit + margin) and was stopped"
    elif journal is None:
        why = f"exit {exit_code} and no journal"
    else:
        why = (journal.run.error or f"verdict {verdict}, exit {exit_code}")
    text = [f"{verdict}: {label}: {why}", *lines, *paths]
    if output_tail.strip():
        text += ["output (last lines):", output_tail.rstrip()]
    return Judgement("error", verdict, "\n".join(text))


def _run_names(items: list["PlanItem"]) -> None:
    """``<stem>-seed<K>``; two plan files with one stem in different folders
    get their folder path in the name instead, so no two runs share a dir."""
    files_per_stem: dict[str, set[str]] = {}
    for i in items:
        files_per_stem.setdefault(i.stem, set()).add(i.plan_file_id)
    for i in items:
        base = i.stem
        if len(files_per_stem[i.stem]) > 1:
            parts = [p if p not in ("", ".", "..") else "_" for p in i.plan_file_id.split("/")]
            base = "__".join([*parts[:-1], i.stem])
        i.run_name = f"{base}-seed{i.seed}"


def merge_junit(paths: list[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Path:
    """One JUnit file from several pytest --junitxml files (the nightly's
    shards): every test suite kept, named after its file, totals summed."""
    import xml.etree.ElementTree as ET
    root = ET.Element("testsuites", {"name": "pytest --chaos"})
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for p in sorted(map(Path, paths)):
        try:
            top = ET.parse(p).getroot()
        except (ET.ParseError, OSError) as e:
            print(f"{p}: not merged: {e}", file=sys.stderr)
            continue
        for suite in ([top] if top.tag == "testsuite" else top.findall("testsuite")):
            suite.set("name", p.stem)
            for k in totals:
                totals[k] += int(suite.get(k, 0) or 0)
            root.append(suite)
    root.attrib.update({k: str(v) for k, v in totals.items()})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
    return out


# --------------------------------------------------------------------------- settings

@dataclass(frozen=True, slots=True)
class Settings:
    seeds: range | None
    sim: bool
    target: str | None              # None: each plan's ensemble.target, else fle
    margin_s: float
    out: Path                       # where this process writes runs
    controller_out: Path            # where they end up (the same unless shipped)
    ship: bool                      # send run files back to the controller (remote worker)
    extra_seeds: Mapping[str, list[int]] = field(default_factory=dict)


_SETTINGS = pytest.StashKey[Settings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("chaos", "fle-chaos: fault plans as test items")
    g.addoption("--chaos", action="store_true", default=False,
                help="Collect only the plan files/folders given as arguments: one item per plan × seed.")
    g.addoption("--chaos-seeds", metavar="A:B", default=None,
                help="Run every plan with seeds A … B-1 (default: each plan once, with its own seed).")
    g.addoption("--chaos-sim", action="store_true", default=False,
                help="Run each item with `chaos sim` instead of `chaos run`.")
    g.addoption("--chaos-out", metavar="DIR", default=None,
                help="Where the runs and their index go (default: reports/pytest-<UTC time>).")
    g.addoption("--chaos-target", metavar="KIND", default=None,
                help="What runs the plans, as `chaos run --target` (default: the plan's, else fle).")
    g.addoption("--chaos-margin", metavar="SECONDS", type=float, default=None,
                help=f"Each item's timeout is its plan's time_limit plus this (default {DEFAULT_MARGIN_S:g}).")


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config):
    """With -n and no --dist, spread plan runs with xdist's worksteal: a run
    lasts tens of seconds, so an idle worker should take a queued one rather
    than wait while another worker still holds it (xdist's load keeps one
    queued per worker)."""
    if (config.getoption("chaos", False) and getattr(config.option, "numprocesses", None)
            and getattr(config.option, "dist", None) == "no"):
        config.option.dist = "worksteal"
    return (yield)


_DEPENDENT = (("chaos_seeds", "--chaos-seeds"), ("chaos_sim", "--chaos-sim"), ("chaos_out", "--chaos-out"),
              ("chaos_target", "--chaos-target"), ("chaos_margin", "--chaos-margin"))


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("chaos"):
        for dest, flag in _DEPENDENT:
            if config.getoption(dest) not in (None, False):
                raise pytest.UsageError(f"{flag} needs --chaos")
        return
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and workerinput.get("chaos_version") != __version__:
        raise pytest.UsageError(
            f"refused: this worker ({workerinput.get('workerid', '?')}, {sys.executable}) runs fle-chaos "
            f"{__version__}, the controller runs {workerinput.get('chaos_version') or 'an unknown version'}; "
            "install the same version on every host")
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        raise pytest.UsageError("--chaos: name the plan files or folders to run, e.g. pytest --chaos plans/")
    try:
        seeds = parse_seeds(config.getoption("chaos_seeds")) if config.getoption("chaos_seeds") else None
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
    margin = config.getoption("chaos_margin")
    margin = DEFAULT_MARGIN_S if margin is None else margin
    if margin <= 0:
        raise pytest.UsageError(f"--chaos-margin: expected seconds > 0, got {margin:g}")
    # One broken plan must not keep the others from running.
    config.option.continue_on_collection_errors = True
    if workerinput is not None:
        controller_out = Path(workerinput["chaos_out"])
        ship = not workerinput.get("chaos_local", False)
        out = (Path.cwd() / "reports" / controller_out.name) if ship else controller_out
        extra = workerinput.get("chaos_extra_seeds") or {}
    else:
        given = config.getoption("chaos_out")
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = Path(given) if given else Path("reports") / f"pytest-{stamp}"
        out = out if out.is_absolute() else config.invocation_params.dir / out
        controller_out, ship = out, False
        extra = {}
        if config.getoption("lf", False) or config.getoption("failedfirst", False):
            extra = _seeds_from_lastfailed(config.cache.get("cache/lastfailed", {}) if config.cache else {})
    config.stash[_SETTINGS] = Settings(seeds=seeds, sim=config.getoption("chaos_sim"),
                                       target=config.getoption("chaos_target"), margin_s=margin,
                                       out=out, controller_out=controller_out, ship=ship, extra_seeds=extra)
    config.pluginmanager.register(ChaosSession(config), "chaos-session")


# --------------------------------------------------------------------------- collection

class PlanFile(pytest.File):
    def collect(self) -> Iterator["PlanItem"]:
        from chaos.plan import load_plan
        s = self.config.stash[_SETTINGS]
        plan = load_plan(_shown(self.path, self.config))
        seeds = list(s.seeds) if s.seeds is not None else [default_seed(plan)]
        seeds += [k for k in s.extra_seeds.get(self.nodeid, ()) if k not in seeds]
        skip = _skip_reason(plan, s)
        timeout = getattr(pytest.mark, "timeout", None) if self.config.pluginmanager.hasplugin("timeout") else None
        for seed in seeds:
            item = PlanItem.from_parent(self, name=f"seed={seed}", plan=plan, seed=seed)
            item.extra_keyword_matches.add(plan.name)   # -k leader_kill
            if skip:
                item.add_marker(pytest.mark.skip(reason=skip))
            if timeout is not None:
                # overrides the project's global pytest-timeout for this item
                item.add_marker(timeout(plan.time_limit_s + s.margin_s))
            yield item

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        from chaos.plan import PlanError
        if isinstance(excinfo.value, PlanError):
            return "\n".join(str(e) for e in excinfo.value.errors)
        if isinstance(excinfo.value, OSError):
            return f"{self.path}: {excinfo.value.strerror or excinfo.value}"
        return str(super().repr_failure(excinfo))


def _shown(path: Path, config: pytest.Config) -> str:
    """The plan's path as the user would type it (relative to where pytest started)."""
    try:
        return str(path.relative_to(config.invocation_params.dir))
    except ValueError:
        return str(path)


def _target_of(plan: Any, s: Settings) -> str:
    """As `chaos run`: --chaos-target, else the plan's ensemble.target, else fle."""
    return s.target or getattr(plan.ensemble, "target", None) or "fle"


def _skip_reason(plan: Any, s: Settings) -> str | None:
    if s.sim:
        from chaos.cli import cli
        if "sim" not in cli.commands:
            return SIM_MISSING
        from chaos.sim.check import not_simulatable
        issues = not_simulatable(plan)
        return ("chaos sim cannot run this plan: " + "; ".join(map(str, issues))) if issues else None
    target = _target_of(plan, s)
    if plan.targets and target not in plan.targets:
        return plan.targets_reason or f"the plan's targets ({', '.join(plan.targets)}) exclude {target}"
    from chaos.targets import TARGETS
    if target not in TARGETS:
        return f"target {target} is not installed here (known: {', '.join(sorted(TARGETS))})"
    from chaos.targets import plan_preflight
    return plan_preflight(plan)


# --------------------------------------------------------------------------- items

class ChaosRunError(Exception):
    """Unknown verdict or a broken run: reported as a setup error."""


class ChaosInvalid(AssertionError):
    """An invariant was violated: reported as the item's failure."""


class PlanItem(pytest.Item):
    def __init__(self, *, plan: Any, seed: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.plan = plan
        self.seed = seed
        self.plan_file_id = self.parent.nodeid
        self.stem = self.path.stem
        self.run_name = f"{self.stem}-seed{seed}"
        self.judgement: Judgement | None = None
        self.shipped: dict[str, bytes] = {}

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.path, None, self.name   # no dots: the terminal would read them as "::"

    # The run is the setup: what cannot produce a verdict is an error, not a failure.
    def setup(self) -> None:
        s = self.config.stash[_SETTINGS]
        self.judgement = _run_item(self, s)
        j = self.judgement
        shown = s.controller_out / self.run_name
        self.user_properties += [("seed", self.seed), ("verdict", j.verdict),
                                 ("report", str(shown / "report.html")), ("run_dir", str(shown))]
        if j.outcome == "skipped":
            pytest.skip(j.text)
        if j.outcome == "error":
            raise ChaosRunError(j.text)

    def runtest(self) -> None:
        if self.judgement is not None and self.judgement.outcome == "failed":
            raise ChaosInvalid(self.judgement.text)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> Any:
        if isinstance(excinfo.value, (ChaosRunError, ChaosInvalid)):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def _repr_failure_py(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> Any:
        # pytest formats a setup error through here, not repr_failure: the text, not a traceback
        if isinstance(excinfo.value, ChaosRunError):
            return str(excinfo.value)
        return super()._repr_failure_py(excinfo, style)


def _child_env() -> dict[str, str]:
    """The run imports the same chaos as this plugin, whatever the cwd."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _free_dir(parent: Path, name: str) -> Path:
    d, k = parent / name, 1
    while d.exists():
        k += 1
        d = parent / f"{name}-{k}"
    return d


def _run_item(item: PlanItem, s: Settings) -> Judgement:
    """One `chaos run`/`chaos sim` process for one plan × seed (the I/O shell of `judge`)."""
    from chaos import procs
    from chaos.journal import JournalError, load
    plan_path = str(item.path)
    s.out.mkdir(parents=True, exist_ok=True)
    run_dir = _free_dir(s.out, item.run_name)
    item.run_name = run_dir.name
    shown_plan = _shown(item.path, item.config)
    if s.sim:
        scratch = _free_dir(s.out, f".sim-{item.run_name}")
        argv = [sys.executable, "-m", "chaos", "sim", plan_path, "--seed", str(item.seed), "--repeat", "1",
                "--out", str(scratch), "--keep-all"]
        replay = f"chaos sim {shown_plan} --seed {item.seed} --repeat 1"
    else:
        scratch = None
        argv = [sys.executable, "-m", "chaos", "run", plan_path, "--seed", str(item.seed), "--out", str(run_dir),
                "--target", _target_of(item.plan, s)]
        replay = f"chaos run {shown_plan} --seed {item.seed} --replay {s.controller_out / item.run_name}"
    budget = item.plan.time_limit_s + s.margin_s
    # our own stop comes before pytest-timeout's, so the run can still end cleanly (journal, report)
    grace = min(30.0, s.margin_s / 2)
    # output to a file, not a pipe: memory stays bounded however long the run talks
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=_child_env(),
                                preexec_fn=procs.pdeathsig_preexec(os.getpid()))
        timed_out = False
        try:
            try:
                proc.wait(timeout=budget - grace)
            except subprocess.TimeoutExpired:
                timed_out = True
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=grace * 0.8)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            if proc.poll() is None:   # pytest-timeout or ^C got here first
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        log.seek(max(0, log.seek(0, os.SEEK_END) - OUTPUT_TAIL_BYTES))
        output = log.read().decode("utf-8", "replace")
    if scratch is not None:
        made = scratch / f"{item.plan.name}-seed{item.seed}"   # chaos sim names runs by plan name
        if made.is_dir():
            os.replace(made, run_dir)
        shutil.rmtree(scratch, ignore_errors=True)
    try:
        journal = load(run_dir) if run_dir.is_dir() else None
    except JournalError:
        journal = None
    tail = "\n".join((output or "").splitlines()[-OUTPUT_TAIL:])
    if s.ship:
        import socket
        item.shipped = {n: (run_dir / n).read_bytes() for n in SHIPPED if (run_dir / n).is_file()}
        where = f" (gathered from {socket.gethostname()}:{run_dir})"
    else:
        where = ""
    return judge(exit_code=proc.returncode, journal=journal, run_dir=s.controller_out / item.run_name,
                 label=f"{shown_plan} seed {item.seed}", replay=replay, output_tail=tail,
                 timed_out=timed_out, sim=s.sim, where=where)


# --------------------------------------------------------------------------- the session

class ChaosSession:
    """Hooks active only with --chaos, in the controller and in every worker."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings = config.stash[_SETTINGS]
        self.is_worker = hasattr(config, "workerinput")
        self.gathered = 0

    @pytest.hookimpl(tryfirst=True)
    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        if collection_path.is_file() and collection_path.suffix not in PLAN_SUFFIXES:
            return True   # only plans, not the project's own tests
        return None

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> PlanFile | None:
        if file_path.suffix in PLAN_SUFFIXES:
            return PlanFile.from_parent(parent, path=file_path)
        return None

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        _run_names([i for i in items if isinstance(i, PlanItem)])
        if self.is_worker:
            # Longest plans first (by time_limit; stable, so every worker agrees):
            # the run that starts last decides how long the other workers idle.
            items.sort(key=lambda i: -i.plan.time_limit_s if isinstance(i, PlanItem) else 0.0)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_newgateway(self, gateway: Any) -> None:
        """Refuse a host whose fle-chaos differs before it starts a worker
        (a worker that fails its own check would be restarted again and again)."""
        try:
            theirs = gateway.remote_exec(_VERSION_PROBE).receive(timeout=60)
        except Exception as e:
            theirs = f"unreadable ({type(e).__name__}: {e})"
        if theirs != __version__:
            pytest.exit(f"refused worker {gateway.id} ({gateway.spec}): it runs fle-chaos {theirs}, this controller "
                        f"runs {__version__}; install the same version on every host",
                        returncode=pytest.ExitCode.USAGE_ERROR)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Tell each xdist worker our version, where runs go, whether it
        shares this file system (a plain popen worker) and the --lf seeds."""
        spec = node.gateway.spec
        node.workerinput["chaos_version"] = __version__
        node.workerinput["chaos_out"] = str(self.settings.out)
        node.workerinput["chaos_local"] = bool(spec.popen) and not spec.chdir
        node.workerinput["chaos_extra_seeds"] = dict(self.settings.extra_seeds)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):
        outcome = yield
        if self.settings.ship and call.when == "setup" and isinstance(item, PlanItem) and item.shipped:
            rep = outcome.get_result()
            rep.chaos_run = {"name": item.run_name, "files": item.shipped}
            item.shipped = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        run = getattr(report, "chaos_run", None)
        if self.is_worker or not run:
            return
        target = self.settings.out / run["name"]
        target.mkdir(parents=True, exist_ok=True)
        for name, data in run["files"].items():
            if name in SHIPPED:   # only the names we send, never a path from the wire
                tmp = target / f".{name}.tmp"
                tmp.write_bytes(data)
                os.replace(tmp, target / name)
        self.gathered += 1

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker or not self.settings.out.is_dir():
            return
        from chaos.report import render_index
        from chaos.report.index import find_runs
        if find_runs(self.settings.out):
            self.index = render_index(self.settings.out)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        index = getattr(self, "index", None)
        if index is not None:
            extra = f" ({self.gathered} gathered from remote workers)" if self.gathered else ""
            terminalreporter.write_line(f"chaos runs index: {index}{extra}")
