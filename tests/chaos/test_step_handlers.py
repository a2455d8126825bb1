"""Step handlers: one per kind, and a new kind needs only its class and its handler."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from chaos.plan.model import STEP_KINDS
from chaos.steps import HANDLERS, handles, missing_handlers

from chaoshelp import ROOT, chaos_env, needs_node, needs_toxiproxy


def test_every_step_kind_has_exactly_one_handler():
    assert missing_handlers(STEP_KINDS) == []
    assert set(HANDLERS) == set(STEP_KINDS)
    with pytest.raises(ValueError, match="two handlers"):
        handles("kill")(lambda step, ctx, scope: None)


# docs/DESIGN.md §3 and §4, followed end to end for a throwaway kind: the
# dataclass (with its schema) and a handler, nothing else, then a real run.
RECIPE = textwrap.dedent('''
    import importlib, json, sys
    from dataclasses import dataclass
    from pathlib import Path
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
            return cls(ctx.duration_s(value, ctx.path, 0.0), ctx.step_path, ctx.label)

        def describe(self):
            return f"nap {self.seconds:g}s"

        def to_json(self):
            return {**self._head(), "seconds": self.seconds}

    from chaos.steps import handles

    @handles("nap")
    def nap(step, ctx, scope):
        scope.resolved["leader"] = ctx.view().leader
        scope.begin()
        ctx.sleep(step.seconds)

    # What importing model.py does for a class written into it (see tests/plan).
    model.STEP_KINDS = tuple(model.STEP_TYPES)
    from chaos.plan import schema, parse
    importlib.reload(schema)
    importlib.reload(parse)
    from chaos.runner import RunOptions, run_plan

    out = Path(sys.argv[1])
    (out.parent / "nap.yaml").write_text(
        "name: nap\\ndescription: d\\ntime_limit: 40s\\nensemble: {nodes: 3}\\n"
        "steps: [{wait: stable}, {nap: 500ms}, {wait: stable}]\\n")
    plan = parse.load_plan(out.parent / "nap.yaml")
    res = run_plan(RunOptions(plan=plan, out=out, progress=lambda m: None))
    print(json.dumps({"code": res.exit_code, "verdict": res.verdict}))
''')


@pytest.mark.slow
@needs_node
@needs_toxiproxy
def test_a_new_step_kind_is_its_class_and_its_handler(tmp_path):
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-c", RECIPE, str(out)], cwd=ROOT, env=chaos_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"code": 0, "verdict": "valid"}
    j = json.loads((out / "journal.json").read_text())
    naps = [r for r in j["records"] if r["type"] == "step_finished" and r["kind"] == "nap"]
    assert len(naps) == 1 and naps[0]["ok"] and naps[0]["label"] == "nap 0.5s"
    assert isinstance(naps[0]["resolved"]["leader"], int)
