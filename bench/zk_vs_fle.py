"""leader_kill on real ZooKeeper against our node, same machine, same session (by hand, never in tests).

    python bench/zk_vs_fle.py                       # 3 runs per side, alternating
    python bench/zk_vs_fle.py --repeat 5 --json out.json

Each side runs ``chaos run plans/leader_kill.yaml`` with ``--links netns`` (so
both pay the same interposition: a namespace per node, nft DNAT, a proxy per
directed link). Per run: the wall time of the whole ``chaos run``, the time
from the kill's ``fault effective`` to the first synced LEADING status of the
new leader (``reelect_s``, from the journal), and each node process's peak
RSS (a JVM, or our Python node; sampled every 0.25 s). Runs alternate sides, so load from other
work on the machine falls on both alike. Needs root (netns) and the zookeeper
package; one ensemble at a time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
PLAN = "plans/leader_kill.yaml"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _rss_sampler(run_dir: Path, stop: threading.Event, peak: dict[str, int]) -> None:
    while not stop.wait(0.25):
        for p in psutil.process_iter(["cmdline", "memory_info"]):
            cmd = p.info["cmdline"] or []
            if str(run_dir) not in " ".join(cmd):
                continue
            if "org.apache.zookeeper.server.quorum.QuorumPeerMain" in cmd:
                node = Path(cmd[-1]).parent.name
            elif "node" in cmd and "--config" in cmd:          # our node: python -S -m node --config …
                node = Path(cmd[cmd.index("--config") + 1]).parent.name
            else:
                continue
            mi = p.info["memory_info"]
            if mi is not None:
                peak[node] = max(peak.get(node, 0), mi.rss)


def _reelect_s(journal: dict) -> float | None:
    recs = journal["records"]
    kill = next((r for r in recs if r["type"] == "fault" and r.get("kind") == "kill"
                 and r.get("phase") == "effective"), None)
    if kill is None:
        return None
    killed = {kill.get("target", {}).get("sid")}
    for r in recs:
        if (r["seq"] > kill["seq"] and r["type"] == "status" and r.get("state") == "LEADING"
                and r.get("synced") and r.get("sid") not in killed):
            return round(r["t"] - kill["t"], 3)
    return None


def one(target: str, out: Path) -> dict:
    peak: dict[str, int] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=_rss_sampler, args=(out, stop, peak), daemon=True)
    sampler.start()
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "chaos", "run", PLAN, "--target", target, "--links", "netns",
                          "--out", str(out)], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - t0
    stop.set()
    sampler.join(2)
    j = json.loads((out / "journal.json").read_text())
    return {"target": target, "exit": res.returncode, "wall_s": round(wall, 2),
            "reelect_s": _reelect_s(j), "verdict": j.get("verdict"),
            "rss_mb": {k: round(v / 2**20, 1) for k, v in sorted(peak.items())}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="zk-vs-fle-") as tmp:
        for k in range(args.repeat):
            for target in ("zookeeper", "fle"):
                row = one(target, Path(tmp) / f"{target}-{k}")
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = {}
    for target in ("zookeeper", "fle"):
        mine = [r for r in rows if r["target"] == target]
        reelect = [r["reelect_s"] for r in mine if r["reelect_s"] is not None]
        summary[target] = {"runs": len(mine), "wall_s_median": statistics.median(r["wall_s"] for r in mine),
                           "reelect_s_median": statistics.median(reelect) if reelect else None,
                           "exits": [r["exit"] for r in mine]}
        rss = [mb for r in mine for mb in r["rss_mb"].values()]
        if rss:
            summary[target]["rss_mb_max"] = max(rss)
            summary[target]["rss_mb_median"] = statistics.median(rss)
    print(f"{'target':10} {'runs':>4} {'wall s (median)':>16} {'re-election s (median)':>23} {'node RSS MB (median/max)':>25}")
    for target, s in summary.items():
        rss = f"{s['rss_mb_median']:.0f}/{s['rss_mb_max']:.0f}" if "rss_mb_max" in s else "-"
        re = f"{s['reelect_s_median']:.2f}" if s["reelect_s_median"] is not None else "-"
        print(f"{target:10} {s['runs']:>4} {s['wall_s_median']:>16.1f} {re:>23} {rss:>25}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
