"""Where labels go on the report's drawings, so that none overlaps another.

SVG text has no layout engine, so widths are estimated from the character
count with a deliberately generous per-character width (wider than the
default sans fonts at 11 px); the browser test measures the real boxes.
Labels are packed greedily into rows: each goes into the first row whose
last occupant ends before it starts. Rows are bounded; a label that fits in
none is not drawn (the caller says so and lists it elsewhere in full).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CHAR_W", "text_width", "Placed", "place_label", "pack_rows"]

CHAR_W = 7.0  # viewBox units per character of 11px text (DejaVu Sans averages ~6.4)
_PAD = 8.0


def text_width(text: str) -> float:
    return CHAR_W * len(text)


@dataclass(frozen=True, slots=True)
class Placed:
    """A label's box on one row: ``x`` is where its text starts."""

    x: float
    lo: float  # what the row holds from lo to hi: the mark, its bar and its text
    hi: float


def place_label(x0: float, x1: float, text: str, right: float) -> Placed:
    """The text starts just right of the mark at ``x0``, or, when it would
    run past ``right``, ends just left of it; the box covers the mark's bar
    ``[x0, x1]`` too."""
    w = text_width(text)
    x = x0 + 3.0 if x0 + 3.0 + w <= right else max(0.0, x0 - 3.0 - w)
    return Placed(round(x, 1), min(x0, x), max(x1, x + w))


def pack_rows(boxes: list[Placed], max_rows: int) -> list[int | None]:
    """Row index per box (in the given order), or None when no row is free."""
    ends: list[float] = []
    rows: list[int | None] = []
    for b in boxes:
        row = next((i for i, end in enumerate(ends) if end + _PAD <= b.lo), None)
        if row is None and len(ends) < max_rows:
            ends.append(float("-inf"))
            row = len(ends) - 1
        if row is not None:
            ends[row] = b.hi
        rows.append(row)
    return rows
