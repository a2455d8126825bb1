from __future__ import annotations

import re

from chaos.report import render_index, render_report
from chaos.report.synth import formed, inject_split_brain


def _run(root, name, started, *, bad=False, plan="leader_kill", seed=7):
    b = formed(plan_name=plan, seed=seed, started_at=started, run_id=name)
    if bad:
        inject_split_brain(b)
    b.write(root / name)
    render_report(root / name)


def test_index_lists_runs_newest_first_with_pass_rates(tmp_path):
    _run(tmp_path, "nightly/a", 1000.0)
    _run(tmp_path, "nightly/b", 3000.0, bad=True, seed=8)
    _run(tmp_path, "nightly/c", 2000.0, seed=9)
    _run(tmp_path, "d", 1500.0, plan="partition_heal")
    (tmp_path / "crashed").mkdir()
    (tmp_path / "crashed" / "journal.jsonl").write_text('{"header":{"run":{"plan_name":"partition_heal","started_at":500}}}\n')
    html = render_index(tmp_path).read_text()
    runs = re.findall(r'<tr data-run="([^"]+)">', html)
    assert runs == ["nightly/b", "nightly/c", "d", "nightly/a", "crashed"]
    assert re.search(r'<tr data-plan="leader_kill">.*?<td class="rate">67%</td>', html)
    assert re.search(r'<tr data-plan="partition_heal">.*?<td class="rate">50%</td>', html)
    assert 'href="nightly/b/report.html"' in html and 'href="crashed/journal.jsonl"' in html
    assert '<body data-overall="invalid">' in html


def test_empty_reports_dir(tmp_path):
    html = render_index(tmp_path / "reports").read_text()
    assert "— no runs —" in html and 'data-overall="unknown"' in html


def test_cli_rerenders_reports_index_and_junit(tmp_path):
    from chaos.report.__main__ import main

    ok = formed(run_id="ok")
    ok.write(tmp_path / "batch" / "ok")
    assert main([str(tmp_path / "batch")]) == 0
    bad = formed(run_id="bad", seed=8)
    inject_split_brain(bad)
    bad.write(tmp_path / "batch" / "bad")
    assert main(["--junit", str(tmp_path / "junit.xml"), str(tmp_path / "batch")]) == 1
    assert (tmp_path / "batch" / "bad" / "report.html").exists()
    assert (tmp_path / "batch" / "index.html").exists()
    assert (tmp_path / "junit.xml").read_text().count("<testsuite ") == 2
    assert main([str(tmp_path / "missing")]) == 2
