"""Measure report rendering on a busy synthetic run (7 nodes, 60 s, a txn
every 100 ms, status polled every 100 ms, a leader kill or a latency toxic
every ~6 s). Budget: under 2 s and under 2 MB.

    python bench/report_render.py [--rounds N] [--repeat K]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chaos.report import render_report, write_junit  # noqa: E402
from chaos.report.synth import JournalBuilder, realistic_journal  # noqa: E402

BUDGET_S = 2.0
BUDGET_BYTES = 2_000_000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, nargs="*", default=[10, 60, 150],
                    help="notification rounds per re-election (60 = an election under heavy loss)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    ok = True
    for rounds in args.rounds:
        journal = realistic_journal(nodes=args.nodes, seconds=args.seconds, rounds=rounds)
        with tempfile.TemporaryDirectory() as d:
            JournalBuilder(args.nodes).write(d, journal)
            journal_bytes = (Path(d) / "journal.json").stat().st_size
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                path = render_report(d)  # load + invariants from journal + timeline + HTML
                times.append(time.perf_counter() - t0)
            size = path.stat().st_size
            t0 = time.perf_counter()
            write_junit(journal, Path(d) / "junit.xml")
            junit_s = time.perf_counter() - t0
        med = statistics.median(times)
        good = med < BUDGET_S and size < BUDGET_BYTES
        ok &= good
        print(f"{args.nodes} nodes, {args.seconds:g} s, rounds={rounds}: {len(journal.records)} records, "
              f"journal.json {journal_bytes / 1e6:.2f} MB -> report.html {size / 1e6:.3f} MB, "
              f"render median {med:.3f} s (min {min(times):.3f}, max {max(times):.3f}), junit {junit_s * 1000:.0f} ms"
              f"  [{'ok' if good else 'OVER BUDGET'}]")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
