"""epoch_promises: acceptedEpoch and currentEpoch, as each node reports storing them, never go down."""
from __future__ import annotations

import dataclasses

from chaos.invariants import check_all, epoch_promises
from chaos.report.synth import JournalBuilder


def formed() -> JournalBuilder:
    b = JournalBuilder(3)
    b.rec("run_started", seed=7, command="chaos run plans/leader_kill.yaml")
    b.start()
    b.election(3, b.voters)
    b.advance(1.0)
    return b


def judge(b: JournalBuilder):
    return epoch_promises(b.journal(finished=False, invariants=()))


def test_epochs_that_only_grow_are_valid():
    b = formed()
    b.ev(1, "epoch_accepted", epoch=2, leader=2)
    b.ev(1, "epoch_established", epoch=2, role="follower", leader=2, last_zxid=0)
    b.ev(1, "epoch_accepted", epoch=2, leader=2)     # the same promise again is no step back
    r = judge(b)
    assert r.verdict == "valid" and "never went down" in r.message


def test_an_accepted_epoch_that_goes_down_is_invalid_with_both_records():
    b = formed()
    high = b.ev(1, "epoch_accepted", epoch=5, leader=2)
    low = b.ev(1, "epoch_accepted", epoch=4, leader=3)
    r = judge(b)
    assert r.verdict == "invalid" and "acceptedEpoch went down from 5" in r.message
    assert r.evidence == (high, low)


def test_a_current_epoch_below_one_established_before_is_invalid():
    b = formed()
    b.ev(2, "epoch_established", epoch=3, role="follower", leader=3, last_zxid=0)
    b.process(2, "killed")
    b.process(2, "started")
    b.ev(2, "node_started", pid=99, protocol="3.8", peer_type="participant", last_zxid=0, accepted_epoch=3,
         current_epoch=2)   # the disk lost the established epoch
    r = judge(b)
    assert r.verdict == "invalid" and "currentEpoch went down from 3" in r.message


def test_a_restart_from_an_older_copy_of_the_datadir_starts_the_history_again():
    b = formed()
    b.ev(2, "epoch_accepted", epoch=4, leader=3)
    b.rec("step_started", step="steps[3]", kind="restart", label="restart 2 from before",
          resolved={"target": [2], "from": "before"})
    b.ev(2, "node_started", pid=98, protocol="3.8", peer_type="participant", last_zxid=0, accepted_epoch=1,
         current_epoch=1)
    assert judge(b).verdict == "valid"


def test_it_is_not_run_on_zookeeper_whose_log_does_not_show_epoch_writes():
    b = formed()
    b.run = dataclasses.replace(b.run, target=dataclasses.replace(b.run.target, kind="zookeeper", version="3.8.0"))
    names = [r.name for r in check_all(b.journal(finished=True, invariants=()))]
    assert "epoch_promises" not in names and "single_leader" in names
