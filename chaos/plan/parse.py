"""Plan text to a `Plan`, or every reason it cannot run.

Three passes over one composed document, each adding `PlanIssue`s rather than
stopping: YAML (syntax, duplicate keys), JSON Schema (shape, mapped back to
line:col), then meaning (selectors, `as:` names in order, sids in range,
weights against groups, toxic attributes per type, timeouts against the time
limit). A semantic issue at or below a path the schema already rejected is
dropped: one mistake, one message. The model is only returned when there are
no issues at all.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from chaos.invariants import DEFAULT_CONVERGENCE_S

from .durations import DurationError, parse_duration, parse_duration_ms
from .loader import Document, PathT, PlanError, PlanIssue, format_path, load_yaml
from .model import (
    INVARIANT_NAMES, TOXIC_TYPES, Choice, Direction, Ensemble, FrozenDict, Heal,
    InvariantSpec, Kill, LinkSelector, NodeState, Partition, PartitionKind, PartitionSpec,
    Pause, Pick, Plan, Port, Repeat, Restart, Resume, Role, Selector, Sleep, Step, Stop, ToxicAdd,
    ToxicRemove, Wait, WaitCondition,
)
from .schema import PLAN_SCHEMA, STEP_KINDS

__all__ = ["load_plan", "parse_plan", "check_plan", "DEFAULT_TIME_LIMIT_S",
           "DEFAULT_WAIT_TIMEOUT_S", "DEFAULT_CONVERGENCE_S"]

DEFAULT_TIME_LIMIT_S = 120.0
DEFAULT_WAIT_TIMEOUT_S = 30.0

_VALIDATOR = Draft202012Validator(PLAN_SCHEMA)
_ROLE_NAMES = tuple(r.value for r in Role)
_PROCESS = {"pick": Pick, "kill": Kill, "pause": Pause, "resume": Resume, "stop": Stop, "restart": Restart}
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


def _enum(cls: Any, value: Any) -> Any:
    """cls(value), or None when the value is not one of it (the schema pass says why)."""
    try:
        return cls(value)
    except (ValueError, TypeError):
        return None


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
class _Scope:
    """What earlier steps have established, in plan order."""

    names: set[str] = field(default_factory=set)        # bound by `as:` on process steps
    toxics: set[str] = field(default_factory=set)       # toxic names possibly in place
    partitions: set[str] = field(default_factory=set)   # partition names possibly in place
    has_target: bool = False                            # some earlier step had a target
    maybe_names: dict[str, str] = field(default_factory=dict)  # bound in some choice branches

    def copy(self) -> "_Scope":
        return _Scope(set(self.names), set(self.toxics), set(self.partitions), self.has_target,
                      dict(self.maybe_names))


class _Semantic:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.issues: list[PlanIssue] = []
        self.time_limit_s = DEFAULT_TIME_LIMIT_S
        self.ensemble = Ensemble()
        self.later_names: dict[str, str] = {}       # name -> path of the step binding it
        self.later_partitions: dict[str, str] = {}
        self.auto_toxic = 0

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
        steps = self.parse_steps(d.get("steps"), ("steps",), _Scope())
        return Plan(name=name, description=description, seed=seed,
                    time_limit_s=self.time_limit_s, ensemble=self.ensemble,
                    invariants=invariants, steps=steps, source_path=file)

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
        return Ensemble(
            nodes=nodes, observers=observers,
            weights=FrozenDict(full_weights) if (weights or groups) else FrozenDict(),
            groups=groups,
            tick_time_ms=tick,
            init_limit=self.int_(e.get("init_limit"), path + ("init_limit",), 10, 1),
            sync_limit=self.int_(e.get("sync_limit"), path + ("sync_limit",), 5, 1),
            txn_interval_ms=self.duration_ms(e.get("txn_interval"), path + ("txn_interval",), 100),
            protocol=protocol)

    # ---- invariants

    def parse_invariants(self, inv: Any, path: PathT) -> tuple[InvariantSpec, ...]:
        """Every invariant runs unless the plan turns it off with `name: false`:
        a plan that only tunes `convergence` must not silently drop the safety checks."""
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
                if isinstance(params, dict):
                    for key, value in params.items():
                        if key == "within":
                            specs[name]["within"] = self.duration_s(value, p + (key,), DEFAULT_CONVERGENCE_S)
        return tuple(InvariantSpec(n, FrozenDict(v)) for n, v in specs.items() if v is not None)

    # ---- steps

    def prescan(self, steps: Any, path: PathT) -> None:
        """Every `as:` in the plan, so a name used too early gets a precise message."""
        for i, step in enumerate(steps if isinstance(steps, list) else []):
            if not isinstance(step, dict):
                continue
            p = path + (i,)
            if isinstance(step.get("as"), str):
                table = self.later_partitions if "partition" in step else self.later_names
                table.setdefault(step["as"], format_path(p))
            body = step.get("repeat")
            if isinstance(body, dict):
                self.prescan(body.get("steps"), p + ("repeat", "steps"))
            body = step.get("choice")
            if isinstance(body, dict) and isinstance(body.get("steps"), list):
                for bi, branch in enumerate(body["steps"]):
                    self.prescan(branch, p + ("choice", "steps", bi))

    def parse_steps(self, steps: Any, path: PathT, scope: _Scope) -> tuple[Step, ...]:
        out: list[Step] = []
        for i, raw in enumerate(steps if isinstance(steps, list) else []):
            step = self.parse_step(raw, path + (i,), scope)
            if step is not None:
                out.append(step)
        return tuple(out)

    def parse_step(self, raw: Any, path: PathT, scope: _Scope) -> Step | None:
        if not isinstance(raw, dict):
            self.err(path, f"expected a step (a mapping with one of {', '.join(STEP_KINDS)}), "
                           f"got {_kind_of(raw)}")
            return None
        kinds = [k for k in raw if k in STEP_KINDS]
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
        value = raw[kind]
        vpath = path + (kind,)
        sp = format_path(path)
        label = raw.get("label") if isinstance(raw.get("label"), str) else ""
        bind_as = raw.get("as") if isinstance(raw.get("as"), str) else None
        if bind_as is not None and kind not in _PROCESS and kind != "partition":
            return None  # schema: unknown key 'as'
        if bind_as == "all" and kind == "partition":
            self.err(path + ("as",), "'all' is reserved (heal: all); pick another name for as:")
            bind_as = None
        elif bind_as in _ROLE_NAMES:
            self.err(path + ("as",), f"'{bind_as}' is a node selector; pick another name for as:")
            bind_as = None

        if kind in _PROCESS:
            if kind == "pick" and not bind_as:
                self.err(vpath, "pick: only names nodes, so it needs as: NAME")
            target = self.selector(value, vpath, scope)
            scope.has_target = True
            if bind_as:
                scope.names.add(bind_as)
                scope.maybe_names.pop(bind_as, None)
            if target is None:
                return None
            return _PROCESS[kind](target=target, bind_as=bind_as, path=sp,
                                  label=label or f"{kind} {target}")
        if kind == "wait":
            return self.parse_wait(value, vpath, scope, sp, label)
        if kind == "sleep":
            seconds = self.duration_s(value, vpath, 0.0)
            self.within_time_limit(seconds, vpath, "sleep")
            return Sleep(seconds=seconds, path=sp, label=label or f"sleep {value}")
        if kind == "toxic":
            return self.parse_toxic(value, vpath, scope, sp, label)
        if kind == "untoxic":
            if not isinstance(value, str):
                return None
            if value != "all" and value not in scope.toxics:
                self.err(vpath, f"removing toxic '{value}' that no earlier step adds"
                         + _suggest(value, scope.toxics))
            scope.toxics.discard(value)
            if value == "all":
                scope.toxics.clear()
            return ToxicRemove(name=value, path=sp, label=label or f"untoxic {value}")
        if kind == "partition":
            return self.parse_partition(value, vpath, scope, sp, label, bind_as, path)
        if kind == "heal":
            if not isinstance(value, str):
                return None
            if value != "all" and value not in scope.partitions:
                later = self.later_partitions.get(value)
                self.err(vpath, f"healing partition '{value}' that no earlier step names"
                         + (f" (it is named only later, at {later})" if later else
                            _suggest(value, scope.partitions)))
            return Heal(name=None if value == "all" else value, path=sp,
                        label=label or f"heal {value}")
        if kind == "repeat":
            if not isinstance(value, dict):
                return None
            times = value.get("times") if isinstance(value.get("times"), int) else 1
            body = self.parse_steps(value.get("steps"), vpath + ("steps",), scope)
            return Repeat(times=times, steps=body, path=sp, label=label or f"repeat {times}x")
        if kind == "choice":
            if not isinstance(value, dict) or not isinstance(value.get("steps"), list):
                return None
            branches, scopes = [], []
            for bi, branch in enumerate(value["steps"]):
                bscope = scope.copy()
                branches.append(self.parse_steps(branch, vpath + ("steps", bi), bscope))
                scopes.append(bscope)
            if scopes:
                every = set.intersection(*(s.names for s in scopes))
                for s in scopes:
                    scope.maybe_names.update(s.maybe_names)
                    for n in s.names - every:
                        scope.maybe_names[n] = sp
                for n in every:
                    scope.maybe_names.pop(n, None)
                scope.names = every
                scope.toxics = set.union(*(s.toxics for s in scopes))
                scope.partitions = set.union(*(s.partitions for s in scopes))
                scope.has_target = all(s.has_target for s in scopes)
            return Choice(branches=tuple(branches), path=sp,
                          label=label or f"choice of {len(branches)}")
        raise AssertionError(kind)  # pragma: no cover

    def selector(self, value: Any, path: PathT, scope: _Scope,
                 *, allow_others: bool = True) -> Selector | None:
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
        later = self.later_names.get(value)
        if value in scope.maybe_names:
            self.err(path, f"unbound name '{value}': only some branches of the choice at "
                           f"{scope.maybe_names[value]} bind it")
        elif later:
            self.err(path, f"unbound name '{value}': it is bound by as: only later, at {later}")
        else:
            self.err(path, f"unknown node selector '{value}': not a role, and no earlier "
                           "as: binds that name" + _suggest(value, [*_ROLE_NAMES, *scope.names]))
        return None

    def parse_wait(self, value: Any, path: PathT, scope: _Scope, sp: str, label: str) -> Wait | None:
        default_timeout = min(DEFAULT_WAIT_TIMEOUT_S, self.time_limit_s)
        if isinstance(value, str):
            if value not in ("stable", "leader"):
                return None
            return Wait(condition=WaitCondition(value), timeout_s=default_timeout, path=sp,
                        label=label or f"wait {value}")
        if not isinstance(value, dict) or value.get("for") not in [c.value for c in WaitCondition]:
            return None
        cond = WaitCondition(value["for"])
        node = None
        if "node" in value:
            if cond in (WaitCondition.STABLE, WaitCondition.LEADER):
                self.err(path + ("node",), f"node: has no meaning with for: {cond.value}")
            else:
                node = self.selector(value["node"], path + ("node",), scope)
        state = None
        if cond is WaitCondition.STATE:
            if "state" not in value:
                self.err(path, "wait for: state needs state: (looking, following, leading, observing)")
            elif isinstance(value["state"], str) and value["state"] in [s.value for s in NodeState]:
                state = NodeState(value["state"])
        elif "state" in value:
            self.err(path + ("state",), f"state: only goes with for: state, not for: {cond.value}")
        timeout = self.duration_s(value.get("timeout"), path + ("timeout",), default_timeout)
        if "timeout" in value:
            self.within_time_limit(timeout, path + ("timeout",), "timeout")
        if timeout <= 0 and "timeout" in value:
            self.err(path + ("timeout",), "timeout must be positive")
        what = cond.value + (f" {node}" if node else "") + (f" {state.value}" if state else "")
        return Wait(condition=cond, node=node, state=state, timeout_s=timeout, path=sp,
                    label=label or f"wait {what}")

    def parse_toxic(self, t: Any, path: PathT, scope: _Scope, sp: str, label: str) -> ToxicAdd | None:
        if not isinstance(t, dict):
            return None
        ttype = t.get("type")
        if not isinstance(ttype, str) or ttype not in TOXIC_TYPES:
            if isinstance(ttype, str):
                self.err(path + ("type",), f"unknown toxic type '{ttype}'"
                         + (_suggest(ttype, TOXIC_TYPES) or
                            f"; Toxiproxy has {', '.join(sorted(TOXIC_TYPES))}"))
            return None
        spec = TOXIC_TYPES[ttype]
        attrs: dict[str, int] = {}
        raw_attrs = t.get("attributes") if isinstance(t.get("attributes"), dict) else {}
        for key, val in raw_attrs.items():
            ap = path + ("attributes", key)
            if key not in spec:
                self.err(ap, f"unknown attribute '{key}' for a {ttype} toxic"
                         + (_suggest(key, spec) or
                            (f"; it takes {', '.join(spec)}" if spec else "; it takes none")))
                continue
            akind, _ = spec[key]
            if akind == "duration":
                try:
                    attrs[key] = parse_duration_ms(val)
                except DurationError as exc:
                    self.err(ap, str(exc))
            elif isinstance(val, int) and not isinstance(val, bool) and val >= 0:
                attrs[key] = val
            else:
                self.err(ap, f"expected a whole number >= 0, got {_kind_of(val)}")
        for key, (_, required) in spec.items():
            if required and key not in raw_attrs:
                self.err(path + ("attributes",) if "attributes" in t else path,
                         f"a {ttype} toxic needs attribute '{key}'")
        name = t.get("name")
        if isinstance(name, str):
            if name == "all":
                self.err(path + ("name",), "'all' is reserved (untoxic: all); pick another name")
        else:
            self.auto_toxic += 1
            name = f"_{ttype}_{self.auto_toxic}"
        scope.toxics.add(name)
        raw_links = t.get("links") if isinstance(t.get("links"), dict) else {}
        lp = path + ("links",)
        src = self.selector(raw_links.get("from", "all"), lp + ("from",), scope)
        dst = self.selector(raw_links.get("to", "all"), lp + ("to",), scope)
        toxicity = t.get("toxicity", 1.0)
        port = _enum(Port, raw_links.get("port", "election"))
        direction = _enum(Direction, raw_links.get("direction", "both"))
        if src is None or dst is None or name == "all" or port is None or direction is None:
            return None
        return ToxicAdd(
            name=name, type=ttype, attributes=FrozenDict(attrs),
            toxicity=float(toxicity) if isinstance(toxicity, (int, float)) else 1.0,
            links=LinkSelector(src, dst, port, direction),
            path=sp,
            label=label or f"toxic {ttype} {src}->{dst}")

    def parse_partition(self, p: Any, path: PathT, scope: _Scope, sp: str, label: str,
                        bind_as: str | None, step_path: PathT) -> Partition | None:
        if not isinstance(p, dict):
            return None
        shapes = [k for k in ("isolate", "one_way", "groups") if k in p]
        if len(shapes) > 1:
            self.err(path + (shapes[1],), f"a partition has one shape, found {' and '.join(shapes)}")
            return None
        kind_name = p.get("kind")
        if shapes:
            if kind_name is not None and kind_name != shapes[0]:
                self.err(path + ("kind",), f"kind: {kind_name} contradicts {shapes[0]}:")
                return None
            kind_name = shapes[0]
        if kind_name is None:
            self.err(path, "a partition needs isolate:, one_way:, groups:, or kind: "
                           "(majority_minority, halves, bridge, majorities_ring)")
            return None
        kind = _enum(PartitionKind, kind_name)
        if kind is None:
            return None
        if kind.value in ("isolate", "one_way", "groups") and kind.value not in p:
            self.err(path + ("kind",), f"kind: {kind.value} needs {kind.value}: too")
            return None
        if "leader_in" in p and kind is not PartitionKind.MAJORITY_MINORITY:
            self.err(path + ("leader_in",), "leader_in: only goes with kind: majority_minority")
        n = len(self.ensemble.sids)
        if kind in (PartitionKind.MAJORITY_MINORITY, PartitionKind.BRIDGE,
                    PartitionKind.MAJORITIES_RING) and n < 3:
            self.err(path + ("kind",), f"{kind.value} needs at least 3 nodes, the ensemble has {n}")
        if kind is PartitionKind.HALVES and n < 2:
            self.err(path + ("kind",), f"halves needs at least 2 nodes, the ensemble has {n}")
        target = src = dst = None
        groups = None
        ok = True
        if kind is PartitionKind.ISOLATE:
            target = self.selector(p["isolate"], path + ("isolate",), scope)
            ok = target is not None
        elif kind is PartitionKind.ONE_WAY:
            ow = p["one_way"] if isinstance(p["one_way"], dict) else {}
            src = self.selector(ow.get("from"), path + ("one_way", "from"), scope)
            dst = self.selector(ow.get("to"), path + ("one_way", "to"), scope)
            ok = src is not None and dst is not None
        elif kind is PartitionKind.GROUPS:
            seen: dict[int, int] = {}
            built = []
            for gi, g in enumerate(p["groups"] if isinstance(p["groups"], list) else []):
                members = []
                for mi, sid in enumerate(g if isinstance(g, list) else []):
                    mp = path + ("groups", gi, mi)
                    if isinstance(sid, bool) or not isinstance(sid, int):
                        continue
                    if not 1 <= sid <= n:
                        self.err(mp, f"sid {sid} out of range 1..{n}")
                        ok = False
                    elif sid in seen:
                        self.err(mp, f"sid {sid} is in partition groups {seen[sid] + 1} and {gi + 1}")
                        ok = False
                    else:
                        seen[sid] = gi
                        members.append(sid)
                built.append(tuple(members))
            groups = tuple(built)
        if bind_as == "all":
            bind_as = None
        if bind_as:
            scope.partitions.add(bind_as)
        port = _enum(Port, p.get("port", "both"))
        leader_in = p.get("leader_in")
        if not ok or port is None or leader_in not in (None, "minority", "majority"):
            return None
        spec = PartitionSpec(kind=kind, target=target, leader_in=leader_in,
                             src=src, dst=dst, groups=groups,
                             port=port)
        return Partition(spec=spec, bind_as=bind_as, path=sp,
                         label=label or f"partition {kind.value}"
                         + (f" {target}" if target else ""))


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
