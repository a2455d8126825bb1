"""``reports/index.html``: every run under a reports directory, newest first,
with each plan's pass rate over its repeated runs."""

from __future__ import annotations

import datetime as _dt
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from chaos.journal import JOURNAL_JSON, JOURNAL_JSONL, JournalError, load
from chaos.outcome import Verdict
from chaos.records import Journal
from chaos.report.html import REPORT_NAME, _env

__all__ = ["find_runs", "render_index", "INDEX_NAME"]

INDEX_NAME = "index.html"


def find_runs(reports_dir: str | os.PathLike[str]) -> list[Path]:
    """Run directories (holding a journal) anywhere under ``reports_dir``."""
    root = Path(reports_dir)
    dirs = {p.parent for name in (JOURNAL_JSON, JOURNAL_JSONL) for p in root.rglob(name)}
    return sorted(dirs)


def _summary(run_dir: Path, root: Path) -> dict[str, Any]:
    try:
        j = load(run_dir)
    except JournalError:
        j = Journal()
    run = j.run
    started = run.started_at
    report = run_dir / REPORT_NAME
    target = report if report.exists() else (run_dir / JOURNAL_JSON if (run_dir / JOURNAL_JSON).exists() else run_dir / JOURNAL_JSONL)
    duration = run.duration_s
    return {
        "started": started if started is not None else -1.0,
        "date": (_dt.datetime.fromtimestamp(started, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                 if started is not None else "—"),
        "plan": run.plan_name or j.plan.name or "—",
        "verdict": Verdict.parse(j.verdict).value,
        "duration": f"{duration:.1f} s" if duration is not None else "—",
        "seed": run.seed if run.seed is not None else "—",
        "link": os.path.relpath(target, root).replace(os.sep, "/"),
        "has_report": report.exists(),
        "name": os.path.relpath(run_dir, root).replace(os.sep, "/"),
        "crashed": j.rebuilt,
    }


def render_index(reports_dir: str | os.PathLike[str]) -> Path:
    root = Path(reports_dir)
    root.mkdir(parents=True, exist_ok=True)
    runs = [_summary(d, root) for d in find_runs(root)]
    runs.sort(key=lambda r: (r["started"], r["name"]), reverse=True)
    per_plan: dict[str, dict[str, int]] = defaultdict(lambda: {"valid": 0, "invalid": 0, "unknown": 0})
    for r in runs:
        per_plan[r["plan"]][r["verdict"]] += 1
    plans = []
    for name, c in sorted(per_plan.items()):
        total = sum(c.values())
        plans.append({"plan": name, "runs": total, **c, "rate": f"{100.0 * c['valid'] / total:.0f}%",
                      "verdict": "invalid" if c["invalid"] else "unknown" if c["unknown"] else "valid"})
    counts = {v: sum(p[v] for p in plans) for v in ("valid", "invalid", "unknown")}
    overall = "invalid" if counts["invalid"] else "unknown" if counts["unknown"] or not runs else "valid"
    html = _env.get_template("index.html.j2").render(
        runs=runs, plans=plans, counts=counts, overall=overall,
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))
    path = root / INDEX_NAME
    tmp = root / f".{INDEX_NAME}.tmp"
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path
