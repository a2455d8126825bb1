"""The verdict every report shows: a journal's own invariant results, or,
for a run that never got to write them, results computed now.

A finished run carries its results in the journal. A run that never got to
``finish`` (a crash, a SIGKILL of ``chaos run``) has none: the report then
judges the partial journal itself with the plan's own invariant selection
(``PlanInfo.invariants``, whichever shape the header holds), and never calls
such a run ``valid`` — nothing after its last line was seen — though a
violation it recorded is still ``invalid``.
"""

from __future__ import annotations

from dataclasses import dataclass

from chaos import invariants as _invariants
from chaos.outcome import InvariantResult, Verdict, overall
from chaos.records import Journal, RunFinished

__all__ = ["Judged", "judge"]


@dataclass(frozen=True, slots=True)
class Judged:
    results: tuple[InvariantResult, ...]
    verdict: Verdict
    computed: bool  # results computed now: the journal holds none
    finished: bool  # the journal holds run_finished


def judge(journal: Journal) -> Judged:
    finished = any(True for _ in journal.of_type(RunFinished))
    if journal.invariants:
        return Judged(journal.invariants, Verdict.parse(journal.verdict), False, finished)
    results = tuple(_invariants.check_all(journal, journal.plan.invariants or None))
    verdict = overall(results)
    if verdict is Verdict.VALID and not finished:
        verdict = Verdict.UNKNOWN
    return Judged(results, verdict, True, finished)
