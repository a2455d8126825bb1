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

from chaos.invariants import check_all, overall
from chaos.journal import SCHEMA_VERSION, load
from chaos.report.timeline import Timeline, build

__all__ = ["render_report", "render_html", "report_context", "MAX_EVENT_ROWS", "REPORT_NAME"]

REPORT_NAME = "report.html"
MAX_EVENT_ROWS = 4000
# Rows of these types are counted per node, not listed (unless cited as evidence).
_THINNED = frozenset({"txn_committed", "txn_applied", "notification_sent", "notification_received"})
_HIDDEN_FIELDS = frozenset({"seq", "t", "mono_ms", "type", "sid", "event", "node_ts"})

_W = 1200.0  # timeline drawing width (viewBox units)
_LEFT = 64.0
_LANE_H = 26.0
_LANE_GAP = 6.0
_TOP = 22.0
_STEP_ROWS = 4

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


def _summary(r: Mapping[str, Any]) -> str:
    parts = []
    for k, v in r.items():
        if k in _HIDDEN_FIELDS:
            continue
        if isinstance(v, (dict, list)):
            v = json.dumps(v, separators=(",", ":"), default=str)
        parts.append(f"{k}={v}")
    text = " ".join(parts)
    return text if len(text) <= 240 else text[:237] + "…"


def _invariants(journal: Mapping[str, Any]) -> tuple[list[dict], str, bool]:
    """The journal's results, or (crashed run) results computed now."""
    results = [r for r in journal.get("invariants") or () if isinstance(r, Mapping)]
    if results:
        verdict = journal.get("verdict") or overall(results)
        return [dict(r) for r in results], verdict if verdict in ("valid", "invalid", "unknown") else overall(results), False
    plan = journal.get("plan") if isinstance(journal.get("plan"), Mapping) else {}
    computed = check_all(journal, plan.get("invariants") or None)
    dicts = [{"name": r.name, "verdict": r.verdict, "message": r.message,
              "evidence": list(r.evidence), "first_violation": r.first_violation} for r in computed]
    return dicts, overall(computed), True


def _events(records: list[dict], keep: set[int]) -> tuple[list[dict], list[tuple[str, int]], int]:
    rows: list[dict] = []
    thinned: Counter[str] = Counter()
    last_status: dict[Any, tuple] = {}
    dropped = 0
    for r in records:
        kind = r.get("type")
        ev = r.get("event") if kind == "node_event" else None
        seq = r["seq"]
        label = ev or kind
        forced = seq in keep
        if not forced:
            if ev in _THINNED:
                thinned[str(ev)] += 1
                continue
            if kind == "status":
                key = (r.get("up"), r.get("state"), r.get("leader"), r.get("epoch"))
                if last_status.get(r.get("sid")) == key:
                    thinned["status (zxid/clock only)"] += 1
                    continue
        if kind == "status":
            last_status[r.get("sid")] = (r.get("up"), r.get("state"), r.get("leader"), r.get("epoch"))
        if len(rows) >= MAX_EVENT_ROWS and not forced:
            dropped += 1
            continue
        rows.append({
            "seq": seq, "t": _fmt_s(r.get("t"), 3), "sid": r.get("sid") if r.get("sid") is not None else "",
            "type": str(label), "summary": _summary(r), "evidence": forced,
        })
    return rows, sorted(thinned.items()), dropped


def _x(t: float, t_end: float) -> float:
    return round(_LEFT + (t / t_end if t_end > 0 else 0.0) * (_W - _LEFT - 8), 1)


def _timeline_view(tl: Timeline, first_violation_t: float | None) -> dict[str, Any]:
    t_end = tl.t_end or 1.0
    lane_y = {lane.sid: _TOP + i * (_LANE_H + _LANE_GAP) for i, lane in enumerate(tl.lanes)}
    height = _TOP + len(tl.lanes) * (_LANE_H + _LANE_GAP) + 32 + 13 * _STEP_ROWS
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
    faults = []
    for f in tl.faults:
        x0, x1 = _x(f.start, t_end), _x(f.end, t_end)
        targets = [s for s in f.sids if s in lane_y] or list(lane_y)
        ys = [lane_y[s] for s in targets]
        for y in ys:
            faults.append({"x": x0, "w": max(1.5, round(x1 - x0, 1)), "y": y - 2, "h": _LANE_H + 4,
                           "cls": f.kind, "seq": f.seq,
                           "title": f"{f.fault_id}: {f.label} {f.start:.2f}–{f.end:.2f} s"
                                    + ("" if f.undone else " (never undone)")
                                    + (f" links {', '.join('→'.join(map(str, l[:2])) + ' ' + str(l[2] if len(l) > 2 else '') for l in f.links)}" if f.links else "")})
    axis_y = _TOP + len(tl.lanes) * (_LANE_H + _LANE_GAP) + 4
    steps = []
    row_end = [-1e9] * _STEP_ROWS  # greedy label rows; no free row = tick and tooltip only
    for s in tl.steps:
        x = _x(s.t, t_end)
        label = s.label if s.label.startswith(s.kind) else f"{s.kind} {s.label}".strip()
        label = label if len(label) <= 18 else label[:17] + "…"
        row = next((i for i, end in enumerate(row_end) if end < x), None)
        if row is None:
            row, label = 0, ""
        else:
            row_end[row] = x + 6.2 * len(label) + 6
        steps.append({"x": x, "label": label, "seq": s.seq, "ok": s.ok, "row": row,
                      "title": f"{s.step} {s.kind} {s.label} at {s.t:.2f} s" + (" FAILED" if s.ok is False else "")})
    n_ticks = 10
    ticks = [{"x": _x(t_end * i / n_ticks, t_end), "label": f"{t_end * i / n_ticks:.0f}s" if t_end >= 10 else f"{t_end * i / n_ticks:.1f}s"}
             for i in range(n_ticks + 1)]
    violation_x = _x(first_violation_t, t_end) if first_violation_t is not None else None
    return {"width": _W, "height": round(height, 1), "lanes": lanes, "faults": faults, "steps": steps,
            "ticks": ticks, "axis_y": axis_y, "left": _LEFT, "lane_h": _LANE_H, "violation_x": violation_x}


def _message_views(tl: Timeline) -> list[dict[str, Any]]:
    views = []
    for e in tl.elections:
        cols = list(e.sids)
        for m in e.messages:
            for s in (m.src, m.dst):
                if isinstance(s, int) and s not in cols:
                    cols.append(s)
        cols.sort()
        width = max(300, 110 * len(cols))
        colx = {s: 50 + i * ((width - 100) / max(1, len(cols) - 1)) for i, s in enumerate(cols)}
        t0, span = e.start, max(e.duration, 1e-3)
        height = int(min(1400, max(260, 60 + len(e.messages) * 2.2)))

        def y(t: float | None) -> float:
            return round(40 + ((t - t0) / span if t is not None else 1.0) * (height - 70), 1)

        arrows = []
        for m in e.messages:
            if m.src not in colx or m.dst not in colx:
                continue
            x1, y1 = round(colx[m.src], 1), y(m.t_sent)
            lost = m.t_received is None
            x2 = round(colx[m.dst] if not lost else (colx[m.src] + colx[m.dst]) / 2, 1)
            y2 = y(m.t_received) if not lost else y1 + 12
            arrows.append({"x1": x1, "y1": y1, "x2": x2, "y2": y2, "lost": lost,
                           "title": f"n{m.src}→n{m.dst} vote {m.leader} round {m.round} zxid {m.zxid} {m.state}"
                                    + (" (no receive seen)" if lost else "")})
        views.append({"index": e.index, "width": width, "height": height,
                      "cols": [{"sid": s, "x": round(x, 1)} for s, x in colx.items()],
                      "arrows": arrows, "dropped": e.messages_dropped, "bottom": height - 20,
                      "title": f"election {e.index}: {e.start:.2f}–{e.end:.2f} s, winner {_dash(e.winner)}"})
    return views


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


def report_context(journal: Mapping[str, Any], run_dir: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """Everything the template shows, computed from the journal alone."""
    run_dir = Path(run_dir)
    run = journal.get("run") if isinstance(journal.get("run"), Mapping) else {}
    plan = journal.get("plan") if isinstance(journal.get("plan"), Mapping) else {}
    records = [r for r in journal.get("records") or () if isinstance(r, dict) and isinstance(r.get("seq"), int)]
    by_seq = {r["seq"]: r for r in records}
    invariants, verdict, computed = _invariants(journal)
    keep: set[int] = set()
    for inv in invariants:
        keep.update(s for s in inv.get("evidence") or () if isinstance(s, int))
        if isinstance(inv.get("first_violation"), int):
            keep.add(inv["first_violation"])
    violations = [inv["first_violation"] for inv in invariants
                  if inv.get("verdict") == "invalid" and isinstance(inv.get("first_violation"), int)]
    first_violation = min(violations) if violations else None
    first_invalid = next((inv for inv in invariants if inv.get("verdict") == "invalid"), None)
    tl = build(journal)
    fv_t = by_seq[first_violation].get("t") if first_violation in by_seq else None
    rows, thinned, dropped = _events(records, keep)
    row_seqs = {row["seq"] for row in rows}
    for inv in invariants:
        inv["links"] = [{"seq": s, "present": s in row_seqs} for s in inv.get("evidence") or () if isinstance(s, int)]
        inv.setdefault("message", "—")
    elections = [{
        "index": e.index, "start": _fmt_s(e.start), "end": _fmt_s(e.end), "duration": _fmt_s(e.duration),
        "winner": _dash(e.winner), "epoch": _dash(e.epoch), "rounds": e.rounds, "notifications": e.notifications,
        "path": e.path, "sids": ", ".join(map(str, e.sids)), "seq": e.seq if e.seq in row_seqs else None,
    } for e in tl.elections]
    nodes = []
    for n in journal.get("nodes") or ():
        if not isinstance(n, Mapping):
            continue
        nodes.append({**{k: _dash(n.get(k)) for k in ("sid", "name", "role", "weight", "group", "client_port",
                                                       "election_port", "quorum_port")},
                      "log": _rel_link(n.get("log_path"), run_dir), "events": _rel_link(n.get("events_path"), run_dir),
                      "log_path": _dash(n.get("log_path")), "events_path": _dash(n.get("events_path"))})
    plan_name = run.get("plan_name") or plan.get("name")
    seed = run.get("seed") if run.get("seed") is not None else plan.get("seed")
    replay = run.get("replay_command")
    if not replay and run.get("plan_path"):
        replay = f"chaos run {run['plan_path']}" + (f" --seed {seed}" if seed is not None else "")
    schema = journal.get("schema_version")
    warnings = []
    if schema != SCHEMA_VERSION:
        warnings.append(f"journal schema_version {_dash(schema)}; this report reads version {SCHEMA_VERSION} — "
                        "fields it does not know are shown as —")
    if journal.get("rebuilt"):
        warnings.append("rebuilt from journal.jsonl: the run did not finish (crash or kill); "
                        "the journal ends at its last written line")
    if run.get("error"):
        warnings.append(f"run error: {run['error']}")
    if run.get("aborted"):
        warnings.append(f"plan stopped early: {run['aborted']}")
    if computed:
        warnings.append("invariants computed when this report was rendered (the journal has no results)")
    data = {"schema_version": schema, "verdict": verdict, "plan": plan_name, "seed": seed,
            "first_violation": first_violation, "lanes": len(tl.lanes), "records": len(records),
            "invariants": [{k: inv.get(k) for k in ("name", "verdict", "first_violation")} for inv in invariants]}
    toxiproxy = run.get("toxiproxy") if isinstance(run.get("toxiproxy"), Mapping) else {}
    return {
        "verdict": verdict,
        "first_violation": first_violation,
        "first_violation_present": first_violation in row_seqs,
        "first_invalid": first_invalid,
        "run": {
            "id": _dash(run.get("id")), "plan_name": _dash(plan_name),
            "plan_path": _dash(run.get("plan_path")),
            "description": _dash(run.get("description") or plan.get("description")),
            "seed": _dash(seed), "command": _dash(run.get("command")), "replay_command": _dash(replay),
            "started_at": _fmt_time(run.get("started_at")), "finished_at": _fmt_time(run.get("finished_at")),
            "duration_s": _fmt_s(run.get("duration_s") if run.get("duration_s") is not None else tl.t_end, 1),
            "exit_code": _dash(run.get("exit_code")),
            "toxiproxy": f"{_dash(toxiproxy.get('kind'))} {toxiproxy.get('url') or ''}".strip(),
        },
        "warnings": warnings,
        "invariants": invariants,
        "timeline": _timeline_view(tl, fv_t),
        "elections": elections,
        "messages": _message_views(tl),
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


def render_html(journal: Mapping[str, Any], run_dir: str | os.PathLike[str] = ".") -> str:
    return _env.get_template("report.html.j2").render(**report_context(journal, run_dir))


def render_report(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Render ``RUN_DIR/report.html`` from the run's journal (``load``) and return its path."""
    run_dir = Path(run_dir)
    journal = load(run_dir)
    path = Path(out) if out is not None else run_dir / REPORT_NAME
    text = render_html(journal, run_dir)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
