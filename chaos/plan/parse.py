"""Plan text to a `Plan`, or every reason it cannot run.

Three passes over one composed document, each adding `PlanIssue`s rather than
stopping: YAML (syntax, duplicate keys), JSON Schema (shape, mapped back to
line:col), then meaning (selectors, `as:` names in order, sids in range,
weights against groups, toxic attributes per type, timeouts against the time
limit). A semantic issue at or below a path the schema already rejected is
dropped: one mistake, one message. The model is only returned when there are
no issues at all.

This module does what every step shares (one kind key, `label:`, `as:`, names
in plan order); what a kind's value means is its class's `parse` in
`chaos.plan.model`, handed a `StepContext`.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from chaos.invariants import DEFAULT_CONVERGENCE_S

from .durations import DurationError, parse_duration, parse_duration_ms
from .loader import Document, PathT, PlanError, PlanIssue, format_path, load_yaml
from .model import (
    DEFAULT_WAIT_TIMEOUT_S, INVARIANT_NAMES, STEP_KINDS, STEP_TYPES, Ensemble, FrozenDict,
    InvariantSpec, Plan, Role, Selector, Step,
)
from .schema import PLAN_SCHEMA

__all__ = ["load_plan", "parse_plan", "check_plan", "StepContext", "Scope",
           "DEFAULT_TIME_LIMIT_S", "DEFAULT_WAIT_TIMEOUT_S", "DEFAULT_CONVERGENCE_S"]

DEFAULT_TIME_LIMIT_S = 120.0

_VALIDATOR = Draft202012Validator(PLAN_SCHEMA)
_ROLE_NAMES = tuple(r.value for r in Role)
_MISSING = "missing required key"
_JSON_TYPES = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "a whole number", "number": "a number", "boolean": "true or false",
               "null": "nothing"}


# --------------------------------------------------------------------------- helpers

def _suggest(word: Any, choices: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"'{value}'"
    return repr(value)


# --------------------------------------------------------------------------- schema pass

def _schema_issues(doc: Document) -> list[PlanIssue]:
    out: list[PlanIssue] = []
    for error in _VALIDATOR.iter_errors(doc.data):
        out.extend(_explain(doc, error))
    return out


def _explain(doc: Document, e: ValidationError) -> list[PlanIssue]:
    path: PathT = tuple(e.absolute_path)
    schema = e.schema if isinstance(e.schema, dict) else {}
    v, inst = e.validator, e.instance
    if v in ("anyOf", "oneOf"):
        if schema is PLAN_SCHEMA["$defs"]["step"]:
            return []  # a step without a known kind key: the semantic pass says which
        # Keep the branches whose shape fits (no type/enum failure at this very value).
        branches: dict[Any, list[ValidationError]] = {}
        for sub in e.context or ():
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        fitting = [errs for errs in branches.values()
                   if not any(not s.relative_path and s.validator in ("type", "enum", "const")
                              for s in errs)]
        if len(fitting) == 1 and any(s.relative_path for s in fitting[0]):
            return [i for s in fitting[0] for i in _explain(doc, s)]
        if "x-expected" in schema:
            return [doc.issue(path, f"expected {schema['x-expected']}, got {_kind_of(inst)}")]
        return [doc.issue(path, f"unexpected value {_kind_of(inst)}")]
    if v == "additionalProperties" and isinstance(inst, dict):
        known = list(schema.get("properties", {}))
        issues = []
        for key in inst:
            if key in known:
                continue
            if key in STEP_KINDS and any(k in STEP_KINDS for k in known):
                others = [k for k in inst if k in STEP_KINDS]
                issues.append(doc.issue(path + (key,), "a step has exactly one kind, found "
                                        + " and ".join(others)))
            else:
                issues.append(doc.issue(path + (key,), f"unknown key '{key}'" + _suggest(key, known)))
        return issues
    if v == "required" and isinstance(inst, dict):
        return [doc.issue(path, f"{_MISSING} '{k}'")
                for k in e.validator_value if k not in inst]
    if v == "propertyNames":
        return [doc.issue(path + (str(inst),), f"expected a sid as key, got '{inst}'")]
    if "x-expected" in schema and v not in ("required", "additionalProperties"):
        return [doc.issue(path, f"expected {schema['x-expected']}, got {_kind_of(inst)}")]
    if v == "type":
        want = e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]
        return [doc.issue(path, "expected " + " or ".join(_JSON_TYPES.get(w, w) for w in want)
                          + f", got {_kind_of(inst)}")]
    if v == "enum":
        choices = [str(c) for c in e.validator_value]
        uniq = list(dict.fromkeys(choices))
        return [doc.issue(path, f"expected one of {', '.join(uniq)}, got {_kind_of(inst)}"
                          + _suggest(inst, uniq))]
    if v == "minimum":
        return [doc.issue(path, f"expected at least {e.validator_value}, got {inst!r}")]
    if v == "maximum":
        return [doc.issue(path, f"expected at most {e.validator_value}, got {inst!r}")]
    if v == "minItems":
        return [doc.issue(path, f"expected at least {e.validator_value} item(s), got none"
                          if not inst else f"expected at least {e.validator_value} items")]
    if v == "minLength":
        return [doc.issue(path, "must not be empty")]
    return [doc.issue(path, e.message)]


# --------------------------------------------------------------------------- semantic pass

@dataclass(slots=True)
class Scope:
    """What earlier steps have established, in plan order."""

    names: set[str] = field(default_factory=set)        # node names bound by `as:`
    toxics: set[str] = field(default_factory=set)       # toxic names possibly in place
    partitions: set[str] = field(default_factory=set)   # partition names possibly in place
    has_target: bool = False                            # some earlier step had a target
    maybe_names: dict[str, str] = field(default_factory=dict)  # bound in some choice branches
    snapshots: set[str] = field(default_factory=set)    # dataDir copies possibly taken

    def copy(self) -> "Scope":
        return Scope(set(self.names), set(self.toxics), set(self.partitions), self.has_target,
                     dict(self.maybe_names), set(self.snapshots))

    def bind(self, name: str) -> None:
        self.names.add(name)
        self.maybe_names.pop(name, None)

    def join(self, branches: Sequence["Scope"], where: str) -> None:
        """After alternatives (`where` is the choice's path): a name is bound
        only if every branch binds it, a toxic, partition or snapshot is possibly
        in place if any branch puts it there, a previous target exists only if every
        branch has one."""
        if not branches:
            return
        every = set.intersection(*(s.names for s in branches))
        for s in branches:
            self.maybe_names.update(s.maybe_names)
            for n in s.names - every:
                self.maybe_names[n] = where
        for n in every:
            self.maybe_names.pop(n, None)
        self.names = every
        self.toxics = set.union(*(s.toxics for s in branches))
        self.partitions = set.union(*(s.partitions for s in branches))
        self.snapshots = set.union(*(s.snapshots for s in branches))
        self.has_target = all(s.has_target for s in branches)


class StepContext:
    """What a step class's `parse(kind, value, ctx)` works with: where the step
    is, what it says besides its kind (`label`, `bind_as`, already checked),
    what earlier steps established (`scope`, which it updates), and the
    parser's checks, each reporting at a path and returning a usable default.

    `path` is the path of the kind's value (`steps[3].kill`), where most issues
    go; `step_path` is the step's own, as text, for the step's `path` field.
    """

    __slots__ = ("_sem", "scope", "path", "step_path", "label", "bind_as")

    def __init__(self, sem: "_Semantic", scope: Scope, path: PathT, step_path: str,
                 label: str, bind_as: str | None) -> None:
        self._sem = sem
        self.scope = scope
        self.path = path
        self.step_path = step_path
        self.label = label
        self.bind_as = bind_as

    @property
    def ensemble(self) -> Ensemble:
        return self._sem.ensemble

    @property
    def time_limit_s(self) -> float:
        return self._sem.time_limit_s

    def err(self, path: Sequence[str | int], message: str) -> None:
        self._sem.err(path, message)

    def duration_s(self, value: Any, path: PathT, default: float) -> float:
        return self._sem.duration_s(value, path, default)

    def duration_ms(self, value: Any, path: PathT, default: int) -> int:
        return self._sem.duration_ms(value, path, default)

    def int_(self, value: Any, path: PathT, default: int, minimum: int = 0) -> int:
        return self._sem.int_(value, path, default, minimum)

    def within_time_limit(self, seconds: float, path: PathT, what: str) -> None:
        self._sem.within_time_limit(seconds, path, what)

    def selector(self, value: Any, path: PathT) -> Selector | None:
        """A node selector valid here: a role the ensemble has, a sid in range,
        or a name bound earlier in this scope."""
        return self._sem.selector(value, path, self.scope)

    def parse_steps(self, raw: Any, path: PathT, scope: Scope | None = None) -> tuple[Step, ...]:
        """Nested steps, in this step's scope unless given another (a branch's copy)."""
        return self._sem.parse_steps(raw, path, self.scope if scope is None else scope)

    def bound_later(self, namespace: str, name: str) -> str | None:
        """The path of a later step whose `as:` binds `name` in `namespace`."""
        return self._sem.later[namespace].get(name)

    def next_number(self, key: str) -> int:
        """1, 2, ... per key across the plan, for names made up for unnamed things."""
        n = self._sem.counters.get(key, 0) + 1
        self._sem.counters[key] = n
        return n

    @staticmethod
    def suggest(word: Any, choices: Iterable[str]) -> str:
        return _suggest(word, choices)

    @staticmethod
    def kind_of(value: Any) -> str:
        return _kind_of(value)


class _Semantic:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.issues: list[PlanIssue] = []
        self.time_limit_s = DEFAULT_TIME_LIMIT_S
        self.ensemble = Ensemble()
        # namespace ("nodes", "partitions") -> name -> path of the step binding it
        self.later: dict[str, dict[str, str]] = {"nodes": {}, "partitions": {}}
        self.counters: dict[str, int] = {}

    def err(self, path: Sequence[str | int], message: str) -> None:
        self.issues.append(self.doc.issue(path, message))

    # ---- scalars

    def duration_s(self, value: Any, path: PathT, default: float) -> float:
        if value is None:
            return default
        try:
            return parse_duration(value)
        except DurationError as exc:
            self.err(path, str(exc))
            return default

    def duration_ms(self, value: Any, path: PathT, default: int) -> int:
        if value is None:
            return default
        try:
            return parse_duration_ms(value)
        except DurationError as exc:
            self.err(path, str(exc))
            return default

    def int_(self, value: Any, path: PathT, default: int, minimum: int = 0) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.err(path, f"expected a whole number, got {_kind_of(value)}")
            return default
        if value < minimum:
            self.err(path, f"expected at least {minimum}, got {value}")
            return default
        return value

    def within_time_limit(self, seconds: float, path: PathT, what: str) -> None:
        if seconds > self.time_limit_s:
            self.err(path, f"{what} {seconds:g}s exceeds time_limit {self.time_limit_s:g}s")

    # ---- plan

    def plan(self, file: str) -> Plan:
        d = self.doc.data if isinstance(self.doc.data, dict) else {}
        if not isinstance(self.doc.data, dict):
            self.err((), f"expected a mapping (name, description, ensemble, steps), "
                         f"got {_kind_of(self.doc.data)}")
        name = d.get("name") if isinstance(d.get("name"), str) else ""
        description = d.get("description") if isinstance(d.get("description"), str) else ""
        seed = d.get("seed") if isinstance(d.get("seed"), int) and not isinstance(
            d.get("seed"), bool) else None
        self.time_limit_s = self.duration_s(d.get("time_limit"), ("time_limit",),
                                            DEFAULT_TIME_LIMIT_S)
        if self.time_limit_s <= 0:
            self.err(("time_limit",), "time_limit must be positive")
            self.time_limit_s = DEFAULT_TIME_LIMIT_S
        self.ensemble = self.parse_ensemble(d.get("ensemble"), ("ensemble",))
        invariants = self.parse_invariants(d.get("invariants"), ("invariants",))
        self.prescan(d.get("steps"), ("steps",))
        steps = self.parse_steps(d.get("steps"), ("steps",), Scope())
        targets = self.parse_targets(d.get("targets"), ("targets",))
        reason = d.get("targets_reason") if isinstance(d.get("targets_reason"), str) else ""
        if reason and not targets:
            self.err(("targets_reason",), "targets_reason without targets: say which targets the plan is for")
        return Plan(name=name, description=description, seed=seed,
                    time_limit_s=self.time_limit_s, ensemble=self.ensemble,
                    invariants=invariants, steps=steps, source_path=file,
                    targets=targets, targets_reason=reason)

    def _target_name(self, value: Any, path: PathT) -> str | None:
        from chaos.targets import TARGETS   # here: chaos.targets imports the plan model
        if not isinstance(value, str):
            return None   # the schema pass says why
        if value not in TARGETS:
            self.err(path, f"unknown target {value!r}; known: {', '.join(sorted(TARGETS))}")
            return None
        return value

    def parse_targets(self, value: Any, path: PathT) -> tuple[str, ...] | None:
        if not isinstance(value, list):
            return None
        names = [self._target_name(v, path + (i,)) for i, v in enumerate(value)]
        return tuple(dict.fromkeys(n for n in names if n)) or None

    # ---- ensemble

    def parse_ensemble(self, e: Any, path: PathT) -> Ensemble:
        if not isinstance(e, dict):
            return Ensemble()
        nodes = self.int_(e.get("nodes"), path + ("nodes",), 3, 1)
        observers = self.int_(e.get("observers"), path + ("observers",), 0, 0)
        participants = range(1, nodes + 1)
        all_sids = range(1, nodes + observers + 1)

        def sid_problem(sid: int) -> str | None:
            if sid in participants:
                return None
            if sid in all_sids:
                return f"sid {sid} is an observer; weights and groups apply to participants 1..{nodes}"
            return f"sid {sid} out of range 1..{nodes}"

        weights: dict[int, int] = {}
        raw_w = e.get("weights")
        if isinstance(raw_w, dict):
            for key, w in raw_w.items():
                kp = path + ("weights", key)
                if not str(key).isdigit():
                    self.err(kp, f"expected a sid as key, got '{key}'")
                    continue
                problem = sid_problem(int(key))
                if problem:
                    self.err(kp, problem)
                    continue
                if isinstance(w, int) and not isinstance(w, bool) and w >= 0:
                    weights[int(key)] = w
                else:
                    self.err(kp, f"expected a weight (whole number >= 0), got {_kind_of(w)}")
        groups: tuple[tuple[int, ...], ...] | None = None
        raw_g = e.get("groups")
        if isinstance(raw_g, list):
            seen: dict[int, int] = {}
            built = []
            for gi, g in enumerate(raw_g):
                members = []
                for mi, sid in enumerate(g if isinstance(g, list) else []):
                    mp = path + ("groups", gi, mi)
                    if isinstance(sid, bool) or not isinstance(sid, int):
                        self.err(mp, f"expected a sid, got {_kind_of(sid)}")
                        continue
                    problem = sid_problem(sid)
                    if problem:
                        self.err(mp, problem)
                    elif sid in seen:
                        self.err(mp, f"sid {sid} is in groups {seen[sid] + 1} and {gi + 1}; "
                                     "every participant must be in exactly one group")
                    else:
                        seen[sid] = gi
                        members.append(sid)
                built.append(tuple(members))
            missing = [s for s in participants if s not in seen]
            if missing:
                self.err(path + ("groups",),
                         f"sid{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} "
                         "in no group; every participant must be in exactly one group")
            groups = tuple(built)
        full_weights = {s: weights.get(s, 1) for s in participants}
        if (weights or groups) and not any(full_weights.values()):
            self.err(path + ("weights",), "every participant has weight 0: no quorum can form")
        elif groups and not any(sum(full_weights.get(s, 0) for s in g) for g in groups):
            self.err(path + ("groups",), "every group has weight 0: no quorum can form")
        tick = self.duration_ms(e.get("tick_time"), path + ("tick_time",), 200)
        if tick <= 0:
            self.err(path + ("tick_time",), "tick_time must be at least 1ms")
            tick = 200
        protocol = e.get("protocol", "3.8")
        protocol = protocol if isinstance(protocol, str) else str(protocol)
        start: tuple[int, ...] | None = None
        if isinstance(e.get("start"), list):
            listed: set[int] = set()
            for i, sid in enumerate(e["start"]):
                if isinstance(sid, bool) or not isinstance(sid, int):
                    continue  # the schema pass says why
                if not 1 <= sid <= nodes + observers:
                    self.err(path + ("start", i), f"sid {sid} out of range 1..{nodes + observers}")
                elif sid in listed:
                    self.err(path + ("start", i), f"sid {sid} is listed twice")
                listed.add(sid)
            start = tuple(sorted(s for s in listed if 1 <= s <= nodes + observers))
        no_txns: list[int] = []
        if isinstance(e.get("no_txns"), list):
            for i, sid in enumerate(e["no_txns"]):
                if isinstance(sid, bool) or not isinstance(sid, int):
                    continue  # the schema pass says why
                if not 1 <= sid <= nodes:
                    self.err(path + ("no_txns", i), f"sid {sid} is not a participant (1..{nodes}): "
                                                   "only a participant can lead and propose")
                elif sid in no_txns:
                    self.err(path + ("no_txns", i), f"sid {sid} is listed twice")
                else:
                    no_txns.append(sid)
        return Ensemble(
            nodes=nodes, observers=observers, no_txns=tuple(sorted(no_txns)),
            weights=FrozenDict(full_weights) if (weights or groups) else FrozenDict(),
            groups=groups,
            tick_time_ms=tick,
            init_limit=self.int_(e.get("init_limit"), path + ("init_limit",), 10, 1),
            sync_limit=self.int_(e.get("sync_limit"), path + ("sync_limit",), 5, 1),
            txn_interval_ms=self.duration_ms(e.get("txn_interval"), path + ("txn_interval",), 100),
            protocol=protocol, start=start,
            target=self._target_name(e.get("target"), path + ("target",)) if "target" in e else None)

    # ---- invariants

    def parse_invariants(self, inv: Any, path: PathT) -> tuple[InvariantSpec, ...]:
        """Every invariant runs unless the plan turns it off with `name: false`:
        a plan that only tunes `convergence` must not silently drop the safety checks.
        `election_cost: baseline` becomes the bounds recorded for this plan in
        the baselines.json beside it (chaos.baselines), with `source` naming it."""
        defaults = {"convergence": {"within": DEFAULT_CONVERGENCE_S}}
        specs: dict[str, dict[str, Any] | None] = {n: dict(defaults.get(n, {})) for n in INVARIANT_NAMES}
        if isinstance(inv, dict):
            for name, params in inv.items():
                p = path + (name,)
                if name not in INVARIANT_NAMES:
                    self.err(p, f"unknown invariant '{name}'" + _suggest(name, INVARIANT_NAMES))
                    continue
                if params is False:
                    specs[name] = None
                    continue
                if name == "election_cost" and params == "baseline":
                    specs[name] = self.baseline_bounds(p)
                    continue
                if isinstance(params, dict):
                    for key, value in params.items():
                        kp = p + (key,)
                        if key == "within":
                            specs[name]["within"] = self.duration_s(value, kp, DEFAULT_CONVERGENCE_S)
                        elif key in ("max_rounds", "max_notifications"):
                            specs[name][key] = self.int_(value, kp, 1, 1)
                        elif key == "max_ms":
                            specs[name][key] = float(self.duration_ms(value, kp, 0))
        return tuple(InvariantSpec(n, FrozenDict(v)) for n, v in specs.items() if v is not None)

    def baseline_bounds(self, path: PathT) -> dict[str, Any]:
        from chaos.baselines import BaselineError, recording, resolve
        if recording():
            return {"source": "recording a baseline: no bounds"}
        d = self.doc.data if isinstance(self.doc.data, dict) else {}
        name = d.get("name") if isinstance(d.get("name"), str) else ""
        try:
            return resolve(self.doc.file, name)
        except BaselineError as e:
            self.err(path, str(e))
            return {}

    # ---- steps

    def prescan(self, steps: Any, path: PathT) -> None:
        """Every `as:` in the plan, so a name used too early gets a precise message."""
        for i, step in enumerate(steps if isinstance(steps, list) else []):
            if not isinstance(step, dict):
                continue
            p = path + (i,)
            kinds = [k for k in step if k in STEP_TYPES]
            if isinstance(step.get("as"), str):
                binds = {STEP_TYPES[k].binds for k in kinds}
                namespace = "partitions" if "partitions" in binds else "nodes"
                self.later[namespace].setdefault(step["as"], format_path(p))
            for k in kinds:
                for body, body_path in STEP_TYPES[k].bodies(step[k], p + (k,)):
                    self.prescan(body, body_path)

    def parse_steps(self, steps: Any, path: PathT, scope: Scope) -> tuple[Step, ...]:
        out: list[Step] = []
        for i, raw in enumerate(steps if isinstance(steps, list) else []):
            step = self.parse_step(raw, path + (i,), scope)
            if step is not None:
                out.append(step)
        return tuple(out)

    def parse_step(self, raw: Any, path: PathT, scope: Scope) -> Step | None:
        """What every step shares (one kind key, `label:`, `as:`); the kind's
        class parses its value."""
        if not isinstance(raw, dict):
            self.err(path, f"expected a step (a mapping with one of {', '.join(STEP_KINDS)}), "
                           f"got {_kind_of(raw)}")
            return None
        kinds = [k for k in raw if k in STEP_TYPES]
        if not kinds:
            unknown = [k for k in raw if k not in ("as", "label")]
            if unknown:
                self.err(path + (unknown[0],), f"unknown step '{unknown[0]}'"
                         + (_suggest(unknown[0], STEP_KINDS) or
                            f"; expected one of {', '.join(STEP_KINDS)}"))
            else:
                self.err(path, f"a step needs one of {', '.join(STEP_KINDS)}")
            return None
        if len(kinds) > 1:
            return None  # the schema pass reports it
        kind = kinds[0]
        cls = STEP_TYPES[kind]
        label = raw.get("label") if isinstance(raw.get("label"), str) else ""
        bind_as = raw.get("as") if isinstance(raw.get("as"), str) else None
        if bind_as is not None:
            if not cls.binds:
                return None  # schema: unknown key 'as'
            problem = cls.bind_problem(bind_as)
            if problem:
                self.err(path + ("as",), problem)
                bind_as = None
        ctx = StepContext(self, scope, path + (kind,), format_path(path), label, bind_as)
        step = cls.parse(kind, raw[kind], ctx)
        if step is not None and not step.label:
            step = replace(step, label=step.describe())
        return step

    def selector(self, value: Any, path: PathT, scope: Scope) -> Selector | None:
        ens = self.ensemble
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.err(path, f"expected a node selector, got {_kind_of(value)}")
            return None
        if isinstance(value, int):
            if not 1 <= value <= len(ens.sids):
                self.err(path, f"sid {value} out of range 1..{len(ens.sids)}")
                return None
            return Selector.sid(value)
        if value in _ROLE_NAMES:
            role = Role(value)
            if role in (Role.OBSERVER, Role.OBSERVERS) and ens.observers == 0:
                self.err(path, f"'{value}' but the ensemble has no observers")
                return None
            if role in (Role.FOLLOWER, Role.FOLLOWERS) and ens.nodes < 2:
                self.err(path, f"'{value}' but the ensemble has a single participant")
                return None
            if role is Role.OTHERS and not scope.has_target:
                self.err(path, "'others' means all but the previous step's target, "
                               "and no earlier step has a target")
                return None
            return Selector.role(role)
        if value in scope.names:
            return Selector.name(value)
        later = self.later["nodes"].get(value)
        if value in scope.maybe_names:
            self.err(path, f"unbound name '{value}': only some branches of the choice at "
                           f"{scope.maybe_names[value]} bind it")
        elif later:
            self.err(path, f"unbound name '{value}': it is bound by as: only later, at {later}")
        else:
            self.err(path, f"unknown node selector '{value}': not a role, and no earlier "
                           "as: binds that name" + _suggest(value, [*_ROLE_NAMES, *scope.names]))
        return None


# --------------------------------------------------------------------------- entry points

def _under(path: str, prefix: str) -> bool:
    return (not prefix or path == prefix or path.startswith(prefix + ".")
            or path.startswith(prefix + "["))


def _issues_and_plan(text: str, file: str) -> tuple[list[PlanIssue], Plan | None]:
    doc, issues = load_yaml(text, file)
    if doc is None:
        return issues, None
    schema_issues = _schema_issues(doc)
    sem = _Semantic(doc)
    plan = sem.plan(file)
    # A missing key says nothing about the keys that are there; any other schema
    # issue means the value at its path is already explained.
    covered = [s.path for s in schema_issues if not s.message.startswith(_MISSING)]
    kept = [i for i in sem.issues if not any(_under(i.path, c) for c in covered)]
    seen: set[str] = set()
    all_issues = []
    for i in [*issues, *schema_issues, *kept]:
        if str(i) not in seen:
            seen.add(str(i))
            all_issues.append(i)
    return all_issues, (None if all_issues else plan)


def parse_plan(text: str, file: str = "<plan>") -> Plan:
    """Parse plan text; raises PlanError listing every issue."""
    issues, plan = _issues_and_plan(text, file)
    if issues or plan is None:
        raise PlanError(issues or [PlanIssue(file, 1, 1, "", "empty plan")])
    return plan


def _read(path: str | Path) -> tuple[str | None, list[PlanIssue]]:
    try:
        return Path(path).read_text(encoding="utf-8"), []
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, [PlanIssue(str(path), None, None, "", f"cannot read plan: {reason}")]


def load_plan(path: str | Path) -> Plan:
    """Read and parse a plan file. Raises PlanError with every issue found;
    nothing should start when it does (`chaos validate`/`run` exit 2)."""
    text, issues = _read(path)
    if text is None:
        raise PlanError(issues)
    return parse_plan(text, str(path))


def check_plan(path: str | Path) -> list[PlanIssue]:
    """Every issue in the plan file, empty when it is valid (for `chaos validate`)."""
    text, issues = _read(path)
    if text is None:
        return issues
    return _issues_and_plan(text, str(path))[0]
