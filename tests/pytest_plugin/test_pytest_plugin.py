"""`pytest --chaos`: the real plugin in real pytest sessions (pytester), with
real short chaos runs of the tiny plans beside this file. Few sessions run
plans at all: collection-only checks run inline, without processes."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from chaos.journal import load
from chaos.outcome import InvariantResult
from chaos.pytest_plugin import SIM_MISSING, default_seed, judge, parse_seeds
from chaos.records import Journal, RunInfo

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
PLANS = Path(__file__).resolve().parent / "plans"


@pytest.fixture
def plans(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny plans, copied into the pytester dir; subprocess sessions import this checkout's chaos."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    d = pytester.path / "plans"
    shutil.copytree(PLANS, d)
    return d


def _cases(junit: Path) -> dict[str, ET.Element]:
    return {f"{c.get('classname')}::{c.get('name')}": c for c in ET.parse(junit).iter("testcase")}


def _props(case: ET.Element) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in case.iter("property")}


# --------------------------------------------------------------------------- pure parts

@pytest.mark.parametrize("text,seeds", [("1000:1003", [1000, 1001, 1002]), ("7", [7]), (" 0:1 ", [0]),
                                        ("-2:0", [-2, -1])])
def test_seed_ranges_are_half_open(text, seeds):
    assert list(parse_seeds(text)) == seeds


@pytest.mark.parametrize("bad", ["", "a:b", "5:5", "9:3", "1:2:3", "1-3", "1.5:3"])
def test_bad_seed_ranges_say_what_is_expected(bad):
    with pytest.raises(ValueError, match="--chaos-seeds"):
        parse_seeds(bad)


def test_a_plan_without_a_seed_gets_one_from_its_name_on_every_worker():
    class P:
        seed, name = None, "leader_kill"
    assert default_seed(P) == default_seed(P) and 0 <= default_seed(P) < 2**31
    P.name = "other"
    assert default_seed(P) != default_seed(type("Q", (), {"seed": None, "name": "leader_kill"}))


def _journal(verdict: str, *results: InvariantResult, error: str | None = None) -> Journal:
    return Journal(run=RunInfo(error=error), invariants=results, verdict=verdict)


@pytest.mark.parametrize("code,verdict,outcome", [(0, "valid", "passed"), (1, "invalid", "failed"),
                                                  (3, "unknown", "error"), (0, "unknown", "error"),
                                                  (2, "unknown", "error")])
def test_exit_code_and_journal_decide_the_outcome(tmp_path, code, verdict, outcome):
    bad = InvariantResult("convergence", verdict if verdict != "valid" else "valid", "no leader within 0.1 s")
    j = judge(exit_code=code, journal=_journal(verdict, bad, error="the ensemble never formed"),
              run_dir=tmp_path, label="p.yaml seed 3", replay="chaos run p.yaml --seed 3")
    assert j.outcome == outcome
    assert "convergence: no leader within 0.1 s" in j.text and f"run dir: {tmp_path}" in j.text
    if outcome == "error" and code == 3:
        assert "the ensemble never formed" in j.text


def test_a_run_without_a_journal_is_an_error_with_its_output(tmp_path):
    j = judge(exit_code=3, journal=None, run_dir=tmp_path, label="p", replay="r", output_tail="Traceback: boom")
    assert j.outcome == "error" and "no journal" in j.text and "Traceback: boom" in j.text


def test_the_simulator_refusing_a_plan_is_a_skip_with_its_reason(tmp_path):
    j = judge(exit_code=2, journal=None, run_dir=tmp_path, label="p", replay="r", sim=True,
              output_tail="p.yaml: snapshot steps cannot be simulated\n")
    assert j.outcome == "skipped" and "snapshot steps cannot be simulated" in j.text


# --------------------------------------------------------------------------- collection (no runs)

def test_without_chaos_the_plugin_changes_no_collection(pytester: pytest.Pytester):
    pytester.makepyfile(test_a="def test_one(): pass\ndef test_two(): pass\n")
    (pytester.path / "x.yaml").write_text((PLANS / "ok.yaml").read_text())
    without = pytester.runpytest("--co", "-q", "-p", "no:chaos.pytest_plugin")
    with_it = pytester.runpytest("--co", "-q", "-p", "chaos.pytest_plugin")
    assert with_it.ret == without.ret == 0
    ids = [line for line in with_it.outlines if "::" in line]
    assert ids == [line for line in without.outlines if "::" in line] == ["test_a.py::test_one",
                                                                            "test_a.py::test_two"]


def test_the_projects_own_tests_collect_the_same_with_the_plugin(pytester: pytest.Pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    args = ["--co", "-q", str(ROOT / "tests" / "plan"), "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml")]
    without = pytester.runpytest_subprocess(*args, "-p", "no:chaos.pytest_plugin")
    with_it = pytester.runpytest_subprocess(*args, "-p", "chaos.pytest_plugin")
    ids = [line for line in with_it.outlines if "::" in line]
    assert len(ids) > 100 and ids == [line for line in without.outlines if "::" in line]


def test_only_plans_are_collected_one_item_per_plan_and_seed(pytester: pytest.Pytester, plans: Path):
    pytester.makepyfile(test_not_a_plan="def test_x(): pass\n")
    items, rec = pytester.inline_genitems("-p", "chaos.pytest_plugin", "--chaos", str(plans), str(pytester.path),
                                          "--chaos-seeds", "1000:1002")
    ids = sorted(i.nodeid for i in items)
    assert ids == sorted(f"plans/{p}.yaml::seed={s}" for p in ("invalid", "ok", "unformed", "zookeeper_only")
                         for s in (1000, 1001))
    broken = [r for r in rec.getreports("pytest_collectreport") if r.failed]
    assert len(broken) == 1 and broken[0].nodeid == "plans/broken.yaml"
    assert str(broken[0].longrepr) == ("plans/broken.yaml:8:36 steps[0].toxic.attributes.jiter: unknown attribute "
                                       "'jiter' for a latency toxic; did you mean 'jitter'?")
    by_id = {i.nodeid: i for i in items}
    # each item's timeout is its plan's time_limit (30s) plus the margin, not the global 300 s
    assert by_id["plans/ok.yaml::seed=1000"].get_closest_marker("timeout").args == (90.0,)
    skip = by_id["plans/zookeeper_only.yaml::seed=1001"].get_closest_marker("skip")
    assert skip.kwargs["reason"] == "the plan's targets (zookeeper) exclude fle"
    assert by_id["plans/ok.yaml::seed=1000"].get_closest_marker("skip") is None


def test_without_seeds_each_plan_runs_once_with_its_own_seed_and_k_selects(pytester: pytest.Pytester, plans: Path):
    items, _ = pytester.inline_genitems("-p", "chaos.pytest_plugin", "--chaos", str(plans / "ok.yaml"),
                                        str(plans / "zookeeper_only.yaml"), "--chaos-margin", "5")
    assert sorted(i.nodeid for i in items) == ["plans/ok.yaml::seed=5",
                                               f"plans/zookeeper_only.yaml::seed={default_seed(items[1].plan)}"]
    assert items[0].get_closest_marker("timeout").args == (35.0,)
    res = pytester.runpytest("-p", "chaos.pytest_plugin", "--chaos", str(plans), "--chaos-seeds", "1:4",
                             "-k", "plugin_ok and 2", "--co", "-q")
    assert [line for line in res.outlines if "::" in line] == ["plans/ok.yaml::seed=2"]


def test_a_missing_target_or_simulator_skips_with_the_reason(pytester: pytest.Pytester, plans: Path):
    from chaos.cli import cli
    items, _ = pytester.inline_genitems("-p", "chaos.pytest_plugin", "--chaos", str(plans / "ok.yaml"),
                                        "--chaos-target", "nosuch")
    assert items[0].get_closest_marker("skip").kwargs["reason"].startswith(
        "target nosuch is not installed here (known: fle")
    items, _ = pytester.inline_genitems("-p", "chaos.pytest_plugin", "--chaos", str(plans / "ok.yaml"), "--chaos-sim")
    reason = items[0].get_closest_marker("skip")
    assert (reason is None) if "sim" in cli.commands else (reason.kwargs["reason"] == SIM_MISSING)


def test_chaos_sim_items_run_in_the_simulator(pytester: pytest.Pytester, plans: Path):
    from chaos.cli import cli
    if "sim" not in cli.commands:
        pytest.skip(SIM_MISSING)
    out = pytester.path / "sim-runs"
    res = pytester.runpytest_subprocess("-p", "chaos.pytest_plugin", "--chaos", str(plans / "ok.yaml"),
                                        str(plans / "invalid.yaml"), "--chaos-sim", "--chaos-seeds", "2:3",
                                        f"--chaos-out={out}", timeout=300)
    res.assert_outcomes(passed=1, failed=1)
    assert "replay:  chaos sim plans/invalid.yaml --seed 2 --repeat 1" in res.stdout.str()
    for name in ("ok-seed2", "invalid-seed2"):
        j = json.loads((out / name / "journal.json").read_text())
        assert j["run"]["seed"] == 2 and j["run"].get("simulated") is True
    assert not list(out.glob(".sim-*")), "the simulator's scratch dirs are gone"
    assert "ok-seed2" in (out / "index.html").read_text()


@pytest.mark.parametrize("args,message", [
    (["--chaos", "plans", "--chaos-seeds", "9:3"], "--chaos-seeds: '9:3' is empty"),
    (["--chaos", "plans", "--chaos-seeds", "x"], "--chaos-seeds: expected A:B"),
    (["plans", "--chaos-seeds", "1:3"], "--chaos-seeds needs --chaos"),
    (["--chaos"], "--chaos: name the plan files or folders"),
    (["--chaos", "plans", "--chaos-margin", "0"], "--chaos-margin: expected seconds > 0"),
])
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, plans: Path, args, message):
    res = pytester.runpytest("-p", "chaos.pytest_plugin", *args)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert message in res.stderr.str()


# --------------------------------------------------------------------------- real runs

@pytest.mark.slow
def test_plans_run_in_parallel_with_outcomes_junit_index_and_lf(pytester: pytest.Pytester, plans: Path):
    (plans / "zookeeper_only.yaml").unlink()
    out, junit = pytester.path / "runs", pytester.path / "junit.xml"
    res = pytester.runpytest_subprocess("-p", "chaos.pytest_plugin", "--chaos", "plans", "--chaos-seeds", "5:7",
                                        "-k", "not (unformed and 6)", "-n", "2", "--chaos-out", str(out),
                                        f"--junitxml={junit}", "-rA", timeout=600)
    text = res.stdout.str()
    res.assert_outcomes(passed=2, failed=2, errors=2)   # errors: unknown + the broken plan
    assert "plans/broken.yaml:8:36 steps[0].toxic.attributes.jiter" in text
    cases = _cases(junit)
    assert set(cases) >= {"plans.ok.yaml::seed=5", "plans.invalid.yaml::seed=6", "plans.unformed.yaml::seed=5"}
    assert "plans.unformed.yaml::seed=6" not in cases   # -k
    ok, bad, unknown = cases["plans.ok.yaml::seed=5"], cases["plans.invalid.yaml::seed=6"], \
        cases["plans.unformed.yaml::seed=5"]
    assert _props(ok) == {"seed": "5", "verdict": "valid", "report": str(out / "ok-seed5" / "report.html"),
                          "run_dir": str(out / "ok-seed5")}
    assert (out / "ok-seed5" / "report.html").is_file()
    assert _props(bad)["verdict"] == "invalid" and _props(unknown)["verdict"] == "unknown"
    failure = bad.find("failure").text
    assert "invalid  convergence: live voters did not agree" in failure
    assert "valid    single_leader:" in failure
    assert f"run dir: {out / 'invalid-seed6'}" in failure and f"report:  {out / 'invalid-seed6' / 'report.html'}" \
        in failure
    assert f"replay:  chaos run plans/invalid.yaml --seed 6 --replay {out / 'invalid-seed6'}" in failure
    assert "unknown: plans/unformed.yaml seed 5: the ensemble never formed" in unknown.find("error").text
    assert "Traceback" not in unknown.find("error").text
    assert load(out / "invalid-seed6").run.seed == 6
    index = (out / "index.html").read_text()
    assert all(f"{n}-seed{s}" in index for n in ("ok", "invalid") for s in (5, 6))
    # chaos run's own per-invariant junit.xml stays as it is
    assert {c.get("name") for c in ET.parse(out / "ok-seed5" / "junit.xml").iter("testcase")} >= {"single_leader"}

    # --lf: the failed plan x seed pairs again, with the same seeds (and -x stops after the first)
    (plans / "broken.yaml").unlink()   # else -x stops at its collection error
    out2 = pytester.path / "again"
    res = pytester.runpytest_subprocess("-p", "chaos.pytest_plugin", "--chaos", "plans", "--lf", "-x",
                                        "--chaos-out", str(out2), timeout=600)
    res.assert_outcomes(failed=1)
    assert "stopping after 1 failures" in res.stdout.str()
    assert sorted(p.name for p in out2.iterdir() if p.is_dir()) == ["invalid-seed5"]
    assert json.loads((out2 / "invalid-seed5" / "journal.json").read_text())["run"]["seed"] == 5


# --------------------------------------------------------------------------- remote workers over real ssh

@pytest.fixture(scope="module")
def ssh_host(tmp_path_factory: pytest.TempPathFactory):
    """A real sshd on a reserved loopback port, key auth only, as a second
    "host"; (alias, ssh_config). Skipped where sshd cannot run."""
    import os
    import subprocess
    import time

    from chaos.ports import reserve_ports
    sshd, keygen = Path("/usr/sbin/sshd"), shutil.which("ssh-keygen")
    if not sshd.exists() or not keygen or not shutil.which("ssh"):
        pytest.skip("needs openssh-server and openssh-client (apt-get install openssh-server)")
    if not Path("/run/sshd").is_dir():
        if os.geteuid() != 0:
            pytest.skip("sshd needs /run/sshd, and only root may create it")
        Path("/run/sshd").mkdir(mode=0o755)
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host", "user"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    shutil.copy(d / "user.pub", d / "authorized_keys")
    ports = reserve_ports(1)
    port = ports.ports[0]
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        f"PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nPidFile {d / 'sshd.pid'}\n")
    import getpass
    (d / "ssh_config").write_text(
        f"Host chaos-remote\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile {d / 'user'}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n  BatchMode yes\n  LogLevel ERROR\n")
    log = (d / "sshd.log").open("w")
    proc = subprocess.Popen([str(sshd), "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            ok = subprocess.run(["ssh", "-F", str(d / "ssh_config"), "chaos-remote", "true"],
                                capture_output=True, timeout=20).returncode == 0
            if ok:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"sshd cannot run here: {(d / 'sshd.log').read_text()[-500:]}")
            time.sleep(0.3)
        yield "chaos-remote", d / "ssh_config"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        ports.release()


def _python_with(path: Path, site: Path) -> Path:
    """The remote host's python, with fle-chaos importable from `site` (as if installed there)."""
    import sys
    path.write_text(f'#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} "$@"\n')
    path.chmod(0o755)
    return path


@pytest.mark.slow
def test_a_remote_worker_runs_plans_and_the_controller_gathers_its_runs(pytester, plans, ssh_host):
    alias, cfg = ssh_host
    remote = pytester.path / "remote-host"
    remote.mkdir()
    python = _python_with(pytester.path / "remote-python", ROOT)
    out, junit = pytester.path / "gathered", pytester.path / "junit.xml"
    res = pytester.runpytest_subprocess(
        "-p", "chaos.pytest_plugin", "--chaos", str(plans / "ok.yaml"), str(plans / "invalid.yaml"),
        "-d", "--tx", f"ssh={alias}//ssh_config={cfg}//python={python}//chdir={remote}", f"--rsyncdir={plans}",
        f"--chaos-out={out}", f"--junitxml={junit}", "-W", "ignore::DeprecationWarning", "-rA", timeout=600)
    res.assert_outcomes(passed=1, failed=1)
    assert "2 gathered from remote workers" in res.stdout.str()
    for name in ("ok-seed5", "invalid-seed5"):
        # the worker's own run dir, on its host, has everything; the controller holds what was sent back
        assert (remote / "reports" / out.name / name / "n1").is_dir()
        assert sorted(p.name for p in (out / name).iterdir()) == ["journal.json", "junit.xml", "report.html"]
        assert load(out / name).run.seed == 5
    cases = _cases(junit)
    assert _props(cases["plans.ok.yaml::seed=5"])["report"] == str(out / "ok-seed5" / "report.html")
    failure = cases["plans.invalid.yaml::seed=5"].find("failure").text
    assert f"run dir: {out / 'invalid-seed5'} (gathered from " in failure and "invalid  convergence:" in failure
    index = (out / "index.html").read_text()
    assert "ok-seed5" in index and "invalid-seed5" in index


def test_a_worker_with_another_fle_chaos_version_is_refused(pytester, plans, ssh_host):
    alias, cfg = ssh_host
    site = pytester.path / "other-site"
    shutil.copytree(ROOT / "chaos", site / "chaos", ignore=shutil.ignore_patterns("__pycache__"))
    init = site / "chaos" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', '__version__ = "9.9.9-other+'))
    python = _python_with(pytester.path / "other-python", site)
    remote = pytester.path / "remote-host"
    remote.mkdir()
    res = pytester.runpytest_subprocess(
        "-p", "chaos.pytest_plugin", "--chaos", str(plans / "ok.yaml"),
        "-d", "--tx", f"ssh={alias}//ssh_config={cfg}//python={python}//chdir={remote}", f"--rsyncdir={plans}",
        f"--chaos-out={pytester.path / 'out'}", "-W", "ignore::DeprecationWarning", timeout=300)
    from chaos import __version__
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert (f"it runs fle-chaos 9.9.9-other+{__version__}, this controller runs {__version__}; "
            "install the same version on every host") in res.stdout.str() + res.stderr.str()
    assert not (pytester.path / "out").exists()


def test_shard_junit_files_merge_into_one(tmp_path):
    from chaos.pytest_plugin import merge_junit
    for i, (tests, failures) in enumerate([(3, 1), (2, 0)]):
        cases = "".join(f'<testcase classname="plans.p.yaml" name="seed={i * 10 + k}"/>' for k in range(tests))
        (tmp_path / f"pytest-shard{i}.xml").write_text(
            f'<testsuites><testsuite name="pytest" tests="{tests}" failures="{failures}" errors="0" '
            f'skipped="0">{cases}</testsuite></testsuites>')
    (tmp_path / "pytest-shard9.xml").write_text("<testsuites><testsuite")   # a shard that died mid-write
    out = merge_junit(sorted(tmp_path.glob("pytest-*.xml")), tmp_path / "junit.xml")
    root = ET.parse(out).getroot()
    assert (root.get("tests"), root.get("failures")) == ("5", "1")
    assert [s.get("name") for s in root.iter("testsuite")] == ["pytest-shard0", "pytest-shard1"]
    assert len(list(root.iter("testcase"))) == 5
