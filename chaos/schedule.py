"""The schedule a run actually ran, as a plan that `chaos run` executes again.

Theory of operation. A plan says what to do in terms of roles and chance
(`kill: leader`, `choice`, `partition: {kind: halves}`); its run journals what
each of those became (DESIGN §2: `step_started`/`step_finished` with a
`resolved` mapping, and a `fault` record for every fault applied and undone).
:func:`schedule_from_journal` reads those records back into a flat
:class:`Schedule` of concrete steps: sids instead of roles and `as:` names,
repeat iterations and the chosen branch of every choice laid out in the order
they ran, partitions as explicit `groups` or one-way cuts, toxics on explicit
links. :func:`write_plan` writes one as plan YAML (checked by the plan parser
before it is written) with comments saying where each step came from.

Faults are read from the `fault` records rather than from the plan, so a step
the plan language does not know (a nemesis's children, `silent_death`) still
comes out as the toxics, partitions and kills it made. Every fault step belongs
to a *unit*, the fault together with whatever undid it (untoxic, heal, resume,
or the restart after a kill), which is what `chaos shrink` drops or keeps as
one; `chaos sim --promote` uses the same reader and writer.

Where the plan language has no exact form (a bridge or a ring of majorities
is a set of blocked pairs, not groups; a wait on several nodes), the writer
uses the nearest exact one (one-way cuts of the same pairs, one wait per node)
and says so in a YAML comment.
"""
from __future__ import annotations

import dataclasses
import enum
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import yaml

from chaos.plan import PLAN_FAULT_TYPES, PLAN_SCHEMA, PLAN_TOXIC_TYPES, PlanError, format_duration, parse_plan
from chaos.plan.model import INVARIANT_NAMES, Role
from chaos.records import Fault, Journal, StepFinished, StepStarted
from chaos.toxiproxy.catalog import Unit

__all__ = ["StepRole", "ScheduleStep", "Schedule", "ScheduleError", "schedule_from_journal",
           "schedule_from_run", "plan_text", "write_plan"]

_ROLES = frozenset(r.value for r in Role)
_PORTS = ("election", "quorum")
# Unit ids; a toxic's or a partition's is also its name in the written plan.
_UNIT_PREFIX = {"toxic": "t", "partition": "p", "kill": "k", "stop": "s", "pause": "z", "restart": "r",
                "silent_death": "d", "power_loss": "w", "reboot": "b"}


_MISMATCH = "NOT AS RUN:"


class ScheduleError(Exception):
    """The schedule could not be written as a plan the parser accepts: a bug
    in this writer (the message lists the parser's errors), not in the run."""


class StepRole(enum.Enum):
    FAULT = "fault"   # applies (part of) a fault
    UNDO = "undo"     # undoes a fault: kept while any fault step of its unit is
    OTHER = "other"   # waits, sleeps: kept unless dropped on their own


@dataclass(frozen=True, slots=True)
class ScheduleStep:
    """One concrete step: `value` is what goes under the `kind` key, in plan
    syntax (sids, durations as text), so it is also what two schedules compare by."""

    kind: str
    value: Any
    bind_as: str | None = None
    unit: str | None = None
    role: StepRole = StepRole.OTHER
    source: str = ""     # the journal path of the step it came from
    comment: str = ""    # a YAML comment above it (said once for consecutive equal ones)

    def action(self) -> tuple[str, str, str | None]:
        """What the step does, for comparing schedules (not where it came from)."""
        return (self.kind, _flow(self.value), self.bind_as)

    @property
    def seconds(self) -> float | None:
        """A sleep's length."""
        if self.kind != "sleep":
            return None
        from chaos.plan import parse_duration
        return parse_duration(self.value)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A run's steps as they ran, concrete, plus the plan header they ran under."""

    plan_name: str
    run_id: str = ""
    run_dir: str | None = None
    seed: int | None = None
    time_limit_s: float | None = None
    ensemble: Mapping[str, Any] = field(default_factory=dict)     # YAML form
    invariants: Mapping[str, Any] = field(default_factory=dict)   # YAML form
    steps: tuple[ScheduleStep, ...] = ()
    notes: tuple[str, ...] = ()
    simulated: bool = False
    source_description: str = ""

    # ---- units: a fault with its undo

    def units(self) -> tuple[str, ...]:
        """The fault units, in the order their first fault step runs."""
        return tuple(dict.fromkeys(s.unit for s in self.steps if s.role is StepRole.FAULT and s.unit))

    def fault_steps(self, unit: str) -> tuple[int, ...]:
        return tuple(i for i, s in enumerate(self.steps) if s.unit == unit and s.role is StepRole.FAULT)

    def without(self, drop: Iterable[int]) -> "Schedule":
        """Drop steps by index; an undo whose unit has no fault step left goes too."""
        drop = set(drop)
        kept = [s for i, s in enumerate(self.steps) if i not in drop]
        live = {s.unit for s in kept if s.role is StepRole.FAULT}
        return dataclasses.replace(self, steps=tuple(
            s for s in kept if not (s.role is StepRole.UNDO and s.unit not in live)))

    def keep_units(self, units: Iterable[str]) -> "Schedule":
        """Only these fault units (with their undos); waits and sleeps stay."""
        keep = set(units)
        return self.without(i for i, s in enumerate(self.steps)
                            if s.role is StepRole.FAULT and s.unit not in keep)

    def with_step(self, index: int, step: ScheduleStep) -> "Schedule":
        steps = list(self.steps)
        steps[index] = step
        return dataclasses.replace(self, steps=tuple(steps))

    @property
    def exact_header(self) -> bool:
        """False when the written header would not give the run's ensemble and
        invariants (the notes say where): a rerun would not judge the same way."""
        return not any(n.startswith(_MISMATCH) for n in self.notes)

    def actions(self) -> list[tuple[str, str, str | None]]:
        return [s.action() for s in self.steps]

    @property
    def sleep_s(self) -> float:
        return sum(s.seconds or 0.0 for s in self.steps)

    # ---- text

    def default_name(self, suffix: str = "schedule") -> str:
        base = re.sub(r"[^a-z0-9_]", "_", (self.plan_name or "run").lower())
        if not base or not base[0].isalpha():
            base = "run_" + base
        return f"{base}_{suffix}"

    def origin(self) -> str:
        """Where it came from, in one line: run id, plan, seed."""
        bits = [f"run {self.run_id or '?'}", f"of plan {self.plan_name or '?'}",
                f"seed {self.seed if self.seed is not None else '?'}"]
        if self.simulated:
            bits.append("simulated")
        text = " ".join(bits[:2]) + f" ({', '.join(bits[2:])})"
        return text + (f", {self.run_dir}" if self.run_dir else "")

    def default_description(self) -> str:
        text = (f"The schedule that {self.origin()} actually ran, every random and "
                "role choice resolved to sids; written by chaos.schedule.")
        said = " ".join(self.source_description.split())
        if said:
            text += f" The plan said: {said}"
        return "\n".join(textwrap.wrap(text, 78))


# --------------------------------------------------------------------------- reading a journal


@dataclass
class _Ran:
    """One step as it ran, with what happened inside it in journal order:
    its child steps and the fault records that no child owns."""

    path: str
    kind: str
    label: str
    resolved: Mapping[str, Any]
    t0: float
    t1: float | None = None
    ok: bool | None = None
    error: str | None = None
    items: list["_Ran | Fault"] = field(default_factory=list)

    @property
    def children(self) -> list["_Ran"]:
        return [i for i in self.items if isinstance(i, _Ran)]

    @property
    def faults(self) -> list[Fault]:
        return [i for i in self.items if isinstance(i, Fault)]


def _step_tree(journal: Journal) -> list[_Ran]:
    """Plan steps (paths `steps[...]`; not the runner's `final` wait) nested as
    they ran; a fault record goes to the innermost step running when it was
    written. Faults outside every step (the end-of-run undo) are left out."""
    roots: list[_Ran] = []
    stack: list[_Ran] = []
    for r in sorted(journal.records, key=lambda r: r.seq):
        if isinstance(r, StepStarted):
            if not r.step.startswith("steps"):
                continue
            node = _Ran(r.step, r.kind, r.label, r.resolved, r.t)
            (stack[-1].items if stack else roots).append(node)
            stack.append(node)
        elif isinstance(r, StepFinished):
            if not r.step.startswith("steps"):
                continue
            while stack and stack[-1].path != r.step:
                stack.pop()  # a step without its finish (a crash): close it here
            if stack:
                node = stack.pop()
                node.t1, node.ok, node.error = r.t, r.ok, r.error
                if r.resolved:
                    node.resolved = r.resolved
        elif isinstance(r, Fault) and stack:
            stack[-1].items.append(r)
    return roots


def _model_steps(raw: Any, out: dict[str, Mapping[str, Any]] | None = None) -> dict[str, Mapping[str, Any]]:
    """Every step of the plan's JSON (`Plan.to_json`) by its model path."""
    out = {} if out is None else out
    if isinstance(raw, Mapping):
        if isinstance(raw.get("kind"), str) and isinstance(raw.get("path"), str):
            out[raw["path"]] = raw
        for v in raw.values():
            if isinstance(v, (Mapping, list, tuple)):
                _model_steps(v, out)
    elif isinstance(raw, (list, tuple)):
        for v in raw:
            _model_steps(v, out)
    return out


def _model_path(journal_path: str) -> str:
    """`steps[2].repeat[1].steps[0]` → `steps[2].repeat.steps[0]` (the model has no iteration)."""
    return re.sub(r"\.repeat\[\d+\]", ".repeat", journal_path)


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {(k if isinstance(k, int) else str(k)): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _sids(v: Any) -> list[int]:
    if isinstance(v, bool):
        return []
    if isinstance(v, int):
        return [v]
    if isinstance(v, (list, tuple)):
        return [x for x in v if isinstance(x, int) and not isinstance(x, bool)]
    return []


def _dur(seconds: float) -> str:
    return format_duration(max(0.0, float(seconds)))


class _Builder:
    """Walks the step tree once, in the order things ran, and emits concrete steps."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.model = _model_steps(journal.plan.raw.get("steps") if journal.plan.raw else ())
        ens = journal.plan.raw.get("ensemble") if journal.plan.raw else None
        n = int(ens.get("nodes", 0) or 0) + int(ens.get("observers", 0) or 0) if isinstance(ens, Mapping) else 0
        self.sids = tuple(range(1, n + 1)) or tuple(sorted(x.sid for x in journal.nodes))
        self.steps: list[ScheduleStep] = []
        self.notes: list[str] = []
        self.counters: dict[str, int] = {}
        self.unit_of: dict[str, tuple[str, str, Mapping[str, Any]]] = {}  # fault_id -> (unit, kind, target)
        self.down: dict[int, str] = {}    # sid -> unit of the kill/stop a restart would undo
        self.paused: dict[int, str] = {}  # sid -> unit of its pause
        self.snapshots: dict[str, str | None] = {}  # snapshot name -> unit that took it
        self.power_cuts: dict[tuple, str] = {}  # (step path, sids cut at once) -> their one unit
        self.undone_here: set[str] = set()  # units whose undo this leaf wrote already
        self.active: set[str] = set()       # toxic/partition units in place
        self.last_key: tuple | None = None
        self.last_unit: str | None = None

    def new_unit(self, kind: str) -> str:
        prefix = _UNIT_PREFIX.get(kind, kind[:1])
        self.counters[prefix] = self.counters.get(prefix, 0) + 1
        return f"{prefix}{self.counters[prefix]}"

    def emit(self, kind: str, value: Any, *, comment: str, unit: str | None = None,
             role: StepRole = StepRole.OTHER, source: str = "", bind_as: str | None = None) -> None:
        self.steps.append(ScheduleStep(kind, value, bind_as, unit, role, source, comment))

    # ---- the walk

    def walk(self, items: Sequence[_Ran | Fault], where: str = "") -> None:
        for item in items:
            if isinstance(item, Fault):
                self.fault(item, None, f"{where}: {item.kind} fault {item.fault_id}")
            elif item.children:
                self.walk(item.items, item.path)
            else:
                self.leaf(item)

    def leaf(self, ran: _Ran) -> None:
        res = ran.resolved
        shown = ", ".join(f"{k}={_flow(_plain(v))}" for k, v in res.items()
                          if k in ("target", "node", "leader", "branch", "description", "name"))
        comment = f"{ran.path}: {ran.label or ran.kind}" + (f" ({shown})" if shown else "")
        if ran.ok is False:
            comment += f"; FAILED in the run: {ran.error}"
        elif ran.ok is None:
            comment += "; did not finish in the run"
        model = self.model.get(_model_path(ran.path), {})
        kind = ran.kind
        self.undone_here = set()
        before = len(self.steps)
        handled = {"wait": self.wait, "sleep": self.sleep, "restart": self.restart, "start": self.start,
                   "snapshot": self.snapshot, "silent_death": self.silent_death, "reboot": self.reboot}.get(kind)
        if handled is not None:
            handled(ran, model, comment)
        # kill/stop/restart/start end a pause (journaled as undone) rather than undo it.
        ends_only = kind in ("kill", "stop", "restart", "start", "silent_death", "power_loss")
        for f in ran.faults:
            if kind == "reboot":
                break   # cut, kill, lift and start: the reboot step itself
            if f.phase == "undone" and ends_only:
                continue
            if f.phase == "requested" and kind == "silent_death":
                continue  # its faults are the silent_death step itself
            self.fault(f, ran, comment)
        if kind in ("kill", "stop", "pause", "power_loss") and not any(f.phase == "requested" for f in ran.faults):
            # It failed before it applied anything: the same step, so it fails the same way.
            for sid in _sids(res.get("target")):
                self.emit(kind, sid, comment=comment, unit=self.new_unit(kind), role=StepRole.FAULT,
                          source=ran.path)
        if kind == "resume" and not any(f.phase == "undone" for f in ran.faults):
            for sid in _sids(res.get("target")):
                unit = self.paused.get(sid)
                self.emit("resume", sid, comment=comment, unit=unit,
                          role=StepRole.UNDO if unit else StepRole.OTHER, source=ran.path)
        if len(self.steps) == before:
            if kind == "pick":
                self.notes.append(f"{comment}: names only; later steps use the sids")
            elif kind not in ("repeat", "choice", "nemesis"):
                self.notes.append(f"{comment}: did nothing the plan language can write; left out")

    def wait(self, ran: _Ran, model: Mapping[str, Any], comment: str) -> None:
        res = ran.resolved
        cond = model.get("for") or res.get("for") or "stable"
        value: dict[str, Any] = {"for": cond}
        state = model.get("state") or res.get("state")
        timeout = model.get("timeout_s") or res.get("timeout_s")
        if state:
            value["state"] = state
        if isinstance(timeout, (int, float)):
            value["timeout"] = _dur(timeout)
        node = model.get("node")
        sids = _sids(res.get("node"))
        if node is None or (not sids and (isinstance(node, int) or node in _ROLES)):
            if node is not None:
                value["node"] = node
            self.emit("wait", _order(value), comment=comment, source=ran.path)
            return
        if not sids:
            self.notes.append(f"{comment}: node '{node}' was never resolved; waits for every live node")
            self.emit("wait", _order(value), comment=comment, source=ran.path)
            return
        if len(sids) > 1:
            comment += f"; one wait per node of {sids} (a selector names one sid)"
        for sid in sids:
            self.emit("wait", _order({**value, "node": sid}), comment=comment, source=ran.path)

    def sleep(self, ran: _Ran, model: Mapping[str, Any], comment: str) -> None:
        seconds = model.get("seconds")
        if not isinstance(seconds, (int, float)):
            for key in ("seconds", "duration_s", "sleep_s"):
                if isinstance(ran.resolved.get(key), (int, float)):
                    seconds = ran.resolved[key]
                    break
        if not isinstance(seconds, (int, float)):
            seconds = max(0.0, (ran.t1 or ran.t0) - ran.t0)
            comment += "; length as measured in the run"
        self.emit("sleep", _dur(seconds), comment=comment, source=ran.path)

    def _ended_pauses(self, ran: _Ran) -> dict[int, str]:
        return {int(f.target["sid"]): self.unit_of[f.fault_id][0]
                for f in ran.faults if f.phase == "undone" and f.kind == "pause"
                and isinstance(f.target.get("sid"), int) and f.fault_id in self.unit_of}

    def restart(self, ran: _Ran, model: Mapping[str, Any], comment: str) -> None:
        """A restart undoes the kill/stop (or silent death) before it, or a
        pause it ended; alone, it is a fault of its own (it stops the node first).
        From a snapshot, it goes with the unit that took the snapshot."""
        ended = self._ended_pauses(ran)
        source = model.get("from") or ran.resolved.get("from")
        for sid in _sids(ran.resolved.get("target")):
            unit = self.down.pop(sid, None) or ended.get(sid)
            self.paused.pop(sid, None)
            value: Any = sid
            if isinstance(source, str):
                value = {"node": sid, "from": source}
                taken = self.snapshots.get(source)
                if taken is not None and unit is not None and taken != unit:
                    self.merge(unit, taken)
                    unit = taken
                unit = unit or taken
            if unit is not None:
                self.emit("restart", value, comment=comment, unit=unit, role=StepRole.UNDO, source=ran.path)
            else:
                self.emit("restart", value, comment=comment, unit=self.new_unit("restart"),
                          role=StepRole.FAULT, source=ran.path)

    def start(self, ran: _Ran, model: Mapping[str, Any], comment: str) -> None:
        """Starting a node killed or stopped earlier undoes that; starting one
        the ensemble left out at setup is part of the setup."""
        for sid in _sids(ran.resolved.get("target")):
            unit = self.down.pop(sid, None)
            self.emit("start", sid, comment=comment, unit=unit,
                      role=StepRole.UNDO if unit else StepRole.OTHER, source=ran.path)

    def snapshot(self, ran: _Ran, model: Mapping[str, Any], comment: str) -> None:
        """A snapshot needs its node stopped, so it goes with the unit that stopped it."""
        name = model.get("as") or ran.resolved.get("as") or ran.resolved.get("name")
        sids = _sids(ran.resolved.get("node")) or _sids(ran.resolved.get("target")) or _sids(model.get("node"))
        if not isinstance(name, str) or len(sids) != 1:
            self.notes.append(f"{comment}: no node or name resolved; left out")
            return
        unit = self.down.get(sids[0])
        self.snapshots[name] = unit
        self.emit("snapshot", {"node": sids[0], "as": name}, comment=comment, unit=unit,
                  role=StepRole.UNDO if unit else StepRole.OTHER, source=ran.path)

    def silent_death(self, ran: _Ran, model: Mapping[str, Any], comment: str) -> None:
        """One fault in the plan language (links black-holed, process frozen),
        whatever records it made; `heal` ends it and the node stays down."""
        for sid in _sids(ran.resolved.get("target")):
            unit = self.new_unit("silent_death")
            for f in ran.faults:
                if f.phase == "requested":
                    self.unit_of[f.fault_id] = (unit, "silent_death", {"sid": sid})
            self.down[sid] = unit
            self.emit("silent_death", sid, bind_as=unit, comment=comment, unit=unit, role=StepRole.FAULT,
                      source=ran.path)

    def reboot(self, ran: _Ran, model: Mapping[str, Any], comment: str) -> None:
        """A fault that undoes itself within its step (the node is back when it
        ends): one unit per node, which a shrink keeps or drops whole."""
        down_ms = ran.resolved.get("down_ms")
        for sid in _sids(ran.resolved.get("target")):
            value: Any = sid
            if isinstance(down_ms, (int, float)) and down_ms > 0:
                value = {"node": sid, "down": format_duration(down_ms / 1000)}
            self.emit("reboot", value, comment=comment, unit=self.new_unit("reboot"), role=StepRole.FAULT,
                      source=ran.path)

    def merge(self, unit: str, into: str) -> None:
        """Two units that must stay or go together (a snapshot and the restart from it)."""
        self.steps = [dataclasses.replace(s, unit=into) if s.unit == unit else s for s in self.steps]
        self.unit_of = {k: ((into, *v[1:]) if v[0] == unit else v) for k, v in self.unit_of.items()}
        for table in (self.down, self.paused, self.snapshots):
            for k, v in list(table.items()):
                if v == unit:
                    table[k] = into

    # ---- faults, from their records

    def fault(self, f: Fault, ran: _Ran | None, comment: str) -> None:
        source = ran.path if ran else ""
        if f.phase == "undone":
            self.undo(f, comment, source)
            return
        if f.phase != "requested":
            return
        target = f.target
        if f.kind == "power_loss" and isinstance(target.get("sid"), int):
            # one step cut several nodes at once: one step and one unit again
            sid = int(target["sid"])
            together = sorted({int(s) for s in (target.get("at_once") or ()) if isinstance(s, int)} | {sid})
            key = (source, tuple(together))
            unit = self.power_cuts.get(key)
            fresh = unit is None
            if fresh:
                unit = self.power_cuts[key] = self.new_unit(f.kind)
            self.unit_of[f.fault_id] = (unit, f.kind, target)
            self.down[sid] = unit
            if fresh:
                self.emit(f.kind, together if len(together) > 1 else sid, comment=comment, unit=unit,
                          role=StepRole.FAULT, source=source)
            return
        if f.kind in ("kill", "stop", "pause", "power_loss"):
            sid = target.get("sid")
            if not isinstance(sid, int):
                return
            unit = self.new_unit(f.kind)
            self.unit_of[f.fault_id] = (unit, f.kind, target)
            if f.kind == "pause":
                self.paused[sid] = unit
            else:
                self.down[sid] = unit
            self.emit(f.kind, sid, comment=comment, unit=unit, role=StepRole.FAULT, source=source)
        elif f.kind == "toxic":
            ttype = str(target.get("type") or "")
            attrs = target.get("attributes") or {}
            toxicity = target.get("toxicity")
            unit = self.unit_for(f, ("toxic", target.get("name"), ttype, _flow(_plain(attrs)), toxicity))
            self.toxic(unit, ttype, attrs, toxicity, f.links, comment, source)
        elif f.kind == "partition":
            blocked = {(int(a), int(b)) for a, b in (target.get("blocked") or ())}
            blocked |= {(a, b) for a, b, _ in f.links}
            ports = sorted({p for _, _, p in f.links}) or list(_PORTS)
            unit = self.unit_for(f, ("partition", target.get("name"), tuple(ports)))
            self.partition(unit, blocked, ports, comment, source)
        elif f.kind == "silent_death" and isinstance(target.get("sid"), int):
            sid = int(target["sid"])
            unit = self.new_unit("silent_death")
            self.unit_of[f.fault_id] = (unit, "silent_death", target)
            self.down[sid] = unit
            self.emit("silent_death", sid, bind_as=unit, comment=comment, unit=unit, role=StepRole.FAULT,
                      source=source)
        else:
            self.notes.append(f"{comment}: a {f.kind} fault has no plan form; left out")

    def unit_for(self, f: Fault, key: tuple) -> str:
        """A new unit, or the one just written when this fault is more of the
        same: one name, still in place (a plan written here gives a fault
        several steps under one name; read back, they are one fault again)."""
        last = self.steps[-1].unit if self.steps else None
        if key[1] is not None and self.last_key == key and last == self.last_unit and last in self.active:
            unit = last
        else:
            unit = self.new_unit(f.kind)
        self.last_key, self.last_unit = key, unit
        self.active.add(unit)
        self.unit_of[f.fault_id] = (unit, f.kind, f.target)
        return unit

    def undo(self, f: Fault, comment: str, source: str) -> None:
        unit, kind, target = self.unit_of.get(f.fault_id, (None, f.kind, f.target))
        if unit is None:
            self.notes.append(f"{comment}: undid fault {f.fault_id}, which no step of the schedule made")
            return
        if unit in self.undone_here:
            return
        self.undone_here.add(unit)
        self.active.discard(unit)
        if kind == "silent_death":
            self.emit("heal", unit, comment=comment, unit=unit, role=StepRole.UNDO, source=source)
        elif kind == "toxic":
            self.emit("untoxic", unit, comment=comment, unit=unit, role=StepRole.UNDO, source=source)
        elif kind == "partition":
            self.emit("heal", unit, comment=comment, unit=unit, role=StepRole.UNDO, source=source)
        elif kind == "pause":
            sid = target.get("sid")
            if isinstance(sid, int):
                self.paused.pop(sid, None)
                self.emit("resume", sid, comment=comment, unit=unit, role=StepRole.UNDO, source=source)

    def toxic(self, unit: str, ttype: str, attrs: Mapping[str, Any], toxicity: Any,
              links: Iterable[tuple[int, int, str]], comment: str, source: str) -> None:
        spec = {a.name: a for a in PLAN_TOXIC_TYPES.get(ttype, ())}
        attributes = {k: (f"{v}ms" if k in spec and spec[k].unit is Unit.MS and isinstance(v, int) else v)
                      for k, v in _plain(attrs).items()}
        base: dict[str, Any] = {"name": unit, "type": ttype}
        if attributes:
            base["attributes"] = attributes
        if ttype not in PLAN_FAULT_TYPES and isinstance(toxicity, (int, float)) and float(toxicity) != 1.0:
            base["toxicity"] = float(toxicity)
        for sel in _link_selectors(links, self.sids):
            self.emit("toxic", {**base, "links": sel}, comment=comment, unit=unit, role=StepRole.FAULT,
                      source=source)

    def partition(self, unit: str, blocked: set[tuple[int, int]], ports: list[str], comment: str,
                  source: str) -> None:
        port = "both" if set(ports) >= set(_PORTS) else ports[0]
        groups = _components(blocked, self.sids)
        if groups is not None:
            self.emit("partition", {"groups": groups, "port": port}, bind_as=unit, comment=comment,
                      unit=unit, role=StepRole.FAULT, source=source)
            return
        cuts = _one_way_cuts(blocked, self.sids)
        if len(cuts) > 1:
            comment += (f"; not a split into groups: written as {len(cuts)} one-way cuts of the same "
                        f"blocked pairs, all named {unit}")
        for src, dst in cuts:
            self.emit("partition", {"one_way": {"from": src, "to": dst}, "port": port}, bind_as=unit,
                      comment=comment, unit=unit, role=StepRole.FAULT, source=source)


def _order(value: dict[str, Any]) -> dict[str, Any]:
    keys = ("for", "node", "state", "timeout")
    return {k: value[k] for k in keys if k in value} | {k: v for k, v in value.items() if k not in keys}


def _link_selectors(links: Iterable[tuple[int, int, str]], sids: Sequence[int]) -> list[dict[str, Any]]:
    """The fewest exact `links:` selectors (a sid or `all` at each end) that
    cover these directed links, none twice: all to all; a node to and from all
    the others; a node to all, all to a node; then pairs, both ways or one."""
    ports_of: dict[tuple[int, int], set[str]] = {}
    for a, b, p in links:
        ports_of.setdefault((int(a), int(b)), set()).add(str(p))
    by_ports: dict[str, set[tuple[int, int]]] = {}
    for pair, ps in ports_of.items():
        for key in (["both"] if ps >= set(_PORTS) else sorted(ps)):
            by_ports.setdefault(key, set()).add(pair)
    out: list[dict[str, Any]] = []
    every = {(a, b) for a in sids for b in sids if a != b}

    def sel(src: Any, dst: Any, port: str, direction: str) -> dict[str, Any]:
        return {"from": src, "to": dst, "port": port, "direction": direction}

    for port in sorted(by_ports, key=lambda p: (p != "both", p)):
        left = set(by_ports[port])
        if every and left == every:
            out.append(sel("all", "all", port, "one"))
            continue
        for a in sids:
            row = {(a, b) for b in sids if b != a}
            col = {(b, a) for b in sids if b != a}
            if row and row | col <= left:
                out.append(sel(a, "all", port, "both"))
                left -= row | col
        for a in sids:
            row = {(a, b) for b in sids if b != a}
            if row and row <= left:
                out.append(sel(a, "all", port, "one"))
                left -= row
        for b in sids:
            col = {(a, b) for a in sids if a != b}
            if col and col <= left:
                out.append(sel("all", b, port, "one"))
                left -= col
        for a, b in sorted(left):
            if (b, a) in left and a > b:
                continue
            out.append(sel(a, b, port, "both" if (b, a) in left else "one"))
    return out


def _components(blocked: set[tuple[int, int]], sids: Sequence[int]) -> list[list[int]] | None:
    """The groups of a plain split (symmetric, and "can reach" is an
    equivalence), or None when the cut is not one."""
    if not blocked or any((b, a) not in blocked for a, b in blocked):
        return None
    comps: list[list[int]] = []
    for s in sids:
        for comp in comps:
            if (comp[0], s) not in blocked:
                comp.append(s)
                break
        else:
            comps.append([s])
    side = {s: i for i, c in enumerate(comps) for s in c}
    exact = {(a, b) for a in sids for b in sids if a != b and side[a] != side[b]}
    return comps if exact == blocked and len(comps) > 1 else None


def _one_way_cuts(blocked: set[tuple[int, int]], sids: Sequence[int]) -> list[tuple[Any, Any]]:
    """Exact `one_way` cuts covering the blocked pairs, none twice: a node that
    reaches nobody as `from: a, to: all`, one nobody reaches as `from: all, to: b`,
    the rest pair by pair."""
    left = set(blocked)
    cuts: list[tuple[Any, Any]] = []
    for a in sids:
        row = {(a, b) for b in sids if b != a}
        if row and row <= left:
            cuts.append((a, "all"))
            left -= row
    for b in sids:
        col = {(a, b) for a in sids if a != b}
        if col and col <= left:
            cuts.append(("all", b))
            left -= col
    cuts.extend(sorted(left))
    return cuts


# --------------------------------------------------------------------------- the header


def _param_schemas(name: str) -> Mapping[str, Any] | None:
    """The parameters an invariant takes in a plan: the `properties` of its
    mapping form in the schema, wherever that sits (None when not found)."""
    stack: list[Any] = [PLAN_SCHEMA.get("properties", {}).get("invariants", {}).get("properties", {}).get(name)]
    while stack:
        cur = stack.pop()
        if isinstance(cur, Mapping):
            if isinstance(cur.get("properties"), Mapping):
                return cur["properties"]
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)
    return None


def _invariant_params(name: str, params: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    """Parsed parameters back in plan syntax. A duration is seconds as parsed,
    milliseconds under a key ending in `_ms`; a parameter the plan language
    does not take (a baseline's `source`) is left out, its value being in the others."""
    allowed = _param_schemas(name)
    out: dict[str, Any] = {}
    for k, v in _plain(params).items():
        if allowed is not None and k not in allowed:
            notes.append(f"invariant {name}: parameter {k}={_flow(v)} has no plan form; left out")
            continue
        spec = allowed.get(k) if allowed is not None else None
        is_duration = ("#/$defs/duration" in _flow(spec) if spec is not None
                       else isinstance(v, float) or k.endswith("_ms"))
        if is_duration and isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = f"{round(v)}ms" if k.endswith("_ms") else _dur(v)
        else:
            out[k] = v
    return out


def _ensemble_yaml(raw: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in _plain(raw).items():
        if v is None or (k in ("weights", "observers") and not v):
            continue
        if k == "weights":
            out[k] = {int(s): w for s, w in v.items()}
        elif k.endswith("_ms") and isinstance(v, int):
            out[k[:-3]] = f"{v}ms"
        elif k.endswith("_s") and isinstance(v, (int, float)):
            out[k[:-2]] = _dur(v)
        else:
            out[k] = v
    return out


def _invariants_yaml(journal: Journal, notes: list[str]) -> dict[str, Any]:
    """Every invariant the run checked, with its parameters; those it did not, off."""
    checked = journal.plan.invariants
    return {name: _invariant_params(name, checked[name], notes) if name in checked else False
            for name in INVARIANT_NAMES}


def _check_header(ensemble: Mapping[str, Any], invariants: Mapping[str, Any], journal: Journal,
                  notes: list[str]) -> None:
    """Parse the header as written; where it differs from what the run used,
    say so (a schedule with such notes has `exact_header` False)."""
    text = "\n".join(["name: header", "description: header", "ensemble:",
                      *(f"  {k}: {_flow(v)}" for k, v in ensemble.items()), "invariants:",
                      *(f"  {k}: {_flow(v)}" for k, v in invariants.items()), "steps:", "  - sleep: 0ms"])
    try:
        plan = parse_plan(text, "<header>")
    except PlanError as e:
        notes.extend(f"{_MISMATCH} the header does not parse as written: {i.message}" for i in e.errors)
        return
    raw_ens = _plain(journal.plan.raw.get("ensemble") or {})
    for k, v in plan.ensemble.to_json().items():
        if k in raw_ens and raw_ens[k] != v:
            notes.append(f"{_MISMATCH} ensemble {k}: the run had {_flow(raw_ens[k])}, this plan has {_flow(v)}")
    ran = {n: _plain(p) for n, p in journal.plan.invariants.items()}
    for spec in plan.invariants:
        want = ran.get(spec.name)
        if want is None:
            continue
        got = _plain(spec.params)
        for k in set(want) & set(got):
            a, b = want[k], got[k]
            same = (abs(float(a) - float(b)) < 1e-6 if isinstance(a, (int, float)) and isinstance(b, (int, float))
                    else a == b)
            if not same:
                notes.append(f"{_MISMATCH} invariant {spec.name}.{k}: the run had {_flow(a)}, "
                             f"this plan has {_flow(b)}")


# --------------------------------------------------------------------------- entry points


def schedule_from_journal(journal: Journal, *, run_dir: str | Path | None = None) -> Schedule:
    """The concrete steps `journal`'s run ran, in order, with its plan header."""
    b = _Builder(journal)
    b.walk(_step_tree(journal))
    raw = journal.plan.raw or {}
    run = journal.run
    notes: list[str] = []
    if journal.rebuilt:
        notes.append("the run did not finish (journal rebuilt from journal.jsonl); "
                     "the schedule ends where its journal does")
    ensemble = _ensemble_yaml(raw.get("ensemble") or {})
    invariants = _invariants_yaml(journal, notes)
    _check_header(ensemble, invariants, journal, notes)
    return Schedule(
        plan_name=journal.plan.name or run.plan_name, run_id=run.id,
        run_dir=str(run_dir) if run_dir is not None else None,
        seed=run.seed if run.seed is not None else journal.plan.seed,
        time_limit_s=journal.plan.time_limit_s,
        ensemble=ensemble, invariants=invariants,
        steps=tuple(b.steps), notes=tuple(notes + b.notes), simulated=run.simulated,
        source_description=journal.plan.description or run.description)


def schedule_from_run(run_dir: str | Path) -> Schedule:
    from chaos.journal import load
    return schedule_from_journal(load(run_dir), run_dir=Path(run_dir).resolve())


def _flow(value: Any) -> str:
    """A value as one line of YAML flow style."""
    text = yaml.safe_dump(_plain(value), default_flow_style=True, sort_keys=False, width=1 << 30)
    return text.removesuffix("\n...\n").strip()


def _block(text: str, indent: str = "  ") -> Iterator[str]:
    for line in text.strip("\n").splitlines() or [""]:
        yield (indent + line).rstrip()


def plan_text(schedule: Schedule, *, name: str | None = None, description: str | None = None,
              header: Sequence[str] = ()) -> str:
    """The schedule as plan YAML; `header` lines become comments at the top."""
    lines = [f"# {h}" for h in header]
    lines.append(f"# Written by chaos.schedule from {schedule.origin()}.")
    lines.append("# Roles, choices and as: names are resolved to sids; made-up names: tN toxics, "
                 "pN partitions, dN silent deaths.")
    for note in schedule.notes:
        lines.append(f"# note: {note}")
    lines.append(f"name: {name or schedule.default_name()}")
    lines.append("description: |")
    lines.extend(_block(description or schedule.default_description()))
    if schedule.seed is not None:
        lines.append(f"seed: {int(schedule.seed)}")
    if schedule.time_limit_s:
        lines.append(f"time_limit: {_dur(schedule.time_limit_s)}")
    lines.append("ensemble:")
    lines.extend(f"  {k}: {_flow(v)}" for k, v in schedule.ensemble.items())
    lines.append("invariants:")
    lines.extend(f"  {k}: {_flow(v)}" for k, v in schedule.invariants.items())
    lines.append("steps:")
    if not schedule.steps:
        lines.append("  - sleep: 0ms    # the run ran no step")
    said = None
    for s in schedule.steps:
        if s.comment and s.comment != said:
            lines.extend(f"  # {c}" for c in s.comment.splitlines())
        said = s.comment
        lines.append(f"  - {s.kind}: {_flow(s.value)}")
        if s.bind_as:
            lines.append(f"    as: {s.bind_as}")
    return "\n".join(lines) + "\n"


def write_plan(schedule: Schedule, path: str | Path, *, name: str | None = None,
               description: str | None = None, header: Sequence[str] = ()) -> Path:
    """Write the schedule as a plan at `path`, after checking that the plan
    parser accepts it (ScheduleError with its errors if not)."""
    path = Path(path)
    text = plan_text(schedule, name=name, description=description, header=header)
    try:
        parse_plan(text, str(path))
    except PlanError as e:
        raise ScheduleError("the written schedule does not parse:\n  "
                            + "\n  ".join(str(i) for i in e.errors)) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path

