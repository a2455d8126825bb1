"""A runaway election must not break the time limit or the disk.

    python bench/runaway.py [--plan plans/leader_kill.yaml] [--keep]

Copies the repository (tracked and untracked, not ignored, files as they are in the work tree) into a
temporary folder, breaks the node there so that no election ever ends and
every received notification is answered with a new round of notifications
(a vote storm at full rate, the shape of the runaway the issue measured), and
runs one plan with the real CLI. Reports the wall time against the plan's
time_limit + 10 s, and the sizes of journal.jsonl and of every node's
events.jsonl against 100 MB. Exit 0 when both bounds hold.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# The break: after the first election (logical clock 1, so the ensemble forms
# and the plan's faults start), a LOOKING notification never completes a
# quorum and is always answered: every node votes at the rate the network
# carries, for the rest of the run.
ANCHOR = "        if self.term_predicate(self._recvset, Vote(leader, zxid, self._logical_clock, epoch)):"
BROKEN = ("        if self._logical_clock > 1:\n"
          "            self._send_notifications()\n"
          "            return\n"
          "        if self.term_predicate(self._recvset, Vote(leader, zxid, self._logical_clock, epoch)):")
JOURNAL_BOUND = 100 * 2**20


def copy_repo(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if not name or name.startswith("reports/"):
            continue
        src = ROOT / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default="plans/leader_kill.yaml")
    ap.add_argument("--keep", action="store_true", help="keep the copy and the run dir")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fle-runaway-"))
    try:
        copy_repo(tmp)
        fle = tmp / "node" / "fle.py"
        text = fle.read_text()
        if ANCHOR not in text:
            print(f"node/fle.py changed: the anchor line is gone; update {Path(__file__).name}", file=sys.stderr)
            return 2
        fle.write_text(text.replace(ANCHOR, BROKEN, 1))
        plan = yaml.safe_load((tmp / args.plan).read_text())
        from chaos.plan.durations import parse_duration  # the repo's own duration syntax
        limit = parse_duration(str(plan.get("time_limit", "120s")))
        out = tmp / "run"
        env = dict(os.environ, PYTHONPATH=str(tmp))
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "chaos", "run", args.plan, "--out", str(out)],
                             cwd=tmp, env=env, capture_output=True, text=True, timeout=limit + 300)
        wall = time.monotonic() - t0
        journal = (out / "journal.jsonl").stat().st_size if (out / "journal.jsonl").exists() else 0
        events = {p.parent.parent.name: p.stat().st_size for p in out.glob("n*/data/events.jsonl")}
        ok_time = wall <= limit + 10
        ok_disk = journal < JOURNAL_BOUND and all(v < JOURNAL_BOUND for v in events.values())
        print(f"plan {args.plan}: exit {res.returncode}, verdict line: "
              f"{next((ln for ln in res.stdout.splitlines() if 'verdict' in ln), '-')}")
        print(f"wall {wall:.1f} s (time_limit {limit:g} s + 10 s: {'ok' if ok_time else 'OVER'})")
        print(f"journal.jsonl {journal / 2**20:.1f} MiB; events.jsonl "
              + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sorted(events.items()))
              + f" (bound 100 MB: {'ok' if ok_disk else 'OVER'})")
        if args.keep:
            (tmp / "run.stderr").write_text(res.stderr)
            print(f"kept: {tmp} (the run's progress lines in run.stderr)")
        return 0 if ok_time and ok_disk else 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
