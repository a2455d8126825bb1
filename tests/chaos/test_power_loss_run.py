"""`power_loss` end to end: the shipped plan is valid on the clean node, and no
lazy mount outlives its run, however the run ends."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from chaos import lazyfs

from chaoshelp import (needs_node, needs_toxiproxy, procs_mentioning, records, run_valid_plan,
                       start_run_until)

MISSING = lazyfs.missing_requirements()
pytestmark = [needs_node, needs_toxiproxy, pytest.mark.skipif(MISSING is not None, reason=str(MISSING))]


def _mounts_under(path: Path) -> list[str]:
    """Lazy mounts below ``path``, read from /proc/self/mountinfo."""
    root = str(path.resolve())
    return [mp for mp, _ in lazyfs.mounts() if mp == root or mp.startswith(root + os.sep)]



@pytest.mark.slow
def test_power_loss_quorum_is_valid_on_the_clean_node(tmp_path):
    out = tmp_path / "plq"
    j = run_valid_plan(out, "power_loss_quorum")
    cuts = records(j, "step_finished", kind="power_loss")
    assert len(cuts) == 2 and all(c["ok"] for c in cuts)
    followers, everyone = (sorted(c["resolved"]["target"]) for c in cuts)
    assert len(followers) == 2 and everyone == [1, 2, 3]
    lost = records(j, "unsynced_lost")
    assert sorted(r["sid"] for r in lost) == sorted(followers + everyone)
    assert all(r["error"] is None for r in lost)
    faults = records(j, "fault", kind="power_loss")
    assert {f["phase"] for f in faults} == {"requested", "effective"} and len(faults) == 10
    killed = {r["sid"] for r in records(j, "process", action="killed")}
    assert killed == {1, 2, 3}
    # committed txns existed before the whole-ensemble cut, so the oracle had work to do
    survived = next(i for i in j["invariants"] if i["name"] == "no_committed_txn_lost")
    assert "survived" in survived["message"]
    assert not _mounts_under(out) and not procs_mentioning(str(out))
    # the resolved schedule (chaos shrink) cuts the same nodes at once, one step and one unit each
    from chaos.plan import parse_plan
    from chaos.schedule import plan_text, schedule_from_run
    sched = schedule_from_run(out)
    cut_steps = [st for st in sched.steps if st.kind == "power_loss"]
    assert [st.value for st in cut_steps] == [followers, everyone]
    assert len({st.unit for st in cut_steps}) == 2
    rewritten = parse_plan(plan_text(sched), "schedule.yaml")
    assert [st.describe() for st in rewritten.steps if st.kind == "power_loss"] == \
        ["power_loss " + ", ".join(map(str, followers)), "power_loss 1, 2, 3"]


POWER_PLAN = """\
name: long_power_cut
description: Forms an ensemble, cuts the power of two followers, then sleeps long with them down.
seed: 5
time_limit: 5m
ensemble: {nodes: 3}
steps:
  - wait: {for: stable, timeout: 60s}
  - sleep: 1s
  - power_loss: followers
  - sleep: 4m
"""


def _start_cut_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    return start_run_until(tmp_path, "long_power_cut", POWER_PLAN, '"type":"unsynced_lost"', "cut the power")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGINT-group", "SIGTERM", "SIGKILL"])
def test_interrupted_power_loss_run_leaves_no_mount(tmp_path, sig):
    proc, out = _start_cut_run(tmp_path)
    assert len(_mounts_under(out)) == 3            # one lazy disk per node, mounted mid-run
    daemons = [p for p in procs_mentioning(str(out)) if "chaos.lazyfs" in " ".join(p.cmdline())]
    assert len(daemons) == 3
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)                   # ^C at a terminal: the whole foreground group
    else:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    if sig != signal.SIGKILL:
        assert proc.returncode == 3, stdout + stderr
    # a SIGKILLed run runs no cleanup: PDEATHSIG ends the daemons, auto_unmount the mounts
    assert not psutil.wait_procs(daemons, timeout=15)[1]
    deadline = time.monotonic() + 15
    while _mounts_under(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _mounts_under(out)
    assert not psutil.wait_procs(procs_mentioning(str(out)), timeout=10)[1]
    if sig != signal.SIGKILL:
        j = json.loads((out / "journal.json").read_text())
        assert j["run"]["exit_code"] == 3 and records(j, "unsynced_lost")
