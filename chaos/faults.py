"""The fault ledger: every fault a run applies, with its undo.

Theory of operation. A step that breaks something calls :meth:`FaultLedger.apply`
with a ``do`` callable that makes the fault and returns the callable that
undoes it. The ledger journals ``requested`` before acting and ``effective``
after, and keeps the undo. :meth:`undo` (a ``heal``, ``untoxic``, ``resume``)
and :meth:`undo_all` (the end of the steps, and every exit path through the
runner's ``finally``: a failed step, Ctrl-C, SIGTERM, a crash) run undos
last-in first-out and journal ``undone`` once per fault. A fault with no undo
(``kill``, ``stop``: a restart is a new process, not an undo) is only
journaled.

The ledger knows nothing about proxies or processes; the step handlers pass
closures over :mod:`chaos.links` and the target.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from chaos.records import Link

__all__ = ["FaultLedger", "AppliedFault", "Undo"]

Undo = Callable[[], Iterable[Link] | None]
"""Undoes one fault; may return the links it restored (journaled with ``undone``)."""


@dataclass(slots=True)
class AppliedFault:
    fault_id: str
    kind: str
    target: Mapping[str, Any]
    links: tuple[Link, ...]
    name: str | None
    undo: Undo | None = field(repr=False, default=None)


class FaultLedger:
    """``journal(phase, fault_id, kind, target, links)`` writes one ``fault`` record;
    ``warn`` reports an undo that failed (the rest still run)."""

    def __init__(self, journal: Callable[[str, str, str, Mapping[str, Any], tuple[Link, ...]], None],
                 warn: Callable[[str], None]) -> None:
        self._journal = journal
        self._warn = warn
        self._count = 0
        self._active: dict[str, AppliedFault] = {}   # insertion order = apply order

    def new_id(self) -> str:
        self._count += 1
        return f"f{self._count}"

    def apply(self, kind: str, target: Mapping[str, Any], do: Callable[[str], Undo | None], *,
              links: Iterable[Link] = (), name: str | None = None) -> str:
        """Journal ``requested``, run ``do(fault_id)``, keep the undo it returns, journal
        ``effective``. If ``do`` raises half-way it must still have made its
        partial work undoable (it returns nothing then): the ledger does not
        know what half-happened, so :mod:`chaos.links` keeps its own registry."""
        fid = self.new_id()
        links = tuple(links)
        self._journal("requested", fid, kind, target, links)
        undo = do(fid)
        if undo is not None:
            self._active[fid] = AppliedFault(fid, kind, dict(target), links, name, undo)
        self._journal("effective", fid, kind, target, links)
        return fid

    def adopt(self, fault_id: str, kind: str, target: Mapping[str, Any], undo: Undo, *,
              links: Iterable[Link] = (), name: str | None = None) -> None:
        """Register the undo of a fault journaled by the caller (a partial ``do``)."""
        self._active[fault_id] = AppliedFault(fault_id, kind, dict(target), tuple(links), name, undo)

    def active(self, kind: str | None = None, name: str | None = None) -> list[AppliedFault]:
        return [f for f in self._active.values()
                if (kind is None or f.kind == kind) and (name is None or f.name == name)]

    def find(self, kind: str, pred: Callable[[AppliedFault], bool]) -> AppliedFault | None:
        return next((f for f in self._active.values() if f.kind == kind and pred(f)), None)

    def undo(self, fault_id: str, **target: Any) -> None:
        """Undo one fault now; journaled ``undone`` with the links it restored.
        An undo that raises stays journaled as not undone and re-raises."""
        f = self._active.pop(fault_id, None)
        if f is None:
            return
        restored = f.undo() if f.undo is not None else None
        links = tuple(restored) if restored is not None else f.links
        self._journal("undone", f.fault_id, f.kind, target, links)

    def forget(self, fault_id: str, **target: Any) -> None:
        """The fault ended by other means (a paused node was killed): journal
        ``undone`` without running the undo."""
        f = self._active.pop(fault_id, None)
        if f is not None:
            self._journal("undone", f.fault_id, f.kind, target, f.links)

    def undo_all(self) -> None:
        """Undo every active fault, newest first, best effort."""
        for fid in reversed(list(self._active)):
            try:
                self.undo(fid)
            except Exception as e:
                self._warn(f"undo of {fid} failed: {type(e).__name__}: {e}")

    def __len__(self) -> int:
        return len(self._active)
