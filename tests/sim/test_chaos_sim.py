"""`chaos sim`: replay identity, a wrong rule caught, non-simulatable plans refused
with their location, the directed link faults, and promoted schedules running for real."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.outcome import Verdict
from chaos.plan import load_plan
from chaos.sim.command import SimOptions, run_dir_for, simulate, write_run
from chaos.sim.journal import WALL_CLOCK_FIELDS
from chaos.sim.runner import run_sim
from node.fle import FastLeaderElection
from node.sim import LinkFault
from node.sim_zab import ZabSim
from zkrules.quorum import QuorumMaj

ROOT = Path(__file__).resolve().parents[2]
PLANS = ROOT / "plans"


def _comparable(result) -> dict:
    d = result.journal.to_json()
    for k in WALL_CLOCK_FIELDS:
        d["run"].pop(k, None)
    return d


@pytest.mark.parametrize("plan", ["leader_kill", "nemesis_one_minute"])
def test_same_plan_and_seed_give_identical_records(plan):
    p = load_plan(str(PLANS / f"{plan}.yaml"))
    a, b = run_sim(p, 11), run_sim(p, 11)
    assert _comparable(a) == _comparable(b)
    assert a.journal.to_json()["records"] == b.journal.to_json()["records"]
    assert _comparable(run_sim(p, 12))["records"] != _comparable(a)["records"]


class InvertedTieBreak(FastLeaderElection):
    """Test-only core: with equal epoch and zxid the *smaller* sid wins."""

    def total_order_predicate(self, new_id, new_zxid, new_epoch, cur_id, cur_zxid, cur_epoch):
        if (new_epoch, new_zxid) == (cur_epoch, cur_zxid) and self.verifier.weight(new_id) > 0:
            return new_id < cur_id
        return super().total_order_predicate(new_id, new_zxid, new_epoch, cur_id, cur_zxid, cur_epoch)


def test_a_core_with_an_inverted_tie_break_is_invalid_and_the_real_core_is_valid():
    plan = load_plan(str(PLANS / "leader_kill.yaml"))
    assert run_sim(plan, 3).verdict == Verdict.VALID.value
    bad = run_sim(plan, 3, core_factory=InvertedTieBreak)
    assert bad.verdict == Verdict.INVALID.value
    assert "leader_validity" in bad.invalid


def test_a_zab_rule_broken_in_the_real_nodes_roles_breaks_the_simulation_too(monkeypatch):
    """The simulator drives the real node's Zab roles (node.zab_roles), so a wrong
    epoch rule there — a leader proposing an epoch its learners already accepted —
    is wrong in `chaos sim` as well: those learners' ACKEPOCHs do not count, and no
    leader ever establishes an epoch."""
    import node.zab_roles as roles
    plan = load_plan(str(PLANS / "leader_kill.yaml"))
    assert run_sim(plan, 3).verdict == Verdict.VALID.value
    monkeypatch.setattr(roles, "epoch_to_propose", lambda own, others: max([own, *others]))
    bad = run_sim(plan, 3)
    assert bad.verdict == Verdict.INVALID.value
    assert "convergence" in bad.invalid  # no epoch after the kill is ever established


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return p


SLICED = """\
name: sliced
description: a byte-level toxic
ensemble: {nodes: 3}
steps:
  - wait: stable
  - repeat:
      times: 2
      steps:
        - toxic:
            type: slicer
            attributes: {average_size: 8}
            links: {from: all, to: all}
"""


def test_a_plan_with_a_byte_level_toxic_is_skipped_with_its_location(tmp_path):
    sliced = _write(tmp_path, "sliced", SLICED)
    lines: list[str] = []
    code = simulate(SimOptions([str(sliced)], out=tmp_path / "out"), lines.append)
    assert code == 2
    text = "\n".join(lines)
    assert f"{sliced}:10:13 steps[1].repeat.steps[0].toxic.type: toxic 'slicer' acts on bytes" in text
    assert "every plan was skipped" in text
    lines.clear()
    code = simulate(SimOptions([str(sliced), str(PLANS / "follower_restart.yaml")], out=tmp_path / "out"),
                    lines.append)
    assert code == 0
    assert any(line.startswith("follower_restart: 1 runs, 1 valid") for line in lines)
    assert any(line == f"skipped: {sliced}" for line in lines)


def test_cli_keep_all_writes_the_run_of_one_seed(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "chaos", "sim", str(PLANS / "pause_leader.yaml"), "--seed", "4",
                        "--repeat", "1", "--out", str(out), "--keep-all"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    d = run_dir_for(out, "pause_leader", 4)
    j = json.loads((d / "journal.json").read_text())
    assert j["run"]["simulated"] is True and j["run"]["seed"] == 4 and j["verdict"] == "valid"
    assert (d / "report.html").exists() and (d / "junit.xml").exists()
    assert "pause_leader: 1 runs, 1 valid" in r.stdout


def _world(events: list) -> ZabSim:
    w = ZabSim(QuorumMaj([1, 2, 3]), [1, 2, 3], seed=1, emit=lambda s, e, f: events.append((w.now_ms, s, e, f)),
               started=())
    for s in (1, 2, 3):
        w.boot(s, 100 + s)
    return w


def test_a_one_way_hold_drops_one_direction_and_its_removal_closes_the_connection():
    events: list = []
    w = _world(events)
    w.run_for(3000)
    assert sorted(w.nodes[s].state.name for s in (1, 2, 3)) == ["FOLLOWING", "FOLLOWING", "LEADING"]
    leader = next(s for s in (1, 2, 3) if w.nodes[s].state.name == "LEADING")
    a, b = (s for s in (1, 2, 3) if s != leader)
    w.add_fault("f1", LinkFault(hold=True), [(a, b, "election"), (a, b, "quorum")])
    before = len(events)
    w.halt(leader, graceful=False)  # the others elect again; a's notifications to b are held, b's to a arrive
    w.run_for(200)
    got = [(e[1], e[3]["from"]) for e in events[before:] if e[2] == "notification_received"]
    assert (a, b) in got and (b, a) not in got
    assert frozenset((a, b)) in w._links
    w.remove_fault("f1")
    assert frozenset((a, b)) not in w._links


def test_reset_peer_on_the_quorum_port_ends_the_follower_role():
    events: list = []
    w = _world(events)
    w.run_for(3000)
    leader = next(s for s in (1, 2, 3) if w.nodes[s].state.name == "LEADING")
    follower = min(s for s in (1, 2, 3) if s != leader)
    w.add_fault("r", LinkFault(reset_ms=50), [(follower, leader, "quorum")])
    w.run_for(300)
    lost = [e for e in events if e[1] == follower and e[2] == "leader_lost"]
    assert lost and "connection reset" in lost[0][3]["reason"]


@pytest.mark.timeout(240)
def test_a_promoted_schedule_runs_under_chaos_run(tmp_path):
    plan = load_plan(str(PLANS / "leader_kill.yaml"))
    bad = run_sim(plan, 3, core_factory=InvertedTieBreak)
    assert bad.verdict == Verdict.INVALID.value
    d = tmp_path / "leader_kill-seed3"
    write_run(bad.journal, d, promote=True)
    promoted = d / "promoted.yaml"
    assert load_plan(str(promoted)).steps
    out = tmp_path / "real"
    r = subprocess.run([sys.executable, "-m", "chaos", "run", str(promoted), "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=200)
    j = json.loads((out / "journal.json").read_text())
    assert not j["run"].get("simulated")
    # The real node has the right tie-break: the schedule runs to its end and is judged.
    assert r.returncode in (0, 1), r.stdout[-2000:] + r.stderr[-2000:]
    assert all(s["ok"] for s in j["records"] if s["type"] == "step_finished" and s["step"] != "final")


def test_a_failing_seed_shrinks_in_the_simulator(tmp_path):
    from chaos.sim.shrink import shrink_seed
    plan = load_plan(str(PLANS / "leader_kill.yaml"))
    bad = run_sim(plan, 3, core_factory=InvertedTieBreak)
    d = tmp_path / "leader_kill-seed3"
    write_run(bad.journal, d)
    r = shrink_seed(d, 3, core_factory=InvertedTieBreak)
    assert r.outcome == "shrunk" and r.minimal is not None
    assert len(r.best.steps) < len(r.original.steps)
    again = run_sim(load_plan(str(r.minimal)), 3, core_factory=InvertedTieBreak)
    assert "leader_validity" in again.invalid
