"""Durations as plans write them: `200ms`, `2s`, `1.5s`, `1m`; a bare integer is ms.

A bare float is refused on purpose: `1.5` could mean seconds or milliseconds,
and a plan that means the other one waits a thousand times too long.
"""
from __future__ import annotations

import re
from typing import Any

__all__ = ["DURATION_PATTERN", "DurationError", "parse_duration", "parse_duration_ms",
           "format_duration"]

DURATION_PATTERN = r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m)\s*$"
_RE = re.compile(DURATION_PATTERN)
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0}
EXPECTED = "expected a duration like 200ms"


class DurationError(ValueError):
    """The value is not a duration; the message is ready for a PlanIssue."""


def parse_duration(value: Any) -> float:
    """Seconds as a float. Raises DurationError with a message naming what was expected."""
    if isinstance(value, bool):
        raise DurationError(f"{EXPECTED}, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise DurationError(f"{EXPECTED}, got a negative number {value}")
        return value / 1000.0
    if isinstance(value, float):
        raise DurationError(f"{EXPECTED}, got a bare number {value!r} "
                            "(write 1.5s or 1500ms; a bare integer is milliseconds)")
    if isinstance(value, str):
        m = _RE.match(value)
        if m:
            return float(m.group(1)) * _UNIT_S[m.group(2)]
        raise DurationError(f"{EXPECTED}, got '{value}'")
    raise DurationError(f"{EXPECTED}, got {type(value).__name__}")


def parse_duration_ms(value: Any) -> int:
    """Whole milliseconds (zoo.cfg and Toxiproxy attributes take integers)."""
    seconds = parse_duration(value)
    ms = seconds * 1000.0
    if abs(ms - round(ms)) > 1e-6:
        raise DurationError(f"{EXPECTED}, in whole milliseconds, got '{value}'")
    return int(round(ms))


def format_duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    if ms % 60000 == 0 and ms:
        return f"{ms // 60000}m"
    if ms % 1000 == 0 and ms:
        return f"{ms // 1000}s"
    return f"{ms}ms"
