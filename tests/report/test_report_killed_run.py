"""A run whose ``chaos run`` died mid-plan (SIGKILL, a crash) still gets a
report: the journal is rebuilt from journal.jsonl, the invariants the plan
selects are judged on what it holds, and the verdict is unknown."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from chaos.invariants import INVARIANTS
from chaos.journal import JournalWriter, load
from chaos.records import Fault, NodeEvent, RunStarted, Status, StepStarted
from chaos.report import render_report, write_junit
from chaos.report.__main__ import main as report_main

ROOT = Path(__file__).resolve().parents[2]


def _plan_header() -> dict:
    """The plan as the runner writes it: ``Plan.to_json()``, invariants a list."""
    return {"name": "leader_kill", "seed": 7, "source_path": "plans/leader_kill.yaml",
            "invariants": [{"name": "single_leader", "params": {}},
                           {"name": "convergence", "params": {"within": 10.0}}],
            "steps": [{"kind": "kill", "path": "steps[0]", "label": "kill leader"}]}


def test_crashed_journal_with_the_runners_plan_shape_renders(tmp_path):
    """Defect 1: the runner writes plan invariants as a list; a crashed run's
    report judged them with a reader that wanted a mapping and raised."""
    w = JournalWriter(tmp_path)
    w.set_header(run={"id": "r", "plan_name": "leader_kill", "seed": 7}, plan=_plan_header(),
                 nodes=[{"sid": s, "name": f"n{s}"} for s in (1, 2, 3)])
    w.record(RunStarted, seed=7, command="chaos run plans/leader_kill.yaml")
    for s in (1, 2):
        w.record(Status, sid=s, up=True, state="FOLLOWING", leader=3, epoch=1, synced=True)
    w.record(Status, sid=3, up=True, state="LEADING", leader=3, epoch=1, synced=True)
    w.record(StepStarted, step="steps[0]", kind="kill", label="kill leader", resolved={"target": [3]})
    w.record(Fault, phase="requested", fault_id="f1", kind="kill", target={"sid": 3})
    w.close()  # and then nothing: the orchestrator died here
    assert isinstance(load(tmp_path).plan.raw["invariants"], tuple)  # the list shape, as written
    html = render_report(tmp_path).read_text()
    assert '<div class="banner unknown" id="verdict">' in html
    assert "run did not finish: rebuilt from journal.jsonl" in html
    # exactly the invariants the plan selected, judged on the partial journal
    assert re.findall(r'<tr data-invariant="([a-z_]+)">', html) == ["single_leader", "convergence"]
    suite = ET.parse(write_junit(load(tmp_path), tmp_path / "junit.xml")).getroot().find("testsuite")
    assert [c.get("name") for c in suite.findall("testcase")] == ["single_leader", "convergence"]
    assert report_main([str(tmp_path)]) == 3  # unknown


def test_an_unfinished_run_is_never_called_valid(tmp_path):
    """Safety checks can all hold on a partial journal; the run still never finished."""
    w = JournalWriter(tmp_path)
    w.set_header(run={"plan_name": "p"}, plan={"name": "p", "invariants": [{"name": "single_leader", "params": {}}]},
                 nodes=[{"sid": s} for s in (1, 2, 3)])
    for s in (1, 2, 3):
        w.record(NodeEvent, sid=s, event="epoch_established", epoch=1, role="leader" if s == 3 else "follower",
                 leader=3)
    w.close()
    html = render_report(tmp_path).read_text()
    assert re.search(r'<tr data-invariant="single_leader"><td class="mono">single_leader</td><td class="v-valid">',
                     html)
    assert '<div class="banner unknown" id="verdict">' in html


# ---------------------------------------------------------------- a real SIGKILL


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("CHAOS_DEBUG", None)
    return env


def _run_processes(out: Path, pid: int) -> list[psutil.Process]:
    """Every process of the run: nodes name the run dir; nodes and Toxiproxy name our pid."""
    found = {}
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            if p.info["status"] != psutil.STATUS_ZOMBIE and p.pid != pid and (
                    str(out) in cmd or f"parent-pid {pid}" in cmd):
                found[p.pid] = p
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return list(found.values())


@pytest.mark.slow
def test_report_of_a_sigkilled_chaos_run(tmp_path):
    out = tmp_path / "run"
    log = open(tmp_path / "chaos-run.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "chaos", "run", str(ROOT / "plans" / "leader_kill.yaml"),
                             "--out", str(out)], cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    children: dict[int, psutil.Process] = {}  # every process of the run seen so far
    try:
        jl = out / "journal.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            children.update((p.pid, p) for p in _run_processes(out, proc.pid))
            if jl.exists() and '"type":"fault"' in jl.read_text(errors="replace"):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before its first fault: " + (tmp_path / "chaos-run.log").read_text()
        proc.kill()  # SIGKILL: no finally, no cleanup, no journal.json
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
    assert len(children) >= 4, sorted(children)  # 3 nodes + Toxiproxy
    # the nodes and the proxy follow their parent (PR_SET_PDEATHSIG / --parent-pid)
    gone, alive = psutil.wait_procs(list(children.values()), timeout=15)
    assert not alive, [p.pid for p in alive]
    assert not (out / "journal.json").exists() and not (out / "report.html").exists()

    res = subprocess.run([sys.executable, "-m", "chaos", "report", str(out)], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    html = (out / "report.html").read_text()
    assert '<div class="banner unknown" id="verdict">' in html
    assert "rebuilt from journal.jsonl: the run did not finish" in html
    assert '<tr id="fault-f1" data-fault="f1">' in html  # the kill it died after is shown
    # every invariant leader_kill.yaml names, judged on what the journal holds
    assert re.findall(r'<tr data-invariant="([a-z_]+)">', html) == list(INVARIANTS)
    assert (out / "junit.xml").is_file()
