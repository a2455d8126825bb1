"""Golden scenario scripts for the election core (etcd-io/raft's testdata style).

Every `tests/node_core/scenarios/*.txt` is a script for `node.sim_script`:
command blocks, each followed by a `----` line and the trace it must print
(see the module docstring of `node/sim_script.py` for the commands). A test
runs the script and fails with a unified diff of expected vs actual when any
output changed. One scenario per behaviour, named after it.

Rewriting: after an intended change of behaviour or of the trace format,
regenerate the expected outputs and review the diff before committing:

    FLE_REWRITE=1 python -m pytest tests/node_core/test_golden.py -q -p no:cacheprovider

(or `python -m node.sim_script --rewrite tests/node_core/scenarios/NAME.txt`).
With FLE_REWRITE=1 the scenario tests rewrite their files and pass; the
files are only written when their text changes. New scenario: write the
commands with an empty `----` block (or no `----` at all) and rewrite.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from node.sim_script import ScriptError, render, run_script

SCENARIOS = Path(__file__).parent / "scenarios"
FILES = sorted(SCENARIOS.glob("*.txt"))
REWRITE = os.environ.get("FLE_REWRITE") == "1"


def check(path: Path, text: str) -> str | None:
    """Run `text`; None if its outputs are as written, else a unified diff."""
    actual = render(run_script(text, path.name))
    if actual == text:
        return None
    return "".join(difflib.unified_diff(
        text.splitlines(keepends=True), actual.splitlines(keepends=True),
        fromfile=f"{path.name} (expected)", tofile=f"{path.name} (actual)", n=3))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_golden_scenario(path: Path) -> None:
    text = path.read_text()
    if REWRITE:
        actual = render(run_script(text, path.name))
        if actual != text:
            path.write_text(actual)
        return
    diff = check(path, text)
    if diff is not None:
        pytest.fail(f"scenario output changed (FLE_REWRITE=1 to accept):\n{diff}", pytrace=False)


def test_golden_scenarios_cover_the_seed_behaviours() -> None:
    names = {p.stem for p in FILES}
    assert len(names) >= 8
    for needed in ("initial_election", "higher_zxid", "higher_epoch", "lagging_looking",
                   "higher_round", "finalize_wait", "restarted_node", "zero_weight",
                   "observer", "minority_partition"):
        assert any(n.startswith(needed) for n in names), needed


def test_golden_a_changed_output_fails_with_a_readable_diff() -> None:
    path = SCENARIOS / "initial_election_picks_highest_sid_with_equal_zxids.txt"
    text = path.read_text()
    assert check(path, text) is None
    tampered = text.replace("stable: leader 3 epoch 2", "stable: leader 2 epoch 2")
    assert tampered != text
    diff = check(path, tampered)
    assert diff is not None
    assert "-stable: leader 2 epoch 2" in diff and "+stable: leader 3 epoch 2" in diff


def test_golden_same_script_same_trace() -> None:
    text = (SCENARIOS / "minority_partition_cannot_elect_and_majority_can.txt").read_text()
    assert render(run_script(text)) == render(run_script(text))


def test_golden_missing_output_is_filled_on_rewrite_and_empty_output_is_ok() -> None:
    out = render(run_script("ensemble voters=3\n\ncrash 1\n----\n"))
    assert out == "ensemble voters=3\n----\nvoters 1,2,3\n\ncrash 1\n----\nok\n"


@pytest.mark.parametrize("script, where, message", [
    ("start 1\n----\n", 1, "no ensemble yet"),
    ("ensemble voters=3\nfrobnicate 1\n----\n", 2, "unknown command 'frobnicate'"),
    ("ensemble voters=3\n----\n\nstart 1 zxid=(1:0 1:1)\n----\n", 4, "zxid= has 2 values for 1 peers"),
    ("ensemble voters=3 net=random\nstart 1 2 3\ndeliver\n----\n", 3, "deliver needs net=manual"),
    ("ensemble voters=3\ntick soon\n----\n", 2, "not a duration"),
    ("ensemble voters=3\nstart 9\n----\n", 2, "no peer 9"),
])
def test_golden_script_errors_name_the_line(script: str, where: int, message: str) -> None:
    with pytest.raises(ScriptError, match=message) as e:
        run_script(script, "x.txt")
    assert str(e.value).startswith(f"x.txt:{where}: ")
