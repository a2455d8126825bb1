"""Garbage in: a plan either parses or raises PlanError with located issues, nothing else."""
from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.plan import Plan, PlanError, parse_plan
from chaos.plan.schema import STEP_KINDS

WORDS = ["name", "description", "seed", "time_limit", "ensemble", "nodes", "observers",
         "weights", "groups", "tick_time", "steps", "as", "for", "node", "state", "timeout",
         "type", "attributes", "links", "from", "to", "port", "direction", "isolate", "kind",
         "leader_in", "one_way", "times", "invariants", "latency", "leader", "followers",
         "all", "others", "stable", "joined", "1s", "200ms", "latency", "minority", "x",
         *STEP_KINDS]

scalars = st.one_of(st.sampled_from(WORDS), st.integers(-3, 9), st.booleans(), st.none(),
                    st.floats(allow_nan=False, allow_infinity=False, width=16))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(WORDS), inner, max_size=4)),
    max_leaves=25)


def _check(text: str) -> None:
    try:
        plan = parse_plan(text, "f.yaml")
    except PlanError as exc:
        assert exc.errors
        for issue in exc.errors:
            assert issue.file == "f.yaml" and issue.message
            assert issue.line is None or issue.line >= 1
        return
    assert isinstance(plan, Plan)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.dictionaries(st.sampled_from(WORDS), values, min_size=1, max_size=3),
                      max_size=4),
       ensemble=st.dictionaries(st.sampled_from(WORDS), values, max_size=4))
def test_structured_garbage(steps, ensemble):
    doc = {"name": "f", "description": "d", "ensemble": {"nodes": 3, **ensemble}, "steps": steps}
    _check(yaml.safe_dump(doc))


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}\n #&*!|>'\"%@`,?0 1")), max_size=60))
def test_text_garbage(text):
    _check(text)


# Mutating one value of a real plan reaches the deep corners random dicts rarely hit.
_ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
_PLANS = [yaml.safe_load(p.read_text()) for p in sorted((_ROOT / "plans").glob("*.yaml"))]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _replace(node, path, value):
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict):
        return {k: (_replace(v, rest, value) if k == head else v) for k, v in node.items()}
    return [(_replace(v, rest, value) if i == head else v) for i, v in enumerate(node)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_one_mutation_of_a_real_plan(data):
    plan = data.draw(st.sampled_from(_PLANS))
    paths = list(_paths(plan))
    path = data.draw(st.sampled_from(paths))
    mutated = _replace(plan, path, data.draw(values))
    _check(yaml.safe_dump(mutated))
