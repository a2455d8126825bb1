"""One run of one plan, in stages: setup → steps → undo → settle → check → journal → render.

Theory of operation. :class:`Runner` only sequences stages; what a step does
lives in its handler (:mod:`chaos.steps`), what a fault undoes in the
:class:`~chaos.faults.FaultLedger`, and how nodes are started and observed in
the run's :class:`~chaos.targets.Target`.

Setup enters everything it starts (ports, Toxiproxy, proxies, node processes,
observer threads) into an :class:`contextlib.ExitStack` as it is created; the
stack unwinds in reverse order, undoing every fault still applied before the
nodes go, on success, on a failed step, on an exception, on Ctrl-C (SIGINT)
and on SIGTERM (turned into :class:`Interrupted`). A SIGKILL of this process
skips all of that; then PR_SET_PDEATHSIG, the nodes' ``--parent-pid``
watchdog and the next run's :func:`chaos.procs.janitor` do the job.

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

import contextlib
import datetime as _dt
import os
import random
import shlex
import signal
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from chaos import invariants as inv
from chaos import procs
from chaos.context import RunContext
from chaos.faults import FaultLedger
from chaos.journal import JournalWriter, load as load_journal
from chaos.links import LinkFaults
from chaos.observe import NodeStatus, Observer
from chaos.outcome import ExitCode, Verdict
from chaos.plan.model import Plan, Wait, WaitCondition
from chaos.ports import reserve_ports
from chaos.records import Fault, Journal, LogSummary, Process, RunStarted, StepFinished, Teardown
from chaos.steps import SetupFailure, StepFailed, run_step, run_steps
from chaos.targets import create_target

__all__ = ["RunOptions", "RunResult", "Interrupted", "SetupFailure", "run_plan",
           "default_run_dir", "is_reports_folder"]

SAFETY = ("single_leader", "leader_validity")


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived: stop the plan, clean up, exit 3."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


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
    target: str = "fle"
    links: str | None = None            # "config" | "netns"; None: the target's default
    target_options: dict = field(default_factory=dict)   # e.g. {"zookeeper_home": ...}


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
    for r in j.of_type(StepFinished):
        if r.resolved:
            table.setdefault(r.step, []).append(dict(r.resolved))
    return j.run.seed, table


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
        from chaos.baselines import for_target
        self.plan = for_target(opts.plan, opts.target)   # another target's elections have their own baseline
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
        self.run_id = uuid.uuid4().hex[:8]
        # Absolute: node processes run with their own cwd and get paths to their zoo.cfg.
        self.run_dir = (Path(opts.out) if opts.out else default_run_dir(self.plan.name, opts.reports_root)).resolve()
        self.time_limit = opts.time_limit_s or self.plan.time_limit_s
        self.journal: JournalWriter | None = None
        self.ctx: RunContext | None = None
        self.aborted: str | None = None
        self.progress = _Progress(opts.progress, time.monotonic())
        self._safety_warned = False
        self._first_fault = True
        self.workload: Any = None

    # ------------------------------------------------------------------ setup
    def setup(self, stack: contextlib.ExitStack) -> RunContext:
        """Start everything, each piece entered into ``stack`` as it is made."""
        plan, spec = self.plan, self.plan.ensemble
        self.run_dir.mkdir(parents=True, exist_ok=True)
        journal = self.journal = JournalWriter(self.run_dir)
        cmd = self.opts.command or " ".join(shlex.quote(a) for a in sys.argv)
        journal.set_header(run={
            "id": self.run_id, "plan_name": plan.name, "plan_path": plan.source_path,
            "description": plan.description, "seed": self.seed, "command": cmd,
            "replay_command": f"chaos run {shlex.quote(plan.source_path or plan.name)} --seed {self.seed} "
                              f"--replay {shlex.quote(str(self.run_dir))}",
            "toxiproxy": {"kind": self._toxiproxy_kind(), "url": self.opts.toxiproxy_url},
            "target": {"kind": self.opts.target}},
            plan=plan.to_json())
        registry = procs.RunRegistry(self.run_id, self.run_dir)
        self._undo(stack, "registry", registry.close)
        # Clear what crashed runs left; their proxies too if we share a server,
        # and their namespaces and nft tables (chaos.netns) whatever this run's links.
        procs.janitor(log=self.progress.say)
        self._lazy_janitor()
        if self.links_mode() != "netns":
            self._net_janitor()

        sids = list(spec.sids)
        link_keys = LinkFaults.all_links(sids)
        reservation = reserve_ports(3 * len(sids) + len(link_keys) + 1)
        self._undo(stack, "ports", reservation.release)
        ports = list(reservation.ports)
        real, ports = ports[:3 * len(sids)], ports[3 * len(sids):]
        listen = {k: ports[i] for i, k in enumerate(link_keys)}
        client = self._start_toxiproxy(stack, ports[len(link_keys)], registry)

        net = self._netns(stack, sids) if self.links_mode() == "netns" else None
        target = create_target(self.opts.target, self.run_dir, spec, real, listen, registry=registry,
                               on_process=self._on_process, net=net, **self.opts.target_options)
        real_ports = {sid: {"election": nd.election_port, "quorum": nd.quorum_port}
                      for sid, nd in target.nodes.items()}
        if net is not None:
            links = LinkFaults(client, self.run_id, real_ports, listen, host=net.net.host,
                               node_hosts={s: n.address for s, n in net.net.nodes.items()})
            net.up(real_ports, listen)
        else:
            links = LinkFaults(client, self.run_id, real_ports, listen)
        registry.set_proxies(f"fle_{self.run_id}_", client.url)
        self._undo(stack, "proxies", lambda: links.delete_proxies(self.warn))
        links.create_proxies()
        journal.set_header(nodes=target.header(), links=links.header(),
                           run={"toxiproxy": {"kind": self._toxiproxy_kind(), "url": client.url},
                                "target": {"kind": target.kind, "version": target.version()}})
        target.write_configs()
        if plan.uses("power_loss"):
            self._lazy_disks(stack, target)
        wire = self._wire_cuts(stack, sids, net, real_ports, listen) if plan.uses("reboot") else None
        observer = Observer(journal, target.endpoints(), running=target.is_running, on_change=self._on_status,
                            hosts=getattr(target, "hosts", dict)(), poll=getattr(target, "poll_status", None),
                            parse_line=getattr(target, "parse_event_line", None))
        self._undo(stack, "nodes", target.shutdown)
        ledger = FaultLedger(self._journal_fault, self.warn)
        # Faults go before the nodes do, and before the observer stops watching.
        self._undo(stack, "faults", ledger.undo_all)
        self._undo(stack, "observer", observer.stop)
        self.ctx = RunContext(plan=plan, rng=random.Random(self.seed), journal=journal, target=target,
                              links=links, observer=observer, ledger=ledger, progress=self.progress,
                              t_end=self.progress.t0 + self.time_limit, time_limit=self.time_limit,
                              replay=self.replay_table, after_step=self.check_safety, wire=wire)
        journal.record(RunStarted, seed=self.seed, command=cmd)
        observer.start()
        target.start_all()
        if hasattr(target, "client_servers"):
            # txn_interval 0 says "no txns": the servers are only read back at the end
            from chaos.workload import ZnodeWorkload
            self.workload = ZnodeWorkload(journal, target.client_servers(), log_path=self.run_dir / "workload.log")
            self._undo(stack, "workload", self.workload.stop)   # before the nodes go
            if spec.txn_interval_ms > 0:
                self.workload.start()
        running = sum(1 for s in sids if target.is_running(s))
        self.progress.say(f"ensemble of {len(sids)} ({running} started) behind {len(links.created)} proxies "
                          f"(run {self.run_id})")
        return self.ctx

    def links_mode(self) -> str:
        from chaos.targets import TARGETS
        return self.opts.links or getattr(TARGETS.get(self.opts.target), "default_links", "config")

    def _net_janitor(self) -> None:
        from chaos import netns
        try:
            if netns.leftovers():
                netns.janitor(procs.live_run_ids(), log=self.progress.say)
        except Exception as e:   # no rights to look or to remove: not this run's problem
            self.warn(f"janitor: cannot check network leftovers: {e}")

    def _lazy_janitor(self) -> None:
        from chaos import lazyfs
        try:
            if lazyfs.mounts():
                lazyfs.janitor(procs.live_run_ids(), log=self.progress.say)
        except Exception as e:   # not this run's problem
            self.warn(f"janitor: cannot check lazy mounts: {e}")

    def _lazy_disks(self, stack: contextlib.ExitStack, target: Any) -> None:
        """The plan cuts power: every node's ``version-2`` on a lazy disk
        (:mod:`chaos.lazyfs`), unmounted after the nodes are gone (registered
        before the nodes' shutdown, so it unwinds after it)."""
        from chaos import lazyfs
        problem = lazyfs.missing_requirements()
        if problem:
            raise SetupFailure(problem)
        if not hasattr(target, "mount_disks"):
            raise SetupFailure(f"the {target.kind} target has no lazy disks, so power_loss cannot run on it")
        self._undo(stack, "lazy disks", target.unmount_disks)
        try:
            target.mount_disks(self.run_id)
        except lazyfs.LazyFsError as e:
            raise SetupFailure(str(e)) from None

    def _wire_cuts(self, stack: contextlib.ExitStack, sids: list[int], net: Any,
                   real_ports: Mapping[int, Mapping[str, int]], listen: Mapping[tuple[int, int, str], int]) -> Any:
        """The plan reboots nodes: rules in the run's nft table cut their wires
        (:mod:`chaos.wirecut`); lifted, and the table dropped when it is ours,
        before the namespaces go (registered after them, so it unwinds first)."""
        from chaos import wirecut
        problem = wirecut.missing_requirements()
        if problem:
            raise SetupFailure(problem)
        wire = wirecut.WireCuts(self.run_id, wirecut.wires_for(sids, net=net.net if net is not None else None,
                                                              real_ports=real_ports, listen_ports=listen),
                                own_table=net is None)
        self._undo(stack, "wire cuts", wire.close)
        try:
            wire.open()
        except wirecut.WireCutError as e:
            raise SetupFailure(str(e)) from None
        return wire

    def _netns(self, stack: contextlib.ExitStack, sids: list[int]) -> Any:
        """A namespace per node (:mod:`chaos.netns`); removed after the nodes
        and proxies are gone (registered first, so it unwinds last)."""
        from chaos import netns
        problem = netns.missing_requirements()
        if problem:
            raise SetupFailure(problem)
        netns.janitor(procs.live_run_ids(), log=self.progress.say)
        slot = netns.reserve_slot(start=int(self.run_id, 16) % netns.SLOTS)
        self._undo(stack, "subnet", slot.release)
        links = netns.NetnsLinks(netns.layout(self.run_id, slot.slot, sids))
        def down() -> None:
            # the counters prove the interposition (chaos.netns): keep them before the table goes
            self.journal.set_header(run={"links": {"mode": "netns", "subnet": links.net.subnet,
                                                   "host": links.net.host, "counters": links.counters()}})
            for f in links.down():
                self.warn(f"cannot remove {f}")
        self._undo(stack, "namespaces", down)
        self.journal.set_header(run={"links": {"mode": "netns", "subnet": links.net.subnet,
                                               "host": links.net.host}})
        return links

    def _undo(self, stack: contextlib.ExitStack, name: str, fn: Callable[[], Any]) -> None:
        def safe() -> None:
            try:
                fn()
            except Exception as e:
                self.warn(f"cleanup of {name} failed: {type(e).__name__}: {e}")
        stack.callback(safe)

    def _toxiproxy_kind(self) -> str:
        if self.opts.toxiproxy_url:
            return "external"
        return "binary" if self.opts.toxiproxy_bin else "embedded"

    def _start_toxiproxy(self, stack: contextlib.ExitStack, port: int, registry: procs.RunRegistry) -> Any:
        from chaos.toxiproxy.client import ToxiproxyClient
        from chaos.toxiproxy.process import ToxiproxyServer
        if self.opts.toxiproxy_url:
            url = self.opts.toxiproxy_url.rstrip("/")
        else:
            log = self.run_dir / "toxiproxy.log"
            # A terminal's Ctrl-C goes to the whole foreground process group;
            # the server must outlive it so that faults can still be undone.
            # A signal blocked at fork stays blocked in the child across exec.
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                if self.opts.toxiproxy_bin:
                    server = ToxiproxyServer.binary(self.opts.toxiproxy_bin, host="127.0.0.1", port=port,
                                                    log_path=log)
                else:
                    server = ToxiproxyServer.embedded(host="127.0.0.1", port=port, seed=self.seed, log_path=log)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            self._undo(stack, "toxiproxy", server.stop)
            if getattr(server, "pid", None):
                registry.add(server.pid, "toxiproxy")
            url = server.url
        client = ToxiproxyClient(url)
        client.wait_ready(timeout=15.0)
        if self.opts.toxiproxy_url:
            procs.janitor(toxiproxy_client=client, log=self.progress.say)
        return client

    # ------------------------------------------------------------------ journal hooks
    def _journal_fault(self, phase: str, fault_id: str, kind: str, target: Mapping[str, Any],
                       links: tuple) -> None:
        assert self.journal is not None
        if phase == "requested" and self._first_fault:
            self._first_fault = False
            if inv.setup_failure(self.journal.snapshot()) is not None:
                raise SetupFailure("the ensemble never formed before the first fault")
        self.journal.record(Fault, phase=phase, fault_id=fault_id, kind=kind, target=target,
                            links=[list(lk) for lk in links])

    def _on_process(self, **kw: Any) -> None:
        observer = self.ctx.observer if self.ctx is not None else None
        if observer is not None and kw.get("action") in ("killed", "stopped", "exited", "started"):
            observer.bump(kw["sid"])  # first: no poll of the old process lands after this record
        if self.journal is not None:
            self.journal.record(Process, **kw)
        if observer is not None and kw.get("action") in ("killed", "stopped", "exited"):
            observer.mark_down(kw["sid"])

    def _on_status(self, old: NodeStatus, new: NodeStatus) -> None:
        if new.state == "LEADING" and old.state != "LEADING":
            self.progress.leader = new.sid
        elif old.state == "LEADING" and new.state != "LEADING" and self.progress.leader == new.sid:
            self.progress.leader = None

    def warn(self, msg: str) -> None:
        self.progress.say("warning: " + msg)

    def check_safety(self) -> None:
        """Safety invariants on the partial journal: report early (the
        verdict is decided at the end on the whole journal)."""
        if self._safety_warned or self.journal is None:
            return
        specs = {i.name: dict(i.params) for i in self.plan.invariants if i.name in SAFETY}
        if not specs:
            return
        for r in inv.check_all(self.journal.snapshot(), specs):
            if r.verdict == Verdict.INVALID:
                self._safety_warned = True
                self.progress.say(f"INVARIANT {r.name} VIOLATED: {r.message}")
                return

    # ------------------------------------------------------------------ stages
    def settle(self, ctx: RunContext) -> None:
        """After the undo, give the ensemble the convergence window to settle,
        so the convergence invariant judges a finished story."""
        spec = self.plan.invariant("convergence")
        within = self.opts.final_wait_s
        if within is None:
            within = float((spec.params.get("within") if spec else None) or inv.DEFAULT_CONVERGENCE_S)
        # Within the run's time limit: a runaway election must not stretch the
        # run. Cut short, convergence is judged `unknown` (the teardown record
        # says the bound was never given), never a false alarm.
        within = min(within, max(0.0, ctx.deadline_left()))
        if within <= 0:
            self.progress.say("final: no time left to settle within the time limit")
            return
        step = Wait(WaitCondition.STABLE, timeout_s=within, path="final", label="final wait: stable")
        try:
            run_step(ctx, step, "final")
        except StepFailed as e:
            self.progress.say(f"final: {e}")

    def log_summaries(self, ctx: RunContext) -> None:
        for sid in self.plan.ensemble.sids:
            try:
                fields = ctx.target.log_summary(sid)
            except Exception as e:
                fields = {"runs": None, "error": f"{type(e).__name__}: {e}"}
            ctx.record(LogSummary, sid=sid, **fields)

    def run(self) -> RunResult:
        error: str | None = None
        interrupted = infra = False
        self.progress = _Progress(self.opts.progress, time.monotonic())
        old = _install_signal_handlers()
        self.progress.say(f"{self.plan.name}: seed {self.seed}, run dir {self.run_dir}")
        try:
            with contextlib.ExitStack() as stack:
                try:
                    try:
                        ctx = self.setup(stack)
                        run_steps(ctx, self.plan.steps)
                    except StepFailed as e:
                        self.aborted = str(e)
                        self.progress.say(f"plan stopped: {e}")
                    if self.ctx is not None:
                        self.ctx.ledger.undo_all()
                        if self.ctx.formed:
                            self.settle(self.ctx)
                        if self.workload is not None:
                            self.workload.stop()
                            self.progress.say(f"workload: {len(self.workload.acked)} creates acknowledged, "
                                              f"{self.workload.errors} errors; reading every server back")
                            self.workload.read_back(self.ctx.target.is_running)
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
                    # From here on nothing may interrupt the cleanup.
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                    if error:
                        self.progress.say(f"stopping: {error}")
                    if self.journal is not None:
                        reason = "interrupted" if interrupted else "failed" if infra else "finished"
                        self.journal.record(Teardown, reason=reason)
                    t_down = time.monotonic()
            self.progress.say(f"teardown: faults undone, nodes and proxies gone ({time.monotonic() - t_down:.1f} s)")
            if self.ctx is not None:
                self.ctx.observer.drain_events()
                self.ctx.observer.close_elections()
                self.log_summaries(self.ctx)
        finally:
            _restore_signal_handlers(old)
        return self.finish(error, interrupted, infra)

    def finish(self, error: str | None, interrupted: bool, infra: bool) -> RunResult:
        if self.journal is None:
            return RunResult(ExitCode.INFRA, Verdict.UNKNOWN, self.run_dir, self.seed, error=error)
        specs = {i.name: dict(i.params) for i in self.plan.invariants} or None
        journal = self.journal.snapshot()
        t0 = time.monotonic()
        j = inv.judge_run(journal, specs, error=error, infra=infra, aborted=self.aborted, interrupted=interrupted)
        results, verdict, code, error = list(j.results), j.verdict, j.code, j.error
        self.progress.say(f"checks: {len(results)} invariants on {len(journal.records)} records "
                          f"({time.monotonic() - t0:.1f} s)")
        if error:
            self.journal.set_header(run={"error": error})
        if self.aborted:
            self.journal.set_header(run={"aborted": self.aborted})
        self.journal.finish(results, verdict, code)
        self.journal.close()
        t0 = time.monotonic()
        _render(self.run_dir, self.warn, self.journal.snapshot())
        self.progress.say(f"report written ({time.monotonic() - t0:.1f} s)")
        return RunResult(int(code), str(verdict), self.run_dir, self.seed, results, error)


def _render(run_dir: Path, warn: Callable[[str], None], journal: Journal) -> None:
    try:
        from chaos.report import render_index, render_report, write_junit
    except Exception as e:
        warn(f"no report renderer: {e}")
        return
    try:
        render_report(run_dir, journal=journal)
    except Exception as e:
        warn(f"report rendering failed: {type(e).__name__}: {e}")
    try:
        write_junit(journal, run_dir / "junit.xml")
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
