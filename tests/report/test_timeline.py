from __future__ import annotations

from chaos.report.synth import JournalBuilder, formed
from chaos.report.timeline import build


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
