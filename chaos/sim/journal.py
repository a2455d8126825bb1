"""A journal kept in memory, written out only when asked.

Why: ``chaos sim`` runs thousands of schedules; a passing one leaves only a
summary line, so its journal must cost no file I/O. The records are the same
typed records (:mod:`chaos.records`) a real run writes, with ``t`` and
``mono_ms`` on virtual time; :meth:`MemoryJournal.write` gives a failing (or
``--keep-all``) run the files a real run has, ``journal.json`` and
``journal.jsonl``, so the report, ``chaos report`` and ``chaos shrink`` read
it as they read any run.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from chaos.journal import JOURNAL_JSON, JOURNAL_JSONL, merge_header
from chaos.outcome import InvariantResult
from chaos.records import SCHEMA_VERSION, Journal, NodeEvent, Record, RunFinished, Status, _frozen, _FrozenMap, _plain

__all__ = ["MemoryJournal", "WALL_CLOCK_FIELDS"]

_SCALARS = (int, str, float, bool, type(None))

WALL_CLOCK_FIELDS = ("started_at", "finished_at", "duration_s")
"""``run`` header fields read from the wall clock: the only ones two runs of
one plan and seed may differ in."""


class MemoryJournal:
    """:class:`chaos.journal.JournalWriter`'s ``record``/``set_header``/``snapshot``,
    in memory. ``clock`` gives virtual seconds; ``wall_clock`` only the header's
    ``started_at``/``finished_at``."""

    def __init__(self, clock: Callable[[], float], wall_clock: Callable[[], float]) -> None:
        self._clock = clock
        self._wall = wall_clock
        self._seq = 0
        self._records: list[Record] = []
        self._header: dict[str, Any] = {"run": {"started_at": wall_clock()}, "plan": {}, "nodes": [], "links": []}

    def set_header(self, **parts: Any) -> None:
        merge_header(self._header, parts)

    def record(self, cls: type[Record], /, **fields: Any) -> Record:
        self._seq += 1
        mono_ms = fields.pop("mono_ms", None)
        if mono_ms is None:
            mono_ms = self._clock() * 1000.0
        rec = cls.from_json({**_plain(fields), "seq": self._seq, "t": round(mono_ms / 1000.0, 6),
                             "mono_ms": round(mono_ms, 3), "type": cls.type})
        if type(rec) is not cls or rec.extra:
            raise TypeError(f"record(): bad {cls.__name__} fields {sorted(rec.extra)}")
        self._records.append(rec)
        return rec

    def node_event(self, sid: int, event: str, data: dict[str, Any], mono_ms: float) -> NodeEvent:
        """A ``node_event`` built directly: the simulator's fields are plain JSON already,
        and this is the bulk of a run's records."""
        self._seq += 1
        t = round(mono_ms / 1000.0, 6)
        rec = NodeEvent(seq=self._seq, t=t, mono_ms=round(mono_ms, 3), sid=sid, event=event, node_ts=t,
                        data=_FrozenMap({k: v if type(v) in _SCALARS else _frozen(v) for k, v in data.items()}))
        self._records.append(rec)
        return rec

    def status(self, mono_ms: float, **fields: Any) -> Status:
        self._seq += 1
        rec = Status(seq=self._seq, t=round(mono_ms / 1000.0, 6), mono_ms=round(mono_ms, 3), **fields)
        self._records.append(rec)
        return rec

    def snapshot(self) -> Journal:
        return Journal.from_json({"schema_version": SCHEMA_VERSION, **self._header, "records": []}) \
            .with_records(self._records)

    def finish(self, invariants: Iterable[InvariantResult], verdict: str, exit_code: int) -> None:
        self.record(RunFinished, verdict=str(verdict), exit_code=int(exit_code))
        run = self._header["run"]
        finished = self._wall()
        run.update(finished_at=finished, duration_s=round(finished - run["started_at"], 3),
                   exit_code=int(exit_code), verdict=str(verdict))
        self._header["invariants"] = [r.to_json() for r in invariants]
        self._header["verdict"] = str(verdict)

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **self._header, "records": [r.to_json() for r in self._records]}

    def close(self) -> None:
        pass

    def write(self, run_dir: str | os.PathLike[str]) -> Path:
        """``journal.jsonl`` (header lines, then one record a line) and ``journal.json``."""
        d = Path(run_dir)
        d.mkdir(parents=True, exist_ok=True)
        whole = self.to_json()
        with open(d / JOURNAL_JSONL, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"header": {k: v for k, v in whole.items() if k != "records"}},
                                separators=(",", ":"), default=str) + "\n")
            for r in whole["records"]:
                fh.write(json.dumps(r, separators=(",", ":"), default=str) + "\n")
        fd, tmp = tempfile.mkstemp(prefix=".journal.", suffix=".tmp", dir=d)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(whole, out, separators=(",", ":"), default=str)
        os.replace(tmp, d / JOURNAL_JSON)
        return d / JOURNAL_JSON
