"""Which plans the simulator can run, decided before any run starts.

A step is simulatable when the simulated world gives it the meaning it has in
a real run: every step kind the handlers know works on the simulated target,
links and observer, and a toxic is simulatable when its type has a
message-level meaning (:data:`chaos.sim.world.TOXIC_MEANING`). Byte-level
toxics (``slicer``, ``limit_data``, ``bandwidth``, ``slow_close``) do not:
a plan using one is listed as skipped, each such step named by FILE:LINE:COL
and its path, and the other plans go on.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from chaos.plan.loader import PlanIssue, load_yaml
from chaos.plan.model import Plan, Step
from chaos.sim.world import SIMULATABLE_TOXICS

__all__ = ["SIM_STEP_KINDS", "NOT_SIMULATED", "not_simulatable", "walk"]

SIM_STEP_KINDS = frozenset({
    "wait", "pick", "kill", "stop", "pause", "resume", "restart", "toxic", "untoxic", "partition", "heal",
    "sleep", "repeat", "choice", "start", "snapshot", "silent_death", "nemesis"})
"""Step kinds with a simulated meaning; a kind added to the plan language is
not simulatable until it is added here (and works on the simulated world)."""

NOT_SIMULATED: dict[str, str] = {
    "power_loss": "power_loss drops the writes a node has not fsync'ed; the simulated txn log is "
                  "durable the moment it is appended (it has no page cache), so there the step would "
                  "be a plain kill and prove nothing a power cut tests",
    "reboot": "reboot leaves the peers' connections to the dead process half-open across its restart; "
              "the simulated network has no kernel below the proxy and ends a killed node's links at "
              "both ends, so there the step would be a plain kill and restart",
}
"""Step kinds left out on purpose, with the reason the skip message gives."""

_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def walk(steps: tuple[Step, ...]) -> Iterator[Step]:
    for step in steps:
        yield step
        for body in step.children():
            yield from walk(body)


def _path_tuple(path: str) -> tuple:
    return tuple(name if name else int(idx) for name, idx in _TOKEN.findall(path))


def not_simulatable(plan: Plan) -> list[PlanIssue]:
    """Every step of ``plan`` the simulator cannot give its meaning, located in the file."""
    found: list[tuple[tuple, str, str]] = []
    for step in walk(plan.steps):
        where = _path_tuple(step.path)
        if step.kind not in SIM_STEP_KINDS:
            found.append((where + (step.kind,), f"{step.path}.{step.kind}",
                          NOT_SIMULATED.get(step.kind, f"step kind '{step.kind}' has no simulated meaning")))
        elif step.kind == "toxic" and step.type not in SIMULATABLE_TOXICS:
            found.append((where + ("toxic", "type"), f"{step.path}.toxic.type",
                          f"toxic '{step.type}' acts on bytes, not messages: the simulator's network "
                          "carries whole messages, so it has no meaning there"))
    if not found:
        return []
    file = plan.source_path or plan.name
    positions = None
    try:
        doc, _ = load_yaml(Path(file).read_text(encoding="utf-8"), file)
        positions = doc
    except OSError:
        pass
    out = []
    for where, path, message in found:
        line, col = positions.pos(where) if positions is not None else (None, None)
        out.append(PlanIssue(file, line, col, path, message))
    return out
