"""Fixtures that start and end real node ensembles on loopback.

`make_ensemble(n, ...)` writes zoo.cfg + myid per node into tmp dirs with
reserved ports (tickTime=200, initLimit=10, syncLimit=5, every 4lw enabled,
clientPortAddress=127.0.0.1); every ensemble made is closed (its processes
killed by pid) when the test ends, pass or fail.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Ensemble  # noqa: E402


@pytest.fixture
def make_ensemble(tmp_path):
    made: list[Ensemble] = []

    def factory(n: int, **kw) -> Ensemble:
        ens = Ensemble(tmp_path / f"ens{len(made)}", n, **kw)
        made.append(ens)
        return ens

    yield factory
    for ens in made:
        ens.close()
