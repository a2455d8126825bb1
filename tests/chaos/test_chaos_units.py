"""Unit level: zoo.cfg generation, `fles` parsing, event tailing, stale polls."""
from __future__ import annotations

import json
import socket
import threading
import time

from chaos.targets.fle import FleTarget as Ensemble
from chaos.journal import JournalWriter
from chaos.links import LinkFaults
from chaos.observe import NodeStatus, Observer, parse_fles, query_fles
from chaos.records import NodeEvent, Status
from chaos.plan.model import Ensemble as Spec
from chaos.plan.model import FrozenDict


def _ensemble(tmp_path, spec):
    sids = spec.sids
    real = list(range(30000, 30000 + 3 * len(sids)))
    listen = {l: 31000 + k for k, l in enumerate(LinkFaults.all_links(sids))}
    return Ensemble(tmp_path, spec, real, listen), listen


def _cfg(text):
    return dict(l.split("=", 1) for l in text.splitlines() if l and not l.startswith("#"))


def test_zoo_cfg_points_every_peer_through_its_proxy(tmp_path):
    spec = Spec(nodes=3, observers=1, tick_time_ms=150, init_limit=7, sync_limit=3,
                txn_interval_ms=50, protocol="3.4")
    ens, listen = _ensemble(tmp_path, spec)
    ens.write_configs()
    c2 = _cfg((tmp_path / "n2" / "zoo.cfg").read_text())
    me = ens.nodes[2]
    assert c2["server.2"] == f"127.0.0.1:{me.quorum_port}:{me.election_port}"
    assert c2["server.1"] == f"127.0.0.1:{listen[(2, 1, 'quorum')]}:{listen[(2, 1, 'election')]}"
    assert c2["server.4"] == f"127.0.0.1:{listen[(2, 4, 'quorum')]}:{listen[(2, 4, 'election')]}:observer"
    assert (c2["tickTime"], c2["initLimit"], c2["syncLimit"]) == ("150", "7", "3")
    assert c2["txnIntervalMs"] == "50" and c2["fle.protocol"] == "3.4"
    assert c2["clientPortAddress"] == "127.0.0.1" and c2["4lw.commands.whitelist"] == "*"
    assert c2["clientPort"] == str(me.client_port) and "peerType" not in c2
    assert "weight.1" not in c2
    assert (tmp_path / "n2" / "data" / "myid").read_text().strip() == "2"
    assert _cfg((tmp_path / "n4" / "zoo.cfg").read_text())["peerType"] == "observer"


def test_zoo_cfg_weights_and_groups(tmp_path):
    spec = Spec(nodes=5, weights=FrozenDict({5: 0}), groups=((1, 2, 3), (4, 5)))
    ens, _ = _ensemble(tmp_path, spec)
    c = _cfg(ens.zoo_cfg(1))
    assert c["group.1"] == "1:2:3" and c["group.2"] == "4:5"
    assert c["weight.5"] == "0" and c["weight.1"] == "1"


def test_zoo_cfg_no_txns_sets_the_listed_leaders_interval_to_zero(tmp_path):
    spec = Spec(nodes=3, txn_interval_ms=80, no_txns=(1, 3))
    ens, _ = _ensemble(tmp_path, spec)
    assert [_cfg(ens.zoo_cfg(s))["txnIntervalMs"] for s in (1, 2, 3)] == ["0", "80", "0"]


def test_parse_fles():
    d = parse_fles("fle_sid\t2\nfle_state\tFOLLOWING\nfle_leader\t3\nfle_last_election_path\tquorum\ngarbage\n")
    assert d == {"fle_sid": 2, "fle_state": "FOLLOWING", "fle_leader": 3, "fle_last_election_path": "quorum"}


def _server(reply: bytes | None):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4)
    conns = []

    def serve():
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            conns.append(c)
            c.recv(16)
            if reply is not None:
                c.sendall(reply)
                c.close()

    threading.Thread(target=serve, daemon=True).start()
    return s, conns


def test_query_fles_answers_and_times_out_on_a_silent_peer():
    ok, _ = _server(b"fle_state\tLEADING\nfle_leader\t1\n")
    silent, conns = _server(None)  # accepts like a SIGSTOPped node's backlog, never answers
    try:
        assert query_fles(ok.getsockname()[1])["fle_state"] == "LEADING"
        t0 = time.monotonic()
        assert query_fles(silent.getsockname()[1], timeout=0.3) is None
        assert time.monotonic() - t0 < 2.0
    finally:
        ok.close()
        silent.close()
        for c in conns:
            c.close()


def test_event_tail_keeps_partial_lines_and_node_time(tmp_path):
    j = JournalWriter(tmp_path / "run")
    ev = tmp_path / "events.jsonl"
    obs = Observer(j, {1: (1, ev)}, running=lambda sid: True)
    line1 = json.dumps({"ts": 1.5, "mono_ms": j.start_mono_ms + 250.0, "sid": 1,
                        "event": "state_changed", "from": "LOOKING", "to": "LEADING"})
    line2 = json.dumps({"ts": 2.0, "mono_ms": j.start_mono_ms + 500.0, "sid": 1,
                        "event": "epoch_established", "epoch": 3, "type": "odd"})
    ev.write_text(line1 + "\n" + line2[:10])
    assert obs.drain_events() == 1
    with open(ev, "a") as fh:
        fh.write(line2[10:] + "\n")
    assert obs.drain_events() == 1
    recs = list(j.snapshot().of_type(NodeEvent))
    assert [r.event for r in recs] == ["state_changed", "epoch_established"]
    assert recs[0].get("from") == "LOOKING" and recs[0].node_ts == 1.5 and recs[0].t == 0.25
    assert recs[1].get("epoch") == 3 and recs[1].get("node_type") == "odd"
    j.close()


def test_status_records_only_changes_and_drops_stale_polls(tmp_path):
    j = JournalWriter(tmp_path / "run")
    obs = Observer(j, {1: (1, tmp_path / "none.jsonl")}, running=lambda sid: True)
    up = NodeStatus(1, up=True, state="LEADING", leader=1, epoch=2, synced=True)
    obs._set(up, 0)
    obs._set(up, 0)
    gen_before_kill = 0
    obs.mark_down(1)                      # the orchestrator killed it
    obs._set(up, gen_before_kill)         # a poll answered before the kill lands late
    states = [(r.up, r.state) for r in j.snapshot().of_type(Status)]
    assert states == [(True, "LEADING"), (False, None)]
    assert obs.view()[1].up is False
    j.close()


def test_index_goes_only_into_a_folder_of_runs(tmp_path):
    from chaos.runner import is_reports_folder
    reports = tmp_path / "reports"
    (reports / "leader_kill-1").mkdir(parents=True)
    (reports / "leader_kill-1" / "journal.jsonl").write_text("")
    (reports / ".gitkeep").write_text("")
    (reports / "index.html").write_text("")
    assert is_reports_folder(reports)
    # `--out /tmp/x` for a single run: its parent is someone else's folder
    (reports / "notes.txt").write_text("mine")
    assert not is_reports_folder(reports)
    (reports / "notes.txt").unlink()
    (reports / "scratch").mkdir()
    assert not is_reports_folder(reports)


def test_notification_events_are_bounded_per_election_and_per_run_never_state_events(tmp_path):
    from chaos.observe import NotificationBudget
    from chaos.records import NotificationsCapped
    j = JournalWriter(tmp_path / "run")
    ev1, ev2 = tmp_path / "e1.jsonl", tmp_path / "e2.jsonl"
    obs = Observer(j, {1: (1, ev1), 2: (2, ev2)}, running=lambda sid: True,
                   budget=NotificationBudget(per_election=4, per_run=6))

    def line(sid, event, **f):
        return json.dumps({"ts": 1.0, "mono_ms": j.start_mono_ms + 1, "sid": sid, "event": event, **f}) + "\n"

    with open(ev1, "w") as fh:
        fh.write(line(1, "election_started", logical_clock=1))
        for _ in range(5):
            fh.write(line(1, "notification_sent", to=2))
        fh.write(line(1, "state_changed", **{"from": "LOOKING", "to": "LEADING"}))
        fh.write(line(1, "election_finished", leader=1))
    with open(ev2, "w") as fh:
        fh.write(line(2, "election_started", logical_clock=1))
        for _ in range(4):
            fh.write(line(2, "notification_received", **{"from": 1}))
    obs.drain_events()
    obs.close_elections()
    snap = j.snapshot()
    events = [(r.sid, r.event) for r in snap.of_type(NodeEvent)]
    assert events.count((1, "notification_sent")) == 4          # per-election cap
    assert events.count((2, "notification_received")) == 2      # per-run cap (6 in all)
    assert (1, "state_changed") in events and (1, "election_finished") in events
    capped = {r.sid: r for r in snap.of_type(NotificationsCapped)}
    assert capped[1].dropped_sent == 1 and capped[1].kept == 4 and capped[1].cap == "election"
    assert capped[2].dropped_received == 2 and capped[2].cap == "run"
    started = {r.sid: r.seq for r in snap.of_type(NodeEvent) if r.event == "election_started"}
    assert capped[1].election_seq == started[1] and capped[2].election_seq == started[2]
    j.close()


def test_the_cores_per_message_events_share_the_budget_and_a_flood_does_not_hold_stop(tmp_path):
    """ZK-1419's vote storm wrote quorum_reached / finalize_abandoned at full rate:
    they count against the election's cap, and stop() reads the events file in
    bounded bites instead of chasing a node that keeps writing."""
    from chaos.observe import NotificationBudget
    from chaos.records import NotificationsCapped
    j = JournalWriter(tmp_path / "run")
    ev = tmp_path / "e1.jsonl"
    obs = Observer(j, {1: (1, ev)}, running=lambda sid: True, budget=NotificationBudget(per_election=10))

    def line(event, **f):
        return json.dumps({"ts": 1.0, "mono_ms": j.start_mono_ms + 1, "sid": 1, "event": event, **f}) + "\n"

    with open(ev, "w") as fh:
        fh.write(line("election_started", logical_clock=1))
        for _ in range(20_000):
            fh.write(line("quorum_reached", leader=1))
            fh.write(line("finalize_abandoned", by=1))
        fh.write(line("state_changed", **{"from": "LOOKING", "to": "FOLLOWING"}))
    obs.stop()
    obs.close_elections()
    snap = j.snapshot()
    events = [r.event for r in snap.of_type(NodeEvent)]
    assert events.count("quorum_reached") + events.count("finalize_abandoned") == 10
    assert "state_changed" in events                    # read to the end, never dropped
    (capped,) = snap.of_type(NotificationsCapped)
    assert capped.dropped_other == 39_990 and capped.cap == "election"
    j.close()


def test_a_status_is_journaled_before_a_waiter_can_see_it(tmp_path):
    """`wait: stable` acts on the view; the fault that follows must find the
    status that made the ensemble stable already in the journal."""
    seen_at_record_time = []

    class Journal:
        def record(self, cls, **fields):
            seen_at_record_time.append(obs.view()[1].state)
            return None

    obs = Observer(Journal(), {1: (1, tmp_path / "none.jsonl")}, running=lambda sid: True)
    obs._set(NodeStatus(1, up=True, state="LEADING", leader=1, epoch=2, synced=True), 0)
    assert seen_at_record_time == [None]          # not yet published while journaling
    assert obs.view()[1].state == "LEADING"       # published after


def test_confirm_journals_a_fresh_poll_even_when_nothing_changed(tmp_path):
    """A wait that is about to succeed re-polls: the journal then holds an
    observation taken after every fault before it, unchanged or not."""
    srv, _ = _server(b"fle_state\tLEADING\nfle_leader\t1\nfle_current_epoch\t2\nfle_synced\t1\n")
    try:
        j = JournalWriter(tmp_path / "run")
        obs = Observer(j, {1: (srv.getsockname()[1], tmp_path / "none.jsonl")}, running=lambda sid: True)
        obs._set(obs.poll_once(1), 0)
        assert len(list(j.snapshot().of_type(Status))) == 1
        view = obs.confirm([1])
        statuses = list(j.snapshot().of_type(Status))
        assert len(statuses) == 2 and statuses[1].state == "LEADING" and statuses[1].synced
        assert view[1].state == "LEADING"
        j.close()
    finally:
        srv.close()


def _counting_server(reply: bytes, delay: float = 0.0):
    """A `fles` stand-in that answers after ``delay`` and counts connections."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    seen: list[float] = []

    def answer(c):
        c.recv(16)
        time.sleep(delay)
        c.sendall(reply)
        c.close()

    def serve():
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            seen.append(time.monotonic())
            threading.Thread(target=answer, args=(c,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return s, seen


def test_a_quiet_node_is_polled_slowly_until_an_event_wakes_its_poller(tmp_path):
    srv, seen = _counting_server(b"fle_state\tFOLLOWING\nfle_leader\t2\nfle_current_epoch\t1\nfle_synced\t1\n")
    ev = tmp_path / "events.jsonl"
    ev.write_text("")
    j = JournalWriter(tmp_path / "run")
    obs = Observer(j, {1: (srv.getsockname()[1], ev)}, running=lambda sid: True,
                   interval=0.02, idle_interval=5.0, quiet_polls=3)
    obs.start()
    try:
        deadline = time.monotonic() + 5
        while len(seen) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.4)            # fast polling would poll ~20 more times
        assert len(seen) == 4      # the first answer, then 3 identical ones: quiet
        with open(ev, "a") as fh:
            fh.write(json.dumps({"ts": 1.0, "mono_ms": j.start_mono_ms + 1, "sid": 1,
                                 "event": "state_changed", "from": "FOLLOWING", "to": "LOOKING"}) + "\n")
        t_event = time.monotonic()
        while len(seen) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(seen) >= 5 and seen[4] - t_event < 1.0
    finally:
        obs.stop()
        srv.close()
        j.close()


def test_confirm_polls_the_nodes_side_by_side(tmp_path):
    reply = b"fle_state\tLEADING\nfle_leader\t1\nfle_current_epoch\t2\nfle_synced\t1\n"
    servers = [_counting_server(reply, delay=0.3)[0] for _ in range(4)]
    try:
        j = JournalWriter(tmp_path / "run")
        obs = Observer(j, {k + 1: (s.getsockname()[1], tmp_path / "none.jsonl") for k, s in enumerate(servers)},
                       running=lambda sid: True)
        t0 = time.monotonic()
        view = obs.confirm([4, 2, 1, 3])
        assert time.monotonic() - t0 < 1.1          # one after the other: 1.2 s or more
        assert all(view[s].state == "LEADING" for s in (1, 2, 3, 4))
        assert [r.sid for r in j.snapshot().of_type(Status)] == [4, 2, 1, 3]
        obs.stop()
        j.close()
    finally:
        for s in servers:
            s.close()


def test_proxies_are_created_by_populate_in_batches_and_a_failure_leaves_them_deletable():
    class Client:
        def __init__(self, fail_on: int | None = None):
            self.calls, self.server, self.fail_on = [], {}, fail_on

        def populate(self, proxies):
            self.calls.append([p["name"] for p in proxies])
            for k, p in enumerate(proxies):
                if len(self.calls) == self.fail_on and k == 2:
                    raise RuntimeError("bind: address already in use")
                self.server[p["name"]] = p

        def list_proxies(self):
            return dict(self.server)

    sids = (1, 2, 3)
    links = LinkFaults.all_links(sids)
    real = {s: {"election": 100 + s, "quorum": 200 + s} for s in sids}
    listen = {l: 300 + k for k, l in enumerate(links)}
    ok = Client()
    lf = LinkFaults(ok, "r1", real, listen)
    lf.create_proxies(batch=5)
    assert [len(c) for c in ok.calls] == [5, 5, 2]
    assert sorted(lf.created) == sorted(ok.server) and len(ok.server) == 12
    p = ok.server["fle_r1_1to2_election"]
    assert (p["listen"], p["upstream"], p["enabled"]) == ("127.0.0.1:300", "127.0.0.1:102", True)

    bad = Client(fail_on=2)
    lf = LinkFaults(bad, "r2", real, listen)
    try:
        lf.create_proxies(batch=5)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the populate error must propagate")
    assert sorted(lf.created) == sorted(bad.server) and len(bad.server) == 7
