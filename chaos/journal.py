"""The run journal: written as the run goes, read back by invariants and reports.

Theory of operation. A run appends one JSON object per line to
``RUN_DIR/journal.jsonl`` while it happens, so a crash (or a SIGKILL of the
orchestrator) still leaves everything up to the last line on disk. Two kinds of
line exist: ``{"header": {...}}`` lines carry the parts of the journal that are
not records (``run``, ``plan``, ``nodes``, ``links``; later headers update
earlier ones key by key), and every other line is one typed record
(:mod:`chaos.records`). At the end :meth:`JournalWriter.finish` writes
``RUN_DIR/journal.json`` — the whole journal as one object (DESIGN.md §2) —
atomically. :func:`load` prefers ``journal.json`` and otherwise rebuilds the
same :class:`~chaos.records.Journal` from the lines, so a report can be
rendered for a crashed run.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from chaos.outcome import InvariantResult, Verdict
from chaos.records import (SCHEMA_VERSION, Fault, Journal, LogSummary, Process, Record, RunFinished,
                           RunStarted, StepFinished, StepStarted, _plain)

__all__ = ["SCHEMA_VERSION", "JOURNAL_JSON", "JOURNAL_JSONL", "JournalError", "JournalWriter", "load", "merge_header"]

JOURNAL_JSON = "journal.json"
JOURNAL_JSONL = "journal.jsonl"

# Records a post-mortem cannot do without: fsync'd so they survive a machine
# crash, not just a process crash. Status/node_event lines are only flushed.
_IMPORTANT = (RunStarted, RunFinished, Fault, Process, StepStarted, StepFinished, LogSummary)
_HEADER_KEYS = ("run", "plan", "nodes", "links")


class JournalError(Exception):
    """The run directory holds no readable journal; the caller should report
    the run as an infrastructure failure (exit 3), not as a verdict."""


def merge_header(header: dict[str, Any], parts: dict[str, Any]) -> dict[str, Any]:
    """Fold header ``parts`` into ``header`` (``run`` is merged key by key, the
    others replaced) and return them as plain JSON."""
    plain = {key: _plain(value) for key, value in parts.items()}
    for key, value in plain.items():
        if key == "run":
            header["run"].update(value)
        else:
            header[key] = value
    return plain


class JournalWriter:
    """Appends typed records to ``journal.jsonl``; thread-safe, usable from
    asyncio tasks and from helper threads alike.

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
        self._header: dict[str, Any] = {"run": {"started_at": self._started_at}, "plan": {},
                                        "nodes": [], "links": []}
        self._records: list[Record] = []
        self._fh = open(self.run_dir / JOURNAL_JSONL, "w", encoding="utf-8", buffering=1)
        self._write_line({"header": {"schema_version": SCHEMA_VERSION, "run": {"started_at": self._started_at}}},
                         sync=True)

    @property
    def start_mono_ms(self) -> float:
        return self._start_mono_ms

    def snapshot(self) -> Journal:
        """The journal so far, typed; invariants run on it during the run.
        After :meth:`finish` it is the whole journal, results included."""
        with self._lock:
            header = {k: v for k, v in self._header.items()}
            records = tuple(self._records)
        return Journal.from_json({"schema_version": SCHEMA_VERSION, **header, "records": []}).with_records(records)

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
            self._write_line({"header": merge_header(self._header, parts)}, sync=True)

    def record(self, cls: type[Record], /, **fields: Any) -> Record:
        """Append one record of class ``cls`` and return it.

        ``mono_ms`` may be passed (e.g. a node's own timestamp for a
        ``NodeEvent``); ``t`` is then derived from it. Otherwise both come
        from the writer's clock. Unknown field names raise TypeError: the
        record classes are the schema.
        """
        if "seq" in fields:
            raise TypeError("record(): 'seq' is assigned by the journal")
        with self._lock:
            self._seq += 1
            mono_ms = fields.pop("mono_ms", None)
            if mono_ms is None:
                mono_ms = self._clock() * 1000.0
            t = fields.pop("t", None)
            if t is None:
                t = (mono_ms - self._start_mono_ms) / 1000.0
            rec = cls.from_json({**_plain(fields), "seq": self._seq, "t": round(t, 6),
                                 "mono_ms": round(mono_ms, 3), "type": cls.type}) \
                if cls.type else None
            if rec is None or type(rec) is not cls:
                raise TypeError(f"record(): {cls.__name__} is not a registered record type")
            if rec.extra:
                raise TypeError(f"record(): {cls.__name__} has no field(s) {sorted(rec.extra)}")
            self._records.append(rec)
            self._write_line(rec.to_json(), sync=isinstance(rec, _IMPORTANT))
            return rec

    def finish(self, invariants: Iterable[InvariantResult], verdict: str, exit_code: int) -> Path:
        """Record ``run_finished`` and write ``journal.json`` atomically."""
        self.record(RunFinished, verdict=str(verdict), exit_code=int(exit_code))
        with self._lock:
            finished = self._wall()
            run = self._header["run"]
            run.update(finished_at=finished,
                       duration_s=round(finished - run.get("started_at", self._started_at), 3),
                       exit_code=int(exit_code), verdict=str(verdict))
            results = [r.to_json() for r in invariants]
            self._header["invariants"] = results
            self._header["verdict"] = str(verdict)
            self._write_line({"header": {"run": run, "invariants": results, "verdict": str(verdict)}}, sync=True)
            whole = {"schema_version": SCHEMA_VERSION, **self._header,
                     "records": [r.to_json() for r in self._records]}
            path = self.run_dir / JOURNAL_JSON
            fd, tmp = tempfile.mkstemp(prefix=".journal.", suffix=".tmp", dir=self.run_dir)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(whole, out, separators=(",", ":"), default=str)
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


def _rebuild(lines: Iterable[str]) -> dict[str, Any]:
    journal: dict[str, Any] = {"schema_version": None, "run": {}, "plan": {}, "nodes": [], "links": [],
                               "records": [], "invariants": [], "verdict": Verdict.UNKNOWN.value}
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
            if obj.get("type") == RunFinished.type:
                finished = True
    journal["records"].sort(key=lambda r: r.get("seq", 0) if isinstance(r.get("seq"), int) else 0)
    journal["rebuilt"] = True
    if not finished:
        journal["verdict"] = Verdict.UNKNOWN.value
    return journal


def load(run_dir: str | os.PathLike[str]) -> Journal:
    """Read a run's journal: ``journal.json`` if present and intact, else the
    ``journal.jsonl`` lines (crash recovery; the result then has
    ``rebuilt=True`` and no invariants unless the run got to ``finish``).
    Schema versions 1 and 2 are read.

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
                return Journal.from_json(obj)
        else:
            with open(candidate, encoding="utf-8", errors="replace") as fh:
                return Journal.from_json(_rebuild(fh))
    raise JournalError(f"{run_dir_path}: no {JOURNAL_JSON} or {JOURNAL_JSONL}")
