"""Golden scenario scripts for the election core: a tiny command interpreter.

A script drives `node.sim.Simulator` (through the `ScriptSim` subclass below)
and prints a deterministic, readable trace: notifications delivered, what
each core did about them (sends, ignores, quorum, finalize, decisions with
path, state changes), epochs established and learners synced. The golden
tests (`tests/node_core/test_golden.py`) run every
`tests/node_core/scenarios/*.txt` and compare the trace with the text stored
under each command block.

File format
-----------
    # comment lines and blank lines are kept as they are
    ensemble voters=3
    start 1 2 3 zxid=1:0 epoch=1
    ----
    1 starts election r1 vote (1, zxid=1:0, epoch=1)
    ...

A block is one or more command lines, a `----` line, and the expected output
up to the next blank line (or the end of the file). A block whose commands
print nothing expects `ok`. Rewriting (`FLE_REWRITE=1` in the tests, or
`python -m node.sim_script --rewrite FILE...`) replaces every expected
output with what the commands print now and keeps everything else.

Network modes
-------------
`net=manual` (the default): every notification, loopback included, is
*held* until a command moves it. `deliver` moves exactly the messages held
when it starts (one hop, in send order); `tick` lets time pass with the
network frozen (timers and the Zab-lite tick run); `run-for` and
`stabilize` deliver held messages at once (zero latency) and advance the
clock only when the network is quiet. `net=random` uses the Simulator's own
seeded delays; `deliver` is then refused and `tick` is `run-for`.

Output: a `t=...` line whenever virtual time has moved; `A->B ...` for each
notification moved (`DROPPED` / `LOST (reason)` when it did not arrive),
with what the receiver did indented below; `N <timer> timer fires` likewise;
timers being armed or cancelled are not printed.

Commands
--------
    ensemble voters=N|(sids) [observers=N|(sids)] [weights=(w...)]
             [seed=S] [net=manual|random] [protocol=3.8|3.4]
             [finalize=MS] [sync-limit=DUR] [init-limit=DUR]
             [min-delay=DUR] [max-delay=DUR]   (the last two: net=random)
        weights= puts all voters in one hierarchical group with those weights.
    peer SID [zxid=E:C] [epoch=E] [accepted=E]     persisted state before start
    start SID... [zxid=V|(V...)] [epoch=..] [accepted=..]
        peers are down (unreachable) until started; zxid 0:0, epoch 0 by default.
    deliver [from=SID] [to=SID] [leader=SID] [drop=(SID...)] [n=K]
        moves the held messages that match (leader= matches the proposed
        leader, which lets a later message overtake an earlier one), at most
        K of them; drop= discards (instead of delivering) those *sent by*
        the listed sids. Prints `no messages` when none matched.
    tick DURATION         e.g. 200ms, 1s  (network frozen in manual mode)
    run-for DURATION
    stabilize [DURATION]  until one established leader and all reachable
                          peers synced to it (default 60s of virtual time);
                          prints `stable: leader L epoch E` or `NOT STABLE ...`
    partition (SID...) (SID...)  |  heal  |  crash SID...  |  restart SID...
    status                per-peer state, round, vote or proposal, recvset as
                          {sid:leader ...}, persisted zxid/epochs; held messages
    msgs                  the held messages, in delivery order

Zxids print as `epoch:counter`; a vote prints as `(leader, zxid=.., epoch=..)`
and `rN` is the sender's round (ZooKeeper's electionEpoch).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .fle import (
    CancelTimer,
    ConnectAll,
    Decided,
    Effect,
    EventOut,
    Send,
    SetTimer,
    StateChanged,
)
from .sim import SimNode, Simulator
from zkrules.quorum import QuorumHierarchical, QuorumMaj
from zkrules.vote import LONG_MIN, Notification, ServerState, make_zxid, zxid_counter, zxid_epoch

__all__ = ["ScriptError", "ScriptSim", "Block", "parse_script", "run_script", "render", "main"]

SEPARATOR = "----"
MAX_DELIVERIES = 20_000  # per command: a guard against a message storm


class ScriptError(ValueError):
    """A script that cannot be parsed or run; the message names the line."""


# -- formatting -----------------------------------------------------------------
def fmt_zxid(z: int) -> str:
    if z == LONG_MIN:
        return "min"
    if z < 0:
        return str(z)
    return f"{zxid_epoch(z)}:{zxid_counter(z)}"


def fmt_vote(leader: int, zxid: int, epoch: int) -> str:
    if leader == LONG_MIN:
        return "(none)"
    return f"({leader}, zxid={fmt_zxid(zxid)}, epoch={epoch})"


def fmt_ms(t: float) -> str:
    if float(t).is_integer():
        return f"{int(t)}ms"
    return f"{t:.3f}".rstrip("0") + "ms"


def fmt_sids(sids) -> str:
    return ",".join(str(s) for s in sorted(sids))


def fmt_note(n: Notification) -> str:
    st = n.state.name if isinstance(n.state, ServerState) else str(n.state)
    return f"{st} r{n.round} {fmt_vote(n.leader, n.zxid, n.peer_epoch)}"


def _payload(s: Send) -> tuple:
    return (s.state, s.leader, s.zxid, s.round, s.peer_epoch)


# -- the simulator, instrumented -----------------------------------------------------
class ScriptSim(Simulator):
    """A Simulator that prints what happens and, in manual mode, holds messages."""

    def __init__(self, *args, manual: bool = True, **kwargs) -> None:
        self.manual = manual
        self.held: list[tuple] = []  # (src, dst, Notification, src_incarnation, link_gen)
        self.lines: list[str] = []
        self._indent = 0
        self._cause: str | None = None
        self._reason = "start"
        self._last_t = 0.0
        super().__init__(*args, **kwargs)

    # output
    def emit(self, text: str, indent: int | None = None) -> None:
        if self.now_ms != self._last_t:
            self._last_t = self.now_ms
            self.lines.append(f"t={fmt_ms(self.now_ms)}")
        if self._cause is not None:
            cause, self._cause = self._cause, None
            self.lines.append(cause)
        self.lines.append(" " * (self._indent if indent is None else indent) + text)

    # hooks into the Simulator
    def _push(self, t: float, kind: str, data: tuple) -> None:
        if self.manual and kind == "deliver":
            self.held.append(data)
            return
        super()._push(t, kind, data)

    def _start_election(self, node: SimNode, reason: str) -> None:
        self._reason = reason
        super()._start_election(node, reason)

    def _apply(self, node: SimNode, effects: list[Effect]) -> None:
        self._log_effects(node.sid, effects)
        super()._apply(node, effects)

    def _note(self, sid: int, what: str, fields: dict) -> None:
        super()._note(sid, what, fields)
        if what == "epoch_established":
            self.emit(f"{sid} establishes epoch {fields['epoch']} with {fmt_sids(fields['quorum'])}")

    def _on_deliver(self, src: int, dst: int, n: Notification, src_inc: int, link_gen) -> None:
        self.emit(f"{src}->{dst} {fmt_note(n)}{self._loss(src, dst, src_inc, link_gen)}", 0)
        self._indent = 2
        try:
            super()._on_deliver(src, dst, n, src_inc, link_gen)
        finally:
            self._indent = 0

    def _on_timer(self, sid: int, inc: int, name: str, token: int) -> None:
        self._cause = f"{sid} {name} timer fires"
        self._indent = 2
        try:
            super()._on_timer(sid, inc, name, token)
        finally:
            self._indent = 0
            self._cause = None

    def _on_tick(self) -> None:
        before = {s: (n.synced, n.alive) for s, n in self.nodes.items()}
        super()._on_tick()
        for s, n in sorted(self.nodes.items()):
            if n.alive and n.synced and not before[s][0] and n.established_epoch is None:
                v = n.core.current_vote
                self.emit(f"{s} syncs with leader {v.leader} at epoch {n.current_epoch}"
                          f" zxid={fmt_zxid(n.last_zxid)}")

    # helpers
    def _loss(self, src: int, dst: int, src_inc: int, link_gen) -> str:
        a, b = self.nodes[src], self.nodes[dst]
        if src != dst and self._links.get(frozenset((src, dst))) != link_gen:
            return " LOST (connection broken)"
        if not b.alive:
            return " LOST (receiver down)"
        if a.incarnation != src_inc:
            return " LOST (sender restarted)"
        return ""

    def _log_effects(self, sid: int, effects: list[Effect]) -> None:
        i = 0
        while i < len(effects):
            fx = effects[i]
            if isinstance(fx, Send):
                tos = [fx.to]  # consecutive sends of one notification print as one line
                while (i + 1 < len(effects) and isinstance(effects[i + 1], Send)
                       and _payload(effects[i + 1]) == _payload(fx)):
                    i += 1
                    tos.append(effects[i].to)
                self.emit(f"{sid} sends {ServerState(fx.state).name} r{fx.round} "
                          f"{fmt_vote(fx.leader, fx.zxid, fx.peer_epoch)} to {fmt_sids(tos)}")
            elif isinstance(fx, StateChanged):
                self.emit(f"{sid} {fx.old.name} -> {fx.new.name}")
            elif isinstance(fx, Decided):
                v = fx.vote
                self.emit(f"{sid} decides leader {v.leader} via {fx.path} in r{fx.round}: "
                          f"{fmt_vote(v.leader, v.zxid, v.peer_epoch)} after {fmt_ms(fx.duration_ms)}, "
                          f"sent {fx.notifications_sent}, received {fx.notifications_received}")
            elif isinstance(fx, ConnectAll):
                self.emit(f"{sid} reconnects to all peers")
            elif isinstance(fx, EventOut):
                self.emit(self._fmt_event(sid, fx))
            elif isinstance(fx, (SetTimer, CancelTimer)):
                pass
            i += 1

    def _fmt_event(self, sid: int, ev: EventOut) -> str:
        f = ev.fields
        if ev.event == "election_started":
            v = f["vote"]
            why = "" if self._reason in ("start", "restart") else f" ({self._reason})"
            return (f"{sid} starts election r{f['logical_clock']} vote "
                    f"{fmt_vote(v['leader'], v['zxid'], v['peer_epoch'])}{why}")
        if ev.event == "notification_ignored":
            return f"{sid} ignores {f['from']}'s {f['state']} r{f['round']}: {f['reason']}"
        if ev.event == "quorum_reached":
            return f"{sid} has a quorum for leader {f['leader']} in r{f['logical_clock']}; finalize wait starts"
        if ev.event == "finalize_abandoned":
            return f"{sid} abandons finalize wait: {f['by']} proposes better leader {f['leader']}"
        if ev.event == "notification_timeout":
            what = "re-sends" if f["resent"] else "reconnects"
            return f"{sid} notification timeout: {what}, next timeout {fmt_ms(f['next_timeout_ms'])}"
        rest = " ".join(f"{k}={f[k]}" for k in sorted(f))
        return f"{sid} {ev.event} {rest}".rstrip()

    # driving
    def deliver_held(self, pick: Callable[[tuple], bool], drop: set[int], limit: int | None) -> int:
        batch = [m for m in self.held if pick(m)]
        if limit is not None:
            batch = batch[:limit]
        ids = {id(m) for m in batch}
        self.held = [m for m in self.held if id(m) not in ids]
        for m in batch:
            src, dst, n = m[0], m[1], m[2]
            if src in drop:
                self.messages_lost += 1
                self.emit(f"{src}->{dst} {fmt_note(n)} DROPPED", 0)
            else:
                self._on_deliver(*m)
        return len(batch)

    def flow(self, until_ms: float, stop: Callable[[], bool] | None = None) -> bool:
        """Run to `until_ms`; in manual mode held messages arrive at once."""
        if not self.manual:
            ok = self.run_until(until_ms, stop=(lambda s: stop()) if stop else None)
            return ok
        delivered = 0
        while True:
            while self.held:
                self._on_deliver(*self.held.pop(0))
                delivered += 1
                if delivered > MAX_DELIVERIES:
                    raise ScriptError(f"more than {MAX_DELIVERIES} deliveries: a message storm?")
            if stop is not None and stop():
                return True
            if self._heap and self._heap[0][0] <= until_ms:
                self.step()
                continue
            break
        self.now_ms = max(self.now_ms, until_ms)
        return stop is not None and stop()


# -- parsing ----------------------------------------------------------------------
@dataclass
class Block:
    line: int  # 1-based line of the first command
    commands: list[str]
    expected: list[str] | None  # None: no `----` yet
    command_lines: list[int] | None = None  # 1-based line of each command


Segment = tuple[str, object]  # ("text", str) | ("block", Block)

_TOKEN = re.compile(r"[\w.-]+=\([^)]*\)|\([^)]*\)|\S+")


def parse_script(text: str) -> list[Segment]:
    lines = text.splitlines()
    segs: list[Segment] = []
    i = 0
    while i < len(lines):
        ln = lines[i]
        if not ln.strip() or ln.lstrip().startswith("#"):
            segs.append(("text", ln))
            i += 1
            continue
        start = i
        cmds, cmd_lines = [], []
        while i < len(lines) and lines[i].strip() and lines[i].strip() != SEPARATOR:
            if not lines[i].lstrip().startswith("#"):
                cmds.append(lines[i].strip())
                cmd_lines.append(i + 1)
            i += 1
        expected = None
        if i < len(lines) and lines[i].strip() == SEPARATOR:
            i += 1
            expected = []
            while i < len(lines) and lines[i].strip():
                expected.append(lines[i])
                i += 1
        segs.append(("block", Block(start + 1, cmds, expected, cmd_lines)))
    return segs


def _split(cmd: str) -> tuple[str, list[str], dict[str, str]]:
    toks = _TOKEN.findall(cmd)
    name, pos, kw = toks[0], [], {}
    for t in toks[1:]:
        if "=" in t and not t.startswith("("):
            k, v = t.split("=", 1)
            kw[k] = v
        else:
            pos.append(t)
    return name, pos, kw


def _int(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise ScriptError(f"not an integer: {s!r}") from None


def _list(s: str) -> list[str]:
    s = s.strip()
    if s.startswith("(") and s.endswith(")"):
        return s[1:-1].split()
    return [s]


def _sids(s: str) -> list[int]:
    return [_int(x) for x in _list(s)]


def _zxid(s: str) -> int:
    if ":" in s:
        e, c = s.split(":", 1)
        return make_zxid(_int(e), _int(c))
    return _int(s)


def _duration(s: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)?", s)
    if not m:
        raise ScriptError(f"not a duration: {s!r} (say 200ms or 1.5s)")
    v = float(m.group(1))
    return v * 1000 if m.group(2) == "s" else v


# -- running ------------------------------------------------------------------------
class Interpreter:
    def __init__(self) -> None:
        self.sim: ScriptSim | None = None

    def run(self, cmd: str) -> list[str]:
        name, pos, kw = _split(cmd)
        handler = getattr(self, "cmd_" + name.replace("-", "_"), None)
        if handler is None:
            raise ScriptError(f"unknown command {name!r}")
        if name != "ensemble" and self.sim is None:
            raise ScriptError("no ensemble yet: start the script with `ensemble`")
        if self.sim is not None:
            self.sim.lines = []
        out = handler(pos, kw) or []
        if self.sim is not None:
            out = self.sim.lines + out
            self.sim.lines = []
        return out

    def _members(self, spec: str, first: int) -> list[int]:
        if spec.startswith("("):
            return _sids(spec)
        return list(range(first, first + _int(spec)))

    def cmd_ensemble(self, pos, kw):
        voters = self._members(kw.pop("voters", "3"), 1)
        observers = self._members(kw.pop("observers", "0"), max(voters) + 1)
        if "weights" in kw:
            w = _sids(kw.pop("weights"))
            if len(w) != len(voters):
                raise ScriptError(f"weights= needs {len(voters)} values")
            qv = QuorumHierarchical(voters, {1: voters}, dict(zip(voters, w)), observers=observers)
        else:
            qv = QuorumMaj(voters, observers=observers)
        net = kw.pop("net", "manual")
        if net not in ("manual", "random"):
            raise ScriptError("net= is manual or random")
        opts = dict(seed=_int(kw.pop("seed", "0")), protocol=kw.pop("protocol", "3.8"))
        for key, arg in (("finalize", "finalize_wait"),):
            if key in kw:
                opts[arg] = _int(kw.pop(key))
        for key, arg in (("sync-limit", "sync_limit_ms"), ("init-limit", "init_limit_ms"),
                         ("min-delay", "min_delay_ms"), ("max-delay", "max_delay_ms")):
            if key in kw:
                opts[arg] = _duration(kw.pop(key))
        if kw or pos:
            raise ScriptError(f"ensemble: unknown arguments {sorted(kw) + pos}")
        peers = {s: (0, 0) for s in voters + observers}
        self.sim = ScriptSim(qv, peers, manual=(net == "manual"), **opts)
        for node in self.sim.nodes.values():
            node.alive = False  # not running until `start`: unreachable, like a peer not yet launched
        line = f"voters {fmt_sids(voters)}"
        if observers:
            line += f" observers {fmt_sids(observers)}"
        if isinstance(qv, QuorumHierarchical):
            line += " weights " + " ".join(str(qv.weight(s)) for s in voters)
        return [line]

    def _set_persisted(self, sids: list[int], kw: dict) -> None:
        for key in ("zxid", "epoch", "accepted"):
            if key not in kw:
                continue
            vals = _list(kw.pop(key))
            if len(vals) == 1:
                vals = vals * len(sids)
            if len(vals) != len(sids):
                raise ScriptError(f"{key}= has {len(vals)} values for {len(sids)} peers")
            for sid, v in zip(sids, vals):
                node = self._node(sid)
                if key == "zxid":
                    node.last_zxid = _zxid(v)
                elif key == "epoch":
                    node.current_epoch = _int(v)
                    node.accepted_epoch = max(node.accepted_epoch, node.current_epoch)
                else:
                    node.accepted_epoch = _int(v)
        if kw:
            raise ScriptError(f"unknown arguments {sorted(kw)}")

    def _node(self, sid: int) -> SimNode:
        if sid not in self.sim.nodes:
            raise ScriptError(f"no peer {sid}")
        return self.sim.nodes[sid]

    def cmd_peer(self, pos, kw):
        self._set_persisted([_int(p) for p in pos], kw)

    def cmd_start(self, pos, kw):
        sids = [_int(p) for p in pos]
        self._set_persisted(sids, kw)
        for sid in sids:
            if self._node(sid).alive:
                raise ScriptError(f"peer {sid} is already running (use restart)")
            self._node(sid).alive = True
        self.sim.start(sids)

    def cmd_deliver(self, pos, kw):
        sim = self.sim
        if not sim.manual:
            raise ScriptError("deliver needs net=manual")
        frm = _int(kw.pop("from")) if "from" in kw else None
        to = _int(kw.pop("to")) if "to" in kw else None
        drop = set(_sids(kw.pop("drop"))) if "drop" in kw else set()
        leader = _int(kw.pop("leader")) if "leader" in kw else None
        limit = _int(kw.pop("n")) if "n" in kw else None
        if kw or pos:
            raise ScriptError(f"deliver: unknown arguments {sorted(kw) + pos}")

        def pick(m: tuple) -> bool:
            return ((frm is None or m[0] == frm) and (to is None or m[1] == to)
                    and (leader is None or m[2].leader == leader))

        n = sim.deliver_held(pick, drop, limit)
        if n == 0:
            return ["no messages"]

    def cmd_tick(self, pos, kw):
        sim = self.sim
        t = sim.now_ms + _duration(pos[0])
        if sim.manual:
            sim.run_until(t)
        else:
            sim.flow(t)

    def cmd_run_for(self, pos, kw):
        sim = self.sim
        sim.flow(sim.now_ms + _duration(pos[0]))

    def cmd_stabilize(self, pos, kw):
        sim = self.sim
        limit = _duration(pos[0]) if pos else 60_000.0
        ok = sim.flow(sim.now_ms + limit, stop=lambda: sim.stable() is not None and not sim.held)
        if not ok:
            return [f"NOT STABLE after {fmt_ms(limit)}"]
        lead = sim.nodes[sim.stable()]
        return [f"stable: leader {lead.sid} epoch {lead.established_epoch}"]

    def cmd_partition(self, pos, kw):
        self.sim.partition([_sids(p) for p in pos])

    def cmd_heal(self, pos, kw):
        self.sim.heal()

    def cmd_crash(self, pos, kw):
        for p in pos:
            self._node(_int(p))
            self.sim.crash(_int(p))

    def cmd_restart(self, pos, kw):
        for p in pos:
            self._node(_int(p))
            self.sim.restart(_int(p))

    def cmd_msgs(self, pos, kw):
        if not self.sim.held:
            return ["no messages"]
        return [f"{m[0]}->{m[1]} {fmt_note(m[2])}" for m in self.sim.held]

    def cmd_status(self, pos, kw):
        sim = self.sim
        out = []
        for sid, n in sorted(sim.nodes.items()):
            role = "observer" if sid in sim.verifier.observers else "voter"
            if not n.alive:
                down = "DOWN" if n.core.logical_clock else "NOT STARTED"
                out.append(f"{sid} {role} {down} zxid={fmt_zxid(n.last_zxid)} epoch={n.current_epoch}")
                continue
            c = n.core
            persisted = (f"zxid={fmt_zxid(n.last_zxid)} epoch={n.current_epoch}"
                         + (f" accepted={n.accepted_epoch}" if n.accepted_epoch != n.current_epoch else ""))
            if c.state == ServerState.LOOKING:
                p = c.proposal
                rs = " ".join(f"{s}:{v.leader}" for s, v in sorted(c.recvset.items()))
                out.append(f"{sid} {role} LOOKING r{c.logical_clock} proposal "
                           f"{fmt_vote(p.leader, p.zxid, p.peer_epoch)} recvset {{{rs}}} {persisted}")
            else:
                v = c.current_vote
                extra = ""
                if c.state == ServerState.LEADING:
                    extra = (f" established epoch {n.established_epoch}" if n.established_epoch is not None
                             else " not established")
                elif n.synced:
                    extra = " synced"
                out.append(f"{sid} {role} {c.state.name} r{c.logical_clock} vote "
                           f"{fmt_vote(v.leader, v.zxid, v.peer_epoch)}{extra} {persisted}")
        if sim.manual:
            out.append(f"held messages: {len(sim.held)}")
        return out


def run_script(text: str, name: str = "<script>") -> list[Segment]:
    """Run every block; return the segments with `expected` replaced by the actual output."""
    segs = parse_script(text)
    interp = Interpreter()
    out: list[Segment] = []
    for kind, item in segs:
        if kind == "text":
            out.append((kind, item))
            continue
        lines: list[str] = []
        for cmd, at in zip(item.commands, item.command_lines or [item.line] * len(item.commands)):
            try:
                lines += interp.run(cmd)
            except ScriptError as e:
                raise ScriptError(f"{name}:{at}: {cmd}: {e}") from None
        out.append(("block", Block(item.line, item.commands, lines or ["ok"])))
    return out


def render(segs: list[Segment]) -> str:
    lines: list[str] = []
    for kind, item in segs:
        if kind == "text":
            lines.append(item)
        else:
            lines += item.commands
            if item.expected is not None:
                lines.append(SEPARATOR)
                lines += item.expected
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m node.sim_script [--rewrite] FILE...`: print (or rewrite) the traces."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rewrite = "--rewrite" in argv
    files = [a for a in argv if a != "--rewrite"]
    if not files:
        print(__doc__.split("\n\n")[0])
        return 2
    for f in files:
        p = Path(f)
        text = render(run_script(p.read_text(), str(p)))
        if rewrite:
            p.write_text(text)
        else:
            sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
