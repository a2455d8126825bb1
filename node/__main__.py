"""`python -m node --config zoo.cfg [--parent-pid PID] [--seed N]` (console script `fle-node`).

`--parent-pid`: the node stops cleanly when that process is gone (checked every
0.5 s). When PID is the node's own parent, the node also asks the kernel to
SIGKILL it when the parent's spawning thread dies (PR_SET_PDEATHSIG), first
thing after exec: the orchestrator then spawns it without a preexec_fn.

`--seed` fixes the node's RNG (the observers' 0-200 ms re-election delay);
by default it is derived from the sid and pid.

Exit codes: 0 clean stop, 2 bad config or usage (the reason on stderr as
`PATH:LINE: reason`), 3 a port cannot be bound or the data directory is unusable.
"""
from __future__ import annotations

import argparse
import gc
import os
import signal
import sys

from node.config import ConfigError, parse_config

__all__ = ["main", "die_with_parent"]


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> bool:
    """Arm PR_SET_PDEATHSIG=SIGKILL if ``parent_pid`` is our parent; False if
    that parent is already gone (the caller should stop)."""
    if os.getppid() != parent_pid:
        return True   # someone else's pid, or our parent died before we ran: the watchdog decides
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return True
    # The parent may have died between the check and prctl: nothing would fire.
    return os.getppid() == parent_pid


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 as well; keep its text short
        self.print_usage(sys.stderr)
        print(f"fle-node: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="fle-node", description="A ZooKeeper FastLeaderElection peer.")
    ap.add_argument("--config", required=True, help="zoo.cfg (ZooKeeper format; myid in dataDir)")
    ap.add_argument("--parent-pid", type=int, default=None,
                    help="exit cleanly when this process is gone (checked every 0.5 s)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the node's RNG (observer delays)")
    args = ap.parse_args(argv)
    if args.parent_pid is not None and not die_with_parent(args.parent_pid):
        return 0
    try:
        config = parse_config(args.config)
    except ConfigError as e:
        print(str(e), file=sys.stderr, flush=True)
        return 2
    # Heavy imports only once the config is good, and without the cyclic
    # collector: they allocate enough to set it off again and again over
    # objects that all live for good, and gc.freeze() then keeps those out of
    # every later collection. ~20 ms of CPU of a ~105 ms start (and stop), in
    # each of the n interpreters an ensemble starts at once.
    gc.disable()
    try:
        from node.server import run_node
    finally:
        gc.freeze()
        gc.enable()

    try:
        return run_node(config, parent_pid=args.parent_pid, seed=args.seed)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
