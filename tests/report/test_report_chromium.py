"""The report opens in a real browser, offline, with its script running clean."""

from __future__ import annotations

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
