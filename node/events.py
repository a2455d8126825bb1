"""The node's event log: one JSON object per line in dataDir/events.jsonl.

The orchestrator tails this file while the node runs and after it is killed,
so every line is flushed as it is written (a SIGKILL loses at most the line
being written) and `mono_ms` is CLOCK_MONOTONIC, which is machine-wide and
lets events of different processes be put on one time line.

Writing an event must never take the protocol down: a full disk or a removed
directory is reported once on stderr and later events are dropped.

The file is bounded: notification events (the bulk, one per message) and the
core's per-message events (``CORE_CHATTY_EVENTS``) are written up to
`max_notifications` per election, then only counted; the counts go out as one
`notifications_suppressed` event when the election ends, so a node stuck
voting at full rate cannot fill the disk. Echoes with non-voters (a voter
answers every observer notification at once, as ZooKeeper does, so a LOOKING
voter and an OBSERVING observer trade them at machine speed) have a small
budget of their own, `max_echoes`: a storm of them must not use up the
budget the vote oracles need for the voters' notifications.
"""
from __future__ import annotations

import enum
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

__all__ = ["EventLog", "EVENTS_FILE", "Emit"]

EVENTS_FILE = "events.jsonl"
NOTIFICATION_EVENTS = frozenset({"notification_sent", "notification_received"})
# The election core's own per-message events: as many as notifications in a vote storm
# (a tie-break that never settles flips quorum_reached/finalize_abandoned at full rate).
CORE_CHATTY_EVENTS = frozenset({"notification_ignored", "quorum_reached", "finalize_abandoned",
                                "notification_timeout"})
CAPPED_EVENTS = NOTIFICATION_EVENTS | CORE_CHATTY_EVENTS
MAX_NOTIFICATIONS_PER_ELECTION = 5_000
MAX_ECHOES_PER_ELECTION = 60
"""Events of the exchange with non-voters kept per election: enough to show it happened."""

Emit = Callable[[str, dict[str, Any]], None]
_NO_SUPPRESSION = {"sent": 0, "received": 0, "other": 0, "echo": 0}


def _default(o: Any) -> Any:
    if isinstance(o, enum.Enum):
        return o.name if not isinstance(o.value, (str, int)) else o.value
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if hasattr(o, "__dataclass_fields__"):
        return {k: getattr(o, k) for k in o.__dataclass_fields__}
    return str(o)


class EventLog:
    """Append-only JSON-lines writer; `emit(event, fields)` is the callback shape
    every other node module takes."""

    def __init__(self, path: Path | str, sid: int, *,
                 wall_clock: Callable[[], float] = time.time,
                 mono_clock: Callable[[], float] = time.monotonic,
                 stderr: TextIO | None = None,
                 max_notifications: int = MAX_NOTIFICATIONS_PER_ELECTION,
                 nonvoters: frozenset[int] = frozenset(),
                 max_echoes: int = MAX_ECHOES_PER_ELECTION) -> None:
        self.path = Path(path)
        self.sid = sid
        self._wall = wall_clock
        self._mono = mono_clock
        self._stderr = stderr if stderr is not None else sys.stderr
        self._failed = False
        self._listener_failed = False
        self._fh: TextIO | None = None
        self.listeners: list[Emit] = []
        self.max_notifications = max_notifications
        self.nonvoters = frozenset(nonvoters)
        self.max_echoes = max_echoes
        self._written = 0                       # notification events of this election
        self._echoes_written = 0                # of which with non-voters
        self._suppressed = dict(_NO_SUPPRESSION)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            self._report(e)

    def _report(self, e: BaseException) -> None:
        if not self._failed:
            self._failed = True
            try:
                print(f"node {self.sid}: cannot write events to {self.path}: {e}; "
                      "further events are dropped", file=self._stderr, flush=True)
            except Exception:
                pass

    def emit(self, event: str, fields: dict[str, Any] | None = None) -> None:
        fields = fields or {}
        record: dict[str, Any] = {
            "ts": self._wall(),
            "mono_ms": self._mono() * 1000.0,
            "sid": self.sid,
            "event": event,
        }
        for k, v in fields.items():
            if k not in record:
                record[k] = v
        for listener in self.listeners:
            try:
                listener(event, fields)
            except Exception as e:  # a broken listener must not stop logging
                if not self._listener_failed:
                    self._listener_failed = True
                    try:
                        print(f"node {self.sid}: event listener failed: {e!r}", file=self._stderr, flush=True)
                    except Exception:
                        pass
        if self._fh is None or self._failed:
            return
        if event in CAPPED_EVENTS and self._is_echo(fields):
            if self._echoes_written >= self.max_echoes:
                self._suppressed["echo"] += 1
                return
            self._echoes_written += 1
        elif event in CAPPED_EVENTS:
            if self._written >= self.max_notifications:
                self._suppressed[{"notification_sent": "sent", "notification_received": "received"}
                                 .get(event, "other")] += 1
                return
            self._written += 1
        elif event in ("election_started", "election_finished", "node_stopping"):
            self._end_election()
        try:
            line = json.dumps(record, default=_default, separators=(",", ":"))
            self._fh.write(line + "\n")
            self._fh.flush()
        except (OSError, ValueError, TypeError) as e:
            self._report(e)

    __call__ = emit

    def _is_echo(self, fields: dict[str, Any]) -> bool:
        """A notification event (or the core's note on one) with a non-voter peer."""
        if not self.nonvoters:
            return False
        peer = fields.get("to", fields.get("from"))
        return isinstance(peer, int) and peer in self.nonvoters

    def _end_election(self) -> None:
        """Say how many notification events were not written, before the event
        that ends (or restarts) the election."""
        self._written = self._echoes_written = 0
        if any(self._suppressed.values()):
            counts, self._suppressed = self._suppressed, dict(_NO_SUPPRESSION)
            self.emit("notifications_suppressed", {**counts, "cap": self.max_notifications})

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None
