"""JUnit XML for CI dashboards: one ``<testsuite>`` per plan run, one
``<testcase>`` per invariant. ``invalid`` is a ``<failure>`` (the property was
violated — a real finding), ``unknown`` an ``<error>`` (the run could not
judge it — infrastructure or setup), so CI tools tell the two apart."""

from __future__ import annotations

import datetime as _dt
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable, Mapping

from chaos.invariants import check_all

__all__ = ["junit_suite", "write_junit", "write_junit_many"]


def _invariants(journal: Mapping[str, Any]) -> list[dict[str, Any]]:
    results = [dict(r) for r in journal.get("invariants") or () if isinstance(r, Mapping)]
    if results:
        return results
    plan = journal.get("plan") if isinstance(journal.get("plan"), Mapping) else {}
    return [{"name": r.name, "verdict": r.verdict, "message": r.message, "evidence": list(r.evidence),
             "first_violation": r.first_violation} for r in check_all(journal, plan.get("invariants") or None)]


def _records_by_seq(journal: Mapping[str, Any]) -> dict[int, Mapping[str, Any]]:
    return {r["seq"]: r for r in journal.get("records") or () if isinstance(r, Mapping) and isinstance(r.get("seq"), int)}


def junit_suite(journal: Mapping[str, Any]) -> ET.Element:
    run = journal.get("run") if isinstance(journal.get("run"), Mapping) else {}
    plan = journal.get("plan") if isinstance(journal.get("plan"), Mapping) else {}
    name = str(run.get("plan_name") or plan.get("name") or "unknown_plan")
    results = _invariants(journal)
    by_seq = _records_by_seq(journal)
    started = run.get("started_at")
    timestamp = (_dt.datetime.fromtimestamp(started, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
                 if isinstance(started, (int, float)) else _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    duration = run.get("duration_s")
    if not isinstance(duration, (int, float)):
        duration = max((r.get("t", 0.0) for r in by_seq.values() if isinstance(r.get("t"), (int, float))), default=0.0)
    failures = sum(r.get("verdict") == "invalid" for r in results)
    errors = sum(r.get("verdict") not in ("valid", "invalid") for r in results)
    suite = ET.Element("testsuite", {
        "name": name, "tests": str(len(results)), "failures": str(failures), "errors": str(errors),
        "skipped": "0", "time": f"{float(duration):.3f}", "timestamp": timestamp,
        "hostname": "localhost", "id": str(run.get("id") or name),
    })
    props = ET.SubElement(suite, "properties")
    for key in ("id", "seed", "replay_command", "plan_path", "exit_code"):
        if run.get(key) is not None:
            ET.SubElement(props, "property", {"name": key, "value": str(run[key])})
    per_case = f"{float(duration) / len(results):.3f}" if results else "0.000"
    for r in results:
        case = ET.SubElement(suite, "testcase", {"classname": f"fle-chaos.{name}", "name": str(r.get("name")), "time": per_case})
        verdict = r.get("verdict")
        message = str(r.get("message") or "")
        evidence = [s for s in r.get("evidence") or () if isinstance(s, int)]
        if verdict == "invalid":
            el = ET.SubElement(case, "failure", {"message": message, "type": "InvariantViolated"})
            lines = [message, f"first violation: event #{r.get('first_violation')}", "evidence:"]
            for s in evidence:
                rec = by_seq.get(s, {})
                lines.append(f"  #{s} t={rec.get('t', '—')} {rec.get('type', '—')} "
                             + " ".join(f"{k}={v}" for k, v in rec.items() if k not in ("seq", "t", "mono_ms", "type")))
            if run.get("replay_command"):
                lines.append(f"replay: {run['replay_command']}")
            el.text = "\n".join(lines)
        elif verdict != "valid":
            el = ET.SubElement(case, "error", {"message": message or "unknown", "type": "VerdictUnknown"})
            el.text = message
        else:
            ET.SubElement(case, "system-out").text = message
    return suite


def write_junit_many(journals: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
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


def write_junit(journal: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """One run → ``<testsuites>`` holding its ``<testsuite>``."""
    return write_junit_many([journal], path)
