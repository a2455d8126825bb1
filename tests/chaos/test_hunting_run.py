"""The issue-8 steps against real nodes: silent_death keeps stale connections
open until its undo, snapshot / restart-from brings back an older dataDir,
start honours the ensemble's start list, and a nemesis replays exactly."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaoshelp import needs_node, needs_toxiproxy, procs_mentioning, records, run_chaos

pytestmark = [pytest.mark.slow, needs_node, needs_toxiproxy]


def _run(tmp_path: Path, name: str, body: str, *extra: str) -> tuple[dict, str]:
    plan = tmp_path / f"{name}.yaml"
    plan.write_text(body)
    out = tmp_path / name
    res = run_chaos("run", str(plan), "--out", str(out), *extra, timeout=300)
    assert (out / "journal.json").is_file(), res.stdout + res.stderr[-3000:]
    assert not procs_mentioning(str(out))
    return json.loads((out / "journal.json").read_text()), res.stdout + res.stderr



SILENT = """\
name: silent
description: A follower dies silently; its peers keep their connections to it until the heal.
seed: 4
time_limit: 60s
ensemble: {nodes: 3}
steps:
  - wait: {for: stable, timeout: 20s}
  - sleep: 1s
  - silent_death: follower
    as: ghost
  - wait: {for: stable, timeout: 15s}
  - sleep: 3s
  - heal: ghost
  - sleep: 500ms
  - restart: ghost
  - wait: {for: stable, timeout: 15s}
"""


def test_silent_death_keeps_the_survivors_connections_open_until_the_heal(tmp_path):
    j, out = _run(tmp_path, "silent", SILENT)
    assert j["verdict"] == "valid", out
    sd = records(j, "step_finished", kind="silent_death")[0]
    ghost = sd["resolved"]["target"][0]
    faults = records(j, "fault", kind="silent_death")
    assert [f["phase"] for f in faults] == ["requested", "effective", "undone"]
    assert faults[0]["target"]["sid"] == ghost
    assert sorted(tuple(lk) for lk in faults[0]["links"]) == sorted(
        (a, b, p) for o in (1, 2, 3) if o != ghost for a, b in ((ghost, o), (o, ghost))
        for p in ("election", "quorum"))
    effective, undone = faults[1], faults[2]
    # frozen behind the black hole, killed only at the heal, started by the restart
    procs = [(r["action"], r["seq"]) for r in records(j, "process", sid=ghost) if r["seq"] > faults[0]["seq"]]
    assert [a for a, _ in procs][:3] == ["paused", "killed", "started"]
    assert procs[0][1] < effective["seq"] and faults[1]["seq"] < procs[1][1] < undone["seq"]
    heal = records(j, "step_started", kind="heal")[0]

    survivors = [s for s in (1, 2, 3) if s != ghost]
    closed = [r for r in records(j, "node_event", event="connection_closed")
              if r["sid"] in survivors and r.get("peer") == ghost]
    during = [r for r in closed if effective["t"] < r["t"] < heal["t"]]
    # The election connections stay open and stale: nothing reached the survivors.
    # (The leader may drop its quorum link to a silent learner on its own clock:
    # that is its own timeout, not a FIN from the dead peer.)
    assert not [r for r in during if r["port"] == "election"], during
    assert not [r for r in during if r.get("reason") in ("eof",) or "reset" in str(r.get("reason"))], during
    opened_before = {r["sid"] for r in records(j, "node_event", event="connection_opened")
                     if r["sid"] in survivors and r.get("peer") == ghost and r["port"] == "election"
                     and r["t"] < effective["t"]}
    assert opened_before == set(survivors)
    # The heal ends them.
    after = [r for r in closed if r["port"] == "election" and heal["t"] <= r["t"]]
    assert {r["sid"] for r in after} == set(survivors), closed


SNAPSHOT = """\
name: snap
description: Node 3 is restarted from a copy of its dataDir taken before it missed txns.
seed: 5
time_limit: 60s
ensemble: {nodes: 3}
steps:
  - wait: {for: stable, timeout: 20s}
  - sleep: 500ms
  - stop: 3
  - snapshot: {node: 3, as: before}
  - restart: 3
  - wait: {for: joined, node: 3, timeout: 15s}
  - sleep: 1s
  - stop: 3
  - restart: {node: 3, from: before}
  - wait: {for: stable, timeout: 15s}
"""


def test_restart_from_a_snapshot_brings_back_the_older_log(tmp_path):
    j, out = _run(tmp_path, "snap", SNAPSHOT)
    assert j["verdict"] == "valid", out
    snap = records(j, "step_finished", kind="snapshot")[0]
    assert snap["ok"] and snap["resolved"]["as"] == "before" and snap["resolved"]["target"] == [3]
    taken_last = snap["resolved"]["runs"][-1]
    restarts = records(j, "step_finished", kind="restart")
    assert restarts[-1]["resolved"] == {"target": [3], "from": "before"}
    starts = [r for r in records(j, "node_event", sid=3, event="node_started")]
    assert len(starts) == 3
    # the third start came back with the copy's log, behind what it had caught up to
    zxid_of = lambda run: (run[0] << 32) | run[2]  # noqa: E731  [epoch, first, last]
    assert starts[2]["last_zxid"] == zxid_of(taken_last)
    # What node 3 held before the second stop, from its own events (status
    # records carry the zxid but are written only when the role changes). It
    # may have led again after its first restart (it has the largest sid):
    # then it committed txns rather than applied them.
    held = [r.get("zxid") or r.get("to_zxid") or 0
            for r in records(j, "node_event", sid=3)
            if r["event"] in ("txn_applied", "txn_committed", "sync_finished") and r["t"] < starts[2]["t"]]
    assert held and max(held) > starts[2]["last_zxid"], held
    assert (Path(j["nodes"][2]["data_dir"]) / "events.jsonl").is_file()


def test_a_snapshot_of_a_running_node_fails_the_step(tmp_path):
    body = SNAPSHOT.replace("  - stop: 3\n  - snapshot", "  - snapshot", 1)
    j, out = _run(tmp_path, "snaprun", body)
    failed = [r for r in records(j, "step_finished", kind="snapshot") if not r["ok"]]
    assert failed and "node 3 is running: snapshot copies a stopped node's dataDir" in failed[0]["error"]
    assert j["verdict"] == "unknown"


LATE = """\
name: late
description: Node 3 starts only when a step says so, after 1 and 2 formed an ensemble.
seed: 6
time_limit: 60s
ensemble: {nodes: 3, start: [1, 2]}
steps:
  - wait: {for: stable, timeout: 20s}
  - sleep: 1s
  - start: 3
  - wait: {for: joined, node: 3, timeout: 15s}
  - start: 1
"""


def test_start_honours_the_ensembles_start_list(tmp_path):
    j, out = _run(tmp_path, "late", LATE)
    first3 = records(j, "process", sid=3, action="started")[0]
    start_step = records(j, "step_started", kind="start")[0]
    assert first3["seq"] > start_step["seq"]
    assert records(j, "process", sid=1, action="started")[0]["seq"] < start_step["seq"]
    formed = [r for r in records(j, "status", state="LEADING") if r["synced"]]
    assert formed and formed[0]["seq"] < start_step["seq"]
    failed = records(j, "step_finished", kind="start")[-1]
    assert not failed["ok"] and "node 1 is already running" in failed["error"]
    assert records(j, "step_finished", kind="wait")[-1]["ok"]


NEMESIS = """\
name: nem
description: A short nemesis on five nodes, every fault kind, to replay it exactly.
seed: 12
time_limit: 60s
ensemble: {nodes: 5}
steps:
  - wait: {for: stable, timeout: 20s}
  - nemesis: {duration: 10s, faults: [kill, pause, restart, partition, latency, reset_peer, silent_death], interval: 400ms..1500ms}
  - wait: {for: stable, timeout: 20s}
"""


def _children(j: dict) -> list[tuple]:
    out = []
    for r in records(j, "step_finished"):
        if ".nemesis[" in r["step"]:
            res = {k: v for k, v in r["resolved"].items() if k not in ("leader", "description", "components")}
            out.append((r["step"], r["kind"], json.dumps(res, sort_keys=True), r["ok"]))
    return out


def test_a_nemesis_journals_plain_children_and_replays_them_exactly(tmp_path):
    j, out = _run(tmp_path, "nem", NEMESIS)
    assert j["verdict"] == "valid", out
    nem = records(j, "step_finished", kind="nemesis")[0]
    kids = _children(j)
    assert kids and [k[1] for k in kids] == nem["resolved"]["actions"]
    assert all(k[0] == f"steps[1].nemesis[{i}]" for i, k in enumerate(kids))
    assert {k[1] for k in kids} > {"sleep"}
    # every fault went through the ledger and was undone before the step ended
    applied = {f["fault_id"] for f in records(j, "fault", phase="effective")
               if f["kind"] in ("toxic", "partition", "pause", "silent_death")}
    undone = {f["fault_id"] for f in records(j, "fault", phase="undone")
              if f["seq"] < nem["seq"]}
    assert applied <= undone
    again, out2 = _run(tmp_path, "nem_replay", NEMESIS, "--seed", "77", "--replay", str(tmp_path / "nem"))
    assert _children(again) == kids, out2


INJECT = """\
name: garbage
description: A stranger sends malformed election frames to every node; each logs them and keeps serving.
seed: 6
time_limit: 40s
ensemble: {nodes: 3}
steps:
  - wait: {for: stable, timeout: 20s}
  - inject: {node: all, frames: [short, bad_state, config_overflow, random, oversize]}
  - kill: leader
  - wait: {for: leader, timeout: 10s}
"""


def test_injected_garbage_is_logged_and_every_receiver_keeps_hearing_votes(tmp_path):
    j, out = _run(tmp_path, "garbage", INJECT)
    assert j["verdict"] == "valid", out
    step = records(j, "step_finished", kind="inject")[0]
    assert step["ok"] and step["resolved"]["node"] == [1, 2, 3] and step["resolved"]["from"] == 1003
    for sid in (1, 2, 3):
        bad = [r for r in records(j, "node_event", sid=sid, event="malformed_frame") if r.get("peer") == 1003]
        assert len(bad) >= 4, (sid, bad)   # four payloads; the oversize header ends the connection
        assert {r["port"] for r in bad} == {"election"}
    # the election after the kill was heard: the survivors decided on notifications
    assert records(j, "node_event", event="election_finished")
