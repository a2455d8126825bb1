"""JUnit XML as CI tools read it (the common Jenkins/Surefire schema rules)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from chaos.invariants import INVARIANTS
from chaos.report.junit import write_junit, write_junit_many
from chaos.report.synth import JournalBuilder, formed, inject_split_brain

_SUITE_ATTRS = {"name": str, "tests": int, "failures": int, "errors": int, "skipped": int, "time": float, "timestamp": str}
_ALLOWED_SUITE_CHILDREN = {"properties", "testcase", "system-out", "system-err"}
_ALLOWED_CASE_CHILDREN = {"failure", "error", "skipped", "system-out", "system-err"}


def _check_schema(root: ET.Element) -> None:
    assert root.tag == "testsuites"
    for key in ("tests", "failures", "errors"):
        assert int(root.get(key)) == sum(int(s.get(key)) for s in root.findall("testsuite"))
    for suite in root.findall("testsuite"):
        for attr, typ in _SUITE_ATTRS.items():
            assert suite.get(attr) is not None, attr
            typ(suite.get(attr))  # raises if not of the right type
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", suite.get("timestamp"))
        assert {c.tag for c in suite} <= _ALLOWED_SUITE_CHILDREN
        for p in suite.findall("properties/property"):
            assert set(p.attrib) == {"name", "value"}
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)
        assert int(suite.get("errors")) == sum(1 for c in cases if c.find("error") is not None)
        for c in cases:
            assert c.get("name") and c.get("classname") == f"fle-chaos.{suite.get('name')}"
            float(c.get("time"))
            assert {x.tag for x in c} <= _ALLOWED_CASE_CHILDREN
            for el in c.findall("failure") + c.findall("error"):
                assert el.get("message") is not None and el.get("type")


def test_valid_run(tmp_path):
    b = formed()
    path = write_junit(b.journal(), tmp_path / "junit.xml")
    root = ET.parse(path).getroot()
    _check_schema(root)
    suite = root.find("testsuite")
    assert suite.get("name") == "leader_kill" and suite.get("tests") == str(len(INVARIANTS)) and suite.get("failures") == "0"
    assert {c.get("name") for c in suite.findall("testcase")} == set(INVARIANTS)


def test_invalid_is_failure_with_evidence_and_unknown_is_error(tmp_path):
    b = formed()
    bad = inject_split_brain(b)
    never = JournalBuilder(3, plan_name="never_formed")
    never.start()
    never.fault("requested", "f1", "kill", {"node": 1})
    path = write_junit_many([b.journal(), never.journal()], tmp_path / "out" / "junit.xml")
    root = ET.parse(path).getroot()
    _check_schema(root)
    s1, s2 = root.findall("testsuite")
    failure = s1.find("testcase[@name='single_leader']/failure")
    assert failure.get("type") == "InvariantViolated" and "two leaders" in failure.get("message")
    assert f"#{bad} " in failure.text and "replay: chaos run plans/leader_kill.yaml --seed 7" in failure.text
    assert s2.get("errors") == str(len(INVARIANTS)) and s2.get("failures") == "0"
    assert all(c.find("error") is not None for c in s2.findall("testcase"))
    assert root.get("failures") == s1.get("failures") and int(root.get("tests")) == 2 * len(INVARIANTS)
