"""Step kinds and toxic types each come from one place: the STEP_TYPES registry
and the Toxiproxy catalog. A new kind needs only its class; `down` is a plan fault."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from chaos.plan import (NODE_STEP_KINDS, PLAN_FAULT_TYPES, PLAN_SCHEMA, PLAN_TOXIC_TYPES,
                        STEP_KINDS, STEP_TYPES, Choice, NodeStep, PlanError, Repeat, Restart,
                        Step, ToxicAdd, iter_steps, parse_plan, step_kind)
from chaos.plan.model import SERVER_ONLY_TOXICS
from chaos.toxiproxy.catalog import TOXIC_TYPES as CATALOG
from chaos.toxiproxy.catalog import Unit

ROOT = Path(__file__).resolve().parents[2]
HEAD = "name: r\ndescription: d\nensemble: {nodes: 3}\nsteps:\n"

# One plan step per kind, each valid after the ones before it.
EXAMPLES = {
    "wait": ("{wait: {for: joined, node: 2, timeout: 2s}}", "wait joined 2"),
    "pick": ("{pick: leader, as: boss}", "pick leader"),
    "kill": ("{kill: boss}", "kill boss"),
    "pause": ("{pause: followers}", "pause followers"),
    "resume": ("{resume: followers}", "resume followers"),
    "stop": ("{stop: 3, as: gone}", "stop 3"),
    "restart": ("{restart: gone}", "restart gone"),
    "toxic": ("{toxic: {name: slow, type: latency, attributes: {latency: 200ms},"
              " links: {from: leader, to: followers}}}", "toxic latency leader->followers"),
    "untoxic": ("{untoxic: slow}", "untoxic slow"),
    "partition": ("{partition: {isolate: leader}, as: cut}", "partition isolate leader"),
    "heal": ("{heal: cut}", "heal cut"),
    "sleep": ("{sleep: 1500ms}", "sleep 1500ms"),
    "repeat": ("{repeat: {times: 3, steps: [{sleep: 1s}]}}", "repeat 3x"),
    "choice": ("{choice: {steps: [[{sleep: 1s}], [{kill: any}]]}}", "choice of 2"),
    "silent_death": ("{silent_death: follower, as: ghost}", "silent_death follower"),
    "reboot": ("{reboot: {node: 1, down: 2s}, as: host}", "reboot 1 (down 2s)"),
    "start": ("{start: ghost}", "start ghost"),
    "snapshot": ("{snapshot: {node: ghost, as: old}}", "snapshot ghost as old"),
    "power_loss": ("{power_loss: [leader, 2], as: dark}", "power_loss leader, 2"),
    "inject": ("{inject: {node: leader, frames: [short]}}", "inject short into leader"),
    "nemesis": ("{nemesis: {duration: 10s, faults: [kill, partition], interval: 1s..2s}}",
                "nemesis 10s every 1s..2s: kill, partition"),
}


def _plan(*steps: str):
    return parse_plan(HEAD + "".join(f"  - {s}\n" for s in steps), "r.yaml")


def _issues(*steps: str) -> list[str]:
    with pytest.raises(PlanError) as info:
        _plan(*steps)
    return [f"{i.path}: {i.message}" for i in info.value.errors]


# --------------------------------------------------------------------------- the registry

def test_step_kinds_schema_and_dispatch_all_come_from_the_registry():
    assert STEP_KINDS == tuple(STEP_TYPES)
    assert STEP_KINDS == ("wait", "pick", "kill", "pause", "resume", "stop", "restart", "toxic",
                          "untoxic", "partition", "heal", "sleep", "repeat", "choice",
                          "silent_death", "reboot", "start", "snapshot", "power_loss", "inject", "nemesis")
    defs = PLAN_SCHEMA["$defs"]
    assert [k for k in defs if k.startswith("step_")] == [f"step_{k}" for k in STEP_KINDS]
    for kind, cls in STEP_TYPES.items():
        entry = defs[f"step_{kind}"]
        assert entry["properties"][kind] is cls.schema
        assert ("as" in entry["properties"]) == bool(cls.binds), kind
    assert defs["step"]["anyOf"] == [{"required": [k]} for k in STEP_KINDS]
    from chaos.plan import schema
    assert schema.STEP_KINDS is STEP_KINDS  # re-exported, not restated


def test_every_kind_parses_to_its_registered_class():
    plan = _plan(*(text for text, _ in EXAMPLES.values()))
    assert [s.kind for s in plan.steps] == list(EXAMPLES) == list(STEP_KINDS)
    for step, (kind, (_, described)) in zip(plan.steps, EXAMPLES.items()):
        assert isinstance(step, STEP_TYPES[kind]) and isinstance(step, Step)
        assert step.describe() == described and step.label == described
        assert step.to_json()["kind"] == kind and step.to_json()["path"] == step.path
        json.dumps(step.to_json())
    assert plan.steps[1].bind_as == "boss" and plan.steps[9].bind_as == "cut"


def test_node_steps_are_one_class_for_six_kinds():
    assert NODE_STEP_KINDS == ("pick", "kill", "pause", "resume", "stop", "restart")
    assert {STEP_TYPES[k] for k in NODE_STEP_KINDS} == {NodeStep, Restart}
    assert issubclass(Restart, NodeStep)  # restart adds `from: SNAPSHOT`, nothing else
    assert NodeStep.binds == "nodes"
    kill = _plan("{kill: leader, as: x, label: boom}").steps[0]
    assert kill == NodeStep("kill", kill.target, "x", "steps[0]", "boom")
    assert kill.to_json() == {"kind": "kill", "path": "steps[0]", "label": "boom",
                              "target": "leader", "as": "x"}
    assert kill.describe() == "kill leader"
    with pytest.raises(dataclasses.FrozenInstanceError):
        kill.kind = "stop"  # type: ignore[misc]


def test_as_is_refused_where_the_class_does_not_bind():
    assert _issues("{sleep: 1s, as: x}") == ["steps[0].as: unknown key 'as'"]
    assert [k for k, c in STEP_TYPES.items() if c.binds] == [*NODE_STEP_KINDS, "partition",
                                                             "silent_death", "reboot", "start", "power_loss"]


def test_nested_steps_are_children():
    plan = _plan(EXAMPLES["repeat"][0], EXAMPLES["choice"][0])
    assert isinstance(plan.steps[0], Repeat) and isinstance(plan.steps[1], Choice)
    assert [s.kind for s in iter_steps(plan.steps)] == ["repeat", "sleep", "choice", "sleep",
                                                        "kill"]


def test_registering_twice_or_without_a_schema_is_refused():
    @dataclass(frozen=True, slots=True)
    class Twice(Step):
        path: str = ""
        label: str = ""
        schema = {"type": "string"}

    with pytest.raises(ValueError, match="already NodeStep"):
        step_kind("kill")(Twice)
    with pytest.raises(TypeError, match="`kind` field"):
        step_kind("nap1", "nap2")(Twice)

    @dataclass(frozen=True, slots=True)
    class Schemaless(Step):
        path: str = ""
        label: str = ""

    with pytest.raises(TypeError, match="schema"):
        step_kind("nap")(Schemaless)
    assert "nap" not in STEP_TYPES and "nap1" not in STEP_TYPES


# The recipe of docs/DESIGN.md §3, followed for a throwaway kind in a fresh
# interpreter. In-tree kinds are registered before STEP_KINDS is computed and
# before schema/parse import it; here the class comes after, so the script
# recomputes STEP_KINDS and reloads those two modules, which is what their
# import does for a class written into model.py.
RECIPE = textwrap.dedent('''
    import importlib, json
    from dataclasses import dataclass
    from chaos.plan import model

    @model.step_kind("nap")
    @dataclass(frozen=True, slots=True)
    class Nap(model.Step):
        seconds: float
        path: str = ""
        label: str = ""
        schema = {"$ref": "#/$defs/duration"}

        @classmethod
        def parse(cls, kind, value, ctx):
            seconds = ctx.duration_s(value, ctx.path, 0.0)
            ctx.within_time_limit(seconds, ctx.path, "nap")
            return cls(seconds, ctx.step_path, ctx.label)

        def describe(self):
            return f"nap {self.seconds:g}s"

        def to_json(self):
            return {**self._head(), "seconds": self.seconds}

    model.STEP_KINDS = tuple(model.STEP_TYPES)
    from chaos.plan import schema, parse
    importlib.reload(schema)
    importlib.reload(parse)

    def issues(steps):
        text = "name: n\\ndescription: d\\ntime_limit: 10s\\nensemble: {nodes: 3}\\nsteps: " + steps
        try:
            parse.parse_plan(text, "n.yaml")
        except parse.PlanError as exc:
            return [str(i) for i in exc.errors]
        return []

    plan = parse.parse_plan("name: n\\ndescription: d\\nensemble: {nodes: 3}\\n"
                            "steps: [{nap: 2s}, {nap: 1s, label: short}]\\n", "n.yaml")
    print(json.dumps({
        "kinds": parse.STEP_KINDS,
        "schema": "step_nap" in json.loads(schema.schema_json())["$defs"],
        "steps": [s.to_json() for s in plan.steps],
        "typo": issues("[{naap: 1s}]"),
        "bad": issues("[{nap: soon}]"),
        "long": issues("[{nap: 11s}]"),
        "as": issues("[{nap: 1s, as: x}]"),
        "not_a_step": issues("[nap]"),
    }))
''')


def test_a_new_step_kind_needs_only_its_class():
    out = subprocess.run([sys.executable, "-c", RECIPE], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["kinds"][-1] == "nap" and got["schema"]
    assert got["steps"] == [
        {"kind": "nap", "path": "steps[0]", "label": "nap 2s", "seconds": 2.0},
        {"kind": "nap", "path": "steps[1]", "label": "short", "seconds": 1.0}]
    assert got["typo"] == ["n.yaml:5:10 steps[0].naap: unknown step 'naap'; did you mean 'nap'?"]
    assert got["bad"] == ["n.yaml:5:10 steps[0].nap: expected a duration like 200ms, got 'soon'"]
    assert got["long"] == ["n.yaml:5:10 steps[0].nap: nap 11s exceeds time_limit 10s"]
    assert got["as"] == ["n.yaml:5:19 steps[0].as: unknown key 'as'"]
    assert len(got["not_a_step"]) == 1 and got["not_a_step"][0].endswith(
        "repeat, choice, silent_death, reboot, start, snapshot, power_loss, inject, nemesis, nap, got 'nap'")


# --------------------------------------------------------------------------- toxic types

def test_plan_toxic_types_are_the_catalog_plus_plan_faults():
    assert set(PLAN_TOXIC_TYPES) == (set(CATALOG) - SERVER_ONLY_TOXICS) | PLAN_FAULT_TYPES
    assert PLAN_FAULT_TYPES == {"down"} and not PLAN_FAULT_TYPES & set(CATALOG)
    assert SERVER_ONLY_TOXICS == {"noop"}
    for name, attrs in PLAN_TOXIC_TYPES.items():
        assert attrs == (CATALOG[name].attributes if name in CATALOG else ())
    enum = ToxicAdd.schema["properties"]["type"]["enum"]
    assert enum == sorted(PLAN_TOXIC_TYPES)


def test_millisecond_attributes_take_durations_and_the_others_whole_numbers():
    ms = [(t, a.name) for t, attrs in PLAN_TOXIC_TYPES.items() for a in attrs if a.unit is Unit.MS]
    assert ("latency", "jitter") in ms and ("slicer", "delay") not in ms
    plan = _plan("{toxic: {type: timeout, attributes: {timeout: 1.5s}}}",
                 "{toxic: {type: slicer, attributes: {average_size: 64, delay: 300}}}")
    assert plan.steps[0].attributes == {"timeout": 1500}
    assert plan.steps[1].attributes == {"average_size": 64, "delay": 300}
    assert _issues("{toxic: {type: slicer, attributes: {average_size: 64, delay: 5ms}}}") == [
        "steps[0].toxic.attributes.delay: expected a whole number >= 0, got '5ms'"]


def test_required_attributes_come_from_the_catalog():
    for name, t in CATALOG.items():
        if name in PLAN_TOXIC_TYPES and t.required:
            assert _issues(f"{{toxic: {{type: {name}}}}}") == [
                f"steps[0].toxic: a {name} toxic needs attribute '{t.required[0]}'"]


def test_a_type_the_catalog_gains_is_a_plan_toxic_type():
    code = textwrap.dedent('''
        import types
        import chaos.toxiproxy.catalog as c
        c.TOXIC_TYPES = types.MappingProxyType({**c.TOXIC_TYPES, "packet_loss": c.ToxicType(
            "packet_loss", "PacketLossToxic", "drop chunks",
            (c.AttributeSpec("loss", c.Unit.BYTES, "x", required=True),))})
        from chaos.plan import parse_plan
        step = parse_plan("name: p\\ndescription: d\\nensemble: {nodes: 3}\\nsteps:\\n"
                          "  - toxic: {type: packet_loss, attributes: {loss: 3}}\\n").steps[0]
        print(step.type, dict(step.attributes))
    ''')
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["packet_loss", "{'loss':", "3}"]


def test_noop_is_not_offered_to_plans():
    (issue,) = _issues("{toxic: {type: noop}}")
    assert issue.startswith("steps[0].toxic.type: expected one of bandwidth, down, latency")


# --------------------------------------------------------------------------- down

def test_down_is_a_plan_fault_not_a_server_toxic():
    step = _plan("{toxic: {name: cut, type: down, links: {from: leader, to: followers}}}").steps[0]
    assert isinstance(step, ToxicAdd) and step.type == "down" and step.plan_fault
    assert step.type not in CATALOG and step.attributes == {} and step.toxicity == 1.0
    assert step.describe() == "toxic down leader->followers"
    assert not _plan("{toxic: {type: latency}}").steps[0].plan_fault
    assert _plan("{toxic: {type: down, toxicity: 1}}").steps[0].toxicity == 1.0


@pytest.mark.parametrize("toxicity", ["0.5", "0"])
def test_down_refuses_a_partial_toxicity(toxicity):
    assert _issues(f"{{toxic: {{type: down, toxicity: {toxicity}}}}}") == [
        f"steps[0].toxic.toxicity: a down fault applies to every connection; "
        f"toxicity must be 1 or left out, got {toxicity}"]


def test_down_takes_no_attributes():
    assert _issues("{toxic: {type: down, attributes: {latency: 5}}}") == [
        "steps[0].toxic.attributes.latency: unknown attribute 'latency' for a down toxic; "
        "it takes none"]
