from __future__ import annotations

from chaos.report.synth import JournalBuilder, formed
from chaos.report.timeline import build, links_text


def test_lanes_follow_status_process_and_pause():
    b = formed()
    b.advance(1)
    b.process(3, "paused")
    b.advance(1)
    b.status(3, "LOOKING")  # a stale poll while paused does not change the lane
    b.status(3, up=False)  # nor does a failed one
    b.process(3, "resumed")
    b.advance(1)
    b.kill(1)
    tl = build(b.journal(finished=False))
    states3 = [i.state for i in tl.lanes[2].intervals]
    assert states3[-2:] == ["paused", "LEADING"]
    assert tl.lanes[0].intervals[-1].state == "down"
    lead = [i for i in tl.lanes[2].intervals if i.state == "LEADING"]
    assert lead[-1].epoch == 1 and lead[-1].end == tl.t_end


def test_elections_are_clustered_and_messages_matched():
    b = formed()
    b.kill(3)
    b.advance(1)
    e = b.election(2, [1, 2], rounds=2)
    # one notification that never arrives
    b.ev(1, "notification_sent", to=2, state="LOOKING", leader=1, zxid=0, round=99, peer_epoch=1)
    tl = build(b.journal(finished=False))
    assert len(tl.elections) == 2
    first, second = tl.elections
    assert (first.winner, first.epoch, first.path, first.sids) == (3, 1, "quorum", (1, 2, 3))
    assert first.notifications == 6 and all(m.t_received is not None for m in first.messages)
    assert (second.winner, second.epoch, second.notifications) == (2, e["epoch"], 4)
    assert second.duration > 0


def test_faults_and_steps():
    b = formed()
    b.step(1, "toxic", "slow")
    b.fault("requested", "t1", "toxic", {"type": "latency"}, [[3, 1, "election"]])
    b.advance(2)
    b.fault("undone", "t1", "toxic", {"type": "latency"})
    b.fault("requested", "k1", "kill", {"node": 2})
    b.advance(1)
    b.status(1)
    tl = build(b.journal(finished=False))
    toxic, kill = tl.faults
    assert toxic.sids == (1, 3) and toxic.undone and round(toxic.end - toxic.start, 3) == 2.0
    assert kill.sids == (2,) and not kill.undone and kill.end == tl.t_end
    assert [s.kind for s in tl.steps] == ["wait", "toxic"]


def test_empty_journal():
    tl = build(JournalBuilder(3).journal(finished=False))
    assert tl.t_end == 0.0 and len(tl.lanes) == 3 and tl.elections == ()


def test_fault_bands_keep_the_links_they_cut_and_name_them():
    b = formed()
    b.step(1, "partition", "isolate leader")
    cut = [[3, 1, "election"], [1, 3, "election"], [3, 2, "election"], [2, 3, "election"], [3, 1, "quorum"]]
    b.fault("requested", "f1", "partition", {"name": "cut", "isolate": 3}, cut)
    b.advance(1)
    b.fault("undone", "f1", "partition", {})
    band, = build(b.journal(finished=False)).faults
    assert band.links == tuple(tuple(x) for x in cut) and band.sids == (1, 2, 3)
    assert band.label == "partition cut isolate=3"
    assert links_text(band.links) == "n1⇄n3, n2⇄n3 election; n3→n1 quorum"


def test_links_text_folds_directions_and_groups_ports():
    assert links_text([]) == ""
    assert links_text([(1, 2, "election")]) == "n1→n2 election"
    assert links_text([(2, 1, "election"), (1, 2, "election"), (1, 2, "quorum"), (2, 1, "quorum")]) == \
        "n1⇄n2 election+quorum"


def test_kill_band_is_named_by_its_node_and_ended_by_the_restart():
    b = formed()
    b.fault("requested", "f1", "kill", {"sid": 3})
    b.kill(3)
    b.advance(1)
    b.start([3])
    band, = build(b.journal(finished=False)).faults
    assert band.label == "kill n3" and band.undone and band.sids == (3,)


def test_elections_carry_who_started_and_who_decided_in_time_order():
    b = formed()
    tl = build(b.journal(finished=False))
    e, = tl.elections
    assert [(m.sid, m.what) for m in e.marks][:3] == [(1, "started"), (2, "started"), (3, "started")]
    assert {m.text for m in e.marks if m.what == "finished"} == {"LEADING", "FOLLOWING n3"}
    assert e.marks[0].text == "looking votes n1"
    assert [m.t for m in e.marks] == sorted(m.t for m in e.marks)


def test_messages_beyond_the_cap_are_counted(monkeypatch):
    import chaos.report.timeline as timeline

    monkeypatch.setattr(timeline, "MAX_MESSAGES", 4)
    b = formed()
    e, = timeline.build(b.journal(finished=False)).elections
    assert len(e.messages) == 4 and e.messages_dropped == 6 - 4 and e.notifications == 6


def test_step_text_is_the_whole_label():
    b = formed()
    b.step(1, "wait", "wait joined old_leader")
    b.step(2, "kill", "leader")
    b.step(3, "wait", "final wait: stable")
    steps = build(b.journal(finished=False)).steps
    assert [s.text for s in steps][1:] == ["wait joined old_leader", "kill leader", "final wait: stable"]
