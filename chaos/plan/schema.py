"""The plan language as JSON Schema (draft 2020-12), for `chaos schema` and editors.

The schema checks shape: keys, types, enums, ranges. Meaning (selectors,
names bound by `as:`, sids in range, weights against groups, toxic attributes
per type, timeouts against the time limit) is checked by `chaos.plan.parse`.
`x-expected` is our annotation: the phrase an error message uses ("expected a
duration like 200ms") when a value fails the subschema carrying it.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from .durations import DURATION_PATTERN
from .model import INVARIANT_NAMES, STEP_KINDS, STEP_TYPES, Role, Step

__all__ = ["PLAN_SCHEMA", "STEP_KINDS", "schema_json"]

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"

_ROLES = [r.value for r in Role]

_DEFS: dict[str, Any] = {
    "duration": {
        "x-expected": "a duration like 200ms",
        "description": "200ms, 2s, 1.5s, 1m; a bare integer is milliseconds",
        "anyOf": [{"type": "integer", "minimum": 0},
                  {"type": "string", "pattern": DURATION_PATTERN}],
    },
    "name": {
        "x-expected": "a name of lowercase letters, digits and _",
        "type": "string", "pattern": NAME_PATTERN,
    },
    "selector": {
        "x-expected": "a node selector (" + ", ".join(_ROLES)
                      + ", a sid, or a name bound by as:)",
        "description": "a role, a sid, or a name bound by an earlier `as:`",
        "anyOf": [{"type": "integer", "minimum": 1},
                  {"type": "string", "pattern": NAME_PATTERN}],
    },
    "sid_groups": {
        "type": "array", "minItems": 1,
        "items": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}},
    },
    "label": {"type": "string"},
    "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}},
}


def _step(kind: str, cls: type[Step]) -> dict[str, Any]:
    """A step of one kind: its key with the class's `schema`, `label:`, and
    `as:` when the class binds names."""
    props: dict[str, Any] = {kind: cls.schema, "label": {"$ref": "#/$defs/label"}}
    if cls.binds:
        props["as"] = {"$ref": "#/$defs/name"}
    return {"type": "object", "properties": props, "required": [kind],
            "additionalProperties": False}


_DUR = {"$ref": "#/$defs/duration"}

# One entry per registered kind, each from its class: nothing here to keep in step.
_STEP_DEFS: dict[str, Any] = {f"step_{kind}": _step(kind, cls) for kind, cls in STEP_TYPES.items()}
assert list(_STEP_DEFS) == [f"step_{k}" for k in STEP_KINDS]

_DEFS.update(_STEP_DEFS)
_DEFS["step"] = {
    "x-expected": "a step: a mapping with one of " + ", ".join(STEP_KINDS),
    "type": "object",
    "anyOf": [{"required": [k]} for k in STEP_KINDS],
    "allOf": [{"if": {"type": "object", "required": [k]}, "then": {"$ref": f"#/$defs/step_{k}"}}
              for k in STEP_KINDS],
}

_INVARIANT_PARAMS: dict[str, dict[str, Any]] = {
    "single_leader": {},
    "convergence": {"within": _DUR},
    "out_of_election_join": {},
    "leader_validity": {},
    "no_committed_txn_lost": {},
    "log_agreement": {},
    "leader_eligibility": {},
    "epoch_promises": {},
    "election_cost": {"max_rounds": {"type": "integer", "minimum": 1},
                      "max_notifications": {"type": "integer", "minimum": 1},
                      "max_ms": _DUR},
    "vote_backing": {},
    "vote_rules": {},
    "leader_lease": {},
    "interposition": {},
}
assert set(_INVARIANT_PARAMS) == set(INVARIANT_NAMES)

# Invariants that take a keyword instead of a mapping: `election_cost: baseline`
# reads its bounds from the plans' baselines.json (chaos.baselines).
_INVARIANT_KEYWORDS: dict[str, list[str]] = {"election_cost": ["baseline"]}


def _invariant_schema(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """`false` (off), nothing or `true` (on with defaults), a mapping of its
    parameters, or one of its keywords. One schema, not anyOf: `properties`
    only constrains mappings and `pattern` only strings, so a wrong key or
    value is reported at its own path."""
    words = _INVARIANT_KEYWORDS.get(name, [])
    keys = ", ".join(params)
    out: dict[str, Any] = {
        "type": ["null", "boolean", "object"] + (["string"] if words else []),
        "properties": params, "additionalProperties": False,
        "x-expected": ", ".join([*words, "false"]) + (f", or a mapping of {keys}" if keys else
                                                        " or {} (it takes no parameters)"),
    }
    if words:
        out["pattern"] = "^(" + "|".join(words) + ")$"
    return out


PLAN_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://fle-chaos.invalid/schema/plan.json",
    "title": "fle-chaos fault plan",
    "type": "object",
    "properties": {
        "name": {"$ref": "#/$defs/name"},
        "description": {"type": "string", "minLength": 1},
        "seed": {"type": ["integer", "null"]},
        "time_limit": _DUR,
        "ensemble": {
            "type": "object",
            "properties": {
                "nodes": {"type": "integer", "minimum": 1, "maximum": 31},
                "observers": {"type": "integer", "minimum": 0, "maximum": 31},
                "weights": {"type": "object",
                            "propertyNames": {"pattern": "^[0-9]+$"},
                            "additionalProperties": {"type": "integer", "minimum": 0}},
                "groups": {"$ref": "#/$defs/sid_groups"},
                "tick_time": _DUR,
                "init_limit": {"type": "integer", "minimum": 1},
                "sync_limit": {"type": "integer", "minimum": 1},
                "txn_interval": _DUR,
                "no_txns": {"type": "array", "items": {"type": "integer", "minimum": 1}},
                "protocol": {"enum": ["3.8", "3.4", 3.8, 3.4],
                             "x-expected": "protocol \"3.8\" or \"3.4\""},
                "start": {"type": "array", "minItems": 1,
                          "items": {"type": "integer", "minimum": 1}},
                "target": {"type": "string", "minLength": 1},
            },
            "required": ["nodes"],
            "additionalProperties": False,
        },
        "invariants": {
            "type": "object",
            "properties": {name: _invariant_schema(name, params) for name, params in _INVARIANT_PARAMS.items()},
            "additionalProperties": False,
        },
        "steps": {"$ref": "#/$defs/steps", "minItems": 1},
        "targets": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
        "targets_reason": {"type": "string", "minLength": 1},
    },
    "required": ["name", "description", "ensemble", "steps"],
    "additionalProperties": False,
    "$defs": _DEFS,
}


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


_DANGLING = {r for r in _refs(PLAN_SCHEMA) if r.removeprefix("#/$defs/") not in _DEFS}
assert not _DANGLING, f"schema references without a definition: {sorted(_DANGLING)}"


def schema_json(indent: int | None = 2) -> str:
    """The plan schema as JSON text (what `chaos schema` prints)."""
    return json.dumps(PLAN_SCHEMA, indent=indent, sort_keys=False)
