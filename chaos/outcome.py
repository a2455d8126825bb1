"""Verdicts and exit codes: the one vocabulary the CLI, the runner, the
invariants, the journal and the reports share.

A verdict is a result, not an exception (STYLE.md): ``valid`` means the
property held on everything the journal shows, ``invalid`` that the journal
shows a violation (with evidence), ``unknown`` that it cannot tell, and why.
Exit codes are what CI reads: 0 valid, 1 invalid, 2 bad plan or usage,
3 unknown or infrastructure failure.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

__all__ = ["Verdict", "ExitCode", "InvariantResult", "overall", "exit_code_for"]


class Verdict(enum.StrEnum):
    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: Any) -> "Verdict":
        """A verdict read from a journal; anything unreadable is unknown."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


class ExitCode(enum.IntEnum):
    OK = 0
    INVALID = 1
    USAGE = 2
    INFRA = 3


@dataclass(frozen=True, slots=True)
class InvariantResult:
    """One invariant's verdict. ``evidence`` holds the journal seqs that prove
    an invalid verdict; ``first_violation`` the seq where the run first went
    wrong (the report links there)."""

    name: str
    verdict: str
    message: str
    evidence: tuple[int, ...] = ()
    first_violation: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": str(self.verdict), "message": self.message,
                "evidence": list(self.evidence), "first_violation": self.first_violation}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "InvariantResult":
        ev = d.get("evidence") or ()
        fv = d.get("first_violation")
        return cls(name=str(d.get("name", "?")), verdict=Verdict.parse(d.get("verdict")).value,
                   message=str(d.get("message") or ""),
                   evidence=tuple(e for e in ev if isinstance(e, int)) if isinstance(ev, (list, tuple)) else (),
                   first_violation=fv if isinstance(fv, int) else None)


def overall(results: Iterable[InvariantResult]) -> Verdict:
    """invalid if any is invalid, else unknown if any is unknown (or none ran), else valid."""
    verdicts = [Verdict.parse(r.verdict) for r in results]
    if Verdict.INVALID in verdicts:
        return Verdict.INVALID
    if not verdicts or any(v is not Verdict.VALID for v in verdicts):
        return Verdict.UNKNOWN
    return Verdict.VALID


def exit_code_for(verdict: str) -> ExitCode:
    return {Verdict.VALID: ExitCode.OK, Verdict.INVALID: ExitCode.INVALID}.get(
        Verdict.parse(verdict), ExitCode.INFRA)
