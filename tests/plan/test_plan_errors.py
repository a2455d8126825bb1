"""Errors: every one at once, each located by file:line:col and path, one issue per mistake."""
from __future__ import annotations

import textwrap

import pytest

from chaos.plan import PlanError, PlanIssue, check_plan, load_plan, parse_plan

GOOD = """\
name: ok
description: fine
time_limit: 30s
ensemble:
  nodes: 3
steps:
  - wait: stable
  - kill: leader
    as: old
  - wait: {for: leader, timeout: 10s}
  - restart: old
"""


def _issues(text: str, file: str = "p.yaml") -> list[PlanIssue]:
    with pytest.raises(PlanError) as info:
        parse_plan(textwrap.dedent(text), file)
    return info.value.errors


def test_good_plan_parses():
    plan = parse_plan(GOOD, "p.yaml")
    assert [s.kind for s in plan.steps] == ["wait", "kill", "wait", "restart"]
    assert plan.steps[1].path == "steps[1]"


def test_issue_str_format():
    issue = PlanIssue("plans/x.yaml", 14, 9, "steps[3].toxic.attributes.latency",
                      "expected a duration like 200ms")
    assert str(issue) == ("plans/x.yaml:14:9 steps[3].toxic.attributes.latency: "
                          "expected a duration like 200ms")
    assert str(PlanIssue("x.yaml", None, None, "", "cannot read plan: gone")) == \
        "x.yaml: cannot read plan: gone"


def test_three_mistakes_three_issues_in_file_order():
    issues = _issues("""\
        name: ok
        description: fine
        ensemble:
          nodes: 3
          tick_time: fast
        steps:
          - kill: leadr
          - sleep: 1s
          - untoxic: never
        """)
    assert [(i.line, i.col, i.path) for i in issues] == [
        (5, 3, "ensemble.tick_time"), (7, 5, "steps[0].kill"), (9, 5, "steps[2].untoxic")]
    assert "expected a duration like 200ms" in issues[0].message
    assert "unknown node selector 'leadr'" in issues[1].message
    assert "removing toxic 'never'" in issues[2].message


def test_schema_and_semantic_and_duplicate_errors_together():
    issues = _issues("""\
        name: ok
        description: fine
        description: twice
        ensemble: {nodes: 3, colour: red}
        steps:
          - kill: 7
          - toxic: {type: latency, attributes: {latency: 10, jitter: soon}}
        """)
    messages = [str(i) for i in issues]
    assert len(issues) == 4, messages
    assert messages[0].startswith("p.yaml:3:1 description: duplicate key 'description'")
    assert messages[1].startswith("p.yaml:4:22 ensemble.colour: unknown key 'colour'")
    assert messages[2] == "p.yaml:6:5 steps[0].kill: sid 7 out of range 1..3"
    assert messages[3].startswith("p.yaml:7:54 steps[1].toxic.attributes.jitter: expected")


def test_one_mistake_one_issue_even_when_schema_and_semantics_both_see_it():
    issues = _issues("""\
        name: ok
        description: fine
        ensemble: {nodes: 3}
        steps:
          - sleep: soon
        """)
    assert len(issues) == 1 and issues[0].path == "steps[0].sleep"


def test_did_you_mean_on_unknown_keys_and_steps():
    issues = _issues("""\
        name: ok
        description: fine
        ensemble: {nodes: 3, obsevers: 1}
        steps:
          - partiton: {isolate: leader}
        """)
    assert "did you mean 'observers'?" in issues[0].message
    assert "did you mean 'partition'?" in issues[1].message


def test_unknown_key_far_from_anything_has_no_suggestion():
    issues = _issues("""\
        name: ok
        description: fine
        ensemble: {nodes: 3, zzzzqqq: 1}
        steps:
          - wait: stable
        """)
    assert issues[0].message == "unknown key 'zzzzqqq'"


def test_duplicate_keys_nested_and_in_flow_mappings():
    issues = _issues("""\
        name: ok
        description: fine
        ensemble: {nodes: 3, nodes: 5}
        steps:
          - wait: {for: leader, for: stable}
        """)
    assert [(i.line, i.path) for i in issues] == [(3, "ensemble.nodes"), (5, "steps[0].wait.for")]
    assert all("duplicate key" in i.message for i in issues)


def test_yaml_syntax_error_has_position():
    issues = _issues("name: ok\nsteps: [\n  - wait\n")
    assert len(issues) == 1 and issues[0].line is not None
    assert issues[0].message.startswith("YAML syntax error")


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PlanError) as info:
        load_plan(missing)
    assert info.value.errors[0].file == str(missing)
    assert "cannot read plan" in str(info.value)
    assert check_plan(missing)[0].message.startswith("cannot read plan")


def test_check_plan_returns_issues_without_raising(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(GOOD)
    assert check_plan(p) == []
    p.write_text(GOOD.replace("restart: old", "restart: olde"))
    (issue,) = check_plan(p)
    assert issue.line == 11 and "did you mean 'old'" in issue.message


def test_names_bound_in_repeat_are_bound_after_it():
    plan = parse_plan("""\
name: ok
description: fine
ensemble: {nodes: 3}
steps:
  - repeat:
      times: 2
      steps:
        - kill: follower
          as: f
        - restart: f
  - stop: f
""")
    assert plan.steps[0].steps[1].path == "steps[0].repeat.steps[1]"
    assert plan.steps[1].target.value == "f"


def test_name_used_before_binding_inside_repeat_is_an_error():
    issues = _issues("""\
        name: ok
        description: fine
        ensemble: {nodes: 3}
        steps:
          - repeat:
              times: 2
              steps:
                - restart: f
                - kill: follower
                  as: f
        """)
    assert len(issues) == 1
    assert issues[0].path == "steps[0].repeat.steps[0].restart"
    assert "only later, at steps[0].repeat.steps[1]" in issues[0].message


def test_name_bound_in_every_choice_branch_is_bound_after():
    plan = parse_plan("""\
name: ok
description: fine
ensemble: {nodes: 3}
steps:
  - choice:
      steps:
        - [{kill: leader, as: v}]
        - [{stop: follower, as: v}]
  - restart: v
""")
    branch = plan.steps[0].branches[1]
    assert branch[0].path == "steps[0].choice.steps[1][0]"


def test_wait_timeout_defaults_to_time_limit_when_shorter():
    plan = parse_plan(GOOD.replace("30s", "10s").replace("timeout: 10s", "timeout: 5s"))
    assert plan.steps[0].timeout_s == 10.0
    assert plan.steps[2].timeout_s == 5.0


def test_partition_and_toxic_names_are_separate_from_node_names():
    issues = _issues("""\
        name: ok
        description: fine
        ensemble: {nodes: 3}
        steps:
          - partition: {isolate: leader}
            as: cut
          - restart: cut
        """)
    assert len(issues) == 1 and "unknown node selector 'cut'" in issues[0].message


def test_all_is_reserved_for_toxic_names():
    issues = _issues("""\
        name: ok
        description: fine
        ensemble: {nodes: 3}
        steps:
          - toxic: {name: all, type: down}
        """)
    assert issues[0].path == "steps[0].toxic.name" and "reserved" in issues[0].message


def test_missing_top_level_key_does_not_hide_other_issues():
    issues = _issues("""\
        name: ok
        ensemble: {nodes: 3}
        steps:
          - kill: leadr
        """)
    assert [i.path for i in issues] == ["", "steps[0].kill"]
    assert issues[0].message == "missing required key 'description'"


def test_wrong_top_level_type_is_one_issue():
    issues = _issues("- just\n- a list\n")
    assert len(issues) == 1 and issues[0].message.startswith("expected a mapping")
