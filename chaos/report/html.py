"""One self-contained ``report.html`` per run, rendered from the journal alone.

The page must answer "did election stay safe and live, and if not, where did it
break?" in seconds, offline, years later. So: inline CSS/SVG/JS, no network;
everything a node or plan wrote is escaped (jinja2 autoescape; JSON goes
through ``tojson``, which escapes ``<``); old or partial journals render with
"—" for what is missing. The events table is thinned (per-txn and
per-notification rows are counted, not listed; status polls that changed only
zxid/clock are dropped) so that a busy run stays small and fast to open; every
record an invariant cites is always kept, so evidence links never dangle.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import jinja2

from chaos.journal import SCHEMA_VERSION, load
from chaos.outcome import InvariantResult, Verdict
from chaos.records import Journal, NodeEvent, Record, Status
from chaos.report.layout import pack_rows, place_label
from chaos.report.source import judge
from chaos.report.timeline import Election, Timeline, build, links_text

__all__ = ["render_report", "render_html", "report_context", "MAX_EVENT_ROWS", "REPORT_NAME"]

REPORT_NAME = "report.html"
MAX_EVENT_ROWS = 4000
# Rows of these types are counted per node, not listed (unless cited as evidence).
_THINNED = frozenset({"txn_committed", "txn_applied", "notification_sent", "notification_received"})
_HIDDEN_FIELDS = frozenset({"seq", "t", "mono_ms", "type", "sid", "event", "node_ts"})

_W = 1200.0  # timeline drawing width (viewBox units)
_LEFT = 64.0
_RIGHT = _W - 8.0
_LANE_H = 26.0
_LANE_GAP = 6.0
_TOP = 22.0
_ROW_H = 16.0  # a fault or step label row
_MAX_FAULT_ROWS = 12
_MAX_STEP_ROWS = 12
# message diagram: one row per message or per node entering/leaving the election
_MSG_ROW = 18.0
_MSG_GUTTER = 78.0  # the "+12.3 ms" labels
_MSG_TEXT_W = 330.0  # what each row says, right of the columns

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("chaos.report", "templates"),
    autoescape=True,  # every value from nodes, plans and logs is escaped
    undefined=jinja2.ChainableUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _dash(value: Any) -> Any:
    return "—" if value is None or value == "" else value


def _fmt_time(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return "—"
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt_s(x: Any, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "—"


def _compact(v: Any) -> str:
    if isinstance(v, (Mapping, list, tuple)):
        return json.dumps(_plain(v), separators=(",", ":"), default=str)
    return str(v)


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _summary(r: Record) -> str:
    text = " ".join(f"{k}={_compact(v)}" for k, v in r.to_json().items() if k not in _HIDDEN_FIELDS)
    return text if len(text) <= 240 else text[:237] + "…"


def _resolved_text(resolved: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_compact(v)}" for k, v in resolved.items())


def _status_key(r: Status) -> tuple:
    return (r.up, r.state, r.leader, r.epoch)


def _events(records: list[Record], keep: set[int]) -> tuple[list[dict], list[tuple[str, int]], int]:
    rows: list[dict] = []
    thinned: Counter[str] = Counter()
    last_status: dict[Any, tuple] = {}
    dropped = 0
    for r in records:
        ev = r.event if isinstance(r, NodeEvent) else None
        forced = r.seq in keep
        if not forced:
            if ev in _THINNED:
                thinned[str(ev)] += 1
                continue
            if isinstance(r, Status) and last_status.get(r.sid) == _status_key(r):
                thinned["status (zxid/clock only)"] += 1
                continue
        if isinstance(r, Status):
            last_status[r.sid] = _status_key(r)
        if len(rows) >= MAX_EVENT_ROWS and not forced:
            dropped += 1
            continue
        sid = getattr(r, "sid", None)
        rows.append({"seq": r.seq, "t": _fmt_s(r.t, 3), "sid": sid if sid is not None else "",
                     "type": str(ev or r.type), "summary": _summary(r), "evidence": forced})
    return rows, sorted(thinned.items()), dropped


_WRITES_H = 22


def _x(t: float, t_end: float) -> float:
    return round(_LEFT + (t / t_end if t_end > 0 else 0.0) * (_RIGHT - _LEFT), 1)


def _timeline_view(tl: Timeline, first_violation_t: float | None) -> dict[str, Any]:
    """Lanes, then one row per fault (packed: faults that do not overlap in
    time share a row), the time axis, then the plan steps, each with its whole
    text, packed into rows so that no two labels overlap."""
    t_end = tl.t_end or 1.0
    lane_y = {lane.sid: _TOP + i * (_LANE_H + _LANE_GAP) for i, lane in enumerate(tl.lanes)}
    lanes_bottom = _TOP + len(tl.lanes) * (_LANE_H + _LANE_GAP)
    lanes = []
    for lane in tl.lanes:
        y = lane_y[lane.sid]
        bars = []
        for iv in lane.intervals:
            x0, x1 = _x(iv.start, t_end), _x(iv.end, t_end)
            w = max(0.6, round(x1 - x0, 1))
            label = ""
            if iv.state in ("LEADING", "FOLLOWING", "OBSERVING", "LOOKING") and iv.epoch is not None and w > 26:
                label = f"e{iv.epoch}"
            if iv.state == "FOLLOWING" and iv.leader is not None and w > 60:
                label += f" →{iv.leader}"
            bars.append({"x": x0, "w": w, "cls": iv.state.lower(), "label": label,
                         "title": f"n{lane.sid} {iv.state} epoch {_dash(iv.epoch)} leader {_dash(iv.leader)} "
                                  f"{iv.start:.2f}–{iv.end:.2f} s (seq {iv.seq})"})
        lanes.append({"sid": lane.sid, "name": lane.name, "role": lane.role, "y": y, "bars": bars})

    # the client workload's acks (up) and errors (down) per second, one row
    writes, writes_y = [], lanes_bottom + 2
    if tl.writes:
        peak = max(max(w.acks, w.errors) for w in tl.writes) or 1
        for w in tl.writes:
            x0, x1 = _x(max(0.0, w.t - 1.0), t_end), _x(w.t, t_end)
            ha, he = round(_WRITES_H / 2 * w.acks / peak, 1), round(_WRITES_H / 2 * w.errors / peak, 1)
            writes.append({"x": x0, "w": max(0.6, round(x1 - x0 - 0.4, 1)), "ya": round(writes_y + _WRITES_H / 2 - ha, 1),
                           "ha": ha, "ye": writes_y + _WRITES_H / 2, "he": he, "seq": w.seq,
                           "title": f"{w.t - 1.0:.0f}–{w.t:.0f} s: {w.acks} create(s) acknowledged, {w.errors} error(s)"})
        lanes_bottom += _WRITES_H + 6

    shades, fault_rows, fault_boxes = [], [], []
    for f in tl.faults:
        x0, x1 = _x(f.start, t_end), _x(f.end, t_end)
        w = max(1.5, round(x1 - x0, 1))
        cut = links_text(f.links)
        label = f"{f.fault_id} {f.label}" + (f" · {cut}" if cut else "")
        title = (f"{f.fault_id}: {f.label} {f.start:.2f}–{f.end:.2f} s" + ("" if f.undone else " (never undone)")
                 + (f"; links: {', '.join(f'n{a}→n{b} {p}' for a, b, p in f.links)}" if f.links else ""))
        for sid in [s for s in f.sids if s in lane_y] or list(lane_y):
            shades.append({"x": x0, "w": w, "y": lane_y[sid] - 2, "h": _LANE_H + 4, "cls": f.kind, "seq": f.seq,
                           "title": title})
        fault_boxes.append(place_label(x0, x0 + w, label, _RIGHT))
        fault_rows.append({"x": x0, "w": w, "cls": f.kind, "seq": f.seq, "label": label, "title": title,
                           "id": f.fault_id})
    rows = pack_rows(fault_boxes, _MAX_FAULT_ROWS)
    faults_top = lanes_bottom + (6 if tl.faults else 0)
    for fr, box, row in zip(fault_rows, fault_boxes, rows):
        fr["row"] = row
        fr["tx"] = box.x
        fr["y"] = faults_top + (row or 0) * _ROW_H
    drawn_faults = [fr for fr in fault_rows if fr["row"] is not None]
    n_fault_rows = max((fr["row"] + 1 for fr in drawn_faults), default=0)
    axis_y = faults_top + n_fault_rows * _ROW_H + 4

    steps, boxes = [], []
    for s in tl.steps:
        x0, x1 = _x(s.t, t_end), _x(s.end, t_end)
        text = s.text + (" ✗" if s.ok is False else "")
        boxes.append(place_label(x0, x1, text, _RIGHT))
        resolved = _resolved_text(s.resolved)
        steps.append({"x": x0, "x1": max(x1, x0 + 1.5), "label": text, "seq": s.seq, "ok": s.ok,
                      "title": f"{s.step} {s.text} {s.t:.2f}–{s.end:.2f} s" + (f" ({resolved})" if resolved else "")
                               + (" FAILED" if s.ok is False else "") + (f": {s.error}" if s.error else "")})
    rows = pack_rows(boxes, _MAX_STEP_ROWS)
    steps_top = axis_y + 20
    for st, box, row in zip(steps, boxes, rows):
        st["row"] = row
        st["tx"] = box.x
        st["y"] = steps_top + (row if row is not None else 0) * _ROW_H
    n_step_rows = max((st["row"] + 1 for st in steps if st["row"] is not None), default=0)
    height = steps_top + n_step_rows * _ROW_H + 6
    n_ticks = 10
    ticks = [{"x": _x(t_end * i / n_ticks, t_end),
              "label": f"{t_end * i / n_ticks:.0f}s" if t_end >= 10 else f"{t_end * i / n_ticks:.1f}s"}
             for i in range(n_ticks + 1)]
    violation_x = _x(first_violation_t, t_end) if first_violation_t is not None else None
    return {"width": _W, "height": round(height, 1), "lanes": lanes, "shades": shades, "faults": drawn_faults,
            "faults_hidden": len(fault_rows) - len(drawn_faults), "faults_top": faults_top,
            "steps": steps, "steps_hidden": sum(1 for st in steps if st["row"] is None),
            "ticks": ticks, "axis_y": axis_y, "lanes_bottom": lanes_bottom, "left": _LEFT, "right": _RIGHT,
            "lane_h": _LANE_H, "violation_x": violation_x, "writes": writes, "writes_y": writes_y,
            "writes_h": _WRITES_H}


def _ms(t: float, t0: float) -> str:
    return f"+{(t - t0) * 1000.0:.1f} ms"


def _message_view(e: Election) -> dict[str, Any]:
    """One row per notification (sender → receiver) or per node entering or
    leaving the election, in time order, each labelled with its time since
    the election started."""
    cols = sorted({*e.sids, *(m.src for m in e.messages), *(m.dst for m in e.messages if m.dst is not None)})
    gap = 120.0 if len(cols) <= 5 else 96.0
    colx = {s: _MSG_GUTTER + 30 + i * gap for i, s in enumerate(cols)}
    text_x = _MSG_GUTTER + 30 + max(0, len(cols) - 1) * gap + 40
    width = round(text_x + _MSG_TEXT_W)
    t0 = e.start
    items: list[tuple[float, int, dict[str, Any]]] = []
    for m in e.messages:
        if m.src not in colx or m.dst not in colx:
            continue
        lost = m.t_received is None
        x1, x2 = colx[m.src], colx[m.dst]
        vote = f"vote n{m.leader}" if m.leader is not None else "vote ?"
        said = f"n{m.src}→n{m.dst} {str(m.state or '').lower()} {vote} r{_dash(m.round)}"
        said += " · no receive seen" if lost else f" · recv {_ms(m.t_received, t0)}"
        if m.src == m.dst:  # a node's notification to itself (FLE sends its vote to every voter)
            x2 = x1
        elif lost:
            x2 = (x1 + x2) / 2
        else:
            x2 += -5 if x2 > x1 else 5
        items.append((m.t_sent, m.seq, {
            "kind": "msg", "x1": x1, "x2": x2, "lost": lost, "self": m.src == m.dst,
            "time": _ms(m.t_sent, t0), "text": said, "seq": m.seq,
            "title": f"n{m.src}→n{m.dst} vote {m.leader} round {m.round} zxid {m.zxid} {m.state} (seq {m.seq})"}))
    for k in e.marks:
        if k.sid not in colx:
            continue
        items.append((k.t, k.seq, {"kind": k.what, "x1": colx[k.sid], "time": _ms(k.t, t0),
                                   "text": f"n{k.sid} {k.text}", "seq": k.seq, "title": f"seq {k.seq}"}))
    items.sort(key=lambda it: (it[0], it[1]))
    top = 8.0
    rows = []
    for i, (_, _, it) in enumerate(items):
        it["y"] = round(top + i * _MSG_ROW + _MSG_ROW / 2, 1)
        rows.append(it)
    height = round(top + len(rows) * _MSG_ROW + 8)
    return {"index": e.index, "width": width, "height": height, "text_x": text_x, "gutter": _MSG_GUTTER,
            "cols": [{"sid": s, "x": round(x, 1)} for s, x in colx.items()], "rows": rows,
            "drawn": sum(1 for r in rows if r["kind"] == "msg"), "dropped": e.messages_dropped,
            "cap": len(e.messages),  # when any were left out, the cap is what was kept
            "title": f"election {e.index}: {e.start:.2f}–{e.end:.2f} s, winner {_dash(e.winner)}"}


def _rel_link(path: Any, run_dir: Path) -> str | None:
    if not isinstance(path, str) or not path:
        return None
    p = Path(path)
    if p.is_absolute():
        try:
            return os.path.relpath(p, run_dir.resolve())
        except ValueError:
            return p.as_uri()
    return p.as_posix()


def _shrink_view(run_dir: Path) -> dict[str, Any] | None:
    """`chaos shrink` leaves minimal.yaml (and shrink.json) beside the journal."""
    if not (run_dir / "minimal.yaml").is_file():
        return None
    view: dict[str, Any] = {"minimal": "minimal.yaml", "log": None, "summary": ""}
    try:
        log = json.loads((run_dir / "shrink.json").read_text(encoding="utf-8"))
        before, after = log.get("original") or {}, log.get("minimal")
        view["log"] = "shrink.json"
        if after:  # a later shrink that found nothing leaves the earlier minimal.yaml
            view["summary"] = (f"{len(after.get('faults', []))} of {len(before.get('faults', []))} faults, "
                               f"{after.get('steps', '—')} of {before.get('steps', '—')} steps; "
                               f"{log.get('runs', '—')} runs, {log.get('outcome', '—')}")
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    return view


def _invariant_rows(results: tuple[InvariantResult, ...], row_seqs: set[int]) -> list[dict[str, Any]]:
    return [{"name": r.name, "verdict": str(r.verdict), "message": r.message or "—", "first_violation": r.first_violation,
             "links": [{"seq": s, "present": s in row_seqs} for s in r.evidence]} for r in results]


def _target_text(journal: Journal) -> str:
    target = journal.run.target
    text = target.kind + (f" {target.version}" if target.version else "")
    return text + (" · simulated (in-memory network, virtual clock)" if journal.run.simulated else " · real processes")


def report_context(journal: Journal, run_dir: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """Everything the template shows, computed from the journal alone."""
    run_dir = Path(run_dir)
    run, plan = journal.run, journal.plan
    records = journal.in_time_order()
    by_seq = journal.by_seq()
    judged = judge(journal)
    verdict = judged.verdict.value
    results = judged.results
    keep: set[int] = set()
    for r in results:
        keep.update(r.evidence)
        if r.first_violation is not None:
            keep.add(r.first_violation)
    violations = [r.first_violation for r in results if r.verdict == Verdict.INVALID and r.first_violation is not None]
    first_violation = min(violations) if violations else None
    first_invalid = next((r for r in results if r.verdict == Verdict.INVALID), None)
    tl = build(journal)
    fv_t = by_seq[first_violation].t if first_violation in by_seq else None
    rows, thinned, dropped = _events(records, keep)
    row_seqs = {row["seq"] for row in rows}
    invariants = _invariant_rows(results, row_seqs)
    elections = [{
        "index": e.index, "start": _fmt_s(e.start), "end": _fmt_s(e.end), "duration": _fmt_s(e.duration),
        "winner": _dash(e.winner), "epoch": _dash(e.epoch), "rounds": e.rounds, "notifications": e.notifications,
        "path": e.path, "sids": ", ".join(map(str, e.sids)), "seq": e.seq if e.seq in row_seqs else None,
    } for e in tl.elections]
    steps = [{"seq": s.seq, "start": _fmt_s(s.t), "end": _fmt_s(s.end) if s.ok is not None else "—",
              "step": s.step, "text": s.text, "resolved": _resolved_text(s.resolved) or "—",
              "result": "ok" if s.ok else ("not finished" if s.ok is None else f"FAILED{': ' + s.error if s.error else ''}"),
              "ok": s.ok, "present": s.seq in row_seqs} for s in tl.steps]
    faults = [{"id": f.fault_id, "kind": f.kind, "label": f.label, "start": _fmt_s(f.start),
               "end": _fmt_s(f.end) if f.undone else "never undone",
               "nodes": ", ".join(f"n{s}" for s in f.sids) or "—",
               "summary": links_text(f.links),
               "links": [f"n{a}→n{b} {p}" for a, b, p in sorted(f.links, key=lambda x: (x[2], x[0], x[1]))],
               "seq": f.seq, "present": f.seq in row_seqs}
              for f in tl.faults]
    nodes = [{"sid": n.sid, "name": _dash(n.name), "role": _dash(n.role), "weight": _dash(n.weight),
              "group": _dash(n.group), "client_port": _dash(n.client_port), "election_port": _dash(n.election_port),
              "quorum_port": _dash(n.quorum_port), "log": _rel_link(n.log_path, run_dir),
              "events": _rel_link(n.events_path, run_dir), "log_path": _dash(n.log_path),
              "events_path": _dash(n.events_path)} for n in journal.nodes]
    plan_name = run.plan_name or plan.name
    seed = run.seed if run.seed is not None else plan.seed
    replay = run.replay_command
    if not replay and run.plan_path:
        replay = f"chaos run {run.plan_path}" + (f" --seed {seed}" if seed is not None else "")
    schema = journal.schema_version
    warnings = []
    if schema != SCHEMA_VERSION:
        warnings.append(f"journal schema_version {schema}, read as version {SCHEMA_VERSION} — "
                        "fields it does not have are shown as —")
    if journal.rebuilt and not judged.finished:
        warnings.append("rebuilt from journal.jsonl: the run did not finish (crash or kill); "
                        "the journal ends at its last written line, so the verdict is unknown")
    elif journal.rebuilt:
        warnings.append("rebuilt from journal.jsonl (journal.json is missing or unreadable)")
    if run.error:
        warnings.append(f"run error: {run.error}")
    if run.aborted:
        warnings.append(f"plan stopped early: {run.aborted}")
    if judged.computed:
        warnings.append("invariants computed when this report was rendered (the journal has no results)")
    banner_note = None
    if verdict == "unknown":
        if journal.rebuilt and not judged.finished:
            banner_note = "run did not finish: rebuilt from journal.jsonl"
        else:
            banner_note = next((r.message for r in results if r.verdict == Verdict.UNKNOWN), None) \
                or "no invariant results"
    data = {"schema_version": schema, "verdict": verdict, "plan": plan_name, "seed": seed,
            "first_violation": first_violation, "lanes": len(tl.lanes), "records": len(records),
            "rebuilt": journal.rebuilt, "finished": judged.finished,
            "target": run.target.kind, "simulated": run.simulated,
            "invariants": [{"name": r.name, "verdict": str(r.verdict), "first_violation": r.first_violation}
                           for r in results]}
    toxiproxy = run.toxiproxy
    duration = run.duration_s if run.duration_s is not None else tl.t_end
    return {
        "verdict": verdict,
        "banner_note": banner_note,
        "rebuilt": journal.rebuilt,
        "first_violation": first_violation,
        "first_violation_present": first_violation in row_seqs,
        "first_invalid": first_invalid,
        "run": {
            "id": _dash(run.id), "plan_name": _dash(plan_name), "plan_path": _dash(run.plan_path),
            "description": _dash(run.description or plan.description),
            "seed": _dash(seed), "command": _dash(run.command), "replay_command": _dash(replay),
            "started_at": _fmt_time(run.started_at), "finished_at": _fmt_time(run.finished_at),
            "duration_s": _fmt_s(duration, 1), "exit_code": _dash(run.exit_code),
            "toxiproxy": f"{toxiproxy.kind} {toxiproxy.url or ''}".strip() if toxiproxy else "—",
            "target": _target_text(journal), "simulated": run.simulated,
        },
        "warnings": warnings,
        "shrink": _shrink_view(run_dir),
        "invariants": invariants,
        "timeline": _timeline_view(tl, fv_t),
        "steps": steps,
        "faults": faults,
        "elections": elections,
        "messages": [_message_view(e) for e in tl.elections],
        "nodes": nodes,
        "events": rows,
        "thinned": thinned,
        "dropped": dropped,
        "max_rows": MAX_EVENT_ROWS,
        "event_types": sorted({row["type"] for row in rows}),
        "event_sids": sorted({row["sid"] for row in rows if row["sid"] != ""}, key=str),
        "n_records": len(records),
        "data": data,
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def render_html(journal: Journal, run_dir: str | os.PathLike[str] = ".") -> str:
    return _env.get_template("report.html.j2").render(**report_context(journal, run_dir))


def render_report(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                  journal: Journal | None = None) -> Path:
    """Render ``RUN_DIR/report.html`` from the run's journal and return its path.
    ``journal``: the one the runner already holds, so a large run is not read twice."""
    run_dir = Path(run_dir)
    journal = load(run_dir) if journal is None else journal
    path = Path(out) if out is not None else run_dir / REPORT_NAME
    text = render_html(journal, run_dir)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
