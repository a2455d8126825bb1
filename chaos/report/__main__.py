"""``python -m chaos.report [--junit PATH] DIR...`` — re-render reports offline.

Each DIR is a run directory (holding a journal) or a directory of runs. Every
run gets its ``report.html`` (re)rendered, each top-level DIR its
``index.html``; ``--junit`` writes one JUnit file covering all runs. Exit
code as ``chaos run``: 0 all valid, 1 any invalid, 3 any unknown, 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chaos.journal import JOURNAL_JSON, JOURNAL_JSONL, JournalError, load
from chaos.outcome import ExitCode, Verdict, exit_code_for
from chaos.report.html import render_report
from chaos.report.index import find_runs, render_index
from chaos.report.junit import write_junit_many
from chaos.report.source import judge

__all__ = ["main"]


def _overall(verdicts: list[Verdict]) -> Verdict:
    """invalid if any run is, else unknown if any run is (or none was found), else valid."""
    if Verdict.INVALID in verdicts:
        return Verdict.INVALID
    if not verdicts or Verdict.UNKNOWN in verdicts:
        return Verdict.UNKNOWN
    return Verdict.VALID


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chaos.report", description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--junit", type=Path, help="write one JUnit XML file covering every run found")
    args = ap.parse_args(argv)
    journals, verdicts = [], []
    for root in args.dirs:
        if not root.is_dir():
            print(f"{root}: not a directory", file=sys.stderr)
            return int(ExitCode.USAGE)
        runs = find_runs(root)
        for run in runs:
            try:
                journal = load(run)
                path = render_report(run)
            except (JournalError, OSError, ValueError) as exc:
                print(f"{run}: cannot render: {exc}", file=sys.stderr)
                verdicts.append(Verdict.UNKNOWN)
                continue
            journals.append(journal)
            verdict = judge(journal).verdict
            verdicts.append(verdict)
            print(f"{verdict.value:8} {path}")
        if not (root / JOURNAL_JSON).exists() and not (root / JOURNAL_JSONL).exists():
            print(f"index    {render_index(root)}")
    if args.junit:
        print(f"junit    {write_junit_many(journals, args.junit)}")
    return int(exit_code_for(_overall(verdicts)))


if __name__ == "__main__":
    raise SystemExit(main())
