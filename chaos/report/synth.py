"""Synthetic journals (DESIGN.md §2) for tests, benchmarks and demos.

The orchestrator writes real journals; this builder writes the same typed
records (:mod:`chaos.records`) without processes, so invariants and reports
can be exercised on any history, including ones a healthy ensemble never
produces (injected violations). Records are made as
:meth:`chaos.journal.JournalWriter.record` makes them — by record class, an
unknown field being an error — and :meth:`JournalBuilder.journal` returns a
:class:`~chaos.records.Journal`. Time is explicit: ``at(t)``/``advance(dt)``
move the builder's clock.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from chaos.journal import JOURNAL_JSON, SCHEMA_VERSION
from chaos.outcome import InvariantResult, Verdict, exit_code_for, overall
from chaos.records import (RECORD_TYPES, Fault, Journal, LinkInfo, LogSummary, NodeEvent, NodeInfo, PlanInfo,
                           Process, Record, RunFinished, RunInfo, RunStarted, Status, StepFinished, StepStarted,
                           ToxiproxyInfo)

__all__ = ["JournalBuilder", "realistic_journal", "formed", "inject_split_brain"]

_START_MONO_MS = 5_000_000.0
_START_WALL = 1_795_700_000.0


class JournalBuilder:
    def __init__(
        self,
        nodes: int = 3,
        observers: int = 0,
        *,
        plan_name: str = "leader_kill",
        description: str = "Kill -9 the leader; the rest re-elect with a higher epoch.",
        seed: int = 7,
        run_id: str | None = None,
        started_at: float = _START_WALL,
    ) -> None:
        self.t = 0.0
        self.seq = 0
        self.records: list[Record] = []
        self.voters = list(range(1, nodes + 1))
        self.observers = list(range(nodes + 1, nodes + observers + 1))
        self.sids = self.voters + self.observers
        self.epoch = {s: 0 for s in self.sids}
        self.accepted = {s: 0 for s in self.sids}
        self.zxid = {s: 0 for s in self.sids}
        self.clock = {s: 0 for s in self.sids}
        self.state: dict[int, str | None] = {s: None for s in self.sids}
        self.leader_of: dict[int, int] = {s: -1 for s in self.sids}
        self.pid = {s: 4000 + s for s in self.sids}
        self.log: dict[int, dict[int, list[int]]] = {s: {} for s in self.sids}
        self.ensemble = {"nodes": nodes, "observers": observers}
        # the plan's invariant selection, name -> params (written as the runner writes it)
        self.invariants: dict[str, dict[str, Any]] = {}
        self.steps: list[dict[str, Any]] = []
        run_id = run_id or f"20261127T031500Z-{plan_name}-{seed}"
        self.run = RunInfo(
            id=run_id, plan_name=plan_name, plan_path=f"plans/{plan_name}.yaml", description=description,
            seed=seed, command=f"chaos run plans/{plan_name}.yaml",
            replay_command=f"chaos run plans/{plan_name}.yaml --seed {seed}", started_at=started_at,
            toxiproxy=ToxiproxyInfo("embedded", "http://127.0.0.1:8474"))
        self.nodes = [
            NodeInfo(sid=s, name=f"n{s}", role="observer" if s in self.observers else "participant", weight=1,
                     group=None, client_port=21810 + s, election_port=38870 + s, quorum_port=28870 + s,
                     data_dir=f"nodes/n{s}/data", log_path=f"nodes/n{s}/node.log",
                     events_path=f"nodes/n{s}/data/events.jsonl")
            for s in self.sids
        ]
        self.links = [
            LinkInfo(src=a, dst=b, port=port, proxy=f"n{a}-n{b}-{port}",
                     listen=f"127.0.0.1:{30000 + a * 100 + b * 10 + (port == 'quorum')}",
                     upstream=f"127.0.0.1:{(38870 if port == 'election' else 28870) + b}")
            for a in self.sids for b in self.sids if a != b for port in ("election", "quorum")
        ]

    # ------------------------------------------------------------------ raw records
    def at(self, t: float) -> "JournalBuilder":
        self.t = float(t)
        return self

    def advance(self, dt: float) -> "JournalBuilder":
        self.t += dt
        return self

    def rec(self, kind: type[Record] | str, /, **fields: Any) -> int:
        """Append one record of class ``kind`` (or its registered type name)
        at the builder's time, as ``JournalWriter.record`` would; returns its seq."""
        cls = RECORD_TYPES[kind] if isinstance(kind, str) else kind
        self.seq += 1
        rec = cls.from_json({**fields, "seq": self.seq, "t": round(self.t, 6),
                             "mono_ms": round(_START_MONO_MS + self.t * 1000.0, 3), "type": cls.type})
        if type(rec) is not cls or rec.extra:
            raise TypeError(f"rec(): {cls.__name__} has no field(s) {sorted(rec.extra)}")
        self.records.append(rec)
        return self.seq

    def ev(self, sid: int, event: str, **fields: Any) -> int:
        return self.rec(NodeEvent, sid=sid, event=event, node_ts=round((self.run.started_at or 0.0) + self.t, 6),
                        **fields)

    def status(self, sid: int, state: str | None = None, leader: int | None = None, epoch: int | None = None,
               *, up: bool = True, zxid: int | None = None) -> int:
        if state is not None:
            self.state[sid] = state
        if leader is not None:
            self.leader_of[sid] = leader
        if epoch is not None:
            self.epoch[sid] = epoch
        if zxid is not None:
            self.zxid[sid] = zxid
        if not up:
            return self.rec(Status, sid=sid, up=False, state=None, leader=None, epoch=None,
                            accepted_epoch=None, zxid=None, logical_clock=None)
        return self.rec(Status, sid=sid, up=True, state=self.state[sid], leader=self.leader_of[sid],
                        epoch=self.epoch[sid], accepted_epoch=self.accepted[sid], zxid=self.zxid[sid],
                        logical_clock=self.clock[sid])

    def process(self, sid: int, action: str, **fields: Any) -> int:
        if action == "started":
            self.pid[sid] += 100
        fields.setdefault("pid", self.pid[sid])
        fields.setdefault("exit_code", -9 if action == "killed" else None)
        if action in ("killed", "stopped"):
            self.state[sid] = None
        return self.rec(Process, sid=sid, action=action, **fields)

    def fault(self, phase: str, fault_id: str, kind: str, target: dict | None = None,
              links: Iterable[Iterable[Any]] = ()) -> int:
        return self.rec(Fault, phase=phase, fault_id=fault_id, kind=kind, target=target or {},
                        links=[list(x) for x in links])

    def step(self, index: int, kind: str, label: str, *, resolved: dict | None = None,
             ok: bool = True, error: str | None = None, duration: float = 0.0) -> tuple[int, int]:
        path = f"steps[{index}]"
        a = self.rec(StepStarted, step=path, kind=kind, label=label, resolved=resolved or {})
        self.advance(duration)
        b = self.rec(StepFinished, step=path, kind=kind, label=label, resolved=resolved or {}, ok=ok, error=error)
        self.steps.append({"kind": kind, "path": path, "label": label})
        return a, b

    # ------------------------------------------------------------------ behaviours
    def start(self, sids: Iterable[int] | None = None) -> None:
        for s in sids if sids is not None else self.sids:
            self.process(s, "started")
            self.ev(s, "node_started", pid=self.pid[s], protocol="3.8",
                    peer_type="observer" if s in self.observers else "participant",
                    last_zxid=self.zxid[s], accepted_epoch=self.accepted[s], current_epoch=self.epoch[s])
            self.state[s] = "LOOKING"
            self.leader_of[s] = -1
            self.status(s)
            # its election links to the smaller sids, dialled through their proxies
            for o in self.sids:
                if o < s:
                    self.ev(s, "connection_opened", peer=o, port="election", direction="out", reason="dialled",
                            remote=next(lk.listen for lk in self.links
                                       if (lk.src, lk.dst, lk.port) == (s, o, "election")))
            self.advance(0.01)

    def kill(self, sid: int) -> int:
        seq = self.process(sid, "killed", exit_code=-9)
        self.status(sid, up=False)
        return seq

    def election(self, leader: int, voters: Iterable[int], *, epoch: int | None = None, path: str = "quorum",
                 duration: float = 0.25, rounds: int = 1, established: bool = True,
                 notifications: bool = True, winner_zxid: int | None = None) -> dict[str, Any]:
        """Every voter goes LOOKING, exchanges notifications, and finishes
        following ``leader``; the leader establishes ``epoch`` (default: one
        more than any voter's). Returns seqs of interest."""
        voters = list(voters)
        out: dict[str, Any] = {"started": {}, "finished": {}, "established": {}, "t0": self.t}
        for s in voters:
            if self.state[s] != "LOOKING":
                self.ev(s, "state_changed", **{"from": self.state[s] or "LOOKING", "to": "LOOKING"})
                self.state[s] = "LOOKING"
                self.leader_of[s] = -1
                self.status(s)
            self.clock[s] += 1
            out["started"][s] = self.ev(
                s, "election_started", logical_clock=self.clock[s],
                vote={"leader": s, "zxid": self.zxid[s], "peer_epoch": self.epoch[s]},
                last_zxid=self.zxid[s], current_epoch=self.epoch[s])
        rnd = max(self.clock[s] for s in voters)
        for s in voters:
            self.clock[s] = rnd
        sent = {s: 0 for s in voters}
        got = {s: 0 for s in voters}
        if notifications:
            step = duration / max(1, rounds * 2)

            def exchange(senders: list[int], vote_of: Callable[[int], int]) -> None:
                for a in senders:
                    for b in voters:
                        if a != b:
                            vote = vote_of(a)
                            self.ev(a, "notification_sent", to=b, state="LOOKING", leader=vote,
                                    zxid=self.zxid[vote], round=rnd, peer_epoch=self.epoch[vote])
                            sent[a] += 1
                self.advance(step / 2)
                for a in senders:
                    for b in voters:
                        if a != b:
                            vote = vote_of(a)
                            self.ev(b, "notification_received", **{"from": a}, state="LOOKING", leader=vote,
                                    zxid=self.zxid[vote], round=rnd, peer_epoch=self.epoch[vote], version=2)
                            got[b] += 1
                self.advance(step / 2)

            for r in range(rounds - 1):
                exchange(voters, lambda a: a)
            # The last exchange as FLE orders it: the leader's own vote arrives
            # first, and the others adopt it in answer (vote_rules replays this).
            exchange([leader] if leader in voters else [], lambda a: leader)
            exchange([a for a in voters if a != leader], lambda a: leader)
        else:
            self.advance(duration)
        new_epoch = epoch if epoch is not None else max(self.epoch[s] for s in voters + [leader]) + 1
        lz = self.zxid[leader] if winner_zxid is None else winner_zxid
        for s in voters:
            st = "LEADING" if s == leader else ("OBSERVING" if s in self.observers else "FOLLOWING")
            out["finished"][s] = self.ev(
                s, "election_finished", leader=leader, zxid=lz, peer_epoch=self.epoch[leader], round=rnd,
                duration_ms=round(duration * 1000), path=path, state=st,
                notifications_sent=sent[s], notifications_received=got[s])
            self.ev(s, "state_changed", **{"from": "LOOKING", "to": st})
            self.state[s] = st
            self.leader_of[s] = leader
            self.status(s)
        self.advance(0.05)
        if established:
            for s in [leader] + [v for v in voters if v != leader]:
                role = "leader" if s == leader else ("observer" if s in self.observers else "follower")
                self.accepted[s] = new_epoch
                self.epoch[s] = new_epoch
                if s != leader:
                    self.zxid[s] = self.zxid[leader]
                    self.log[s] = {e: list(v) for e, v in self.log[leader].items()}
                out["established"][s] = self.ev(s, "epoch_established", epoch=new_epoch, role=role,
                                                leader=leader, last_zxid=self.zxid[s])
                self.status(s)
        out["epoch"] = new_epoch
        out["round"] = rnd
        return out

    def commit(self, leader: int, followers: Iterable[int] = (), *, applied: bool = True) -> tuple[int, int]:
        """The leader commits one txn in its current epoch; followers apply it."""
        e = self.epoch[leader]
        counter = (self.zxid[leader] & 0xFFFFFFFF) + 1 if (self.zxid[leader] >> 32) == e else 1
        z = (e << 32) | counter
        for s in [leader, *followers]:
            self.zxid[s] = z
            run = self.log[s].setdefault(e, [counter, counter])
            run[1] = counter
        seq = self.ev(leader, "txn_committed", zxid=z)
        if applied:
            for s in followers:
                self.ev(s, "txn_applied", zxid=z)
        return z, seq

    def log_summaries(self, sids: Iterable[int] | None = None) -> dict[int, int]:
        return {
            s: self.rec(LogSummary, sid=s, runs=[[e, a, b] for e, (a, b) in sorted(self.log[s].items())])
            for s in (sids if sids is not None else self.sids)
        }

    # ------------------------------------------------------------------ output
    def plan_info(self) -> PlanInfo:
        """The plan header as the runner writes it (``Plan.to_json()``: invariants a list)."""
        return PlanInfo.from_json({
            "name": self.run.plan_name, "description": self.run.description, "seed": self.run.seed,
            "source_path": self.run.plan_path, "ensemble": self.ensemble,
            "invariants": [{"name": n, "params": p} for n, p in self.invariants.items()],
            "steps": self.steps})

    def journal(self, *, finished: bool = True, invariants: Iterable[InvariantResult] | None = None,
                verdict: str | None = None, exit_code: int | None = None) -> Journal:
        """The journal so far; ``finished`` ends it as ``JournalWriter.finish``
        would: a ``run_finished`` record and the invariants' results (computed
        unless given). The builder itself is not changed."""
        j = Journal(schema_version=SCHEMA_VERSION, run=self.run, plan=self.plan_info(), nodes=tuple(self.nodes),
                    links=tuple(self.links), records=tuple(self.records))
        if not finished:
            return j
        from chaos.invariants import check_all  # the report side may import invariants

        end_t = round(self.t, 6)
        results = tuple(invariants) if invariants is not None else tuple(
            check_all(j, j.plan.invariants or None))
        v = Verdict.parse(verdict) if verdict is not None else overall(results)
        code = exit_code if exit_code is not None else int(exit_code_for(v))
        end = RunFinished(seq=self.seq + 1, t=end_t, mono_ms=round(_START_MONO_MS + end_t * 1000.0, 3),
                          verdict=v.value, exit_code=code)
        run = dataclasses.replace(self.run, finished_at=(self.run.started_at or 0.0) + self.t,
                                  duration_s=round(self.t, 3), exit_code=code, verdict=v.value)
        return dataclasses.replace(j, run=run, records=(*j.records, end), invariants=results, verdict=v.value)

    def write(self, run_dir: str | os.PathLike[str], journal: Journal | None = None,
              *, node_files: bool = True) -> Path:
        """``RUN_DIR/journal.json`` (and stand-ins for each node's log and events)."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        j = journal if journal is not None else self.journal()
        (run_dir / JOURNAL_JSON).write_text(json.dumps(j.to_json(), separators=(",", ":")), encoding="utf-8")
        if node_files:
            for n in j.nodes:
                for key, rel in (("log_path", n.log_path), ("events_path", n.events_path)):
                    if rel:
                        p = run_dir / rel
                        p.parent.mkdir(parents=True, exist_ok=True)
                        p.write_text(f"synthetic {key} of node {n.sid}\n", encoding="utf-8")
        return run_dir


def realistic_journal(nodes: int = 7, seconds: float = 60.0, *, seed: int = 7, poll: float = 0.1,
                      txn_interval: float = 0.1, plan_name: str = "leader_kill_busy",
                      started_at: float = _START_WALL, rounds: int = 10) -> Journal:
    """A busy run: form, then every ~12 s kill the leader (restart it later) or
    delay the election links; txns every ``txn_interval`` from the leader,
    applied by followers, and status polled every ``poll`` seconds."""
    b = JournalBuilder(nodes, plan_name=plan_name, seed=seed, started_at=started_at,
                       description="Kill the leader repeatedly under load; each time the rest re-elect "
                                   "and the old leader rejoins out of election.")
    b.invariants = {"single_leader": {}, "convergence": {"within": "15s"}, "out_of_election_join": {},
                            "leader_validity": {}, "no_committed_txn_lost": {}}
    b.rec(RunStarted, seed=seed, command=b.run.command)
    b.step(0, "wait", "stable")
    b.start()
    leader = nodes
    live = list(b.voters)
    b.election(leader, live, rounds=3)
    step_i = 1
    next_fault = 8.0
    killed: int | None = None
    fault_n = 0
    while b.t < seconds:
        followers = [s for s in live if s != leader]
        b.commit(leader, followers)
        tick_end = b.t + txn_interval
        if poll <= txn_interval or int(b.t / poll) != int(tick_end / poll):
            for s in live:
                b.status(s)
        b.at(tick_end)
        if b.t >= next_fault and b.t < seconds - 10:
            fault_n += 1
            if killed is not None:
                b.step(step_i, "restart", f"n{killed}", resolved={"node": killed}); step_i += 1
                b.start([killed])
                b.ev(killed, "election_started", logical_clock=1,
                     vote={"leader": killed, "zxid": b.zxid[killed], "peer_epoch": b.epoch[killed]},
                     last_zxid=b.zxid[killed], current_epoch=b.epoch[killed])
                b.advance(0.05)
                b.ev(killed, "election_finished", leader=leader, zxid=b.zxid[leader], peer_epoch=b.epoch[leader],
                     round=b.clock[leader], duration_ms=50, path="out_of_election", state="FOLLOWING",
                     notifications_sent=nodes - 1, notifications_received=nodes - 1)
                b.state[killed], b.leader_of[killed] = "FOLLOWING", leader
                b.log[killed] = {e: list(v) for e, v in b.log[leader].items()}
                b.zxid[killed], b.epoch[killed], b.accepted[killed] = b.zxid[leader], b.epoch[leader], b.epoch[leader]
                b.ev(killed, "epoch_established", epoch=b.epoch[leader], role="follower", leader=leader,
                     last_zxid=b.zxid[killed])
                b.status(killed)
                b.fault("undone", f"f{fault_n - 1}", "kill", {"node": killed})
                live.append(killed)
                killed = None
                # and a latency toxic on the leader's election links for a while
                links = [[leader, s, "election"] for s in live if s != leader]
                b.step(step_i, "toxic", "slow", resolved={"from": [leader], "to": [s for s in live if s != leader]})
                step_i += 1
                b.fault("requested", f"f{fault_n}", "toxic", {"type": "latency", "attributes": {"latency": 200}}, links)
                b.fault("effective", f"f{fault_n}", "toxic", {"type": "latency"}, links)
                toxic_until = b.t + 3.0
                while b.t < toxic_until:
                    followers = [s for s in live if s != leader]
                    b.commit(leader, followers)
                    for s in live:
                        b.status(s)
                    b.advance(txn_interval)
                b.step(step_i, "untoxic", "slow"); step_i += 1
                b.fault("undone", f"f{fault_n}", "toxic", {"type": "latency"}, links)
            else:
                b.step(step_i, "kill", "leader", resolved={"node": leader}); step_i += 1
                b.fault("requested", f"f{fault_n}", "kill", {"node": leader})
                b.kill(leader)
                b.fault("effective", f"f{fault_n}", "kill", {"node": leader})
                killed = leader
                live = [s for s in live if s != leader]
                b.advance(0.4)
                leader = max(live, key=lambda s: (b.epoch[s], b.zxid[s], s))
                b.election(leader, live, rounds=rounds, duration=0.8)
            next_fault = b.t + 5.0
    b.step(step_i, "wait", "stable")
    b.log_summaries()
    return b.journal()


def formed(nodes: int = 3, **kw: Any) -> JournalBuilder:
    """Nodes start and elect the highest sid (equal zxids), epoch 1."""
    b = JournalBuilder(nodes, **kw)
    b.rec(RunStarted, seed=b.run.seed, command=b.run.command)
    b.step(0, "wait", "stable")
    b.start()
    b.election(nodes, b.voters)
    return b


def inject_split_brain(b: JournalBuilder) -> int:
    """Node 2 establishes the epoch the current leader already leads, so
    ``single_leader`` is violated; returns the seq of the violating record."""
    leader = max(b.voters)
    b.advance(1.0)
    b.step(len(b.steps), "partition", "isolate leader")
    b.fault("requested", "f1", "partition", {"isolate": leader}, [[leader, s, "election"] for s in b.voters if s != leader])
    b.commit(leader, [s for s in b.voters if s != leader])
    bad = b.ev(2, "epoch_established", epoch=b.epoch[leader], role="leader", leader=2, last_zxid=b.zxid[leader])
    b.advance(1.0)
    b.fault("undone", "f1", "partition", {"isolate": leader})
    return bad
