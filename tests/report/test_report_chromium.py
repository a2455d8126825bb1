"""The report opens in a real browser, offline, with its script running clean,
and what it draws is readable: no label sits on another."""

from __future__ import annotations

import html as _html
import json
import os
import re
import shutil
import subprocess

import pytest

from chaos.report import render_report
from chaos.report.synth import JournalBuilder, formed, inject_split_brain, realistic_journal

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
pytestmark = [pytest.mark.chromium, pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed")]


def _chromium(tmp_path, url: str, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--window-size=1400,1600", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)


def _console_errors(stderr: str) -> list[str]:
    """Our script logs nothing, so any console line (uncaught error, CSP refusal,
    console.error) is a failure."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


# Measures the laid-out page: every timeline label's box, and the rows of the
# message diagram on show. Injected into a copy of the report (its CSP allows
# inline scripts), results left on <body data-measure> for --dump-dom.
_MEASURE = """<script>
(function () {
  function box(el) {  // text: the label itself, not its <title> tooltip
    var r = el.getBoundingClientRect(), first = el.firstChild;
    return {text: first && first.nodeType === 3 ? first.nodeValue : el.textContent, l: r.left, r: r.right, t: r.top, b: r.bottom};
  }
  function all(root, sel) { return Array.prototype.map.call(root.querySelectorAll(sel), box); }
  function hit(a, b) { return a.l < b.r && b.l < a.r && a.t < b.b && b.t < a.b; }
  var svg = box(document.getElementById("timeline"));
  var labels = all(document, "#timeline text.steplabel").concat(all(document, "#timeline text.faultlabel"));
  var overlaps = [];
  for (var i = 0; i < labels.length; i++) {
    for (var j = i + 1; j < labels.length; j++) {
      if (hit(labels[i], labels[j])) { overlaps.push([labels[i].text, labels[j].text]); }
    }
  }
  var outside = labels.filter(function (a) { return a.l < svg.l - 0.5 || a.r > svg.r + 0.5; }).map(function (a) { return a.text; });
  var diag = document.querySelector(".msgdiag:not([hidden])"), rows = [], flat = 0;
  if (diag) {
    diag.querySelectorAll("g.mrow").forEach(function (g) {
      var texts = Array.prototype.map.call(g.querySelectorAll("text"), box);
      rows.push({kind: g.getAttribute("data-kind"), t: Math.min.apply(null, texts.map(function (x) { return x.t; })),
                 b: Math.max.apply(null, texts.map(function (x) { return x.b; })), height: texts[0].b - texts[0].t});
      var line = g.querySelector("line.msg");
      if (line && line.getAttribute("y1") !== line.getAttribute("y2")) { flat++; }
    });
  }
  var rowOverlaps = 0;
  for (var k = 1; k < rows.length; k++) { if (rows[k].t < rows[k - 1].b - 0.5) { rowOverlaps++; } }
  document.body.setAttribute("data-measure", JSON.stringify({
    labels: labels.map(function (a) { return a.text; }), overlaps: overlaps, outside: outside,
    rows: rows.length, msgRows: rows.filter(function (r) { return r.kind === "msg"; }).length,
    rowOverlaps: rowOverlaps, slanted: flat, textHeight: rows.length ? rows[0].height : 0}));
})();
</script>"""


def _measure(tmp_path, report) -> dict:
    page = tmp_path / "measured.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
    dom = _chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'<body[^>]*data-measure="([^"]*)"', dom.stdout)
    assert m, dom.stdout[:2000]
    return json.loads(_html.unescape(m.group(1)))


def _assert_readable(measured: dict) -> None:
    assert measured["overlaps"] == [], measured["overlaps"]
    assert measured["outside"] == [], measured["outside"]
    assert measured["rowOverlaps"] == 0 and measured["slanted"] == 0, measured
    assert measured["textHeight"] >= 10  # text drawn at a readable size, not squeezed into a tall canvas


def test_console_error_detection_works(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>no_such_function();</script></body></html>")
    res = _chromium(tmp_path, page.as_uri(), "--dump-dom", "--enable-logging=stderr", "--v=0")
    assert any("no_such_function" in line for line in _console_errors(res.stderr)), res.stderr[-2000:]


def test_busy_report_renders_in_chromium_with_one_lane_per_node(tmp_path):
    run = tmp_path / "run"
    JournalBuilder(7).write(run, realistic_journal(nodes=7, seconds=60))
    url = render_report(run).as_uri()
    dom = _chromium(tmp_path, url, "--dump-dom", "--enable-logging=stderr", "--v=0")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert 'data-rendered="ok"' in body, body  # our script ran to the end
    assert 'data-lanes="7"' in body and 'data-verdict-js="valid"' in body
    assert _console_errors(dom.stderr) == []
    # exactly one message diagram is visible after the script ran
    diagrams = re.findall(r'<div class="msgdiag" data-election="\d+"( hidden="")?>', dom.stdout)
    assert len(diagrams) >= 6 and sum(1 for h in diagrams if not h) == 1
    shot = tmp_path / "report.png"
    res = _chromium(tmp_path, url, f"--screenshot={shot}")
    assert res.returncode == 0 and shot.stat().st_size > 20_000
    # dozens of steps and faults over a minute: every label whole, none on another
    measured = _measure(tmp_path, run / "report.html")
    _assert_readable(measured)
    assert len(measured["labels"]) >= 20 and measured["msgRows"] >= 40


def test_crowded_steps_and_a_partition_in_chromium(tmp_path):
    """Steps a few milliseconds apart (as a real run has them) and a partition
    fault whose row names the links it cut."""
    b = formed()
    b.advance(1.0)
    b.step(1, "kill", "leader", resolved={"target": [3]})
    b.fault("requested", "f1", "kill", {"sid": 3})
    b.kill(3)
    b.advance(0.2)
    b.step(2, "wait", "leader", duration=0.3)
    cut = [[a, c, p] for a, c in ((1, 2), (2, 1)) for p in ("election", "quorum")]
    b.step(3, "partition", "partition isolate old_leader", resolved={"blocked": [[1, 2], [2, 1]]})
    b.fault("requested", "f2", "partition", {"name": "cut"}, cut)
    b.advance(0.5)
    for i, label in enumerate(["restart old_leader", "wait joined old_leader", "wait stable",
                               "final wait: stable", "heal cut"], 4):
        b.step(i, label.split()[0], label, duration=0.004)
    b.fault("undone", "f2", "partition", {}, cut)
    run = tmp_path / "run"
    b.write(run)
    report = render_report(run)
    measured = _measure(tmp_path, report)
    _assert_readable(measured)
    assert "final wait: stable" in measured["labels"] and "wait joined old_leader" in measured["labels"]
    assert "f2 partition cut · n1⇄n2 election+quorum" in measured["labels"]
    assert measured["msgRows"] == 6  # the first election: 3 nodes, one notification to each other node


def test_invalid_report_in_chromium_shows_invalid_banner(tmp_path):
    b = formed()
    bad = inject_split_brain(b)
    run = tmp_path / "run"
    b.write(run)
    url = render_report(run).as_uri()
    dom = _chromium(tmp_path, url, "--dump-dom", "--enable-logging=stderr", "--v=0")
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert 'data-verdict-js="invalid"' in body and 'data-lanes="3"' in body
    assert f'href="#ev-{bad}"' in dom.stdout and f'id="ev-{bad}"' in dom.stdout
    assert _console_errors(dom.stderr) == []
    shot = tmp_path / "invalid.png"
    assert _chromium(tmp_path, url + f"#ev-{bad}", f"--screenshot={shot}").returncode == 0


def test_real_run_report_renders_in_chromium(tmp_path):
    """The report of an actual `chaos run` (real nodes, real proxies), not a synthetic journal."""
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    run = tmp_path / "leader_kill"
    res = subprocess.run([sys.executable, "-m", "chaos", "run", str(root / "plans" / "leader_kill.yaml"),
                          "--out", str(run)], cwd=root, capture_output=True, text=True, timeout=180,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    url = (run / "report.html").as_uri()
    dom = _chromium(tmp_path, url, "--dump-dom", "--enable-logging=stderr", "--v=0")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert 'data-rendered="ok"' in body, body
    assert 'data-lanes="3"' in body and 'data-verdict-js="valid"' in body
    assert _console_errors(dom.stderr) == []
    # the kill and the restart of the old leader appear as plan steps on the time axis
    assert "kill leader" in dom.stdout and "restart old_leader" in dom.stdout
    shot = tmp_path / "leader_kill.png"
    assert _chromium(tmp_path, url, f"--screenshot={shot}").returncode == 0
    assert shot.stat().st_size > 20_000
    measured = _measure(tmp_path, run / "report.html")
    _assert_readable(measured)
    assert {"kill leader", "restart old_leader", "wait joined old_leader", "final wait: stable"} <= set(
        measured["labels"])
    assert measured["msgRows"] >= 6  # the first election, a row per notification


def test_real_partition_run_report_names_the_cut_links(tmp_path):
    """leader_isolated cuts the leader off on both ports: the report says which links."""
    import sys
    from pathlib import Path

    from chaos.journal import load
    from chaos.records import Fault

    root = Path(__file__).resolve().parents[2]
    run = tmp_path / "leader_isolated"
    res = subprocess.run([sys.executable, "-m", "chaos", "run", str(root / "plans" / "leader_isolated.yaml"),
                          "--out", str(run)], cwd=root, capture_output=True, text=True, timeout=180,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    fault = next(r for r in load(run).of_type(Fault) if r.kind == "partition")
    old = next(s for s in (1, 2, 3) if all(s in link[:2] for link in fault.links))  # the isolated leader
    others = sorted({b for a, b, _ in fault.links if a == old})
    measured = _measure(tmp_path, run / "report.html")
    _assert_readable(measured)
    row = next(t for t in measured["labels"] if t.startswith(f"{fault.fault_id} partition"))
    assert row.endswith(", ".join(f"n{min(old, o)}⇄n{max(old, o)}" for o in others) + " election+quorum"), row
    page = (run / "report.html").read_text()
    listed = re.search(rf'<tr id="fault-{fault.fault_id}".*?</tr>', page, re.S).group(0)
    assert sorted(re.findall(r'<span class="link">([^<]+)</span>', listed)) == sorted(
        f"n{a}→n{b} {p}" for a, b, p in fault.links)
