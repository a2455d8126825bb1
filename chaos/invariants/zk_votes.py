"""Vote-level checks on a real ZooKeeper, from what its log shows.

Theory of operation. ZooKeeper 3.8 logs every notification a server takes
from a voter (``Notification: my state:…``, INFO, written before the
notification is queued), and with FastLeaderElection at DEBUG every vote it
broadcasts (``Sending Notification``) and the vote it leaves the election with
(``About to leave FLE instance``). It does not log which path decided an
election, nor which queued notifications the election loop consumed. So each
decision is judged against a superset of what the loop can have held: every
notification the server received from a voter since its process started (the
receive queue outlives one election; and the line's "my state" is read
before WorkerReceiver reads the state again to decide whether to queue it, so
a notification logged while FOLLOWING can still reach the next election's
loop — seen on 3.8.0). A check here says
``invalid`` only when no history inside that superset allows the decision:

* **backing** (``vote_backing``): in the decider's round (that of its last
  broadcast) a quorum of voters named the leader (the quorum path: recvset
  holds one vote per voter of that round, whatever its state), or a quorum of
  voters FOLLOWING/LEADING named it and the leader
  itself said LEADING (the out-of-election path, with checkLeader). Neither
  is a decision no notification supports.
* **validity** (``leader_validity``): on the quorum path the decided vote is
  the decider's last proposal, which never falls below the vote it started
  with (proposals only move to better votes; a new round restarts from the
  better of the two). A decision for its last broadcast proposal that is
  worse, by totalOrderPredicate, than the decider's own starting vote is
  valid only as an out-of-election join, so it needs that path's backing.
* **joins** (``out_of_election_join``): the same rules as for our node, with
  the path of a restarted node's decision read as out of election exactly
  when that path's backing is there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from chaos.records import NodeEvent, NotificationsCapped, Process
from zkrules.vote import total_order_predicate

from .core import VALID, Context, Finding, as_int, target_invariant
from .election import judge_joins

__all__ = ["Decision", "decisions", "backing", "complete_sids", "zk_vote_backing", "zk_leader_validity", "zk_out_of_election_join"]

_ROLES = frozenset({"FOLLOWING", "LEADING"})
_SUPERSET = ("ZooKeeper does not log which path decided; each decision is judged on every voter notification "
             "the server received since it started")


@dataclass(frozen=True, slots=True)
class Decision:
    """One ``election_finished`` and what its server had received before it."""

    finish: NodeEvent
    start: NodeEvent | None          # this election's election_started
    last_sent: NodeEvent | None      # its last LOOKING broadcast (the final proposal)
    received: tuple[NodeEvent, ...]  # voter notifications received since the process started

    @property
    def sid(self) -> int:
        return self.finish.sid or 0

    @property
    def leader(self) -> int | None:
        return as_int(self.finish.get("leader"))


@dataclass(frozen=True, slots=True)
class Backing:
    quorum_round: int | None         # a round in which a quorum of voters named the leader
    ooe: bool                        # a FOLLOWING/LEADING quorum for it, and the leader said LEADING

    @property
    def any(self) -> bool:
        return self.quorum_round is not None or self.ooe


def decisions(ctx: Context) -> list[Decision]:
    """Every decision in the journal, in time order."""
    got: dict[int, list[NodeEvent]] = {}
    start: dict[int, NodeEvent] = {}
    sent: dict[int, NodeEvent] = {}
    out: list[Decision] = []
    for r in ctx.records:
        if isinstance(r, Process) and r.sid is not None and r.action == "started":
            got[r.sid] = []
            start.pop(r.sid, None)
            sent.pop(r.sid, None)
            continue
        if not isinstance(r, NodeEvent) or r.sid is None:
            continue
        sid = r.sid
        if r.event == "notification_received":
            if as_int(r.get("from")) in ctx.voters:   # whatever "my state" the line says (below)
                got.setdefault(sid, []).append(r)
        elif r.event == "election_started":
            start[sid] = r
            sent.pop(sid, None)
        elif r.event == "notification_sent" and r.get("state") == "LOOKING":
            sent[sid] = r
        elif r.event == "election_finished":
            out.append(Decision(r, start.pop(sid, None), sent.pop(sid, None), tuple(got.get(sid, ()))))
    return out


def complete_sids(ctx: Context) -> frozenset[int]:
    """The servers whose log can be what they received: a participant's every
    election sends its vote to itself (the line is in the log when it
    arrives), an observer hears the voters; and the orchestrator capped none
    of their notification events."""
    seen = {r.sid for r in ctx.records if isinstance(r, NodeEvent) and r.event == "notification_received"
            and (as_int(r.get("from")) == r.sid or r.sid not in ctx.voters)}
    return frozenset(seen - {r.sid for r in ctx.records if isinstance(r, NotificationsCapped)})


def backing(ctx: Context, d: Decision) -> Backing:
    leader = d.leader
    by_round: dict[int, set[int]] = {}
    roles: set[int] = set()
    leads = leader == d.sid          # checkLeader: deciding for itself needs no LEADING word
    for n in d.received:
        if as_int(n.get("leader")) != leader:
            continue
        frm, state, rnd = as_int(n.get("from")), n.get("state"), as_int(n.get("round"))
        if frm is None:
            continue
        if rnd is not None and state in ("LOOKING", "FOLLOWING", "LEADING"):
            by_round.setdefault(rnd, set()).add(frm)
        if state in _ROLES:
            roles.add(frm)
            leads = leads or (state == "LEADING" and frm == leader)
    # The quorum path decides in the decider's own round: the round of its last broadcast (every
    # change of logicalclock is broadcast at once); without one in the log, any round may be it.
    own = as_int(d.last_sent.get("round")) if d.last_sent is not None else None
    quorum_round = next((rnd for rnd, sids in sorted(by_round.items())
                         if (own is None or rnd == own) and ctx.voters.is_quorum(sids)), None)
    return Backing(quorum_round, leads and ctx.voters.is_quorum(roles))


def _judged(ctx: Context) -> list[Decision]:
    return [d for d in decisions(ctx) if d.leader is not None and d.leader >= 0]


@target_invariant("zookeeper", "vote_backing")
def zk_vote_backing(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """Every decision is backed by the votes the server received: a quorum of
    one round for the leader, or a FOLLOWING/LEADING quorum and the leader's own
    LEADING."""
    ds = _judged(ctx)
    complete = complete_sids(ctx)
    only_ooe, unsure = 0, []
    for d in ds:
        b = backing(ctx, d)
        if not b.any and d.sid not in complete:
            unsure.append(d)
        elif not b.any:
            seqs = tuple(s for s in ((d.start.seq if d.start else None), d.finish.seq) if s is not None)
            return Finding.invalid(
                f"node {d.sid} decided leader {d.leader} ({d.finish.get('state', '—')}) at seq {d.finish.seq}, but of "
                f"the {len(d.received)} voter notification(s) it received since it started, no round "
                f"has a quorum naming {d.leader} and no quorum FOLLOWING/LEADING it (with its own LEADING) does "
                "either", seqs, d.finish.seq)
        else:
            only_ooe += b.quorum_round is None
    if unsure:
        d = unsure[0]
        return Finding.unknown(f"{len(unsure)} decision(s) without backing in a log that lacks what the server "
                               f"received (e.g. node {d.sid} at seq {d.finish.seq}: no notification to itself, or "
                               "its notification events were capped)")
    if not ds:
        return Finding.valid("no election decided")
    return Finding.valid(f"{len(ds)} decision(s) backed ({only_ooe} only out of election); {_SUPERSET}")


@target_invariant("zookeeper", "leader_validity")
def zk_leader_validity(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """No server decides for its last proposal when that proposal is worse than
    the vote it started with, unless it joined out of election."""
    checked, unsure = 0, []
    complete = complete_sids(ctx)
    for d in _judged(ctx):
        start, last = d.start, d.last_sent
        if start is None or last is None or as_int(last.get("leader")) != d.leader:
            continue    # decided for a vote it never proposed: an out-of-election join
        own = (d.sid, as_int(start.get("last_zxid")), as_int(start.get("current_epoch")))
        final = (d.leader, as_int(last.get("zxid")), as_int(last.get("peer_epoch")))
        if None in own or None in final or as_int(d.finish.get("zxid")) not in (None, final[1]):
            continue
        checked += 1
        weight = 1 if ctx.voters.weights.get(d.sid, 0) else 0
        if not total_order_predicate(*own, *final, new_weight=weight) or backing(ctx, d).ooe:
            continue
        if d.sid not in complete:
            unsure.append(d)
        else:
            return Finding.invalid(
                f"node {d.sid} decided leader {d.leader} (epoch {final[2]}, zxid {final[1]:#x}) at seq "
                f"{d.finish.seq} by its own proposal, though the vote it started with (epoch {own[2]}, zxid "
                f"{own[1]:#x}, sid {d.sid}) is higher by totalOrderPredicate, and it had no out-of-election "
                "backing to join that leader", (start.seq, last.seq, d.finish.seq), d.finish.seq)
    if unsure:
        d = unsure[0]
        return Finding.unknown(f"{len(unsure)} decision(s) below the decider's own starting vote, in a log that "
                               f"lacks what the server received (e.g. node {d.sid} at seq {d.finish.seq}), so a "
                               "join out of election cannot be ruled out")
    return Finding.valid(f"{checked} decision(s) for the decider's own last proposal, none below the vote it "
                         "started with" if checked else "no decision for a proposal the log shows")


@target_invariant("zookeeper", "out_of_election_join")
def zk_out_of_election_join(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """A server restarted into a running ensemble joins its leader out of
    election (that path's backing is in what it received) and does not move
    the ensemble to a new epoch."""
    complete = complete_sids(ctx)
    ds = {d.finish.seq: d for d in _judged(ctx)}
    unsure: list[int] = []

    def path_of(r: NodeEvent) -> str | None:
        d = ds.get(r.seq)
        if d is None:
            return None
        if backing(ctx, d).ooe:
            return "out_of_election"
        if d.sid not in complete:
            unsure.append(r.seq)
            return "out_of_election"   # cannot be ruled out; the verdict says unknown below
        return "quorum"

    found = judge_joins(ctx, path_of)
    if found.verdict == VALID and unsure:
        return Finding.unknown(f"the restarted node's decision at seq {unsure[0]} has no out-of-election backing "
                               "in a log that lacks what the server received")
    return found
