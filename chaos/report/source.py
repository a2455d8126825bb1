"""What every report reads: a typed :class:`~chaos.records.Journal` and its
invariant results.

A finished run carries its results in the journal. A run that never got to
``finish`` (a crash, a SIGKILL of ``chaos run``) has none: the report then
judges the partial journal itself with the plan's own invariant selection,
and never calls such a run ``valid`` — nothing after its last line was seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from chaos import invariants as _invariants
from chaos.outcome import InvariantResult, Verdict, overall
from chaos.records import Journal, RunFinished

__all__ = ["Judged", "as_journal", "judge"]


def as_journal(journal: Journal | Mapping[str, Any]) -> Journal:
    """The typed journal. A plain mapping (DESIGN §2 JSON, e.g. from a caller
    still holding ``load(...).to_json()``) is read once, here, at the boundary."""
    return journal if isinstance(journal, Journal) else Journal.from_json(journal)


@dataclass(frozen=True, slots=True)
class Judged:
    results: tuple[InvariantResult, ...]
    verdict: Verdict
    computed: bool  # results computed now: the journal holds none
    finished: bool  # the journal holds run_finished


def judge(journal: Journal) -> Judged:
    finished = any(isinstance(r, RunFinished) for r in journal.records)
    if journal.invariants:
        return Judged(journal.invariants, Verdict.parse(journal.verdict), False, finished)
    results = tuple(_invariants.check_all(journal, journal.plan.invariants or None))
    verdict = overall(results)
    if verdict is Verdict.VALID and not finished:
        verdict = Verdict.UNKNOWN
    return Judged(results, verdict, True, finished)
