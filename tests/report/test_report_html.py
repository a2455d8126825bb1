"""report.html: self-contained, verdict-first, escaped, small and fast."""

from __future__ import annotations

import dataclasses
import json
import re
import time

from chaos.journal import JournalWriter
from chaos.records import Journal, Status, StepStarted
from chaos.report import render_report
from chaos.report.html import MAX_EVENT_ROWS, render_html
from chaos.report.synth import JournalBuilder, formed, inject_split_brain, realistic_journal


def _html(tmp_path, journal, b=None):
    (b or JournalBuilder()).write(tmp_path, journal)
    return render_report(tmp_path).read_text(encoding="utf-8")


def test_valid_run_has_banner_lanes_and_replay_command(tmp_path):
    b = formed(5)
    b.advance(2)
    b.commit(5, [1, 2, 3, 4])
    html = _html(tmp_path, b.journal(), b)
    assert re.search(r'<div class="banner valid" id="verdict">\s*<span>VALID</span>', html)
    assert html.count('<g class="lane"') == 5
    assert "chaos run plans/leader_kill.yaml --seed 7" in html
    assert 'href="nodes/n3/node.log"' in html and 'href="nodes/n3/data/events.jsonl"' in html
    # self-contained: nothing fetched from anywhere
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html and "@import" not in html


def test_violation_banner_links_to_an_existing_event_anchor(tmp_path):
    b = formed()
    bad = inject_split_brain(b)
    j = b.journal()
    assert j.verdict == "invalid"
    html = _html(tmp_path, j, b)
    assert '<div class="banner invalid" id="verdict">' in html
    m = re.search(r'<a id="first-violation" href="#ev-(\d+)">first violation: single_leader', html)
    assert m and int(m.group(1)) == bad
    assert f'<tr id="ev-{bad}"' in html
    # every evidence link lands on a row of the events table
    for target in re.findall(r'href="#ev-(\d+)"', html):
        assert f'id="ev-{target}"' in html, target


def test_evidence_rows_survive_thinning(tmp_path):
    """txn_committed rows are counted, not listed — unless an invariant cites one."""
    b = formed()
    z, s1 = b.commit(3, [1, 2])
    z2, s2 = b.commit(3, [1], applied=False)
    b.fault("requested", "f1", "partition", {"isolate": 3})
    b.advance(1)
    b.election(2, [2])
    j = b.journal()
    inv = next(i for i in j.invariants if i.name == "no_committed_txn_lost")
    assert inv.verdict == "invalid" and s2 in inv.evidence
    html = _html(tmp_path, j, b)
    assert f'<tr id="ev-{s2}"' in html and f'<tr id="ev-{s1}"' not in html
    assert re.search(r"Counted, not listed: .*\d+ notification_sent", html)


def test_hostile_strings_are_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    b = formed(plan_name="x", description=f"desc {evil}")
    b.run = dataclasses.replace(b.run, plan_name=f"plan{evil}")
    b.nodes[0] = dataclasses.replace(b.nodes[0], name=evil, log_path=f"logs/{evil}.log")
    b.rec(StepStarted, step="steps[9]", kind="sleep", label=evil, resolved={})
    b.ev(1, "handshake_rejected", remote=evil, reason="</script><b>x</b>")
    html = _html(tmp_path, b.journal(), b)
    assert evil not in html and "<b>x</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # the JSON island cannot be closed early
    island = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S).group(1)
    assert "<" not in island
    assert json.loads(island)["plan"] == f"plan{evil}"
    assert html.count("<script") == 2  # the JSON island and our own script, nothing injected


def test_old_or_partial_journal_renders_with_dashes(tmp_path):
    raw = {"schema_version": 1, "run": {"plan_name": "old"},
           "records": [{"seq": 1, "t": 0.0, "type": "something_new", "x": 1},
                       {"seq": 2, "t": 0.5, "type": "status", "sid": 1, "state": "LOOKING"}]}
    html = render_html(Journal.from_json(raw), tmp_path)
    assert "journal schema_version 1, read as version 2" in html
    assert '<span>UNKNOWN</span>' in html
    assert re.search(r"<dt>seed</dt><dd[^>]*>—</dd>", html)
    assert 'id="ev-1"' in html and "something_new" in html  # unknown types listed, not fatal
    raw["run"]["error"] = "toxiproxy <went> away"
    assert "run error: toxiproxy &lt;went&gt; away" in render_html(Journal.from_json(raw), tmp_path)
    assert html.count('<g class="lane"') == 1


def test_crashed_run_renders_from_jsonl_with_computed_invariants(tmp_path):
    w = JournalWriter(tmp_path)
    w.set_header(run={"plan_name": "crashy", "seed": 3}, nodes=[{"sid": s, "name": f"n{s}"} for s in (1, 2, 3)])
    for s in (1, 2, 3):
        w.record(Status, sid=s, up=True, state="LOOKING", leader=-1, epoch=0)
    w.close()
    html = render_report(tmp_path).read_text()
    assert "rebuilt from journal.jsonl" in html
    assert "invariants computed when this report was rendered" in html
    assert '<span>UNKNOWN</span>' in html and "has not formed yet" in html


def test_events_table_is_capped_with_a_note(tmp_path, monkeypatch):
    import chaos.report.html as h

    monkeypatch.setattr(h, "MAX_EVENT_ROWS", 20)
    b = formed()
    for _ in range(30):
        b.ev(1, "connection_opened", peer=2, port="election", direction="out", reason="")
    html = h.render_html(b.journal(), tmp_path)
    assert html.count('<tr id="ev-') == 20
    assert re.search(r"<b>\d+ more rows beyond the first 20 not listed.</b>", html)
    assert MAX_EVENT_ROWS > 1000


def test_busy_60s_7_node_run_is_small_and_fast(tmp_path):
    j = realistic_journal(nodes=7, seconds=60)
    assert len(j.records) > 8000
    JournalBuilder(7).write(tmp_path, j)
    t0 = time.perf_counter()
    path = render_report(tmp_path)
    elapsed = time.perf_counter() - t0
    size = path.stat().st_size
    assert size < 2_000_000, size
    assert elapsed < 6.0, elapsed  # bench/report_render.py measures the real figure (< 2 s)
    html = path.read_text()
    assert html.count('<g class="lane"') == 7
    assert html.count('class="msgdiag"') == len(re.findall(r'<tr data-election="\d+">', html)) >= 6


def _diagram(html: str, index: int) -> str:
    return re.search(rf'<div class="msgdiag" data-election="{index}"[^>]*>(.*?)</svg></div></div>', html, re.S).group(1)


def test_message_diagram_draws_one_row_per_notification_in_time_order(tmp_path):
    from chaos.report.timeline import build

    b = formed()
    b.kill(3)
    b.advance(1)
    b.election(2, [1, 2], rounds=3)
    b.ev(1, "notification_sent", to=2, state="LOOKING", leader=1, zxid=0, round=99, peer_epoch=1)  # never received
    j = b.journal()
    html = _html(tmp_path, j, b)
    for e in build(j).elections:
        body = _diagram(html, e.index)
        rows = re.findall(r'<g class="mrow" data-kind="(\w+)" data-seq="(\d+)">(.*?)</g>', body, re.S)
        msgs = [(int(seq), inner) for kind, seq, inner in rows if kind == "msg"]
        assert [seq for seq, _ in msgs] == [m.seq for m in e.messages]  # one row each, in the order sent
        ys = [float(re.search(r'<text class="mtime" x="[\d.]+" y="([\d.]+)"', inner).group(1)) for _, _, inner in rows]
        assert ys == sorted(ys) and len(set(ys)) == len(ys)  # a row of its own, top to bottom
        for (seq, inner), m in zip(msgs, e.messages):
            assert re.search(r'<text class="mtime"[^>]*>\+\d+\.\d ms</text>', inner)  # time since the start
            assert f"n{m.src}→n{m.dst}" in inner
        # who started looking and who decided, among the messages
        assert {kind for kind, _, _ in rows} == {"msg", "started", "finished"}
    first = _diagram(html, 1)
    assert "n3 LEADING" in first and "n1 FOLLOWING n3" in first


def test_message_diagram_says_how_many_notifications_it_left_out(tmp_path, monkeypatch):
    import chaos.report.timeline as timeline

    monkeypatch.setattr(timeline, "MAX_MESSAGES", 4)
    b = formed()
    html = _html(tmp_path, b.journal(), b)
    assert html.count('data-kind="msg"') == 4
    assert '<b class="dropped">2 more not drawn</b> (at most 4 per election)' in html


def test_partition_fault_lists_the_links_it_cut(tmp_path):
    b = formed()
    b.step(1, "partition", "isolate old_leader")
    cut = [[3, 1, "election"], [1, 3, "election"], [3, 2, "election"], [2, 3, "election"]]
    b.fault("requested", "f1", "partition", {"name": "cut"}, cut)
    b.fault("effective", "f1", "partition", {"name": "cut"}, cut)
    b.advance(2)
    b.step(2, "heal", "cut")
    b.fault("undone", "f1", "partition", {}, cut)
    html = _html(tmp_path, b.journal(), b)
    row = re.search(r'<tr id="fault-f1" data-fault="f1">(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r'<span class="link">([^<]+)</span>', row) == [
        "n1→n3 election", "n2→n3 election", "n3→n1 election", "n3→n2 election"]
    assert '<b class="summary">n1⇄n3, n2⇄n3 election</b>' in row
    assert "partition cut" in row and "n1, n2, n3" in row
    # and on the timeline, a row of its own under the lanes
    assert re.search(r'<g class="faultrow" data-fault="f1">.*?<text class="faultlabel"[^>]*>'
                     r'f1 partition cut · n1⇄n3, n2⇄n3 election<title>', html, re.S)


def test_step_labels_are_whole_and_packed_without_overlap(tmp_path):
    b = formed()
    labels = ["wait joined old_leader", "restart old_leader", "wait stable", "final wait: stable",
              "partition isolate old_leader", "wait state old_leader looking"]
    for i, label in enumerate(labels, 1):
        b.step(i, label.split()[0], label, duration=0.01)  # all within a few pixels of each other
    html = _html(tmp_path, b.journal(), b)
    texts = re.findall(r'<text class="steplabel[^"]*" data-step="\d+" x="([\d.]+)" y="([\d.]+)">([^<]+)<title>', html)
    assert [t for _, _, t in texts][-len(labels):] == labels  # whole, none cut short
    assert "…" not in "".join(t for _, _, t in texts)
    rows: dict[str, list[tuple[float, float]]] = {}
    for x, y, t in texts:
        rows.setdefault(y, []).append((float(x), float(x) + 7.0 * len(t)))
    for spans in rows.values():
        spans.sort()
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:])), spans
    # every step, with what it resolved, in the step list
    assert html.count('<tr data-step="') == len(labels) + 1


def test_header_names_the_target(tmp_path):
    b = formed()
    b.run = dataclasses.replace(b.run, target=dataclasses.replace(b.run.target, kind="zookeeper", version="3.8.4"))
    html = _html(tmp_path, b.journal(), b)
    assert re.search(r'<dt>target</dt><dd id="target"><span class="mono">zookeeper 3.8.4 · real processes</span>', html)
    b.run = dataclasses.replace(b.run, simulated=True)
    assert "fle" not in re.search(r'<dd id="target">(.*?)</dd>', _html(tmp_path, b.journal(), b)).group(1)
    assert "simulated (in-memory network, virtual clock)" in _html(tmp_path, b.journal(), b)
