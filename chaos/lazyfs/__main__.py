"""``python -m chaos.lazyfs MOUNTPOINT --control NAME --fsname NAME``: serve one lazy mount
until it is unmounted (``fusermount3 -u``) or this process ends (``auto_unmount``)."""
from __future__ import annotations

import argparse
import logging

from chaos.lazyfs.cache import DEFAULT_MAX_DIRTY
from chaos.lazyfs.fs import serve


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chaos.lazyfs", description=__doc__)
    ap.add_argument("mountpoint")
    ap.add_argument("--control", required=True, help="abstract unix socket name for lose/sync/stats")
    ap.add_argument("--fsname", required=True, help="the mount's source in /proc/self/mountinfo")
    ap.add_argument("--max-dirty", type=int, default=DEFAULT_MAX_DIRTY,
                    help="bytes of dirty pages kept before a file is written back")
    ap.add_argument("--parent-pid", type=int, default=None,
                    help="end (unmounting) within seconds of this process's death")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return serve(args.mountpoint, args.control, args.fsname, args.max_dirty, args.parent_pid)


if __name__ == "__main__":
    raise SystemExit(main())
