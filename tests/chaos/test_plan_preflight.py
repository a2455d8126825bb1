"""What a plan needs from this machine beyond its target: said in one line, and
a caller running many plans leaves out the ones that cannot run here."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from chaos import lazyfs, wirecut
from chaos import targets
from chaos.plan import load_plan
from chaos.targets import plan_preflight

ROOT = Path(__file__).resolve().parents[2]
PLANS = ROOT / "plans"


def test_a_plan_needs_fuse_for_a_power_cut_and_nftables_for_a_reboot(monkeypatch):
    monkeypatch.setattr(wirecut, "missing_requirements", lambda: "no nft here")
    monkeypatch.setattr(lazyfs, "missing_requirements", lambda: "no fuse here")
    assert plan_preflight(load_plan(PLANS / "reboot_half_open_links.yaml")) == "no nft here"
    assert plan_preflight(load_plan(PLANS / "power_loss_quorum.yaml")) == "no fuse here"
    assert plan_preflight(load_plan(PLANS / "leader_kill.yaml")) is None
    monkeypatch.setattr(wirecut, "missing_requirements", lambda: None)
    assert plan_preflight(load_plan(PLANS / "reboot_half_open_links.yaml")) is None


def test_the_mutation_bench_leaves_out_what_cannot_run_here_and_says_why(monkeypatch):
    spec = importlib.util.spec_from_file_location("mutation_score", ROOT / "bench" / "mutation_score.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "mutation_score", bench)   # dataclasses look their module up
    spec.loader.exec_module(bench)
    monkeypatch.setattr(targets, "plan_preflight",
                        lambda plan: "no nft here" if plan.uses("reboot") else None)
    runnable, left_out = bench.runnable_plans(ROOT, "plans/*.yaml")
    assert left_out == {"plans/reboot_half_open_links.yaml": "no nft here"}
    assert "plans/leader_kill.yaml" in runnable and "plans/reboot_half_open_links.yaml" not in runnable
    assert len(runnable) + 1 == len(list(PLANS.glob("*.yaml")))
