"""Safety and liveness properties of leader election, checked on a journal.

Theory of operation. Every check is a pure function of a typed
:class:`~chaos.records.Journal` (DESIGN.md §2) and a spec from the plan;
nothing here reads a file or a clock, so the same checks judge a finished run,
a partial journal while the run is going, and a journal rebuilt after a crash.

Three verdicts (:class:`chaos.outcome.Verdict`):
  valid    the property held on everything the journal shows;
  invalid  the journal shows a violation; ``evidence`` holds the seqs of the
           records that prove it and ``first_violation`` the seq where the run
           first went wrong (the report links there);
  unknown  the journal cannot tell: no run data, the ensemble never formed
           before the first fault (a setup failure is not an election bug),
           or the records a check needs were capped or never written.
A false alarm costs as much as a miss: where the journal leaves room for a
legal history, a check says ``unknown`` or ``valid``, never ``invalid``.

What every check needs is built once per journal in a :class:`Context`
(``core``): the records in time order, the voters with their quorum rule, and
the replay of node state. The replay folds ``status`` (the orchestrator's poll
of ``fles``), ``process`` and ``node_event`` (the node's own events.jsonl)
records into one :class:`NodeView` per node, and keeps the cluster's state
after each record.

Leadership only counts once an epoch is *established*: the node said
``epoch_established``, or a ``status`` poll showed it ``synced`` in its role.
ZAB allows two nodes to believe they lead for a while, and a node that has just
gone LEADING still shows the previous epoch until it establishes its own; what
ZAB forbids is two leaders of one established epoch.

The checks, one module per concern:
  election     single_leader, convergence, out_of_election_join,
               leader_validity, no_committed_txn_lost
  logs         log_agreement: the txn logs share one history
  eligibility  leader_eligibility: no weight-0 or observer leader
  epochs       epoch_promises: acceptedEpoch and currentEpoch never go down
  cost         election_cost: rounds, notifications, duration per election
  votes        vote_backing: every decision backed by the votes it received
  rules        vote_rules: clock and proposal move only as lookForLeader moves them
  lease        leader_lease: a leader cut off from its quorum steps down in time
  links        interposition: every dialled connection goes through its link's proxy

Adding an invariant: write ``check(ctx, spec) -> Finding`` and decorate it with
``@invariant("name")`` in a module imported here; :func:`check_all` then runs
it, and the setup-failure preamble (``unknown`` until the ensemble formed) is
applied for it. Its parameters go in ``chaos.plan.schema._INVARIANT_PARAMS``
and ``chaos.plan.parse`` (``parse_invariants``).
"""

from __future__ import annotations

from .core import (DEFAULT_CONVERGENCE_S, INVALID, INVARIANTS, UNKNOWN, VALID, Check, Context, Finding, Invariant,
                   InvariantResult, Judgement, NodeView, Verdict, Voters, check_all, invariant, judge_run, overall,
                   setup_failure)
from .election import convergence, leader_validity, no_committed_txn_lost, out_of_election_join, single_leader
from .logs import log_agreement
from .eligibility import leader_eligibility
from .epochs import epoch_promises
from .cost import election_cost
from .votes import vote_backing
from .rules import vote_rules, zk_vote_rules
from .lease import leader_lease
from .links import interposition
from .writes import zk_log_agreement, zk_no_committed_txn_lost
from .zk_votes import zk_leader_validity, zk_out_of_election_join, zk_vote_backing

__all__ = [
    "InvariantResult", "Verdict", "VALID", "INVALID", "UNKNOWN", "DEFAULT_CONVERGENCE_S", "NodeView",
    "Voters", "Context", "Finding", "Check", "Invariant", "INVARIANTS", "invariant",
    "single_leader", "convergence", "out_of_election_join", "leader_validity", "no_committed_txn_lost",
    "log_agreement", "leader_eligibility", "epoch_promises", "election_cost", "vote_backing", "vote_rules", "leader_lease",
    "interposition", "check_all", "overall", "setup_failure", "Judgement", "judge_run", "zk_no_committed_txn_lost", "zk_log_agreement",
    "zk_vote_backing", "zk_leader_validity", "zk_out_of_election_join", "zk_vote_rules",
]
