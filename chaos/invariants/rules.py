"""vote_rules: each LOOKING node moves its logical clock and its proposal only
the way lookForLeader moves them.

Theory of operation. ``vote_backing`` judges *decisions*; a bug in how a node
*reaches* its proposal (a tie-break, the order of epoch and zxid, a stale
round, a round jump) can still end in a decision every check accepts, because
every node applies the same wrong rule. The node logs each notification it
receives before its core handles it, and each one the core sends, in the
core's own order (node/server.py), so the send that follows a receive is the
core's answer to it. From those events this check replays the seed's loop:

* **clock**: ``election_started.logical_clock`` is above the round the same
  process decided its previous election in (lookForLeader increments the
  logical clock first; an out-of-election decision may lower it to the
  ensemble's round, never raise the next one less).
* **rounds**: within an election the rounds of its LOOKING notifications to
  voters never go down.
* **round jump**: a LOOKING notification in a round above the clock answers a
  notification of that round from a voter, and proposes that notification's
  vote if it beats the node's own initial vote (totalOrderPredicate, with the
  ensemble's weights), else the initial vote.
* **proposal change**: inside one round the proposal changes only to the vote
  of the notification just received, which must be of the same round, from a
  voter, and beat the old proposal.
* **finalize wait**: once a quorum backs its proposal (``quorum_reached``) the
  node polls its queue for ``finalizeWait`` (``node_started.finalize_wait_ms``)
  and decides only when that poll comes back empty: a quorum-path decision
  comes no sooner than finalizeWait after the last ``quorum_reached`` (on the
  node's own clock: a timer never fires early), and no notification it
  consumes meanwhile beats the proposal (a better one is put back and the
  loop goes on: ``finalize_abandoned``).
* **same-round join** (3.8 nodes): a FOLLOWING/LEADING notification of the
  node's own round goes into recvset, and when recvset then holds a quorum
  for its vote (``Vote.equals``: a LOOKING vote must agree on every field, a
  FOLLOWING/LEADING one on leader and peer epoch) and the leader's own
  LEADING vote (checkLeader), lookForLeader follows that leader at once. The
  replay keeps recvset as the loop does (a round jump clears it; a
  notification the core logs as ignored never enters it), and the node's next
  event must be that decision: ZOOKEEPER-3537 looked the leader up in
  outofelection instead, and joined a notification later, or not at all.

On ZooKeeper (``zk_vote_rules``) the log shows each notification when it
arrives, not when the election loop takes it from its queue, so "the
notification just received" is replaced by any LOOKING notification from a
voter the server received since its process started: a round jump or a
proposal change is broken only when none of them allows it. The clock rule
needs the round of each decision, which ZooKeeper's log does not give; it is
not judged there, nor is the finalize wait (its log shows no quorum_reached).

Only LOOKING notifications to voters count: the answer to an observer carries
the node's last *decided* vote (WorkerReceiver), not its proposal. An
election whose notification events are incomplete (a node or journal cap)
turns a violation into ``unknown (capped)``; nothing is judged without events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from chaos.records import NodeEvent, NotificationsCapped, Process
from zkrules.vote import ServerState, Vote, total_order_predicate

from .core import Context, Finding, as_int, invariant, target_invariant
from .zk_votes import complete_sids

__all__ = ["vote_rules", "zk_vote_rules"]

VoteT = tuple[int, int, int]  # (leader, zxid, peer_epoch)


@dataclass(slots=True)
class _Election:
    start: NodeEvent
    clock: int
    init: VoteT | None
    prop: VoteT | None
    last_received: NodeEvent | None = None
    suppressed: bool = False
    quorum_at: NodeEvent | None = None     # the last quorum_reached: the finalize wait runs from it
    rclock: int = 0                        # the round recvset belongs to, as the loop moves it
    recvset: dict[int, Vote] = field(default_factory=dict)
    pending: "_Pending | None" = None      # the notification just received, not yet known ignored


_LOOP_EVENTS = frozenset({"notification_received", "notification_sent", "notification_timeout", "quorum_reached",
                          "election_started", "election_finished", "node_stopping", "node_started", "core_failed"})
"""Events that show what the loop did after a notification; others (a
connection opening, finalize_abandoned) leave the question open."""


@dataclass(slots=True)
class _Pending:
    n: NodeEvent
    vote: Vote | None                      # what enters recvset if the core does not ignore it
    decisive: bool                         # the fixed rule follows its leader on it
    deciding: bool = False                 # state_changed seen: election_finished must name that leader


@dataclass(slots=True)
class _Node:
    decided_round: int | None = None      # round of this process's last decision
    protocol: str | None = None           # node_started.protocol ("3.8" | "3.4")
    finalize_wait: float | None = None    # ms, as the process said at its start
    election: _Election | None = None
    # superset mode: round -> the LOOKING votes of voters received since the start (seq, vote)
    received: dict[int, list[tuple[int, VoteT]]] = field(default_factory=dict)


@dataclass(slots=True)
class _Tally:
    elections: int = 0
    changes: int = 0
    jumps: int = 0
    unsure: list[str] = field(default_factory=list)


def _signed(v: int | None) -> int | None:
    """A 64-bit field read unsigned (ZooKeeper logs Long.MIN_VALUE as hex 8000…) as Java holds it."""
    return v - (1 << 64) if v is not None and v >= 1 << 63 else v


def _vote(d: Any) -> VoteT | None:
    if not isinstance(d, Mapping):
        return None
    v = (as_int(d.get("leader")), _signed(as_int(d.get("zxid"))), _signed(as_int(d.get("peer_epoch"))))
    return None if None in v else v  # type: ignore[return-value]


def _fmt(v: VoteT | None) -> str:
    if v is None:
        return "?"
    leader, zxid, epoch = v
    return f"(leader {leader}, zxid {zxid:#x}, peer epoch {epoch})" if zxid >= 0 else f"(leader {leader})"


class _Rules:
    """One pass over the journal; :meth:`run` returns the first broken rule, if any."""

    def __init__(self, ctx: Context, *, superset: bool = False) -> None:
        self.ctx = ctx
        self.superset = superset
        self.nodes: dict[int, _Node] = {}
        self.capped = {r.election_seq for r in ctx.records if isinstance(r, NotificationsCapped)}
        self.complete = complete_sids(ctx) if superset else frozenset()
        self.tally = _Tally()

    def beats(self, new: VoteT, cur: VoteT) -> bool:
        weight = self.ctx.voters.weights.get(new[0], 0)
        return total_order_predicate(new[0], new[1], new[2], cur[0], cur[1], cur[2],
                                     new_weight=1 if weight else 0)

    def run(self) -> Finding | None:
        for r in self.ctx.records:
            if isinstance(r, Process) and r.sid is not None and r.action in ("started", "killed", "stopped", "exited"):
                self.nodes[r.sid] = _Node()
            elif isinstance(r, NodeEvent) and r.sid is not None:
                found = self.event(self.nodes.setdefault(r.sid, _Node()), r)
                if found is not None:
                    return found
        return None

    def event(self, node: _Node, r: NodeEvent) -> Finding | None:
        e = node.election
        if e is not None and e.pending is not None and not self.superset:
            found = self.settle(e, r)
            if found is not None:
                return found
        if (self.superset and r.event == "notification_received"    # whatever "my state" it was logged in
                and r.get("state") == "LOOKING" and as_int(r.get("from")) in self.ctx.voters):
            rnd, v = as_int(r.get("round")), _vote(r.data)
            if rnd is not None and v is not None:
                node.received.setdefault(rnd, []).append((r.seq, v))
        if r.event == "node_started":
            node.decided_round, node.election = None, None
            node.finalize_wait = as_int(r.get("finalize_wait_ms"))
            node.protocol = r.get("protocol") if isinstance(r.get("protocol"), str) else None
        elif r.event == "election_started":
            clock = as_int(r.get("logical_clock"))
            init = _vote(r.get("vote"))
            node.election = _Election(r, clock or 0, init, init, rclock=clock or 0) if clock is not None else None
            if node.election is not None:
                self.tally.elections += 1
            if clock is not None and node.decided_round is not None and clock <= node.decided_round:
                return Finding.invalid(
                    f"node {r.sid} started an election with logical clock {clock}, but it decided its previous "
                    f"election in round {node.decided_round}: lookForLeader must increment the clock, or the "
                    "new election's rounds cannot be told from the old one's", (r.seq,), r.seq)
        elif r.event == "election_finished":
            node.decided_round = as_int(r.get("round"))
            node.election = None
            if e is not None and not self.superset and r.get("path") == "quorum":
                return self.finalized(node, e, r)
        elif e is None:
            return None
        elif r.event == "quorum_reached":
            e.quorum_at = r
        elif r.event == "finalize_abandoned":
            e.quorum_at = None
        elif r.event == "notification_ignored" and r.get("reason") == "consumed during finalize wait":
            return None if self.superset else self.consumed(e, r)
        elif r.event == "notifications_suppressed":
            # echoes with non-voters have their own budget and are not replayed
            e.suppressed = e.suppressed or any(as_int(r.get(k)) for k in ("sent", "received", "other"))
        elif r.event == "notification_received":
            e.last_received = r
            if not self.superset:
                e.pending = self.received(node, e, r)
        elif r.event == "notification_sent" and r.get("state") == "LOOKING" and as_int(r.get("to")) in self.ctx.voters:
            if self.superset:
                return self.sent_superset(r.sid or 0, e, r, node.received)
            return self.sent(r.sid or 0, e, r)
        return None

    def sent(self, sid: int, e: _Election, r: NodeEvent) -> Finding | None:
        rnd, vote = as_int(r.get("round")), _vote(r.data)
        if rnd is None or vote is None or e.init is None or e.prop is None:
            return None
        n = e.last_received
        nvote = _vote(n.data) if n is not None else None
        nround = as_int(n.get("round")) if n is not None else None
        nfrom = as_int(n.get("from")) if n is not None else None
        looking = n is not None and n.get("state") == "LOOKING"
        where = (e.start.seq,) + ((n.seq,) if n is not None else ()) + (r.seq,)
        if rnd < e.clock:
            return self.broken(e, r, f"node {sid} sent a LOOKING notification in round {rnd}, below the round "
                                     f"{e.clock} it had already reached in that election", where)
        if rnd > e.clock:
            if not (looking and nround == rnd and nvote is not None):
                e.clock, e.prop = rnd, vote  # the cause is not in the journal; do not guess
                return None
            self.tally.jumps += 1
            if nfrom not in self.ctx.voters:
                return self.broken(e, r, f"node {sid} moved to round {rnd} on a notification from node {nfrom}, "
                                         "which is not a voter", where)
            expected = nvote if self.beats(nvote, e.init) else e.init
            if vote != expected:
                return self.broken(
                    e, r, f"node {sid} moved to round {rnd} on node {nfrom}'s vote {_fmt(nvote)} and proposed "
                          f"{_fmt(vote)}; with its own vote {_fmt(e.init)} the better of the two is {_fmt(expected)}",
                    where)
            e.clock, e.prop = rnd, vote
            return None
        if vote == e.prop:
            return None
        self.tally.changes += 1
        old = e.prop
        if not (looking and nvote == vote):
            return self.broken(e, r, f"node {sid} changed its proposal in round {rnd} from {_fmt(old)} to "
                                     f"{_fmt(vote)} without a notification proposing it", where)
        if nround != rnd:
            return self.broken(e, r, f"node {sid} adopted {_fmt(vote)} from node {nfrom}'s notification of round "
                                     f"{nround} while in round {rnd}: notifications of older rounds must be "
                                     "ignored", where)
        if nfrom not in self.ctx.voters:
            return self.broken(e, r, f"node {sid} adopted {_fmt(vote)} from node {nfrom}, which is not a voter",
                               where)
        if not self.beats(vote, old):
            return self.broken(e, r, f"node {sid} replaced its proposal {_fmt(old)} with {_fmt(vote)} in round "
                                     f"{rnd}, which does not beat it in the total order (peer epoch, then zxid, "
                                     "then sid; never a zero-weight server)", where)
        e.prop = vote
        return None

    def sent_superset(self, sid: int, e: _Election, r: NodeEvent,
                      received: dict[int, list[tuple[int, VoteT]]]) -> Finding | None:
        """:meth:`sent` when the log shows arrivals, not consumption: any LOOKING
        vote of that round the server received may be the one it acted on."""
        rnd, vote = as_int(r.get("round")), _vote(r.data)
        if rnd is None or vote is None or e.init is None or e.prop is None:
            return None
        if rnd < e.clock:
            return self.broken(e, r, f"node {sid} sent a LOOKING notification in round {rnd}, below the round "
                                     f"{e.clock} it had already reached in that election", (e.start.seq, r.seq))
        of_round = received.get(rnd, [])
        if rnd > e.clock:
            e.clock, old_prop, e.prop = rnd, e.prop, vote
            if not of_round:
                return None  # the cause is not in the log; do not guess
            self.tally.jumps += 1
            if any(vote == (v if self.beats(v, e.init) else e.init) for _, v in of_round):
                return None
            return self.broken(
                e, r, f"node {sid} moved to round {rnd} and proposed {_fmt(vote)}, but for none of the "
                      f"{len(of_round)} LOOKING vote(s) of that round it had received is that the better of the vote "
                      f"and its own {_fmt(e.init)} (before: {_fmt(old_prop)})",
                (e.start.seq, of_round[-1][0], r.seq))
        if vote == e.prop:
            return None
        self.tally.changes += 1
        old, e.prop = e.prop, vote
        if not self.beats(vote, old):
            return self.broken(e, r, f"node {sid} replaced its proposal {_fmt(old)} with {_fmt(vote)} in round "
                                     f"{rnd}, which does not beat it in the total order (peer epoch, then zxid, "
                                     "then sid; never a zero-weight server)", (e.start.seq, r.seq))
        if not any(v == vote for _, v in of_round):
            return self.broken(e, r, f"node {sid} changed its proposal in round {rnd} from {_fmt(old)} to "
                                     f"{_fmt(vote)}, which none of the {len(of_round)} LOOKING vote(s) of that round "
                                     "it had received proposes", (e.start.seq, r.seq))
        return None

    def received(self, node: _Node, e: _Election, r: NodeEvent) -> _Pending | None:
        """What the loop does with a notification it does not ignore: the
        recvset entry, and whether the fixed same-round rule decides on it."""
        frm, rnd, v = as_int(r.get("from")), as_int(r.get("round")), _vote(r.data)
        try:
            state = ServerState[str(r.get("state"))]
        except KeyError:
            return None
        if frm is None or rnd is None or v is None:
            return None
        if state == ServerState.LOOKING:
            return _Pending(r, Vote(v[0], v[1], rnd, v[2]), False)
        if state not in (ServerState.FOLLOWING, ServerState.LEADING) or rnd != e.rclock:
            return None   # outofelection only: not replayed
        vote = Vote(v[0], v[1], rnd, v[2], state)
        decisive = False
        if node.protocol == "3.8" and frm in self.ctx.voters and v[0] in self.ctx.voters:
            target = Vote(v[0], v[1], rnd, v[2], state, as_int(r.get("version")) or 0)
            votes = {**e.recvset, frm: vote}
            backers = {s for s, w in votes.items() if target.matches(w)}
            leader = votes.get(v[0])
            trusted = (v[0] == r.sid and e.rclock == rnd) or (
                v[0] != r.sid and leader is not None and leader.state == ServerState.LEADING)
            decisive = trusted and self.ctx.voters.is_quorum(backers)
        return _Pending(r, vote, decisive)

    def settle(self, e: _Election, r: NodeEvent) -> Finding | None:
        """The event after a received notification tells what the loop did with it."""
        p = e.pending
        assert p is not None
        frm = as_int(p.n.get("from"))
        if r.event == "notification_ignored" and as_int(r.get("from")) == frm:
            e.pending = None
            return None
        if p.decisive and r.event == "state_changed" and r.get("from") == "LOOKING":
            p.deciding = True
            return None
        if p.decisive and r.event not in _LOOP_EVENTS:
            return None   # not the loop's answer (finalize_abandoned comes before the decision)
        e.pending = None
        if p.vote is not None and frm is not None:
            if p.vote.state == ServerState.LOOKING and p.vote.round > e.rclock:
                e.rclock = p.vote.round
                e.recvset.clear()
            if p.vote.round == e.rclock:
                e.recvset[frm] = p.vote
        if not p.decisive or r.event in ("node_stopping", "node_started", "core_failed"):
            return None
        if r.event == "election_finished" and as_int(r.get("leader")) == p.vote.leader:  # type: ignore[union-attr]
            return None
        backers = sorted(s for s, w in e.recvset.items() if p.vote is not None and w.leader == p.vote.leader)
        return self.broken(
            e, r, f"node {r.sid} in round {e.rclock} received node {frm}'s {p.n.get('state')} notification for "
                  f"leader {p.n.get('leader')} with a quorum for that vote in its round's votes (nodes "
                  f"{', '.join(map(str, backers))}) and the leader's own LEADING vote, and did not follow it "
                  f"(its next event: {r.event}); lookForLeader's same-round branch decides at once "
                  "(checkLeader on recvset, ZOOKEEPER-3537)", (e.start.seq, p.n.seq, r.seq))

    def finalized(self, node: _Node, e: _Election, r: NodeEvent) -> Finding | None:
        """A quorum-path decision waited finalizeWait after its quorum_reached."""
        q, wait = e.quorum_at, node.finalize_wait
        if q is None or wait is None or q.node_ts is None or r.node_ts is None:
            return None  # no quorum_reached in the log (capped, or an older node): not judged
        waited = (r.node_ts - q.node_ts) * 1000.0
        if waited >= wait - 1.0:  # node_ts has µs resolution
            return None
        return self.broken(e, r, f"node {r.sid} decided {r.get('leader')} by the quorum path {waited:.0f} ms after "
                                 f"its quorum_reached (seq {q.seq}); lookForLeader decides only after a poll of "
                                 f"finalizeWait = {wait:.0f} ms comes back empty", (q.seq, r.seq))

    def consumed(self, e: _Election, r: NodeEvent) -> Finding | None:
        """A notification the finalize wait consumed did not beat the proposal."""
        n = e.last_received
        if n is None or as_int(n.get("from")) != as_int(r.get("from")) or e.prop is None:
            return None
        nvote = _vote(n.data)
        if nvote is None or not self.beats(nvote, e.prop):
            return None
        return self.broken(e, r, f"node {r.sid} consumed node {n.get('from')}'s vote {_fmt(nvote)} during its "
                                 f"finalize wait although it beats its proposal {_fmt(e.prop)}: lookForLeader puts "
                                 "a better vote back and goes on electing", (n.seq, r.seq))

    def broken(self, e: _Election, r: NodeEvent, message: str, where: tuple[int, ...]) -> Finding | None:
        if self.superset and r.sid not in self.complete:
            self.tally.unsure.append(f"node {r.sid} at seq {r.seq} (its log shows no notification to itself)")
            return None
        if e.suppressed or e.start.seq in self.capped:
            self.tally.unsure.append(f"node {r.sid} at seq {r.seq}")
            e.prop = _vote(r.data)
            e.clock = max(e.clock, as_int(r.get("round")) or e.clock)
            return None
        return Finding.invalid(message, where, r.seq)


@invariant("vote_rules")
def vote_rules(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """Each LOOKING node bumps its logical clock per election and changes its
    proposal only to a better vote of its own round, as lookForLeader does."""
    return _judge(_Rules(ctx))


@target_invariant("zookeeper", "vote_rules")
def zk_vote_rules(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """Each LOOKING server moves its proposal only to a better vote of its own
    round that it received, and a new round only to the better of such a vote
    and its own, as lookForLeader does (judged on what the log shows arriving)."""
    return _judge(_Rules(ctx, superset=True))


def _judge(rules: _Rules) -> Finding:
    found = rules.run()
    if found is not None:
        return found
    t = rules.tally
    if t.elections == 0:
        return Finding.unknown("no election_started events in the journal: nothing to replay")
    summary = f"{t.elections} election(s) replayed: {t.changes} proposal change(s), {t.jumps} round jump(s)"
    if t.unsure:
        return Finding.unknown(f"unknown (capped): a rule looked broken where the notification events are "
                               f"incomplete ({'; '.join(t.unsure[:3])}); {summary}")
    return Finding.valid(summary)
