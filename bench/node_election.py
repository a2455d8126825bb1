"""Election speed of real node processes on loopback (run by hand; prints a table).

    python bench/node_election.py [--trials 20] [--nodes 5] [--tick 200] [--sync-limit 5]

Per trial, on a fresh ensemble:
  (a) start all nodes            -> a quorum agrees on a leader (synced, leader LEADING)
  (b) kill -9 the leader         -> a quorum of the rest agrees on a new leader
  (c) restart the killed node    -> it is FOLLOWING and synced
Times are wall-clock from the action to the first poll (every 20 ms, via the
`fles` four-letter word) that sees the condition; RSS per node via psutil.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "node_process"))

from harness import Ensemble  # noqa: E402

POLL_S = 0.02


def quorum_leader(ens: Ensemble, sids: list[int], total: int) -> int | None:
    votes: dict[int, list[int]] = {}
    states: dict[int, str] = {}
    for s in sids:
        st = ens.fles(s)
        if not st or st.get("fle_state") == "LOOKING" or st.get("fle_synced") != "1":
            continue
        states[s] = st["fle_state"]
        votes.setdefault(int(st["fle_leader"]), []).append(s)
    for leader, voters in votes.items():
        if len(voters) > total // 2 and states.get(leader) == "LEADING":
            return leader
    return None


def wait(pred, timeout: float) -> tuple[float, object]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        r = pred()
        if r:
            return time.monotonic() - t0, r
        time.sleep(POLL_S)
    raise TimeoutError


def trial(root: Path, n: int, tick: int, sync_limit: int) -> dict[str, float]:
    with Ensemble(root, n, tick_time=tick, sync_limit=sync_limit,
                  extra={"fle.logNotifications": "false"}) as ens:
        sids = list(ens.nodes)
        t0 = time.monotonic()
        ens.start()
        _, leader = wait(lambda: quorum_leader(ens, sids, n), 60)
        a = time.monotonic() - t0
        time.sleep(0.5)
        rss = [psutil.Process(nd.proc.pid).memory_info().rss / 2**20 for nd in ens.nodes.values()]
        t0 = time.monotonic()
        ens.kill(leader)
        rest = [s for s in sids if s != leader]
        _, new_leader = wait(lambda: quorum_leader(ens, rest, n), 60)
        b = time.monotonic() - t0
        t0 = time.monotonic()
        ens.start(leader)
        wait(lambda: (lambda st: st and st.get("fle_state") == "FOLLOWING" and st.get("fle_synced") == "1")(
            ens.fles(leader)), 60)
        c = time.monotonic() - t0
        return {"a": a * 1000, "b": b * 1000, "c": c * 1000, "rss": statistics.mean(rss),
                "rss_max": max(rss), "leader": leader, "new_leader": new_leader}


def summary(xs: list[float]) -> str:
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=10, method="inclusive") if len(xs) >= 2 else [xs[0]] * 9
    return (f"{statistics.median(xs):8.0f} {q[0]:8.0f} {q[-1]:8.0f} {xs[0]:8.0f} {xs[-1]:8.0f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--tick", type=int, default=200)
    ap.add_argument("--sync-limit", type=int, default=5)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="fle-bench-") as tmp:
        for i in range(args.trials):
            r = trial(Path(tmp) / f"t{i}", args.nodes, args.tick, args.sync_limit)
            results.append(r)
            print(f"trial {i + 1:2d}: start {r['a']:6.0f} ms  leader-kill {r['b']:6.0f} ms  "
                  f"rejoin {r['c']:6.0f} ms  leader {r['leader']}->{r['new_leader']}  "
                  f"rss {r['rss']:.1f} MiB", flush=True)
    print()
    print(f"{args.nodes} nodes, tickTime={args.tick} syncLimit={args.sync_limit}, {args.trials} trials (ms)")
    print(f"{'phase':<34} {'median':>8} {'p10':>8} {'p90':>8} {'min':>8} {'max':>8}")
    print(f"{'(a) start -> quorum agrees':<34} {summary([r['a'] for r in results])}")
    print(f"{'(b) kill -9 leader -> new quorum':<34} {summary([r['b'] for r in results])}")
    print(f"{'(c) restart old leader -> FOLLOWING':<34} {summary([r['c'] for r in results])}")
    print(f"RSS per node: mean {statistics.mean(r['rss'] for r in results):.1f} MiB, "
          f"max {max(r['rss_max'] for r in results):.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
