"""`reboot` end to end: the shipped plan is valid on the clean node, the peers'
connections to the dead process really stay open across its restart, and no
cut outlives its run, however the run ends."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import psutil
import pytest

from chaos import netns, procs, wirecut

from chaoshelp import needs_node, needs_toxiproxy, procs_mentioning, records, run_valid_plan, start_run_until

MISSING = wirecut.missing_requirements()
pytestmark = [needs_node, needs_toxiproxy, pytest.mark.skipif(MISSING is not None, reason=str(MISSING))]



def _table_exists(run_id: str) -> bool:
    r = subprocess.run(["nft", "list", "table", "ip", f"{netns.TABLE_PREFIX}{run_id}"],
                       capture_output=True, text=True)
    return r.returncode == 0


@pytest.mark.slow
def test_reboot_half_open_links_is_valid_and_really_half_open(tmp_path):
    out = tmp_path / "rb"
    j = run_valid_plan(out, "reboot_half_open_links")
    faults = records(j, "fault", kind="reboot")
    assert [f["phase"] for f in faults] == ["requested", "effective", "undone"] * 2
    # node 1's host crashed: between its kill and its start, neither larger sid
    # saw its election connection to node 1 end (no FIN got out) ...
    killed = records(j, "process", sid=1, action="killed")[0]["t"]
    started = next(r["t"] for r in records(j, "process", sid=1, action="started") if r["t"] > killed)
    ends = [r for r in records(j, "node_event", event="connection_closed", port="election", peer=1)
            if r["sid"] in (2, 3) and killed < r["t"]]
    assert ends and all(r["t"] > started for r in ends), ends
    # ... and each dropped its half-open one when node 1, rebooted, called again
    assert {r["sid"] for r in ends if r["reason"] == "peer_redialled"} == {2, 3}, ends
    assert not _table_exists(j["run"]["id"])
    assert not psutil.wait_procs(procs_mentioning(str(out)), timeout=10)[1]
    # the resolved schedule writes the reboots back as reboots
    from chaos.schedule import plan_text, schedule_from_run
    text = plan_text(schedule_from_run(out))
    assert "- reboot: {node: 1, down: 1s}" in text and "down: 2s}" in text


LONG_REBOOT = """\
name: long_reboot
description: Forms an ensemble, then reboots a follower whose host stays down for minutes.
seed: 5
time_limit: 5m
ensemble: {nodes: 3}
steps:
  - wait: {for: stable, timeout: 60s}
  - reboot: {node: 1, down: 4m}
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGINT-group", "SIGTERM", "SIGKILL"])
def test_an_interrupted_reboot_leaves_no_cut(tmp_path, sig, hold_run):
    proc, out = start_run_until(tmp_path, "long_reboot", LONG_REBOOT, '"phase":"effective","fault_id":"f1"',
                                "cut a wire")
    run_id = json.loads((out / "journal.jsonl").read_text().splitlines()[1])["header"]["run"]["id"]
    assert _table_exists(run_id)
    hold_run(run_id)                               # (a concurrent run's janitor leaves it be)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)                   # ^C at a terminal: the whole foreground group
    else:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        # no cleanup ran; the next run's janitor drops the table (chaos.netns.janitor)
        assert _table_exists(run_id)
        assert run_id in netns.janitor(procs.live_run_ids() - {run_id})
        procs.janitor()                            # and the dead run's registry entry
    else:
        assert proc.returncode == 3, stdout + stderr
        j = json.loads((out / "journal.json").read_text())
        assert [f["phase"] for f in records(j, "fault", kind="reboot")] == ["requested", "effective", "undone"]
    assert not _table_exists(run_id)
    assert not psutil.wait_procs(procs_mentioning(str(out)), timeout=10)[1]
