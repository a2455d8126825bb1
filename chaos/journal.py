"""The run journal: written as the run goes, read back by invariants and reports.

Theory of operation. A run appends one JSON object per line to
``RUN_DIR/journal.jsonl`` while it happens, so a crash (or a SIGKILL of the
orchestrator) still leaves everything up to the last line on disk. Two kinds of
line exist: ``{"header": {...}}`` lines carry the parts of the journal that are
not records (``run``, ``plan``, ``nodes``, ``links``; later headers update
earlier ones key by key), and every other line is one record
(``{"seq", "t", "mono_ms", "type", ...}``). At the end :meth:`JournalWriter.finish`
writes ``RUN_DIR/journal.json`` — the whole journal as one object (DESIGN.md §2)
— atomically. :func:`load` prefers ``journal.json`` and otherwise rebuilds the
same object from the lines, so a report can be rendered for a crashed run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

__all__ = [
    "SCHEMA_VERSION",
    "JOURNAL_JSON",
    "JOURNAL_JSONL",
    "JournalError",
    "JournalWriter",
    "load",
    "empty_journal",
]

SCHEMA_VERSION = 1
JOURNAL_JSON = "journal.json"
JOURNAL_JSONL = "journal.jsonl"

# Records a post-mortem cannot do without: fsync'd so they survive a machine
# crash, not just a process crash. Status/node_event lines are only flushed.
_IMPORTANT = frozenset(
    {"run_started", "run_finished", "fault", "process", "step_started", "step_finished", "log_summary"}
)
_HEADER_KEYS = ("run", "plan", "nodes", "links")


class JournalError(Exception):
    """The run directory holds no readable journal; the caller should report
    the run as an infrastructure failure (exit 3), not as a verdict."""


def empty_journal() -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {},
        "plan": {},
        "nodes": [],
        "links": [],
        "records": [],
        "invariants": [],
        "verdict": "unknown",
    }


def _plain(value: Any) -> Any:
    """Make invariant results (dataclasses, tuples) JSON-ready."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class JournalWriter:
    """Appends records to ``journal.jsonl``; thread-safe, usable from asyncio
    tasks and from helper threads alike.

    ``clock`` returns monotonic seconds (machine-wide CLOCK_MONOTONIC, the
    same clock nodes put in their ``mono_ms``), so a node event can be placed
    on the run's time axis by passing its ``mono_ms`` to :meth:`record`.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._wall = wall_clock
        self._start_mono_ms = clock() * 1000.0
        self._started_at = wall_clock()
        self._lock = threading.Lock()
        self._seq = 0
        self._journal = empty_journal()
        self._journal["run"] = {"started_at": self._started_at}
        self._fh = open(self.run_dir / JOURNAL_JSONL, "w", encoding="utf-8", buffering=1)
        self._write_line({"header": {"schema_version": SCHEMA_VERSION, "run": {"started_at": self._started_at}}}, sync=True)

    @property
    def start_mono_ms(self) -> float:
        return self._start_mono_ms

    @property
    def journal(self) -> dict[str, Any]:
        """The live journal object (records so far); invariants can run on it
        during the run. Treat it as read-only."""
        return self._journal

    def _write_line(self, obj: dict[str, Any], *, sync: bool) -> None:
        self._fh.write(json.dumps(obj, separators=(",", ":"), default=str) + "\n")
        if sync:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def set_header(self, **parts: Any) -> None:
        """Set any of ``run`` (merged into what is there), ``plan``, ``nodes``, ``links``."""
        unknown = set(parts) - set(_HEADER_KEYS)
        if unknown:
            raise TypeError(f"set_header: unknown part(s) {sorted(unknown)}; expected {_HEADER_KEYS}")
        with self._lock:
            header: dict[str, Any] = {}
            for key, value in parts.items():
                value = _plain(value)
                if key == "run":
                    self._journal["run"].update(value)
                    header["run"] = value
                else:
                    self._journal[key] = value
                    header[key] = value
            self._write_line({"header": header}, sync=True)

    def record(self, type: str, **fields: Any) -> int:
        """Append one record and return its seq.

        ``mono_ms`` may be passed (e.g. a node's own timestamp for a
        ``node_event``); ``t`` is then derived from it. Otherwise both come
        from the writer's clock.
        """
        if "seq" in fields or "type" in fields:
            raise TypeError("record(): 'seq' and 'type' are assigned by the journal")
        with self._lock:
            self._seq += 1
            mono_ms = fields.pop("mono_ms", None)
            if mono_ms is None:
                mono_ms = self._clock() * 1000.0
            t = fields.pop("t", None)
            if t is None:
                t = (mono_ms - self._start_mono_ms) / 1000.0
            rec = {"seq": self._seq, "t": round(t, 6), "mono_ms": round(mono_ms, 3), "type": type}
            rec.update(_plain(fields))
            self._journal["records"].append(rec)
            self._write_line(rec, sync=type in _IMPORTANT)
            return self._seq

    def finish(self, invariants: Iterable[Any], verdict: str, exit_code: int) -> Path:
        """Record ``run_finished`` and write ``journal.json`` atomically."""
        self.record("run_finished", verdict=verdict, exit_code=exit_code)
        with self._lock:
            finished = self._wall()
            run = self._journal["run"]
            run.update(
                finished_at=finished,
                duration_s=round(finished - run.get("started_at", self._started_at), 3),
                exit_code=exit_code,
                verdict=verdict,
            )
            self._journal["invariants"] = _plain(list(invariants))
            self._journal["verdict"] = verdict
            self._write_line({"header": {"run": run, "invariants": self._journal["invariants"], "verdict": verdict}}, sync=True)
            path = self.run_dir / JOURNAL_JSON
            fd, tmp = tempfile.mkstemp(prefix=".journal.", suffix=".tmp", dir=self.run_dir)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(self._journal, out, separators=(",", ":"), default=str)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return path

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()

    def __enter__(self) -> "JournalWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _normalise(journal: dict[str, Any]) -> dict[str, Any]:
    """Fill the keys a reader may rely on; keep everything else as found."""
    out = empty_journal()
    out["schema_version"] = journal.get("schema_version")
    for key, value in journal.items():
        out[key] = value
    for key, kind in (("run", dict), ("plan", dict), ("nodes", list), ("links", list), ("records", list), ("invariants", list)):
        if not isinstance(out.get(key), kind):
            out[key] = kind()
    out["records"] = [r for r in out["records"] if isinstance(r, dict)]
    if out.get("verdict") not in ("valid", "invalid", "unknown"):
        out["verdict"] = "unknown"
    return out


def _rebuild(lines: Iterable[str]) -> dict[str, Any]:
    journal = empty_journal()
    journal["schema_version"] = None
    finished = False
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue  # a line torn by the crash
        if not isinstance(obj, dict):
            continue
        header = obj.get("header")
        if isinstance(header, dict):
            for key, value in header.items():
                if key == "run" and isinstance(value, dict):
                    journal["run"].update(value)
                else:
                    journal[key] = value
        elif "seq" in obj and "type" in obj:
            journal["records"].append(obj)
            if obj.get("type") == "run_finished":
                finished = True
    journal["records"].sort(key=lambda r: r.get("seq", 0))
    journal["rebuilt"] = True
    if not finished:
        journal["verdict"] = "unknown"
    return journal


def load(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a run's journal: ``journal.json`` if present and intact, else the
    ``journal.jsonl`` lines (crash recovery; the result then has
    ``"rebuilt": true`` and no invariants unless the run got to ``finish``).

    ``run_dir`` may also name either file directly.
    """
    path = Path(run_dir)
    if path.is_file():
        run_dir_path = path.parent
        candidates = [path]
    else:
        run_dir_path = path
        candidates = [path / JOURNAL_JSON, path / JOURNAL_JSONL]
    for candidate in candidates:
        if not candidate.is_file():
            continue
        if candidate.suffix == ".json":
            try:
                obj = json.loads(candidate.read_text(encoding="utf-8"))
            except (ValueError, OSError):
                continue
            if isinstance(obj, dict):
                return _normalise(obj)
        else:
            with open(candidate, encoding="utf-8", errors="replace") as fh:
                return _normalise(_rebuild(fh))
    raise JournalError(f"{run_dir_path}: no {JOURNAL_JSON} or {JOURNAL_JSONL}")
