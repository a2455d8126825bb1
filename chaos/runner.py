"""One run of one plan: load → validate → start → steps → undo → checks → journal → report.

Theory of operation. Everything that starts something (ports, Toxiproxy,
proxies, node processes, observer threads) is entered into an ``ExitStack``-
like list of undo actions as it is created, and ``_cleanup`` runs them in
reverse order in ``finally`` — on success, on a failed step, on an
exception, on Ctrl-C (SIGINT) and on SIGTERM (turned into
:class:`Interrupted`). A SIGKILL of this process skips all of that; then
PR_SET_PDEATHSIG, the nodes' ``--parent-pid`` watchdog and the next run's
:func:`chaos.procs.janitor` do the job.

Verdicts are results, not exceptions: a step that cannot run (no leader to
kill) or a wait that times out is journaled with ``ok: false`` and ends the
plan; the invariants then judge the journal. Only a setup failure (the
ensemble never formed before the first fault) or an infrastructure error
yields ``unknown`` and exit 3.

Every random or role-dependent choice is journaled in ``step_started.resolved``;
``--replay RUN_DIR`` feeds those values back by step path instead of
resolving again, with the same seed.
"""
from __future__ import annotations

import datetime as _dt
import os
import random
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from chaos import invariants as inv
from chaos import procs
from chaos.ensemble import Ensemble
from chaos.journal import JournalWriter, load as load_journal
from chaos.links import LinkFaults
from chaos.observe import NodeStatus, Observer
from chaos.plan.model import (Choice, Direction, Heal, Kill, NodeState, Partition, Pause, Pick,
                              Plan, Repeat, Restart, Resume, Selector, Sleep, Stop, ToxicAdd,
                              ToxicRemove, Wait, WaitCondition)
from chaos.plan.partitions import compile_partition
from chaos.plan.selectors import ClusterView, resolve
from chaos.ports import reserve_ports

__all__ = ["RunOptions", "RunResult", "Interrupted", "SetupFailure", "run_plan",
           "default_run_dir", "is_reports_folder", "EXIT_OK", "EXIT_INVALID", "EXIT_USAGE", "EXIT_INFRA"]

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INFRA = 0, 1, 2, 3
SAFETY = ("single_leader", "leader_validity")


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived: stop the plan, clean up, exit 3."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SetupFailure(Exception):
    """The ensemble could not be brought up; the verdict is unknown (exit 3)."""


class _StepFailed(Exception):
    """A step could not do what it says; journaled, ends the plan."""


@dataclass
class RunOptions:
    plan: Plan
    seed: int | None = None
    out: Path | None = None
    time_limit_s: float | None = None
    toxiproxy_url: str | None = None
    toxiproxy_bin: str | None = None
    replay: Path | None = None
    command: str = ""
    progress: Callable[[str], None] | None = None
    reports_root: Path = Path("reports")
    final_wait_s: float | None = None


@dataclass
class RunResult:
    exit_code: int
    verdict: str
    run_dir: Path
    seed: int
    invariants: list = field(default_factory=list)
    error: str | None = None


def default_run_dir(plan_name: str, root: Path = Path("reports")) -> Path:
    ts = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = root / f"{plan_name}-{ts}"
    d, k = base, 1
    while d.exists():
        k += 1
        d = Path(f"{base}-{k}")
    return d


def _replay_table(run_dir: Path) -> tuple[int | None, dict[str, list[dict]]]:
    j = load_journal(run_dir)
    table: dict[str, list[dict]] = {}
    for r in j["records"]:
        if r.get("type") == "step_finished" and r.get("resolved"):
            table.setdefault(r["step"], []).append(r["resolved"])
    return j.get("run", {}).get("seed"), table


class _Progress:
    def __init__(self, sink: Callable[[str], None] | None, t0: float) -> None:
        self.sink = sink
        self.t0 = t0
        self.tty = sink is None and sys.stderr.isatty()
        self.step = "-"
        self.leader: int | None = None
        self._last = ""

    def say(self, msg: str, *, line: bool = True) -> None:
        text = f"[{time.monotonic() - self.t0:6.1f}s] {msg}"
        if self.sink is not None:
            self.sink(text)
            return
        if self.tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if line else ""))
        else:
            if text == self._last:
                return
            sys.stderr.write(text + "\n")
        self._last = text
        sys.stderr.flush()

    def status(self) -> None:
        """TTY: one line redrawn in place. Otherwise a plain line only when
        the leader changes, so CI logs stay readable."""
        key = (self.step, self.leader)
        if not self.tty and key == getattr(self, "_key", None):
            return
        if not self.tty and self.sink is None and getattr(self, "_key", (None,))[0] != self.step:
            self._key = key  # the step line itself was just printed
            return
        self._key = key
        self.say(f"{self.step} | leader {'n%d' % self.leader if self.leader else '-'}",
                 line=not self.tty)


class Runner:
    def __init__(self, opts: RunOptions) -> None:
        self.opts = opts
        self.plan = opts.plan
        self.replay_table: dict[str, list[dict]] = {}
        seed = opts.seed
        if opts.replay is not None:
            rseed, self.replay_table = _replay_table(Path(opts.replay))
            if seed is None:
                seed = rseed
        if seed is None:
            seed = self.plan.seed
        if seed is None:
            seed = random.SystemRandom().randrange(1, 2**31)
        self.seed = int(seed)
        self.rng = random.Random(self.seed)
        self.run_id = uuid.uuid4().hex[:8]
        # Absolute: node processes run with their own cwd and get paths to their zoo.cfg.
        self.run_dir = (Path(opts.out) if opts.out else default_run_dir(self.plan.name, opts.reports_root)).resolve()
        self.time_limit = opts.time_limit_s or self.plan.time_limit_s
        self.bindings: dict[str, tuple[int, ...]] = {}
        self.previous: tuple[int, ...] = ()
        self.toxic_names: dict[str, list[str]] = {}      # plan toxic name -> fault ids
        self.partition_names: dict[str, list[str]] = {}  # `as:` name -> fault ids
        self.paused: dict[int, str] = {}                  # sid -> fault id
        self.fault_no = 0
        self.first_fault_seen = False
        self.formed = False
        self.undo_stack: list[tuple[str, Callable[[], None]]] = []
        self.journal: JournalWriter | None = None
        self.ensemble: Ensemble | None = None
        self.links: LinkFaults | None = None
        self.observer: Observer | None = None
        self.server: Any = None
        self.client: Any = None
        self.toxiproxy_kind = "embedded"
        self.aborted: str | None = None

    # ------------------------------------------------------------------ helpers
    def rec(self, type: str, **fields: Any) -> int:
        assert self.journal is not None
        return self.journal.record(type, **fields)

    def view(self) -> ClusterView:
        assert self.observer is not None and self.ensemble is not None
        v = self.observer.view()
        live = tuple(s for s, st in v.items() if st.up and self.ensemble.is_running(s))
        leaders = [st for st in v.values() if st.up and st.state == "LEADING"]
        leader = max(leaders, key=lambda st: (st.epoch or 0, st.sid)).sid if leaders else None
        followers = tuple(s for s, st in v.items() if st.up and st.state == "FOLLOWING"
                          and (leader is None or st.leader == leader))
        observers = tuple(s for s, st in v.items() if st.up and st.state == "OBSERVING")
        if not observers:
            observers = tuple(s for s in self.plan.ensemble.observer_sids if s in live)
        return ClusterView(leader=leader, followers=followers, observers=observers, live=live,
                           previous=self.previous, sids=self.plan.ensemble.sids)

    def resolve(self, sel: Selector) -> tuple[int, ...]:
        return resolve(sel, self.view(), self.rng, self.bindings)

    def deadline_left(self) -> float:
        return self.t_end - time.monotonic()

    def new_fault(self) -> str:
        self.fault_no += 1
        return f"f{self.fault_no}"

    def fault(self, phase: str, fault_id: str, kind: str, target: dict, links: list | None = None) -> None:
        if phase == "requested" and not self.first_fault_seen:
            self.first_fault_seen = True
            if inv.setup_failure(self.snapshot()) is not None:
                raise SetupFailure("the ensemble never formed before the first fault")
        self.rec("fault", phase=phase, fault_id=fault_id, kind=kind, target=target,
                 links=[list(l) for l in (links or [])])

    def snapshot(self) -> dict:
        assert self.journal is not None
        j = self.journal.journal
        return {**j, "records": list(j["records"])}

    def _on_process(self, **kw: Any) -> None:
        if self.journal is not None:
            self.rec("process", **kw)
        if self.observer is not None:
            if kw.get("action") in ("killed", "stopped", "exited"):
                self.observer.mark_down(kw["sid"])
            elif kw.get("action") == "started":
                self.observer.bump(kw["sid"])

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        plan, spec = self.plan, self.plan.ensemble
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.journal = JournalWriter(self.run_dir)
        cmd = self.opts.command or " ".join(shlex.quote(a) for a in sys.argv)
        self.journal.set_header(run={
            "id": self.run_id, "plan_name": plan.name, "plan_path": plan.source_path,
            "description": plan.description, "seed": self.seed, "command": cmd,
            "replay_command": f"chaos run {shlex.quote(plan.source_path or plan.name)} --seed {self.seed} "
                              f"--replay {shlex.quote(str(self.run_dir))}",
            "toxiproxy": {"kind": self.toxiproxy_kind_name(), "url": self.opts.toxiproxy_url}},
            plan=plan.to_json())
        registry = procs.RunRegistry(self.run_id, self.run_dir)
        self.undo_stack.append(("registry", registry.close))
        self.registry = registry
        # Clear what crashed runs left; their proxies too if we share a server.
        procs.janitor(log=lambda m: self.progress.say(m))

        sids = list(spec.sids)
        n = len(sids)
        link_keys = LinkFaults.all_links(sids)
        reservation = reserve_ports(3 * n + len(link_keys) + 1)
        self.undo_stack.append(("ports", reservation.release))
        ports = list(reservation.ports)
        real, ports = ports[:3 * n], ports[3 * n:]
        listen = {k: ports[i] for i, k in enumerate(link_keys)}
        tp_port = ports[len(link_keys)]

        self.start_toxiproxy(tp_port)
        self.ensemble = Ensemble(self.run_dir, spec, real, listen, registry=registry,
                                 on_process=self._on_process)
        real_ports = {sid: {"election": nd.election_port, "quorum": nd.quorum_port}
                      for sid, nd in self.ensemble.nodes.items()}
        self.links = LinkFaults(self.client, self.run_id, real_ports, listen)
        registry.set_proxies(f"fle_{self.run_id}_", self.client_url)
        self.undo_stack.append(("proxies", lambda: self.links.delete_proxies(self.warn)))
        self.links.create_proxies()
        self.journal.set_header(nodes=self.ensemble.header(), links=self.links.header(),
                                run={"toxiproxy": {"kind": self.toxiproxy_kind_name(), "url": self.client_url}})
        self.ensemble.write_configs()
        self.observer = Observer(self.journal, {s: (nd.client_port, nd.events_path)
                                                for s, nd in self.ensemble.nodes.items()},
                                 running=self.ensemble.is_running, on_change=self._on_status)
        self.undo_stack.append(("nodes", self.ensemble.shutdown))
        self.undo_stack.append(("observer", self.observer.stop))
        self.rec("run_started", seed=self.seed, command=cmd)
        self.observer.start()
        self.ensemble.start_all()

    def toxiproxy_kind_name(self) -> str:
        if self.opts.toxiproxy_url:
            return "external"
        if self.opts.toxiproxy_bin:
            return "binary"
        return "embedded"

    def start_toxiproxy(self, port: int) -> None:
        from chaos.toxiproxy.client import ToxiproxyClient
        if self.opts.toxiproxy_url:
            self.client_url = self.opts.toxiproxy_url.rstrip("/")
        else:
            log = self.run_dir / "toxiproxy.log"
            # A terminal's Ctrl-C goes to the whole foreground process group;
            # the server must outlive it so that faults can still be undone.
            # A signal blocked at fork stays blocked in the child across exec.
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                self._spawn_server(port, log)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            self.undo_stack.append(("toxiproxy", self.server.stop))
            pid = getattr(self.server, "pid", None)
            if pid:
                self.registry.add(pid, "toxiproxy")
            self.client_url = self.server.url
        self.client = ToxiproxyClient(self.client_url)
        self.client.wait_ready(timeout=15.0)
        if self.opts.toxiproxy_url:
            procs.janitor(toxiproxy_client=self.client, log=self.progress.say)

    def _spawn_server(self, port: int, log: Path) -> None:
        from chaos.toxiproxy.process import ToxiproxyServer
        if self.opts.toxiproxy_bin:
            self.server = ToxiproxyServer.binary(self.opts.toxiproxy_bin, host="127.0.0.1", port=port,
                                                 log_path=log)
        else:
            self.server = ToxiproxyServer.embedded(host="127.0.0.1", port=port, seed=self.seed,
                                                   log_path=log)

    def warn(self, msg: str) -> None:
        self.progress.say("warning: " + msg)

    def _on_status(self, old: NodeStatus, new: NodeStatus) -> None:
        if new.state == "LEADING" and old.state != "LEADING":
            self.progress.leader = new.sid
        elif old.state == "LEADING" and new.state != "LEADING" and self.progress.leader == new.sid:
            self.progress.leader = None

    # ------------------------------------------------------------------ waits
    def _live_voters(self, v: dict[int, NodeStatus]) -> list[int]:
        assert self.ensemble is not None
        return [s for s in self.plan.ensemble.sids if self.ensemble.is_running(s)
                and s not in self.paused]

    def condition_met(self, step: Wait, targets: tuple[int, ...]) -> bool:
        v = self.observer.view()
        ens = self.plan.ensemble
        live = self._live_voters(v)
        if any(not v[s].up for s in live):
            return False
        leaders = [s for s in live if v[s].state == "LEADING"]
        cond = step.condition
        if cond is WaitCondition.STATE:
            want = (step.state or NodeState.LEADING).value.upper()
            return bool(targets) and all(v[s].up and v[s].state == want for s in targets)
        if cond is WaitCondition.LEADER:
            # A deposed leader cut off in a minority may still say LEADING
            # for up to syncLimit ticks; one with an established quorum is enough.
            return any(v[s].synced for s in leaders)
        if len(leaders) != 1:
            return False
        lead = v[leaders[0]]
        if not lead.synced:
            return False

        def joined(s: int) -> bool:
            st = v[s]
            want = "OBSERVING" if ens.is_observer(s) else "FOLLOWING"
            return (st.up and st.state == want and st.leader == lead.sid and st.synced
                    and (st.epoch == lead.epoch or st.epoch is None))

        if cond is WaitCondition.JOINED:
            return bool(targets) and all(s == lead.sid or joined(s) for s in targets)
        # stable: every live node follows the one leader
        return all(s == lead.sid or joined(s) for s in live)

    def describe_view(self) -> str:
        """What each node looked like, for a failed wait's message."""
        parts = []
        for sid, st in sorted(self.observer.view().items()):
            if not self.ensemble.is_running(sid):
                parts.append(f"n{sid} down")
            elif sid in self.paused:
                parts.append(f"n{sid} paused")
            elif not st.up:
                parts.append(f"n{sid} not answering")
            else:
                lead = f"->n{st.leader}" if st.leader is not None else ""
                parts.append(f"n{sid} {st.state}{lead} e{st.epoch}{'' if st.synced else ' unsynced'}")
        return ", ".join(parts)

    def do_wait(self, step: Wait, path: str, resolved: dict) -> None:
        targets: tuple[int, ...] = ()
        if step.node is not None:
            try:
                targets = tuple(self._resolved_or(path, resolved, "node", lambda: self.resolve(step.node)))
            except Exception as e:  # no such node right now: the step fails, the run goes on to judge
                raise _StepFailed(str(e)) from None
        elif step.condition is WaitCondition.JOINED or step.condition is WaitCondition.STATE:
            targets = tuple(self._live_voters(self.observer.view()))
        timeout = min(step.timeout_s, max(0.0, self.deadline_left()))
        end = time.monotonic() + timeout
        while True:
            if self.condition_met(step, targets):
                if step.condition is WaitCondition.STABLE or step.condition is WaitCondition.LEADER:
                    self.formed = True
                v = self.view()
                resolved["leader"] = v.leader
                return
            self.check_exits()
            left = end - time.monotonic()
            if left <= 0:
                why = "time limit of the run reached" if self.deadline_left() <= 0 else f"timed out after {timeout:g}s"
                raise _StepFailed(f"wait for {step.condition.value}: {why} (liveness failure); "
                                  f"last seen: {self.describe_view()}")
            self.observer.wait_change(min(left, 0.25))
            self.progress.status()

    def _resolved_or(self, path: str, resolved: dict, key: str, fn: Callable[[], Any]) -> Any:
        rep = self._replayed(path)
        if rep is not None and key in rep:
            val = rep[key]
            val = tuple(val) if isinstance(val, list) else val
        else:
            val = fn()
        resolved[key] = list(val) if isinstance(val, tuple) else val
        return val

    def _replayed(self, path: str) -> dict | None:
        q = self.replay_table.get(path)
        if not q:
            return None
        return q[0]

    # ------------------------------------------------------------------ steps
    def check_exits(self) -> None:
        assert self.ensemble is not None
        for sid, code in self.ensemble.poll_exits():
            self.warn(f"node {sid} exited on its own (exit code {code})")

    def run_steps(self, steps: tuple, parent_model: str, parent_journal: str) -> None:
        for step in steps:
            path = parent_journal + step.path[len(parent_model):] if parent_model and step.path.startswith(parent_model) else step.path
            self.run_step(step, path)

    def run_step(self, step: Any, path: str) -> None:
        if self.deadline_left() <= 0:
            raise _StepFailed(f"time limit of {self.time_limit:g}s reached before {path}")
        resolved: dict[str, Any] = {}
        label = step.label or _describe(step)
        self.progress.step = f"{path} {label}"
        self.progress.say(f"{path} {label}")
        kind = step.kind
        ok, error = True, None
        started = [False]

        def begin() -> None:
            if not started[0]:
                started[0] = True
                self.rec("step_started", step=path, kind=kind, label=label, resolved=dict(resolved))

        try:
            if isinstance(step, Repeat):
                begin()
                for k in range(step.times):
                    self.run_steps(step.steps, step.path + ".repeat", f"{path}.repeat[{k}]")
            elif isinstance(step, Choice):
                pick = self._resolved_or(path, resolved, "branch",
                                         lambda: self.rng.randrange(len(step.branches)))
                begin()
                self.run_steps(step.branches[pick], f"{step.path}.choice.steps[{pick}]",
                               f"{path}.choice.steps[{pick}]")
            else:
                self.execute(step, path, resolved, begin)
        except _StepFailed as e:
            ok, error = False, str(e)
            raise
        except (SetupFailure, Interrupted, KeyboardInterrupt):
            ok, error = False, "aborted"
            raise
        except Exception as e:  # an infrastructure error inside a step
            ok, error = False, f"{type(e).__name__}: {e}"
            raise
        finally:
            begin()
            self.rec("step_finished", step=path, kind=kind, label=label, resolved=resolved,
                     ok=ok, error=error)
            if resolved or not ok:
                shown = ", ".join(f"{k}={v}" for k, v in resolved.items() if k in ("target", "node", "leader", "branch", "links", "blocked"))
                self.progress.say(f"{path} {'ok' if ok else 'FAILED: ' + str(error)}" + (f" ({shown})" if shown else ""))
            if self.replay_table.get(path):
                self.replay_table[path].pop(0)
        self.check_safety()

    def execute(self, step: Any, path: str, resolved: dict, begin: Callable[[], None]) -> None:
        """Resolve first, journal step_started with what was resolved, then act."""
        ens = self.ensemble
        assert ens is not None and self.links is not None

        def target() -> tuple[int, ...]:
            try:
                sids = self._resolved_or(path, resolved, "target", lambda: self.resolve(step.target))
            except Exception as e:
                begin()
                raise _StepFailed(str(e)) from None
            if not sids:
                begin()
                raise _StepFailed(f"'{step.target}' matches no node")
            return tuple(sids)

        if isinstance(step, Wait):
            begin()
            self.do_wait(step, path, resolved)
        elif isinstance(step, Pick):
            sids = target()
            begin()
            self._bind(step, sids)
        elif isinstance(step, Sleep):
            begin()
            cut = step.seconds > self.deadline_left()
            end = time.monotonic() + min(step.seconds, max(0.0, self.deadline_left()))
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(left, 0.25))
                self.check_exits()
                self.progress.status()
            if cut:
                raise _StepFailed(f"time limit of {self.time_limit:g}s reached during the sleep")
        elif isinstance(step, (Kill, Pause, Stop)):
            sids = target()
            begin()
            fkind = step.kind
            for sid in sids:
                if not ens.is_running(sid):
                    raise _StepFailed(f"node {sid} is not running")
                fid = self.new_fault()
                self.fault("requested", fid, fkind, {"sid": sid})
                if sid in self.paused and not isinstance(step, Pause):
                    # ending a stopped process ends its pause too
                    self.fault("undone", self.paused.pop(sid), "pause", {"sid": sid, "by": fkind})
                if isinstance(step, Kill):
                    ens.kill(sid)
                elif isinstance(step, Stop):
                    ens.stop(sid)
                else:
                    ens.pause(sid)
                    self.paused[sid] = fid
                self.fault("effective", fid, fkind, {"sid": sid})
            self._bind(step, sids)
        elif isinstance(step, Resume):
            sids = target()
            begin()
            for sid in sids:
                if sid not in self.paused:
                    raise _StepFailed(f"node {sid} is not paused")
                ens.resume(sid)
                self.fault("undone", self.paused.pop(sid), "pause", {"sid": sid})
            self._bind(step, sids)
        elif isinstance(step, Restart):
            sids = target()
            begin()
            for sid in sids:
                if sid in self.paused:
                    ens.resume(sid)
                    self.fault("undone", self.paused.pop(sid), "pause", {"sid": sid})
                ens.restart(sid)
            self._bind(step, sids)
        elif isinstance(step, ToxicAdd):
            links = self._resolved_or(path, resolved, "links", lambda: self._toxic_links(step))
            links = [tuple(l) for l in links]
            begin()
            if not links:
                raise _StepFailed("the link selector matches no link")
            fid = self.new_fault()
            tgt = {"name": step.name, "type": step.type, "attributes": dict(step.attributes),
                   "toxicity": step.toxicity}
            self.fault("requested", fid, "toxic", tgt, links)
            self.toxic_names.setdefault(step.name, []).append(fid)
            self.links.add_toxic(fid, "toxic", links, step.type, step.attributes, step.toxicity)
            self.fault("effective", fid, "toxic", tgt, links)
            self.previous = tuple(sorted({l[1] for l in links}))
        elif isinstance(step, ToxicRemove):
            begin()
            names = list(self.toxic_names) if step.name == "all" else [step.name]
            if step.name != "all" and step.name not in self.toxic_names:
                raise _StepFailed(f"no active toxic named '{step.name}'")
            for name in names:
                for fid in self.toxic_names.pop(name, []):
                    self.undo_fault(fid)
        elif isinstance(step, Partition):
            rep = self._replayed(path)
            if rep is not None and "blocked" in rep:
                blocked = sorted(tuple(p) for p in rep["blocked"])
                resolved.update(rep)
            else:
                v = self.view()
                try:
                    cp = compile_partition(step.spec, self.plan.ensemble.sids, v.leader, self.rng,
                                           view=v, bindings=self.bindings)
                except Exception as e:
                    begin()
                    raise _StepFailed(str(e)) from None
                blocked = sorted(cp.blocked)
                resolved.update(cp.to_json())
                resolved["leader"] = v.leader
            begin()
            fid = self.new_fault()
            ports = step.spec.port.ports
            links = [(a, b, p) for a, b in blocked for p in ports]
            tgt = {"spec": step.spec.to_json(), "blocked": [list(p) for p in blocked],
                   "name": step.bind_as}
            self.fault("requested", fid, "partition", tgt, links)
            if step.bind_as:
                self.partition_names.setdefault(step.bind_as, []).append(fid)
            self.partition_names.setdefault("", []).append(fid)
            self.links.block(fid, blocked, ports)
            self.fault("effective", fid, "partition", tgt, links)
        elif isinstance(step, Heal):
            begin()
            if step.name is None or step.name == "all":
                fids = self.partition_names.pop("", [])
                self.partition_names.clear()
            else:
                if step.name not in self.partition_names:
                    raise _StepFailed(f"no active partition named '{step.name}'")
                fids = self.partition_names.pop(step.name)
                self.partition_names[""] = [f for f in self.partition_names.get("", []) if f not in fids]
            for fid in fids:
                self.undo_fault(fid)
        else:  # pragma: no cover - the model is closed
            begin()
            raise _StepFailed(f"unknown step kind {step.kind}")

    def _bind(self, step: Any, sids: tuple[int, ...]) -> None:
        self.previous = tuple(sids)
        if getattr(step, "bind_as", None):
            self.bindings[step.bind_as] = tuple(sids)

    def _toxic_links(self, step: ToxicAdd) -> list[tuple[int, int, str]]:
        sel = step.links
        src = self.resolve(sel.src)
        dst = self.resolve(sel.dst)
        out = []
        for a in src:
            for b in dst:
                if a == b:
                    continue
                for p in sel.port.ports:
                    out.append((a, b, p))
                    if sel.direction is Direction.BOTH:
                        out.append((b, a, p))
        return sorted(set(out))

    def undo_fault(self, fid: str) -> None:
        assert self.links is not None
        f = self.links.faults.get(fid)
        if f is None:
            return
        links = self.links.undo(fid)
        self.fault("undone", fid, f.kind, {}, links)

    def undo_all(self) -> None:
        """Every fault still applied is undone and journaled, best effort."""
        if self.links is not None:
            for fid in list(self.links.faults):
                try:
                    self.undo_fault(fid)
                except Exception as e:
                    self.warn(f"undo of {fid} failed: {e}")
            self.toxic_names.clear()
            self.partition_names.clear()
        if self.ensemble is not None:
            for sid, fid in list(self.paused.items()):
                try:
                    self.ensemble.resume(sid)
                    self.fault("undone", fid, "pause", {"sid": sid})
                except Exception as e:
                    self.warn(f"resume of node {sid} failed: {e}")
                self.paused.pop(sid, None)

    def check_safety(self) -> None:
        """Safety invariants on the partial journal: report early (the
        verdict is decided at the end on the whole journal)."""
        specs = {i.name: dict(i.params) for i in self.plan.invariants if i.name in SAFETY}
        if not specs:
            return
        for r in inv.check_all(self.snapshot(), specs):
            if r.verdict == inv.INVALID and not getattr(self, "_safety_warned", False):
                self._safety_warned = True
                self.progress.say(f"INVARIANT {r.name} VIOLATED: {r.message}")

    # ------------------------------------------------------------------ end
    def final_wait(self) -> None:
        """After the undo, give the ensemble the convergence window to settle,
        so the convergence invariant judges a finished story."""
        spec = self.plan.invariant("convergence")
        within = self.opts.final_wait_s
        if within is None:
            within = float((spec.params.get("within") if spec else None) or inv.DEFAULT_CONVERGENCE_S)
        step = Wait(WaitCondition.STABLE, timeout_s=within, path="final", label="final wait: stable")
        self.t_end = max(self.t_end, time.monotonic() + within)
        try:
            self.run_step(step, "final")
        except _StepFailed as e:
            self.progress.say(f"final: {e}")

    def log_summaries(self) -> None:
        from node.storage import Storage
        assert self.ensemble is not None
        for sid, nd in self.ensemble.nodes.items():
            tmp = Path(tempfile.mkdtemp(prefix=f"fle-chaos-log-n{sid}-"))
            try:
                if not nd.data_dir.is_dir():
                    continue
                copy = tmp / "data"
                shutil.copytree(nd.data_dir, copy, ignore=shutil.ignore_patterns("events.jsonl"))
                st = Storage(copy)
                try:
                    runs = [list(r) for r in st.summary()]
                finally:
                    st.close()
                self.rec("log_summary", sid=sid, runs=runs, last_committed_zxid=st.last_committed_zxid)
            except Exception as e:
                self.rec("log_summary", sid=sid, runs=None, error=f"{type(e).__name__}: {e}")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    def cleanup(self) -> None:
        while self.undo_stack:
            name, fn = self.undo_stack.pop()
            if name == "nodes":
                try:
                    self.undo_all()
                except Exception as e:
                    self.warn(f"undo failed: {e}")
            try:
                fn()
            except Exception as e:
                self.warn(f"cleanup of {name} failed: {type(e).__name__}: {e}")

    # ------------------------------------------------------------------ main
    def run(self) -> RunResult:
        t0 = time.monotonic()
        self.progress = _Progress(self.opts.progress, t0)
        self.t_end = t0 + self.time_limit
        error: str | None = None
        interrupted = False
        infra = False
        old = _install_signal_handlers()
        self.progress.say(f"{self.plan.name}: seed {self.seed}, run dir {self.run_dir}")
        try:
            try:
                self.setup()
                self.progress.say(f"ensemble of {len(self.plan.ensemble.sids)} started behind "
                                  f"{len(self.links.created)} proxies (run {self.run_id})")
                self.run_steps(self.plan.steps, "", "")
            except _StepFailed as e:
                self.aborted = str(e)
                self.progress.say(f"plan stopped: {e}")
            if self.links is not None:
                self.undo_all()
            if self.formed:
                self.final_wait()
        except Interrupted as e:
            interrupted, error = True, f"interrupted by {e}"
        except KeyboardInterrupt:
            interrupted, error = True, "interrupted by SIGINT"
        except SetupFailure as e:
            infra, error = True, str(e)
        except Exception as e:
            infra, error = True, f"{type(e).__name__}: {e}"
            if os.environ.get("CHAOS_DEBUG"):
                traceback.print_exc()
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                if error:
                    self.progress.say(f"stopping: {error}")
                self.cleanup()
                if self.journal is not None and self.ensemble is not None:
                    if self.observer is not None:
                        self.observer.drain_events()
                    self.log_summaries()
            finally:
                _restore_signal_handlers(old)
        return self.finish(error, interrupted, infra)

    def finish(self, error: str | None, interrupted: bool, infra: bool) -> RunResult:
        if self.journal is None:
            return RunResult(EXIT_INFRA, "unknown", self.run_dir, self.seed, error=error)
        specs = {i.name: dict(i.params) for i in self.plan.invariants} or None
        try:
            results = inv.check_all(self.snapshot(), specs)
        except Exception as e:
            results, infra = [], True
            error = error or f"invariant check crashed: {type(e).__name__}: {e}"
        verdict = inv.overall(results)
        setup = inv.setup_failure(self.snapshot())
        if setup is not None:
            verdict, infra = "unknown", True
            error = error or setup
        if self.aborted and verdict == "valid" and not interrupted:
            # The invariants held on what ran, but the plan did not run to
            # its end: the test is incomplete, not passed.
            verdict, infra = "unknown", True
            error = error or f"plan stopped early: {self.aborted}"
        if interrupted or infra:
            code = EXIT_INVALID if verdict == "invalid" and not interrupted else EXIT_INFRA
            if verdict != "invalid":
                verdict = "unknown"
        else:
            code = {"valid": EXIT_OK, "invalid": EXIT_INVALID}.get(verdict, EXIT_INFRA)
        if error:
            self.journal.set_header(run={"error": error})
        if self.aborted:
            self.journal.set_header(run={"aborted": self.aborted})
        self.journal.finish(results, verdict, code)
        self.journal.close()
        _render(self.run_dir, self.warn)
        return RunResult(code, verdict, self.run_dir, self.seed, results, error)


def _render(run_dir: Path, warn: Callable[[str], None]) -> None:
    try:
        from chaos.report import render_index, render_report, write_junit
    except Exception as e:
        warn(f"no report renderer: {e}")
        return
    try:
        render_report(run_dir)
    except Exception as e:
        warn(f"report rendering failed: {type(e).__name__}: {e}")
    try:
        write_junit(load_journal(run_dir), run_dir / "junit.xml")
    except Exception as e:
        warn(f"junit writing failed: {type(e).__name__}: {e}")
    parent = run_dir.resolve().parent
    if not is_reports_folder(parent):
        return  # `--out /tmp/x`: never drop an index.html into an unrelated folder
    try:
        render_index(parent)
    except Exception as e:
        warn(f"index rendering failed: {type(e).__name__}: {e}")


def is_reports_folder(folder: Path) -> bool:
    """A folder that holds only runs (and its index): the default reports/,
    or the parent that `--out` names for several runs."""
    for entry in folder.iterdir():
        if entry.name.startswith(".") or entry.name == "index.html":
            continue
        if not (entry.is_dir() and ((entry / "journal.jsonl").exists() or (entry / "journal.json").exists())):
            return False
    return True


def _describe(step: Any) -> str:
    d = step.to_json()
    d.pop("kind", None), d.pop("path", None), d.pop("label", None)
    d = {k: v for k, v in d.items() if v not in (None, [], {})}
    if isinstance(step, Repeat):
        return f"repeat {step.times}x"
    if isinstance(step, Choice):
        return f"choice of {len(step.branches)}"
    inner = ", ".join(f"{k}={v}" for k, v in d.items() if k != "steps")
    return f"{step.kind} {inner}".strip()


def _handler(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def _install_signal_handlers() -> dict:
    old = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.signal(s, _handler)
    return old


def _restore_signal_handlers(old: dict) -> None:
    for s, h in old.items():
        signal.signal(s, h)


def run_plan(opts: RunOptions) -> RunResult:
    return Runner(opts).run()
