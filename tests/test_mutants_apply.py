"""Every mutant of bench/mutants/ still applies to node/ and imports.

A change to node/ can move the lines a patch names; the bench would then call
that mutant stale and the score would silently shrink. This keeps them in
step: mend the patch's hunk when it fails (`python bench/mutation_score.py --check`).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_mutant_applies_and_imports():
    res = subprocess.run([sys.executable, "bench/mutation_score.py", "--check", "--source", "worktree"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    total = len(list((ROOT / "bench" / "mutants").glob("*.patch")))
    assert f"check only: {total} of {total} apply and import" in res.stdout, res.stdout[-3000:]
