"""Every plan in plans/ runs end to end and every invariant holds."""
from __future__ import annotations

import json

import pytest

from chaoshelp import PLANS, needs_node, needs_toxiproxy, procs_mentioning, run_chaos

PLAN_FILES = sorted(PLANS.glob("*.yaml"))


@pytest.mark.slow
@needs_node
@needs_toxiproxy
@pytest.mark.parametrize("plan", PLAN_FILES, ids=[p.stem for p in PLAN_FILES])
def test_plan_runs_valid(plan, tmp_path):
    from chaos.lazyfs import missing_requirements
    from chaos.plan import load_plan
    if load_plan(plan).uses("power_loss") and missing_requirements():
        pytest.skip(missing_requirements())
    out = tmp_path / plan.stem
    res = run_chaos("run", str(plan), "--out", str(out), timeout=600)
    assert (out / "journal.json").is_file(), f"{res.returncode}\n{res.stdout}\n{res.stderr[-3000:]}"
    j = json.loads((out / "journal.json").read_text())
    bad = [(i["name"], i["verdict"], i["message"]) for i in j["invariants"] if i["verdict"] != "valid"]
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr[-3000:]}\n{bad}"
    assert j["verdict"] == "valid" and not bad
    failed = [r for r in j["records"] if r["type"] == "step_finished" and not r["ok"]]
    assert not failed
    # every fault that was put on was taken off
    eff = {r["fault_id"] for r in j["records"] if r["type"] == "fault" and r["phase"] == "effective"
           and r["kind"] in ("toxic", "partition", "pause")}
    undone = {r["fault_id"] for r in j["records"] if r["type"] == "fault" and r["phase"] == "undone"}
    assert eff <= undone
    assert not procs_mentioning(str(out))
