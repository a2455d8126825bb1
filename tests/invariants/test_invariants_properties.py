"""Whatever a journal holds — torn, reordered, hostile — checking and
rendering it yields verdicts, never exceptions."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos.invariants import check_all, overall
from chaos.report.html import render_html
from chaos.report.junit import junit_suite
from chaos.report.synth import JournalBuilder
from chaos.report.timeline import build

_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**40), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=12), st.lists(st.integers(-1, 5), max_size=3))
_types = st.sampled_from(["status", "node_event", "process", "fault", "step_started", "step_finished",
                          "log_summary", "run_finished", "mystery"])
_events = st.sampled_from(["state_changed", "election_started", "election_finished", "epoch_established",
                           "notification_sent", "notification_received", "txn_committed", "node_started"])
_states = st.sampled_from(["LOOKING", "FOLLOWING", "LEADING", "OBSERVING", "??"])


@st.composite
def journals(draw):
    records = []
    for seq in range(1, draw(st.integers(0, 40)) + 1):
        rec = {"seq": seq, "t": seq * 0.1, "type": draw(_types), "sid": draw(st.integers(0, 4)),
               "event": draw(_events), "state": draw(_states), "to": draw(_states),
               "role": draw(st.sampled_from(["leader", "follower", "observer"])),
               "path": draw(st.sampled_from(["quorum", "out_of_election"])),
               "action": draw(st.sampled_from(["started", "killed", "paused", "resumed"])),
               "phase": draw(st.sampled_from(["requested", "effective", "undone"]))}
        for key in draw(st.lists(st.sampled_from(["leader", "epoch", "zxid", "last_zxid", "current_epoch", "round",
                                                   "peer_epoch", "up", "runs", "links", "target"]), max_size=6)):
            rec[key] = draw(_values)
        records.append(rec)
    j = JournalBuilder(3).journal(finished=False)
    j["records"] = records
    return j


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(journals())
def test_arbitrary_journals_give_verdicts_not_exceptions(journal):
    results = check_all(journal)
    assert {r.verdict for r in results} <= {"valid", "invalid", "unknown"}
    for r in results:
        if r.verdict == "invalid":
            seqs = {x["seq"] for x in journal["records"]}
            assert r.evidence and set(r.evidence) <= seqs and r.first_violation in seqs
    assert overall(results) in {"valid", "invalid", "unknown"}
    build(journal)
    junit_suite(journal)
    assert "data-verdict" in render_html(journal)
