"""The node process: an asyncio shell that wires the pure FLE core to sockets.

Theory of operation
-------------------
Everything runs on one event loop, so the core is never called concurrently:

* `QuorumCnxManager` hands us election frames; we decode them (a malformed
  one becomes a `malformed_frame` event and is dropped) and feed them to
  `FastLeaderElection.on_notification`.
* The core's effects are carried out here: `Send` is encoded with this
  node's config text and queued on the QCM (our own sid loops back through
  it), `SetTimer`/`CancelTimer` map to `loop.call_later` handles keyed by
  name, `StateChanged`/`Decided`/`EventOut` become events.
* A role loop runs elections one after another: once the core decides, it
  awaits `Broadcast.lead()` or `.follow()`; when those return (leader lost,
  quorum lost, cannot connect) the node is LOOKING again. Observers wait a
  random 0-200 ms first, as ZooKeeper's observer.election.DelayMs does, so a
  crowd of observers does not stampede; the RNG is injected.

Shutdown (SIGTERM/SIGINT, or `--parent-pid` gone) always runs the same path:
`node_stopping`, close every listener and connection, fsync the log, exit 0.
"""
from __future__ import annotations

import asyncio
import os
import random
import resource
import signal
import sys
import time
from typing import Any, Callable

from node.codec import ProtocolError, decode_notification, encode_notification
from node.config import LearnerType, NodeConfig
from node.events import EVENTS_FILE, EventLog
from node.fle import (
    CancelTimer, ConnectAll, Decided, Effect, EventOut, FastLeaderElection, Send, SetTimer,
    StateChanged,
)
from node.fourlw import FourLetterServer, NodeStatus
from node.qcm import QuorumCnxManager
from node.storage import Storage, StorageError
from node.zab import Broadcast, ZabSettings
from zkrules.vote import ServerState

__all__ = ["NodeServer", "EXIT_OK", "EXIT_CONFIG", "EXIT_INFRA", "config_text_for", "run_node"]

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_INFRA = 3

_PARENT_POLL_S = 0.5
_OBSERVER_DELAY_MS = 200
_ROLE_FAILURE_BACKOFF_S = 0.2
# Events of the core that are per-notification noise; logged with the
# notification events, i.e. only when fle.logNotifications is on.
_CHATTY_CORE_EVENTS = frozenset({"notification_ignored"})


def config_text_for(config: NodeConfig) -> str:
    """What ZooKeeper's QuorumVerifier.toString puts in v2 notifications."""
    addrs: dict[int, str] = {}
    for s in config.servers:
        a = f"{s.host}:{s.quorum_port}:{s.election_port}"
        if s.client_port is not None:
            a += f";{s.client_host or '0.0.0.0'}:{s.client_port}"
        addrs[s.sid] = a
    return config.make_verifier().to_config_text(addrs)


def _parent_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # A dead parent that nobody reaped is still "there" for kill(0).
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] in (b"Z", b"X")
    except (OSError, ValueError):
        return False


class NodeServer:
    """One FastLeaderElection peer with its broadcast phase and client port."""

    def __init__(self, config: NodeConfig, *, parent_pid: int | None = None,
                 rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.parent_pid = parent_pid
        self.rng = rng or random.Random()
        self._clock = clock
        self._started_ms = clock() * 1000.0
        self.events = EventLog(config.data_dir / EVENTS_FILE, config.sid,
                               nonvoters=frozenset(config.observers) - {config.sid})
        self.verifier = config.make_verifier()
        self.config_text = config_text_for(config)
        self.fle = FastLeaderElection(
            config.sid, self.verifier, protocol=config.protocol,
            min_notification_interval=config.min_notification_interval,
            max_notification_interval=config.max_notification_interval,
            finalize_wait=config.finalize_wait,
        )
        self.storage: Storage | None = None
        self.qcm: QuorumCnxManager | None = None
        self.broadcast: Broadcast | None = None
        self.fourlw: FourLetterServer | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._decided: asyncio.Future[Decided] | None = None
        self._stop_reason: str | None = None
        self._stop: asyncio.Event | None = None
        self._elections = 0
        self._last_election_ms = 0
        self._last_election_path = "none"
        self._leader_since_ms: float | None = None

    # ------------------------------------------------------------ helpers
    def emit(self, event: str, fields: dict[str, Any] | None = None) -> None:
        self.events.emit(event, fields or {})

    def _now_ms(self) -> float:
        return self._clock() * 1000.0

    def request_stop(self, reason: str) -> None:
        if self._stop is not None and not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    # ------------------------------------------------------------ status
    def status(self) -> NodeStatus:
        fle = self.fle
        state = fle.state.name
        vote = fle.proposal if fle.state == ServerState.LOOKING else fle.current_vote
        st = self.storage
        bc = self.broadcast
        learners, synced_f, synced_o = bc.learner_counts() if bc is not None else (0, 0, 0)
        try:
            open_fds = len(os.listdir("/proc/self/fd"))
        except OSError:
            open_fds = 0
        now = self._now_ms()
        return NodeStatus(
            sid=self.config.sid,
            pid=os.getpid(),
            state=state,
            logical_clock=fle.logical_clock,
            vote_leader=vote.leader,
            vote_zxid=vote.zxid,
            vote_peer_epoch=vote.peer_epoch,
            vote_round=vote.round,
            leader=fle.current_vote.leader if fle.state != ServerState.LOOKING else -1,
            # True only while a role runs whose epoch is established (Broadcast
            # sets it after NEWLEADER quorum / UPTODATE and clears it when the
            # role ends): the four-letter words serve only then.
            synced=bool(bc is not None and bc.synced and bc.role is not None
                        and fle.state != ServerState.LOOKING),
            accepted_epoch=st.accepted_epoch if st else 0,
            current_epoch=st.current_epoch if st else 0,
            last_zxid=st.last_zxid if st else 0,
            last_committed_zxid=st.last_committed_zxid if st else 0,
            elections=self._elections,
            last_election_ms=int(self._last_election_ms),
            last_election_path=self._last_election_path,
            quorum_size=len(self.verifier.voting_members),
            learners=learners,
            synced_followers=synced_f,
            synced_observers=synced_o,
            uptime_ms=int(now - self._started_ms),
            leader_uptime_ms=int(now - self._leader_since_ms) if self._leader_since_ms else 0,
            open_fds=open_fds,
            max_fds=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        )

    # ------------------------------------------------------------ core pump
    def _on_message(self, sid: int, payload: bytes) -> None:
        try:
            n = decode_notification(payload, sid, protocol=self.config.protocol)
        except ProtocolError as e:
            self.emit("malformed_frame", {"peer": sid, "port": "election", "reason": str(e),
                                          "length": len(payload)})
            return
        if self.config.log_notifications:
            self.emit("notification_received", {
                "from": sid, "state": n.state.name, "leader": n.leader, "zxid": n.zxid,
                "round": n.round, "peer_epoch": n.peer_epoch, "version": n.version})
        try:
            fx = self.fle.on_notification(self._now_ms(), n)
        except Exception as e:  # a core bug must not take the process down
            self.emit("core_failed", {"input": "notification", "from": sid, "reason": repr(e)})
            return
        self._apply(fx)

    def _on_timer(self, name: str) -> None:
        self._timers.pop(name, None)
        have_delivered = self.qcm.have_delivered() if self.qcm is not None else False
        try:
            fx = self.fle.on_timer(self._now_ms(), name, have_delivered=have_delivered)
        except Exception as e:
            self.emit("core_failed", {"input": "timer", "timer": name, "reason": repr(e)})
            return
        self._apply(fx)

    def _apply(self, effects: list[Effect]) -> None:
        loop = asyncio.get_running_loop()
        for fx in effects:
            if isinstance(fx, Send):
                self._send(fx)
            elif isinstance(fx, SetTimer):
                old = self._timers.pop(fx.name, None)
                if old is not None:
                    old.cancel()
                self._timers[fx.name] = loop.call_later(fx.delay_ms / 1000.0, self._on_timer, fx.name)
            elif isinstance(fx, CancelTimer):
                old = self._timers.pop(fx.name, None)
                if old is not None:
                    old.cancel()
            elif isinstance(fx, ConnectAll):
                if self.qcm is not None:
                    self.qcm.connect_all()
            elif isinstance(fx, StateChanged):
                self.emit("state_changed", {"from": fx.old.name, "to": fx.new.name})
                if fx.new == ServerState.LEADING:
                    self._leader_since_ms = self._now_ms()
                elif fx.old == ServerState.LEADING:
                    self._leader_since_ms = None
            elif isinstance(fx, Decided):
                self._on_decided(fx)
            elif isinstance(fx, EventOut):
                if fx.event in _CHATTY_CORE_EVENTS and not self.config.log_notifications:
                    continue
                self.emit(fx.event, fx.fields)

    def _send(self, s: Send) -> None:
        if self.qcm is None:
            return
        payload = encode_notification(s.state, s.leader, s.zxid, s.round, s.peer_epoch,
                                      protocol=self.config.protocol, config_text=self.config_text)
        if self.config.log_notifications:
            self.emit("notification_sent", {"to": s.to, "state": ServerState(s.state).name,
                                            "leader": s.leader, "zxid": s.zxid, "round": s.round,
                                            "peer_epoch": s.peer_epoch})
        self.qcm.to_send(s.to, payload)

    def _on_decided(self, d: Decided) -> None:
        self._elections += 1
        self._last_election_ms = d.duration_ms
        self._last_election_path = d.path
        self.emit("election_finished", {
            "leader": d.vote.leader, "zxid": d.vote.zxid, "peer_epoch": d.vote.peer_epoch,
            "round": d.round, "duration_ms": round(d.duration_ms, 3), "path": d.path,
            "state": self.fle.state.name, "notifications_sent": d.notifications_sent,
            "notifications_received": d.notifications_received, "nonvoter_echoes": d.nonvoter_echoes,
        })
        if self._decided is not None and not self._decided.done():
            self._decided.set_result(d)

    def _on_epoch_established(self, epoch: int) -> None:
        self.fle.update_election_vote(epoch)

    # ------------------------------------------------------------ role loop
    async def _role_loop(self) -> None:
        assert self.storage is not None and self.broadcast is not None
        loop = asyncio.get_running_loop()
        observer = self.config.peer_type is LearnerType.OBSERVER
        while True:
            self._decided = loop.create_future()
            st = self.storage
            self._apply(self.fle.start_election(self._now_ms(), st.last_zxid, st.current_epoch))
            decided = await self._decided
            self._decided = None
            state = self.fle.state
            try:
                if state == ServerState.LEADING:
                    reason = await self.broadcast.lead()
                else:
                    reason = await self.broadcast.follow(decided.vote.leader,
                                                         observer=state == ServerState.OBSERVING)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # keep electing rather than die on a broadcast bug
                self.emit("role_failed", {"state": state.name, "reason": repr(e)})
                reason = "role failed"
                await asyncio.sleep(_ROLE_FAILURE_BACKOFF_S)
            self.emit("role_ended", {"state": state.name, "reason": reason})
            if observer:
                await asyncio.sleep(self.rng.uniform(0, _OBSERVER_DELAY_MS) / 1000.0)

    async def _watch_parent(self) -> None:
        assert self.parent_pid is not None
        while True:
            await asyncio.sleep(_PARENT_POLL_S)
            if _parent_gone(self.parent_pid):
                self.request_stop(f"parent {self.parent_pid} exited")
                return

    # ------------------------------------------------------------ lifecycle
    async def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.storage = Storage(cfg.data_dir, cfg.data_log_dir, emit=self.emit)
        except (StorageError, OSError) as e:
            print(f"node {cfg.sid}: storage: {e}", file=sys.stderr, flush=True)
            self.emit("node_stopping", {"reason": f"storage: {e}"})
            self.events.close()
            return EXIT_INFRA
        self.qcm = QuorumCnxManager(
            cfg.sid, cfg.election_addrs, protocol=cfg.protocol, cnx_timeout_ms=cfg.cnx_timeout_ms,
            handshake_timeout_ms=cfg.handshake_timeout_ms, on_message=self._on_message,
            emit=self.emit)
        self.broadcast = Broadcast(
            ZabSettings(sid=cfg.sid, tick_ms=cfg.tick_time, init_limit=cfg.init_limit,
                        sync_limit=cfg.sync_limit, txn_interval_ms=cfg.txn_interval_ms,
                        quorum_addrs=cfg.quorum_addrs, verifier=self.verifier),
            self.storage, emit=self.emit, clock=self._clock)
        self.broadcast.on_epoch_established = self._on_epoch_established
        client = cfg.client_address
        if client is not None:
            self.fourlw = FourLetterServer(client[0], client[1], self.status,
                                           cfg.four_letter_whitelist, emit=self.emit)
        bound: list[Any] = []
        try:
            for what, comp in (("election", self.qcm), ("quorum", self.broadcast),
                               ("client", self.fourlw)):
                if comp is None:
                    continue
                try:
                    await comp.start()
                except OSError as e:
                    addr = {"election": cfg.election_addrs[cfg.sid], "quorum": cfg.quorum_addrs[cfg.sid],
                            "client": client}[what]
                    msg = f"cannot bind {what} port {addr[0]}:{addr[1]}: {e.strerror or e}"
                    print(f"node {cfg.sid}: {msg}", file=sys.stderr, flush=True)
                    self.emit("node_stopping", {"reason": msg})
                    return EXIT_INFRA
                bound.append(comp)

            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)
                except (ValueError, RuntimeError, NotImplementedError):
                    pass  # not the main thread (embedded use): request_stop() is the way out
            st = self.storage
            self.emit("node_started", {
                "pid": os.getpid(), "protocol": cfg.protocol, "peer_type": cfg.peer_type.value,
                "last_zxid": st.last_zxid, "accepted_epoch": st.accepted_epoch,
                "current_epoch": st.current_epoch, "finalize_wait_ms": cfg.finalize_wait,
                "election_port": cfg.me.election_port, "quorum_port": cfg.me.quorum_port,
                "client_port": client[1] if client else None,
            })
            for ig in cfg.ignored_keys:
                self.emit("config_key_ignored", {"key": ig.key, "line": ig.line, "path": cfg.path})

            tasks = [loop.create_task(self._role_loop(), name="role-loop")]
            if self.parent_pid is not None:
                tasks.append(loop.create_task(self._watch_parent(), name="parent-watch"))
            stop_wait = loop.create_task(self._stop.wait())
            done, _ = await asyncio.wait([stop_wait, tasks[0]], return_when=asyncio.FIRST_COMPLETED)
            if tasks[0] in done and not self._stop.is_set():
                exc = tasks[0].exception()
                self._stop_reason = f"role loop ended: {exc!r}"
            self.emit("node_stopping", {"reason": self._stop_reason or "stopped"})
            for t in tasks + [stop_wait]:
                t.cancel()
            await asyncio.gather(*tasks, stop_wait, return_exceptions=True)
            return EXIT_OK if self._stop.is_set() else EXIT_INFRA
        finally:
            for h in self._timers.values():
                h.cancel()
            self._timers.clear()
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.remove_signal_handler(sig)
                except (ValueError, RuntimeError):
                    pass
            for comp in reversed(bound):
                try:
                    await asyncio.wait_for(comp.stop(), 5.0)
                except Exception as e:
                    print(f"node {cfg.sid}: error while stopping {type(comp).__name__}: {e!r}",
                          file=sys.stderr, flush=True)
            if self.storage is not None:
                self.storage.close()
            self.events.close()


def run_node(config: NodeConfig, *, parent_pid: int | None = None, seed: int | None = None) -> int:
    server = NodeServer(config, parent_pid=parent_pid,
                        rng=random.Random(seed if seed is not None else config.sid ^ os.getpid()))
    return asyncio.run(server.run())
