"""`chaos run` end to end: real node processes, real embedded Toxiproxy, real files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from chaos.invariants import INVARIANTS

from chaoshelp import (PLANS, ROOT, needs_node, needs_toxiproxy, records, start_run_until,
                       procs_mentioning, run_chaos)

pytestmark = [needs_node, needs_toxiproxy]



def test_leader_kill_end_to_end(tmp_path):
    out = tmp_path / "reports" / "lk"
    res = run_chaos("run", str(PLANS / "leader_kill.yaml"), "--out", str(out), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "seed 7" in res.stderr and str(out / "journal.json") in res.stdout
    j = json.loads((out / "journal.json").read_text())
    assert j["verdict"] == "valid" and j["run"]["exit_code"] == 0
    assert [i["verdict"] for i in j["invariants"]] == ["valid"] * len(INVARIANTS)

    kill = records(j, "step_started", kind="kill")[0]
    old = kill["resolved"]["target"][0]
    killed = records(j, "process", action="killed")
    assert [r["sid"] for r in killed] == [old] and killed[0]["exit_code"] == -signal.SIGKILL
    faults = records(j, "fault", kind="kill")
    assert [f["phase"] for f in faults] == ["requested", "effective"]
    assert faults[0]["target"] == {"sid": old}

    # the old leader's epoch, then a new leader with a higher one
    old_epoch = max(r["epoch"] for r in records(j, "status", sid=old, state="LEADING")
                    if r["seq"] < kill["seq"])
    new_leaders = [r for r in records(j, "status", state="LEADING")
                   if r["seq"] > killed[0]["seq"] and r["synced"]]
    assert new_leaders and new_leaders[0]["sid"] != old
    assert max(r["epoch"] for r in new_leaders) > old_epoch

    # the restarted node joined out of election
    restart = [r for r in records(j, "process", sid=old, action="started") if r["seq"] > kill["seq"]]
    assert len(restart) == 1
    joins = [r for r in records(j, "node_event", sid=old, event="election_finished")
             if r["seq"] > restart[0]["seq"]]
    assert joins and joins[0]["path"] == "out_of_election"
    assert joins[0]["leader"] == new_leaders[0]["sid"]

    # every node stopped at the end; a log summary per node; reports written
    assert {r["sid"] for r in records(j, "log_summary")} == {1, 2, 3}
    assert all(r["runs"] for r in records(j, "log_summary"))
    for f in ("report.html", "junit.xml", "journal.jsonl"):
        assert (out / f).is_file(), f
    assert (out.parent / "index.html").is_file()
    assert len(j["links"]) == 12 and {n["sid"] for n in j["nodes"]} == {1, 2, 3}
    # node i reaches node j only through proxy i->j
    cfg = (out / "n1" / "zoo.cfg").read_text()
    l12 = next(l for l in j["links"] if (l["from"], l["to"], l["port"]) == (1, 2, "election"))
    assert "server.2=127.0.0.1:" in cfg and l12["listen"].split(":")[1] in cfg
    assert not procs_mentioning(str(out))

    # the report is rendered from the journal alone, so it can be re-rendered
    (out / "report.html").unlink()
    res = run_chaos("report", str(out), timeout=120)
    assert res.returncode == 0, res.stderr
    assert (out / "report.html").is_file()


@pytest.mark.slow
def test_repeat_with_parallel_jobs(tmp_path):
    out = tmp_path / "many"
    res = run_chaos("run", str(PLANS / "leader_kill.yaml"), "--repeat", "2", "--jobs", "2",
                    "--seed", "5", "--out", str(out), timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    runs = sorted(out.glob("leader_kill-*"))
    assert len(runs) == 2
    ids, seeds = set(), {}
    for d in runs:
        j = json.loads((d / "journal.json").read_text())
        assert j["verdict"] == "valid"
        seeds[d.name] = j["run"]["seed"]
        ids.add(j["run"]["id"])
    assert len(ids) == 2
    # each repeat explores its own schedule: seed + k
    assert seeds == {"leader_kill-1": 5, "leader_kill-2": 6}
    assert (out / "index.html").is_file()


def test_broken_plan_exits_2_and_starts_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad-Name\ndescription: x\nensemble: {nodes: 3}\nsteps:\n  - kill: leadr\n")
    out = tmp_path / "never"
    before = {p.pid for p in psutil.process_iter()}
    res = run_chaos("run", str(bad), str(PLANS / "leader_kill.yaml"), "--out", str(out), timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert str(bad) in res.stderr and ":" in res.stderr
    assert not out.exists()
    res = run_chaos("validate", str(bad), timeout=120)
    assert res.returncode == 2
    assert len([l for l in res.stderr.splitlines() if str(bad) in l]) >= 2  # every error, not the first
    assert not [p for p in procs_mentioning(str(out))]
    del before


def test_validate_list_schema(tmp_path):
    res = run_chaos("validate", *[str(p) for p in sorted(PLANS.glob("*.yaml"))], timeout=120)
    assert res.returncode == 0, res.stderr
    res = run_chaos("list", timeout=120)
    assert res.returncode == 0 and "leader_kill" in res.stdout
    res = run_chaos("schema", timeout=120)
    assert res.returncode == 0 and json.loads(res.stdout)["type"] == "object"
    res = run_chaos("run", "--toxiproxy", "http://x", "--toxiproxy-bin", sys.executable, "p.yaml")
    assert res.returncode == 2


LONG_PLAN = """\
name: long_sleep
description: Forms an ensemble, puts a partition and a pause in place, then sleeps long.
seed: 3
time_limit: 5m
ensemble: {nodes: 3}
steps:
  - wait: {for: stable, timeout: 60s}
  - partition: {one_way: {from: leader, to: followers}}
  - pause: follower
    as: sleepy
  - sleep: 4m
"""


def _start_long_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    return start_run_until(tmp_path, "long_sleep", LONG_PLAN, '"step":"steps[3]"', "reached its sleep")


def _ours(out: Path, pid: int) -> list[psutil.Process]:
    """Every process of the run: nodes name the run dir; nodes and Toxiproxy name our pid."""
    found = {p.pid: p for p in procs_mentioning(str(out))}
    for p in procs_mentioning(f"parent-pid {pid}"):
        found[p.pid] = p
    return [p for p in found.values() if p.pid != pid]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT-group", "SIGTERM"])
def test_interrupt_cleans_up_and_exits_3(tmp_path, sig):
    proc, out = _start_long_run(tmp_path)
    children = _ours(out, proc.pid)
    assert len(children) >= 4  # 3 nodes + toxiproxy
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # ^C at a terminal: the whole foreground group
    else:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3, stdout + stderr
    assert not psutil.wait_procs(children, timeout=10)[1]
    assert not _ours(out, proc.pid)
    j = json.loads((out / "journal.json").read_text())
    judged = [(x["name"], x["verdict"], x["message"]) for x in j["invariants"] if x["verdict"] != "valid"]
    assert j["verdict"] == "unknown" and j["run"]["exit_code"] == 3, judged
    undone = {r["fault_id"] for r in records(j, "fault", phase="undone")}
    applied = {r["fault_id"] for r in records(j, "fault", phase="effective") if r["kind"] in ("partition", "pause")}
    assert applied and applied <= undone
    assert (out / "report.html").is_file()


@pytest.mark.slow
def test_sigkill_leaves_nothing_and_next_run_is_clean(tmp_path):
    from chaos import procs
    proc, out = _start_long_run(tmp_path)
    children = _ours(out, proc.pid)
    assert len(children) >= 4
    proc.kill()
    proc.communicate(timeout=30)
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, [p.cmdline() for p in alive]
    # the janitor of the next run clears the dead run's registry and pid files
    res = run_chaos("run", str(PLANS / "leader_kill.yaml"), "--out", str(tmp_path / "next"), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not list((out / "pids").glob("*.pid"))
    dead = [f for f in procs.REGISTRY_DIR.glob("*.json") if str(out) in f.read_text()]
    assert not dead
    # the crashed run's journal is still readable
    from chaos.journal import load
    j = load(out)
    assert j.rebuilt and records(j.to_json(), "fault", phase="effective")


@pytest.mark.slow
def test_replay_reapplies_resolved_choices(tmp_path):
    plan = tmp_path / "choices.yaml"
    plan.write_text("""\
name: choices
description: Many seeded picks and choices that cost nothing, to compare two runs.
time_limit: 2m
ensemble: {nodes: 3}
steps:
  - wait: {for: stable, timeout: 60s}
  - repeat:
      times: 6
      steps:
        - pick: follower
          as: f
        - choice:
            steps:
              - [{sleep: 10ms}]
              - [{sleep: 20ms}]
              - [{sleep: 30ms}]
  - partition: {kind: halves}
  - heal: all
  - wait: {for: stable, timeout: 60s}
""")
    first, second = tmp_path / "a", tmp_path / "b"
    r1 = run_chaos("run", str(plan), "--seed", "101", "--out", str(first), timeout=300)
    assert r1.returncode == 0, r1.stdout + r1.stderr
    r2 = run_chaos("run", str(plan), "--seed", "202", "--replay", str(first), "--out", str(second), timeout=300)
    assert r2.returncode == 0, r2.stdout + r2.stderr

    def picks(d: Path) -> list:
        j = json.loads((d / "journal.json").read_text())
        return [(r["step"], r["resolved"].get("target"), r["resolved"].get("branch"), r["resolved"].get("blocked"))
                for r in records(j, "step_finished") if r["kind"] in ("pick", "choice", "partition")]

    a, b = picks(first), picks(second)
    assert len(a) == 6 * 2 + 1
    assert a[10][0] == "steps[1].repeat[5].steps[0]"
    assert a == b
    assert json.loads((second / "journal.json").read_text())["run"]["seed"] == 202


@pytest.mark.slow
def test_external_toxiproxy_only_our_prefixed_proxies_are_touched(tmp_path):
    from chaos.ports import reserve_ports
    from chaos.toxiproxy.client import ToxiproxyClient
    from chaos.toxiproxy.process import ToxiproxyServer
    server = ToxiproxyServer.embedded(host="127.0.0.1", log_path=tmp_path / "ext.log")
    res_ports = reserve_ports(2)
    try:
        client = ToxiproxyClient(server.url)
        p1, p2 = res_ports.ports
        client.create_proxy("redis", f"127.0.0.1:{p1}", "127.0.0.1:6379")
        # a proxy left by a crashed run (no live registry entry names it)
        client.create_proxy("fle_0dead0ff_1to2_election", f"127.0.0.1:{p2}", "127.0.0.1:1")
        out = tmp_path / "ext"
        res = run_chaos("run", str(PLANS / "leader_kill.yaml"), "--toxiproxy", server.url,
                        "--out", str(out), timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        j = json.loads((out / "journal.json").read_text())
        assert j["run"]["toxiproxy"]["kind"] == "external"
        assert set(client.list_proxies()) == {"redis"}
    finally:
        server.stop()
        res_ports.release()


@pytest.mark.slow
def test_toxiproxy_bin_launches_a_server_binary(tmp_path):
    """No real toxiproxy-server here: a wrapper with the same flags stands in for
    the binary, to check the --toxiproxy-bin plumbing end to end."""
    import stat
    wrapper = tmp_path / "toxiproxy-server"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m chaos.toxiproxy \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "bin"
    res = run_chaos("run", str(PLANS / "leader_kill.yaml"), "--toxiproxy-bin", str(wrapper),
                    "--out", str(out), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    tp = json.loads((out / "journal.json").read_text())["run"]["toxiproxy"]
    assert tp["kind"] == "binary"
    port = tp["url"].rsplit(":", 1)[1]
    assert not procs_mentioning(f"-port {port}")  # the launched server was stopped


def test_fault_before_the_ensemble_formed_is_a_setup_failure(tmp_path):
    plan = tmp_path / "too_early.yaml"
    plan.write_text("""\
name: too_early
description: Kills a node before any leader exists, so nothing can be judged.
seed: 1
time_limit: 1m
ensemble: {nodes: 3}
steps:
  - kill: 1
  - wait: {for: stable, timeout: 20s}
""")
    out = tmp_path / "early"
    res = run_chaos("run", str(plan), "--out", str(out), timeout=300)
    assert res.returncode == 3, res.stdout + res.stderr
    j = json.loads((out / "journal.json").read_text())
    assert j["verdict"] == "unknown" and "never formed" in j["run"]["error"]
    assert not records(j, "process", action="killed")  # stopped before acting
    assert not procs_mentioning(str(out))


def test_every_broken_plan_is_refused_before_anything_starts(tmp_path):
    broken = sorted((ROOT / "tests" / "plan" / "broken").glob("*.yaml"))
    if not broken:
        pytest.skip("no broken plans in tests/plan/broken")
    out = tmp_path / "never"
    res = run_chaos("run", *[str(p) for p in broken], "--out", str(out), timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr
    missing = [p.name for p in broken if p.name not in res.stderr]
    assert not missing, res.stderr
    assert not out.exists() and res.stdout == ""


def test_default_run_dir_under_reports_of_the_working_directory(tmp_path):
    res = run_chaos("run", str(PLANS / "leader_kill.yaml"), cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    runs = list((tmp_path / "reports").glob("leader_kill-*Z"))
    assert len(runs) == 1 and (runs[0] / "journal.json").is_file()
    assert (tmp_path / "reports" / "index.html").is_file()
    assert str(runs[0]) in res.stdout


def test_time_limit_cuts_the_plan_and_the_verdict_is_unknown(tmp_path):
    plan = tmp_path / "slow.yaml"
    plan.write_text("""\
name: slow
description: Sleeps longer than the command line allows.
seed: 1
time_limit: 2m
ensemble: {nodes: 3}
steps:
  - wait: {for: stable, timeout: 60s}
  - sleep: 60s
""")
    out = tmp_path / "slow"
    t0 = time.monotonic()
    res = run_chaos("run", str(plan), "--time-limit", "8s", "--out", str(out), timeout=300)
    assert res.returncode == 3, res.stdout + res.stderr
    assert time.monotonic() - t0 < 50
    j = json.loads((out / "journal.json").read_text())
    failed = [r for r in records(j, "step_finished") if not r["ok"]]
    assert failed and "time limit" in failed[0]["error"] and failed[0]["step"] == "steps[1]"


@pytest.mark.slow
def test_baseline_records_a_plan_that_asks_for_one_it_does_not_have_yet(tmp_path):
    """A new plan says `election_cost: baseline` before its entry exists:
    `chaos baseline` is how the entry comes to exist, so it must load it."""
    plan = tmp_path / "fresh.yaml"
    plan.write_text("name: fresh\ndescription: forms, nothing else\nseed: 4\ntime_limit: 30s\n"
                    "ensemble: {nodes: 3}\ninvariants:\n  election_cost: baseline\n"
                    "steps:\n  - wait: {for: stable, timeout: 20s}\n")
    assert run_chaos("validate", str(plan), timeout=120).returncode == 2   # no entry yet
    res = run_chaos("baseline", str(plan), "--repeat", "1", "--runs-dir", str(tmp_path / "runs"), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    table = json.loads((tmp_path / "baselines.json").read_text())
    assert table["plans"]["fresh"]["runs"] == 1
    assert run_chaos("validate", str(plan), timeout=120).returncode == 0
