"""Suite-wide guard: no test may leave a process behind.

An autouse session fixture, set up before any other and so torn down after
all others, checks in every pytest process (each xdist worker too) that
nothing the session started is still running. Survivors are listed, ended by
pid, and the teardown errors, so an orphan is a red build, not a slow leak.
"""
from __future__ import annotations

import os

import psutil
import pytest


def _live_descendants() -> list[psutil.Process]:
    out = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture(scope="session", autouse=True)
def no_orphan_processes():
    yield
    survivors = _live_descendants()
    if survivors:
        _, survivors = psutil.wait_procs(survivors, timeout=5)
    lines = []
    for proc in survivors:
        try:
            lines.append(f"pid {proc.pid}: {' '.join(proc.cmdline())[:200]}")
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    if lines:
        pytest.fail("processes left behind by the test session (now killed):\n  "
                    + "\n  ".join(lines), pytrace=False)
