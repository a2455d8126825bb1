"""The fault ledger: every fault journaled requested → effective → undone,
undone exactly once, newest first, whatever fails on the way."""
from __future__ import annotations

import pytest

from chaos.faults import FaultLedger


class Log:
    def __init__(self) -> None:
        self.records: list[tuple] = []
        self.warnings: list[str] = []

    def journal(self, phase, fid, kind, target, links):
        self.records.append((phase, fid, kind, dict(target), tuple(links)))

    def ledger(self) -> FaultLedger:
        return FaultLedger(self.journal, self.warnings.append)


def test_apply_journals_requested_then_effective_and_keeps_the_undo():
    log, done = Log(), []
    ledger = log.ledger()
    fid = ledger.apply("pause", {"sid": 2}, lambda f: (lambda: done.append(f)))
    assert [r[0] for r in log.records] == ["requested", "effective"]
    assert [f.fault_id for f in ledger.active()] == [fid]
    ledger.undo(fid, sid=2)
    assert done == [fid]
    assert log.records[-1] == ("undone", fid, "pause", {"sid": 2}, ())
    ledger.undo(fid)  # a second undo is a no-op, not a second record
    assert done == [fid] and len(log.records) == 3


def test_undo_all_is_last_in_first_out_and_survives_a_failing_undo():
    log, order = Log(), []
    ledger = log.ledger()

    def boom():
        raise RuntimeError("proxy gone")

    a = ledger.apply("toxic", {}, lambda f: (lambda: order.append("a")), links=[(1, 2, "election")], name="x")
    b = ledger.apply("partition", {}, lambda f: boom)
    c = ledger.apply("toxic", {}, lambda f: (lambda: order.append("c")), name="x")
    ledger.undo_all()
    assert order == ["c", "a"]
    assert len(ledger) == 0
    assert any(b in w and "proxy gone" in w for w in log.warnings)
    undone = [r[1] for r in log.records if r[0] == "undone"]
    assert undone == [c, a]  # b's undo failed: it is not journaled as undone
    ledger.undo_all()
    assert order == ["c", "a"]


def test_a_fault_without_undo_is_journaled_but_not_kept():
    log = Log()
    ledger = log.ledger()
    ledger.apply("kill", {"sid": 1}, lambda f: None)
    assert [r[0] for r in log.records] == ["requested", "effective"]
    assert ledger.active() == []


def test_a_do_that_raises_leaves_only_what_it_adopted():
    log, undone = Log(), []
    ledger = log.ledger()

    def half(fid):
        ledger.adopt(fid, "toxic", {}, lambda: undone.append(fid), name="t")
        raise OSError("second proxy refused")

    with pytest.raises(OSError):
        ledger.apply("toxic", {}, half, name="t")
    assert [r[0] for r in log.records] == ["requested"]
    assert [f.name for f in ledger.active(kind="toxic")] == ["t"]
    ledger.undo_all()
    assert len(undone) == 1


def test_forget_ends_a_fault_without_running_its_undo():
    log, ran = Log(), []
    ledger = log.ledger()
    fid = ledger.apply("pause", {"sid": 3}, lambda f: (lambda: ran.append(1)))
    ledger.forget(fid, sid=3, by="kill")
    assert ran == [] and ledger.active() == []
    assert log.records[-1][:3] == ("undone", fid, "pause") and log.records[-1][3]["by"] == "kill"


def test_active_filters_by_kind_and_name():
    ledger = Log().ledger()
    ledger.apply("toxic", {}, lambda f: (lambda: None), name="slow")
    ledger.apply("toxic", {}, lambda f: (lambda: None), name="cut")
    ledger.apply("partition", {}, lambda f: (lambda: None), name="cut")
    assert len(ledger.active(kind="toxic")) == 2
    assert [f.kind for f in ledger.active(name="cut")] == ["toxic", "partition"]
    assert ledger.find("partition", lambda f: f.name == "cut") is not None
