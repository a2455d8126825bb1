"""vote_backing: every election decision is backed by the votes the node received.

Theory of operation. FastLeaderElection decides on one of two paths
(``election_finished.path``), and each has a rule in the seed:

* ``quorum``: ``termPredicate`` — the votes in ``recvset`` that equal the
  proposal (leader, zxid, peerEpoch) *in the decider's round* form a quorum of
  the ensemble's own verifier (majority, weights, groups: :class:`Voters`).
* ``out_of_election``: ``ooePredicate`` and ``checkLeader`` — a quorum of
  FOLLOWING/LEADING notifications name the leader (with its epoch, unless
  they are of the decider's round: ``recvset`` keeps those without their
  version, and ``Vote.equals`` then compares the leader alone), and the
  leader itself said LEADING, or, when the decider is the leader, the decider
  is still in the round it decides in (ZK-1514: a restarted node must not
  believe stale followers that it leads).

``recvset`` and ``outofelection`` are cleared when an election starts, so the
votes that can back a decision are the ``notification_received`` events the
decider logged between its ``election_started`` and its ``election_finished``
(its own vote arrives the same way, looped back; a LOOKING notification it
sent with the decided vote in that round counts for it too). A vote counts if
it *ever* matched in the window: FLE keeps the latest vote per sender and
swallows some during the finalize wait, so "ever" is never stricter than the
node and a healthy decision is never flagged. Votes of earlier rounds, of a
previous election, and of a previous process (a restart resets the logical
clock) never count.

The node logs every notification it receives before it handles it, and
counts them in ``election_finished.notifications_received``. When the window
holds fewer events than that, or a ``notifications_capped`` record names the
election (the orchestrator kept only counts past its cap), a decision the
events do not back is ``unknown (capped)``, never ``invalid``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from chaos.records import NodeEvent, NotificationsCapped, Process

from .core import Context, Finding, as_int, invariant

__all__ = ["vote_backing"]


@dataclass(frozen=True, slots=True)
class _Note:
    seq: int
    sender: int
    state: str
    leader: int | None
    zxid: int | None
    round: int | None
    peer_epoch: int | None
    version: int | None


@dataclass(slots=True)
class _Window:
    start: NodeEvent
    got: list[_Note] = field(default_factory=list)
    sent_rounds: list[int] = field(default_factory=list)  # LOOKING sends, in order: the logical clock
    sent_votes: set[tuple[int | None, int | None, int | None, int | None]] = field(default_factory=set)
    sent: int = 0


def _voter_counts(r: NodeEvent) -> tuple[int | None, int | None]:
    """(received, sent) an ``election_finished`` counted, without the echoes
    with non-voters (``nonvoter_echoes``: one received and one sent each)."""
    received, sent = as_int(r.get("notifications_received")), as_int(r.get("notifications_sent"))
    echoes = as_int(r.get("nonvoter_echoes")) or 0
    return (None if received is None else received - echoes), (None if sent is None else sent - echoes)


def _note(r: NodeEvent) -> _Note | None:
    sender = as_int(r.get("from"))
    if sender is None:
        return None
    return _Note(r.seq, sender, str(r.get("state")), as_int(r.get("leader")), as_int(r.get("zxid")),
                 as_int(r.get("round")), as_int(r.get("peer_epoch")), as_int(r.get("version")))


@dataclass(frozen=True, slots=True)
class _Verdict:
    ok: bool
    message: str = ""
    evidence: tuple[int, ...] = ()


def _votes_seen(w: _Window, rnd: int | None) -> str:
    last: dict[int, _Note] = {}
    for n in w.got:
        if n.round == rnd or n.state != "LOOKING":
            last[n.sender] = n
    if not last:
        return "none"
    return ", ".join(f"{s}:{n.state[:1]}→{n.leader}" for s, n in sorted(last.items()))


def _judge(ctx: Context, sid: int, w: _Window, fin: NodeEvent) -> _Verdict:
    leader, zxid = as_int(fin.get("leader")), as_int(fin.get("zxid"))
    rnd, epoch = as_int(fin.get("round")), as_int(fin.get("peer_epoch"))
    path = fin.get("path")
    vote = (leader, zxid, rnd, epoch)
    decided = f"node {sid} decided leader {leader} (zxid {zxid:#x}, peer epoch {epoch}) in round {rnd}" \
        if zxid is not None and zxid >= 0 else f"node {sid} decided leader {leader} in round {rnd}"
    evidence = (w.start.seq, fin.seq)
    exact = {n.sender for n in w.got if (n.leader, n.zxid, n.round, n.peer_epoch) == vote}
    if vote in w.sent_votes:
        exact.add(sid)  # its own vote: looped back to itself
    if path == "quorum":
        if ctx.voters.is_quorum(exact):
            return _Verdict(True)
        return _Verdict(False, f"{decided} by quorum, but only {sorted(exact) or 'nobody'} voted for it in "
                               f"that round, not a quorum (last votes seen: {_votes_seen(w, rnd)})",
                        evidence + tuple(n.seq for n in w.got if n.sender in exact)[:8])
    if path != "out_of_election":
        return _Verdict(True)
    # Vote.equals between two FOLLOWING/LEADING votes compares leader and peerEpoch, or the leader
    # alone when one side has no version: recvset keeps same-round ones without their version
    # (ZooKeeper's 5-argument Vote), outofelection keeps them with it.
    mixed = len({(n.version or 0) > 0 for n in w.got}) > 1
    out = {n.sender for n in w.got if n.state in ("FOLLOWING", "LEADING") and n.leader == leader
           and (n.peer_epoch == epoch or n.round == rnd or mixed)}
    backers = out | exact
    if not ctx.voters.is_quorum(backers):
        return _Verdict(False, f"{decided} out of election, but only {sorted(backers) or 'nobody'} said they "
                               f"follow or lead it, not a quorum (last votes seen: {_votes_seen(w, rnd)})",
                        evidence + tuple(n.seq for n in w.got if n.sender in backers)[:8])
    if leader != sid:
        leading = [n for n in w.got if n.sender == leader and n.state == "LEADING"]
        if not leading:
            said = sorted({n.state for n in w.got if n.sender == leader})
            return _Verdict(False, f"{decided} out of election, but node {leader} never said LEADING in that "
                                   f"election (it said: {', '.join(said) or 'nothing'}); checkLeader requires it",
                            evidence)
        return _Verdict(True)
    clock = w.sent_rounds[-1] if w.sent_rounds else as_int(w.start.get("logical_clock"))
    if clock != rnd:
        return _Verdict(False, f"{decided} out of election as its own leader while its logical clock was "
                               f"{clock}: checkLeader trusts itself only in its own round (ZK-1514)", evidence)
    return _Verdict(True)


@invariant("vote_backing")
def vote_backing(ctx: Context, spec: Mapping[str, Any]) -> Finding:
    """Every quorum-path decision is backed by a quorum of votes for it in the
    decider's round (termPredicate); every out-of-election decision by a
    quorum of FOLLOWING/LEADING votes for the leader and the leader's own
    LEADING (ooePredicate, checkLeader)."""
    windows: dict[int, _Window] = {}
    capped = {r.election_seq for r in ctx.records if isinstance(r, NotificationsCapped)}
    counts = {"quorum": 0, "out_of_election": 0}
    unsure: list[str] = []
    for r in ctx.records:
        if isinstance(r, Process) and r.action in ("started", "killed", "stopped", "exited") and r.sid is not None:
            windows.pop(r.sid, None)
            continue
        if not isinstance(r, NodeEvent) or r.sid is None:
            continue
        sid = r.sid
        if r.event in ("node_started", "election_started"):
            windows.pop(sid, None)
            if r.event == "election_started":
                windows[sid] = _Window(r)
            continue
        w = windows.get(sid)
        if w is None:
            continue
        if r.event == "notification_received":
            n = _note(r)
            if n is not None and n.sender in ctx.voters:  # the core answers a non-voter and goes on
                w.got.append(n)
        elif r.event == "notification_sent":
            if as_int(r.get("to")) not in ctx.voters:
                continue  # an echo to a non-voter: its own small budget at the node
            w.sent += 1
            if r.get("state") == "LOOKING":
                rnd = as_int(r.get("round"))
                if rnd is not None:
                    w.sent_rounds.append(rnd)
                w.sent_votes.add((as_int(r.get("leader")), as_int(r.get("zxid")), rnd, as_int(r.get("peer_epoch"))))
        elif r.event == "election_finished":
            windows.pop(sid, None)
            path = r.get("path")
            if path not in counts:
                continue
            verdict = _judge(ctx, sid, w, r)
            if verdict.ok:
                counts[path] += 1
                continue
            received, sent = _voter_counts(r)
            got = len(w.got)
            complete = (w.start.seq not in capped and (received is None or got >= received)
                        and (sent is None or w.sent >= sent))
            if complete:
                return Finding.invalid(verdict.message, verdict.evidence, r.seq)
            unsure.append(f"node {sid} at seq {r.seq} ({got} of {received} received notifications logged)")
    summary = f"{counts['quorum']} quorum-path and {counts['out_of_election']} out-of-election decision(s) backed"
    if unsure:
        return Finding.unknown(f"unknown (capped): {len(unsure)} decision(s) not backed by the notification events "
                               f"the journal holds, which are incomplete: {'; '.join(unsure[:3])}; {summary}")
    return Finding.valid(summary)
