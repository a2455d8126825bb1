"""JUnit XML for CI dashboards: one ``<testsuite>`` per plan run, one
``<testcase>`` per invariant. ``invalid`` is a ``<failure>`` (the property was
violated — a real finding), ``unknown`` an ``<error>`` (the run could not
judge it — infrastructure or setup), so CI tools tell the two apart."""

from __future__ import annotations

import datetime as _dt
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable

from chaos.outcome import Verdict
from chaos.records import Journal
from chaos.report.source import judge

__all__ = ["junit_suite", "write_junit", "write_junit_many"]

_HIDDEN = ("seq", "t", "mono_ms", "type")


def junit_suite(journal: Journal) -> ET.Element:
    run = journal.run
    name = run.plan_name or journal.plan.name or "unknown_plan"
    results = judge(journal).results
    by_seq = journal.by_seq()
    started = run.started_at
    timestamp = (_dt.datetime.fromtimestamp(started, _dt.timezone.utc) if started is not None
                 else _dt.datetime.now(_dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S")
    duration = run.duration_s if run.duration_s is not None else max((r.t for r in journal.records), default=0.0)
    failures = sum(r.verdict == Verdict.INVALID for r in results)
    errors = sum(r.verdict not in (Verdict.VALID, Verdict.INVALID) for r in results)
    suite = ET.Element("testsuite", {
        "name": name, "tests": str(len(results)), "failures": str(failures), "errors": str(errors),
        "skipped": "0", "time": f"{float(duration):.3f}", "timestamp": timestamp,
        "hostname": "localhost", "id": run.id or name,
    })
    props = ET.SubElement(suite, "properties")
    for key, value in (("id", run.id or None), ("seed", run.seed), ("replay_command", run.replay_command or None),
                       ("plan_path", run.plan_path), ("exit_code", run.exit_code)):
        if value is not None:
            ET.SubElement(props, "property", {"name": key, "value": str(value)})
    per_case = f"{float(duration) / len(results):.3f}" if results else "0.000"
    for r in results:
        case = ET.SubElement(suite, "testcase", {"classname": f"fle-chaos.{name}", "name": r.name, "time": per_case})
        message = r.message or ""
        if r.verdict == Verdict.INVALID:
            el = ET.SubElement(case, "failure", {"message": message, "type": "InvariantViolated"})
            lines = [message, f"first violation: event #{r.first_violation}", "evidence:"]
            for s in r.evidence:
                rec = by_seq.get(s)
                if rec is None:
                    lines.append(f"  #{s} t=— —")
                    continue
                lines.append(f"  #{s} t={rec.t} {rec.type} "
                             + " ".join(f"{k}={v}" for k, v in rec.to_json().items() if k not in _HIDDEN))
            if run.replay_command:
                lines.append(f"replay: {run.replay_command}")
            el.text = "\n".join(lines)
        elif r.verdict != Verdict.VALID:
            el = ET.SubElement(case, "error", {"message": message or "unknown", "type": "VerdictUnknown"})
            el.text = message
        else:
            ET.SubElement(case, "system-out").text = message
    return suite


def write_junit_many(journals: Iterable[Journal], path: str | os.PathLike[str]) -> Path:
    root = ET.Element("testsuites", {"name": "fle-chaos"})
    tests = failures = errors = 0
    total = 0.0
    for j in journals:
        suite = junit_suite(j)
        root.append(suite)
        tests += int(suite.get("tests"))
        failures += int(suite.get("failures"))
        errors += int(suite.get("errors"))
        total += float(suite.get("time"))
    root.set("tests", str(tests))
    root.set("failures", str(failures))
    root.set("errors", str(errors))
    root.set("time", f"{total:.3f}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def write_junit(journal: Journal, path: str | os.PathLike[str]) -> Path:
    """One run → ``<testsuites>`` holding its ``<testsuite>``."""
    return write_junit_many([journal], path)
