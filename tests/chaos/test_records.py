"""Typed journal records: round trips, old journals, newer writers."""
from __future__ import annotations

import json

import pytest

from chaos.journal import JournalWriter, load
from chaos.outcome import InvariantResult, Verdict
from chaos.records import (RECORD_TYPES, NotificationsCapped, SCHEMA_VERSION, Fault, Journal, LogSummary, NodeEvent, Process,
                           Record, RunFinished, RunStarted, Status, StepFinished, StepStarted, Teardown,
                           UnknownRecord, UnsyncedLost, WorkloadReadback, WorkloadTick)

SAMPLES = {
    RunStarted: {"seed": 7, "command": "chaos run x.yaml"},
    StepStarted: {"step": "steps[0]", "kind": "kill", "label": "kill leader", "resolved": {"target": [3]}},
    StepFinished: {"step": "steps[0]", "kind": "kill", "label": "kill leader", "resolved": {"target": [3]},
                   "ok": False, "error": "node 3 is not running"},
    Fault: {"phase": "effective", "fault_id": "f1", "kind": "partition", "target": {"blocked": [[1, 2]]},
            "links": [[1, 2, "election"], [1, 2, "quorum"]]},
    Process: {"sid": 2, "action": "killed", "pid": 4242, "exit_code": -9},
    Status: {"sid": 1, "up": True, "state": "LEADING", "leader": 1, "epoch": 3, "accepted_epoch": 3,
             "zxid": 12884901889, "logical_clock": 2, "synced": True},
    LogSummary: {"sid": 1, "runs": [[1, 1, 20], [2, 1, 4]], "last_committed_zxid": 8589934596, "error": None},
    Teardown: {"reason": "interrupted"},
    NotificationsCapped: {"sid": 2, "election_seq": 40, "logical_clock": 3, "kept": 5000,
                          "dropped_sent": 812, "dropped_received": 790, "dropped_other": 400,
                          "cap": "election"},
    RunFinished: {"verdict": "valid", "exit_code": 0},
    UnsyncedLost: {"sid": 2, "files": [{"path": "/txnlog", "size": 9000, "durable_size": 8000,
                                        "dropped_bytes": 4096}], "dropped_bytes": 4096, "error": None},
    WorkloadTick: {"second": 12, "acks": 19, "errors": 1},
    WorkloadReadback: {"sid": 2, "acked": 300, "held": 299, "missing_count": 1,
                       "missing": ["/fle-chaos/w-0000000041"], "extra_count": 0, "digest": "ab12", "error": None},
}


def test_every_registered_type_has_a_sample():
    assert set(RECORD_TYPES.values()) - {NodeEvent} == set(SAMPLES)


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.type)
def test_round_trip(cls):
    d = {"seq": 5, "t": 1.5, "mono_ms": 1000.0, "type": cls.type, **SAMPLES[cls]}
    rec = Record.from_json(d)
    assert type(rec) is cls
    assert rec.to_json() == d
    assert Record.from_json(json.loads(json.dumps(rec.to_json()))) == rec


def test_node_event_keeps_the_nodes_fields_flat_on_disk_and_typed_in_memory():
    d = {"seq": 1, "t": 0.1, "mono_ms": 1.0, "type": "node_event", "sid": 2, "event": "election_finished",
         "node_ts": 1700000000.5, "leader": 3, "zxid": 4294967297, "path": "quorum"}
    ev = Record.from_json(d)
    assert isinstance(ev, NodeEvent) and ev.get("leader") == 3 and ev.get("nope", 9) == 9
    assert ev.to_json() == d


def test_a_newer_writers_field_and_record_type_survive_a_round_trip():
    newer = {"seq": 3, "t": 0.2, "mono_ms": 2.0, "type": "fault", "phase": "requested", "fault_id": "f2",
             "kind": "silent_death", "target": {}, "links": [], "nemesis": "n1"}
    rec = Record.from_json(newer)
    assert isinstance(rec, Fault) and rec.extra == {"nemesis": "n1"}
    assert rec.to_json() == newer
    unknown = {"seq": 4, "t": 0.3, "mono_ms": 3.0, "type": "workload_ack", "zxid": 5}
    rec = Record.from_json(unknown)
    assert isinstance(rec, UnknownRecord) and rec.type == "workload_ack"
    assert rec.to_json() == unknown


def test_records_are_read_only():
    rec = Record.from_json({"seq": 1, "t": 0, "mono_ms": 0, "type": "fault", "target": {"a": 1}})
    with pytest.raises(TypeError):
        rec.target["a"] = 2  # type: ignore[index]
    with pytest.raises(AttributeError):
        rec.kind = "x"  # type: ignore[misc]


def test_wrongly_typed_fields_become_defaults_not_crashes():
    rec = Record.from_json({"seq": "x", "t": "soon", "type": "status", "sid": "one", "epoch": [1],
                            "up": 1})
    assert isinstance(rec, Status) and rec.sid is None and rec.epoch is None and rec.up is True


def test_writer_rejects_a_field_the_record_type_does_not_have(tmp_path):
    with JournalWriter(tmp_path) as w:
        with pytest.raises(TypeError, match="no field"):
            w.record(Process, sid=1, action="killed", signal="KILL")
        with pytest.raises(TypeError):
            w.record(Record)


def _v1(tmp_path, invariants):
    """A schema-1 journal as the first landing wrote it."""
    j = {"schema_version": 1,
         "run": {"id": "abc", "plan_name": "p", "seed": 7, "toxiproxy": {"kind": "embedded", "url": None}},
         "plan": {"name": "p", "invariants": invariants},
         "nodes": [{"sid": 1, "name": "n1", "role": "participant", "weight": 1, "group": None}],
         "links": [{"from": 1, "to": 2, "port": "election", "proxy": "x", "listen": "a", "upstream": "b"}],
         "records": [{"seq": 1, "t": 0.0, "mono_ms": 0.0, "type": "run_started", "seed": 7, "command": "c"}],
         "invariants": [{"name": "single_leader", "verdict": "valid", "message": "ok", "evidence": [],
                         "first_violation": None}],
         "verdict": "valid"}
    (tmp_path / "journal.json").write_text(json.dumps(j))
    return load(tmp_path)


@pytest.mark.parametrize("invariants", [
    [{"name": "convergence", "params": {"within": 5.0}}, {"name": "single_leader", "params": {}}],
    {"convergence": {"within": 5.0}, "single_leader": {}, "leader_validity": False},
])
def test_schema_1_loads_and_plan_invariants_read_the_same_in_both_shapes(tmp_path, invariants):
    j = _v1(tmp_path, invariants)
    assert j.schema_version == 1
    assert dict(j.plan.invariants) == {"convergence": {"within": 5.0}, "single_leader": {}}
    assert j.run.target.kind == "fle" and j.run.toxiproxy.kind == "embedded"
    assert j.nodes[0].sid == 1 and j.links[0].src == 1 and j.links[0].dst == 2
    assert j.invariants[0] == InvariantResult("single_leader", "valid", "ok")
    assert j.verdict == Verdict.VALID


def test_a_run_killed_before_finish_rebuilds_from_the_lines(tmp_path):
    w = JournalWriter(tmp_path)
    w.set_header(run={"id": "r", "plan_name": "p"}, plan={"name": "p", "invariants": [{"name": "x", "params": {}}]})
    w.record(RunStarted, seed=1, command="c")
    w.record(Fault, phase="requested", fault_id="f1", kind="kill", target={"sid": 1})
    w._fh.write('{"seq": 3, "t": 0.5, "type": "sta')  # torn by the kill
    w._fh.flush()
    j = load(tmp_path)
    assert j.rebuilt and j.verdict == "unknown" and j.invariants == ()
    assert [r.type for r in j.records] == ["run_started", "fault"]
    assert j.schema_version == SCHEMA_VERSION
    assert dict(j.plan.invariants) == {"x": {}}
    w.close()


def test_journal_round_trips_through_json(tmp_path):
    w = JournalWriter(tmp_path)
    w.set_header(run={"id": "r", "plan_name": "p", "target": {"kind": "fle", "version": "0.1.0"}},
                 plan={"name": "p"}, nodes=[{"sid": 1, "name": "n1"}], links=[])
    w.record(Status, sid=1, up=True, state="LOOKING")
    w.finish([InvariantResult("single_leader", "valid", "ok", (1,), None)], "valid", 0)
    w.close()
    j = load(tmp_path)
    assert Journal.from_json(json.loads(json.dumps(j.to_json()))) == j
    assert j.run.target.version == "0.1.0" and j.run.verdict == "valid"
    assert [type(r) for r in j.records] == [Status, RunFinished]


@pytest.mark.parametrize("bad", [True, 3, "x", None, {"a": 1}, [[1, "two", "election"]], [[1, 2]]])
def test_garbled_links_read_as_no_links(bad):
    rec = Record.from_json({"seq": 1, "t": 0, "mono_ms": 0, "type": "fault", "links": bad})
    assert isinstance(rec, Fault) and rec.links == ()
