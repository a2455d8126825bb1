"""events.jsonl: one flushed JSON object per line; a broken sink never raises."""
from __future__ import annotations

import enum
import io
import json

from node.events import EventLog


class Color(enum.Enum):
    RED = "red"


def test_lines_carry_ts_mono_sid_event_and_fields(tmp_path):
    log = EventLog(tmp_path / "events.jsonl", 7, wall_clock=lambda: 1000.5, mono_clock=lambda: 2.25)
    log.emit("state_changed", {"from": "LOOKING", "to": "LEADING"})
    log.emit("odd", {"color": Color.RED, "path": tmp_path, "sids": {3}, "sid": 99})
    # flushed per line: readable before close
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"ts": 1000.5, "mono_ms": 2250.0, "sid": 7, "event": "state_changed",
                                    "from": "LOOKING", "to": "LEADING"}
    second = json.loads(lines[1])
    assert second["color"] == "red" and second["path"] == str(tmp_path) and second["sids"] == [3]
    assert second["sid"] == 7  # a field can't overwrite the envelope
    log.close()


def test_unwritable_log_reports_once_and_never_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = io.StringIO()
    log = EventLog(blocker / "sub" / "events.jsonl", 1, stderr=err)  # parent is a file
    for _ in range(3):
        log.emit("node_started", {"pid": 1})
    assert err.getvalue().count("cannot write events") == 1
    log.close()


def test_write_failure_after_open_is_swallowed(tmp_path):
    err = io.StringIO()
    log = EventLog(tmp_path / "events.jsonl", 1, stderr=err)
    log._fh.close()  # simulate the file going away under us
    log.emit("x", {})
    log.emit("y", {})
    assert err.getvalue().count("cannot write events") == 1


def test_listeners_see_events_and_a_failing_listener_is_contained(tmp_path):
    log = EventLog(tmp_path / "events.jsonl", 1, stderr=io.StringIO())
    seen = []
    log.listeners.append(lambda e, f: seen.append(e))
    log.listeners.append(lambda e, f: 1 / 0)
    log.emit("a", {})
    assert seen == ["a"]
    assert json.loads((tmp_path / "events.jsonl").read_text())["event"] == "a"


def test_notification_events_are_capped_per_election_and_the_rest_counted(tmp_path):
    from node.events import EventLog
    log = EventLog(tmp_path / "events.jsonl", 1, max_notifications=3)
    log.emit("election_started", {"logical_clock": 1})
    for i in range(5):
        log.emit("notification_sent", {"to": 2})
        log.emit("notification_received", {"from": 2})
    log.emit("election_finished", {"leader": 2})
    log.emit("election_started", {"logical_clock": 2})
    log.emit("notification_sent", {"to": 3})
    log.close()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names == ["election_started", "notification_sent", "notification_received", "notification_sent",
                     "notifications_suppressed", "election_finished", "election_started", "notification_sent"]
    sup = events[4]
    assert (sup["sent"], sup["received"], sup["cap"]) == (3, 4, 3)


def test_the_cores_per_message_events_share_the_cap(tmp_path):
    """A tie-break that never settles flips quorum_reached / finalize_abandoned at
    full rate (ZK-1419): those count against the same per-election cap."""
    from node.events import EventLog
    log = EventLog(tmp_path / "events.jsonl", 1, max_notifications=4)
    log.emit("election_started", {"logical_clock": 1})
    for i in range(50):
        log.emit("quorum_reached", {"leader": 1 + i % 2})
        log.emit("finalize_abandoned", {"by": 1})
    log.emit("state_changed", {"from": "LOOKING", "to": "FOLLOWING"})   # never capped
    log.emit("election_finished", {"leader": 2})
    log.close()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names == ["election_started"] + ["quorum_reached", "finalize_abandoned"] * 2 + [
        "state_changed", "notifications_suppressed", "election_finished"]
    sup = events[-2]
    assert (sup["sent"], sup["received"], sup["other"]) == (0, 0, 96)


def test_echoes_with_non_voters_have_their_own_small_budget(tmp_path):
    """A storm of echoes with an observer must not use up the budget the
    voters' notifications need: both caps count apart, both are reported."""
    from node.events import EventLog
    log = EventLog(tmp_path / "events.jsonl", 1, max_notifications=4, nonvoters=frozenset({4}), max_echoes=2)
    log.emit("election_started", {"logical_clock": 1})
    for _ in range(100):
        log.emit("notification_received", {"from": 4})
        log.emit("notification_ignored", {"from": 4, "reason": "sender is not a voter"})
        log.emit("notification_sent", {"to": 4})
    for _ in range(3):
        log.emit("notification_received", {"from": 2})
    log.emit("election_finished", {"leader": 2})
    log.close()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names == ["election_started", "notification_received", "notification_ignored"] + \
        ["notification_received"] * 3 + ["notifications_suppressed", "election_finished"]
    sup = events[-2]
    assert (sup["sent"], sup["received"], sup["other"], sup["echo"]) == (0, 0, 0, 298)
