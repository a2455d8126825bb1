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


def _processes_mentioning(path: str) -> list[psutil.Process]:
    """Live processes with `path` (or something below it) on their command line."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            args = proc.info["cmdline"] or []
            if proc.info["status"] != psutil.STATUS_ZOMBIE and any(
                    a == path or path + os.sep in a for a in args):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return [p for p in found if p.pid != os.getpid()]


@pytest.fixture(autouse=True)
def no_process_outlives_its_test(request):
    """Processes a test starts that lose their parent are re-parented to init,
    out of reach of the session check above; they still name the test's
    tmp_path on their command line (a zoo.cfg, a run dir), so look for those."""
    if "tmp_path" not in request.fixturenames:
        yield
        return
    tmp = str(request.getfixturevalue("tmp_path"))
    yield
    left = _processes_mentioning(tmp)
    if left:
        _, left = psutil.wait_procs(left, timeout=5)
    lines = []
    for proc in left:
        try:
            lines.append(f"pid {proc.pid}: {' '.join(proc.cmdline())[:200]}")
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    if lines:
        pytest.fail("processes left behind by this test (now killed):\n  " + "\n  ".join(lines),
                    pytrace=False)


@pytest.fixture
def hold_run(tmp_path):
    """``hold_run(run_id)`` keeps a run live in the run registry under this
    test's pid, beside the run's own entry. A test that SIGKILLs a run and then
    looks at what it left needs it: a concurrent test's run would otherwise see
    the run dead and its janitor could take the leftovers first."""
    from chaos import procs
    held = []

    def hold(run_id: str) -> None:
        held.append(procs.RunRegistry(run_id, tmp_path, key=f"{run_id}.held-by-{os.getpid()}"))

    yield hold
    for registry in held:
        registry.close()
