"""Reports rendered from a run's journal alone: HTML per run, an index over
runs, JUnit XML for CI. ``chaos report RUN_DIR`` and ``chaos run`` call
:func:`render_report` and :func:`render_index`."""

from chaos.report.html import render_html, render_report
from chaos.report.index import render_index
from chaos.report.junit import write_junit, write_junit_many

__all__ = ["render_report", "render_html", "render_index", "write_junit", "write_junit_many"]
