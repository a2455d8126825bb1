"""Label placement: packed rows never overlap, and a full row set says so."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chaos.report.layout import CHAR_W, Placed, pack_rows, place_label


def test_label_starts_right_of_its_mark_or_ends_left_of_it_at_the_edge():
    p = place_label(100.0, 100.0, "kill leader", right=1000.0)
    assert p.x == 103.0 and p.lo == 100.0 and p.hi == 103.0 + CHAR_W * len("kill leader")
    q = place_label(990.0, 995.0, "restart old_leader", right=1000.0)
    assert q.x + CHAR_W * len("restart old_leader") == 987.0 and q.hi == 995.0
    bar = place_label(100.0, 600.0, "sleep 1s", right=1000.0)
    assert bar.hi == 600.0  # the step's bar is part of its box


def test_rows_fill_first_fit_and_overflow_is_none():
    boxes = [Placed(0, 0, 100), Placed(50, 50, 60), Placed(120, 120, 200), Placed(55, 55, 58)]
    assert pack_rows(boxes, max_rows=2) == [0, 1, 0, None]


@given(st.lists(st.tuples(st.floats(0, 1200), st.floats(0, 300), st.text(max_size=40)), max_size=40),
       st.integers(1, 12))
def test_packed_boxes_in_one_row_never_overlap(items, max_rows):
    boxes = [place_label(x, x + w, text, right=1192.0) for x, w, text in items]
    rows = pack_rows(boxes, max_rows)
    assert all(r is None or 0 <= r < max_rows for r in rows)
    for row in set(rows) - {None}:
        mine = sorted((b for b, r in zip(boxes, rows) if r == row), key=lambda b: b.lo)
        assert all(a.hi < b.lo for a, b in zip(mine, mine[1:]))
