"""Targets: what a run starts, signals and observes behind one interface.

Theory of operation. The step handlers never start a process or read a node's
files themselves; they call the :class:`Target` of the run (``kill(sid)``,
``restart(sid)``, ``is_running(sid)`` …), and the observer asks it where each
node answers four-letter words and writes events. A second implementation
(real ZooKeeper servers, issue 10) registers here under its own kind and plugs
in without touching the handlers. ``fle`` — our own node — is the default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol

from chaos import procs
from chaos.plan.model import Ensemble as EnsembleSpec

__all__ = ["Target", "TargetFactory", "TARGETS", "register_target", "create_target", "NodeEndpoints", "plan_preflight",
           "preflight"]

NodeEndpoints = Mapping[int, tuple[int, Path | None]]
"""sid -> (client port answering 4lw, events.jsonl path or None)."""


class Target(Protocol):
    kind: str

    def version(self) -> str | None: ...
    def header(self) -> list[dict]: ...
    def endpoints(self) -> NodeEndpoints: ...
    def write_configs(self) -> None: ...
    def start_all(self) -> None: ...
    def start(self, sid: int) -> int: ...
    def kill(self, sid: int) -> int | None: ...
    def pause(self, sid: int) -> None: ...
    def resume(self, sid: int) -> None: ...
    def stop(self, sid: int, timeout: float = 10.0) -> int | None: ...
    def restart(self, sid: int) -> int: ...
    def is_running(self, sid: int) -> bool: ...
    def poll_exits(self) -> list[tuple[int, int | None]]: ...
    def shutdown(self, timeout: float = 5.0) -> None: ...
    def log_summary(self, sid: int) -> dict: ...


class TargetFactory(Protocol):
    def __call__(self, run_dir: Path, spec: EnsembleSpec, real_ports: Iterable[int],
                 link_ports: Mapping[tuple[int, int, str], int], *, registry: procs.RunRegistry | None,
                 on_process: Callable[..., None]) -> Target: ...


TARGETS: dict[str, TargetFactory] = {}


def register_target(kind: str, factory: TargetFactory) -> None:
    TARGETS[kind] = factory


def create_target(kind: str, *args, **kwargs) -> Target:
    try:
        factory = TARGETS[kind]
    except KeyError:
        raise ValueError(f"unknown target {kind!r}; known: {', '.join(sorted(TARGETS))}") from None
    return factory(*args, **kwargs)


def preflight(kind: str, links: str | None = None, home: str | None = None) -> str | None:
    """None when a run of ``kind`` can start here; else one line saying what is
    missing (the CLI exits 3 with it)."""
    factory = TARGETS.get(kind)
    if factory is None:
        return f"unknown target {kind!r}; known: {', '.join(sorted(TARGETS))}"
    check = getattr(factory, "missing_requirements", None)
    problem = check(home) if check is not None else None
    if problem:
        return problem
    if (links or getattr(factory, "default_links", "config")) == "netns":
        from chaos.netns import missing_requirements
        return missing_requirements()
    return None


def plan_preflight(plan: Any) -> str | None:
    """None when this machine can run every step kind of ``plan``; else one line
    saying what is missing (a power cut needs FUSE, a reboot nftables and root).
    The run itself stops at setup with the same line (exit 3); a caller that
    runs many plans (``pytest --chaos``, the mutation bench) leaves such a
    plan out, saying why."""
    if plan.uses("power_loss"):
        from chaos.lazyfs import missing_requirements as fuse_missing
        if (problem := fuse_missing()) is not None:
            return problem
    if plan.uses("reboot"):
        from chaos.wirecut import missing_requirements as wire_missing
        return wire_missing()
    return None


def _register_builtin() -> None:
    from chaos.targets.fle import FleTarget
    from chaos.targets.zookeeper import ZooKeeperTarget
    register_target("fle", FleTarget)
    register_target("zookeeper", ZooKeeperTarget)


_register_builtin()
